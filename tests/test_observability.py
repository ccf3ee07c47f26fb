"""Observability at the daemon level (issue 7): /metrics under real traffic, /readyz following an
adapter down and back, and what `leadbox run` / `leadbox check-config` print when secrets are set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemon import (
    ROOT,
    DaemonProcess,
    base_env,
    post_lead,
    settle,
    wait_for,
)
from tests.fixtures.openai_fake import FakeOpenAIServer
from tests.fixtures.sheets_fake import SheetsFake

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


async def scrape(client: TestClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(await r.text()):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(frozenset(labels.items()), 0.0)




async def test_metrics_parse_and_move_with_real_traffic(make_daemon: Any) -> None:
    d, c = await make_daemon()
    m0 = await scrape(c)
    assert value(m0, "leadbox_leads_received_total", intake="webhook") == 0
    assert value(m0, "leadbox_queue_depth") == 0
    assert all(name.startswith("leadbox_") for name in m0)

    await post_lead(c, "ana@example.com", "Hola, ¿me enviáis un presupuesto para una tienda online?")
    await post_lead(c, "luis@example.com", "Mi cuenta no funciona desde ayer, no puedo acceder al panel.")
    await post_lead(c, "seo@spam.example", "Buy cheap SEO backlinks now, guaranteed first page! Click here")
    status, _ = await post_lead(c, "ANA@example.com", "Otra pregunta más.")
    assert status == 200
    await settle(d, 3)

    m = await scrape(c)
    assert value(m, "leadbox_leads_received_total", intake="webhook") == 3
    assert value(m, "leadbox_duplicates_total", intake="webhook") == 1
    processed = m["leadbox_leads_processed_total"]
    assert sum(processed.values()) == 3
    assert value(m, "leadbox_leads_processed_total", outcome="replied", category="sales") == 1
    assert value(m, "leadbox_leads_processed_total", outcome="replied", category="support") == 1
    assert value(m, "leadbox_leads_processed_total", outcome="skipped", category="spam") == 1
    assert value(m, "leadbox_replies_sent_total", transport="outbox") == 2
    for step in ("classify", "mirror", "reply"):
        assert value(m, "leadbox_step_seconds_count", step=step) == 3, step
        assert value(m, "leadbox_step_seconds_bucket", step=step, le="+Inf") == 3, step
    assert value(m, "leadbox_queue_depth") == 0
    assert value(m, "leadbox_failures_total", step="reply") == 0


def smtp_env(smtp: Any) -> dict[str, str]:
    return {
        "LEADBOX_REPLY__TRANSPORT": "smtp", "LEADBOX_REPLY__SMTP_HOST": smtp.host,
        "LEADBOX_REPLY__SMTP_PORT": str(smtp.port_tls), "LEADBOX_REPLY__SMTP_SECURITY": "tls",
        "LEADBOX_REPLY__CA_FILE": smtp.ca_file, "LEADBOX_REPLY__SMTP_TIMEOUT": "3",
        "EMAIL_USER": smtp.username, "EMAIL_PASS": smtp.password,
        "LEADBOX_REPLY__FROM_ADDRESS": smtp.username,
    }


async def test_readyz_503_while_smtp_is_down_and_200_when_it_is_back(make_daemon: Any, smtp_server: Any) -> None:
    smtp_server.stop()
    try:
        d, c = await make_daemon(smtp_env(smtp_server))
        _, lead_id = await post_lead(c, "ana@example.com", "Hola, ¿me enviáis un presupuesto para una web?")

        async def unready() -> bool:
            return (await c.get("/readyz")).status == 503

        await wait_for(unready, 15, what="/readyz to report the SMTP server down")
        body = await (await c.get("/readyz")).json()
        assert body["status"] == "unavailable" and body["checks"]["reply"]["state"] == "down"
        assert body["checks"]["store"]["state"] == "ok" and body["checks"]["scheduler"]["state"] == "ok"
        m = await scrape(c)
        assert value(m, "leadbox_queue_depth") == 1  # the lead waits, it is not lost
        assert value(m, "leadbox_adapter_up", adapter="reply") == 0
        assert value(m, "leadbox_retries_total", step="reply") >= 1
        assert value(m, "leadbox_replies_sent_total", transport="smtp") == 0
    finally:
        smtp_server.start()

    async def ready() -> bool:
        return (await c.get("/readyz")).status == 200

    await wait_for(ready, 20, what="/readyz to recover once the SMTP server is back")
    await settle(d, 1)
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state == "replied"
    assert len(smtp_server.messages) == 1
    m = await scrape(c)
    assert value(m, "leadbox_queue_depth") == 0
    assert value(m, "leadbox_adapter_up", adapter="reply") == 1
    assert value(m, "leadbox_replies_sent_total", transport="smtp") == 1


# ---------------------------------------------------------------- secrets and bodies in the logs

SMTP_USER = "obs-daemon@example.com"
SECRETS = {
    "OPENAI_API_KEY": "sk-test-SECRET-openai-4f8a1c9e",
    "EMAIL_PASS": "smtp-SECRET-9d1e7b2c",
    "LEADBOX_ADMIN_TOKEN": "admin-SECRET-3b7e5a91",
    "LEADBOX_WEBHOOK_SECRET": "hook-SECRET-6c2d8f40",
}
BODY_MARKS = ["BODYMARK-7Q2X-first", "BODYMARK-7Q2X-second", "BODYMARK-7Q2X-refused"]


@pytest.fixture
def smtp_account(smtp_server: Any) -> Iterator[Any]:
    """A mailbox account on the test SMTP server whose password is one of our recognisable secrets."""
    smtp_server.users[SMTP_USER] = SECRETS["EMAIL_PASS"]
    try:
        yield smtp_server
    finally:
        smtp_server.users.pop(SMTP_USER, None)


def secret_env(smtp: Any, sheets: SheetsFake, llm: FakeOpenAIServer, info: dict[str, str]) -> dict[str, str]:
    return {
        **SECRETS,
        "EMAIL_USER": SMTP_USER,
        "GOOGLE_CREDENTIALS_JSON": json.dumps(info),
        "LEADBOX_HTTP__WEBHOOK_AUTH": "bearer",
        "LEADBOX_CLASSIFIER__BACKEND": "openai",
        "LEADBOX_CLASSIFIER__BASE_URL": llm.base_url,
        "LEADBOX_CLASSIFIER__MAX_RETRIES": "0",
        "LEADBOX_REPLY__TRANSPORT": "smtp", "LEADBOX_REPLY__SMTP_HOST": smtp.host,
        "LEADBOX_REPLY__SMTP_PORT": str(smtp.port_tls), "LEADBOX_REPLY__SMTP_SECURITY": "tls",
        "LEADBOX_REPLY__CA_FILE": smtp.ca_file, "LEADBOX_REPLY__SMTP_TIMEOUT": "3",
        "LEADBOX_REPLY__FROM_ADDRESS": SMTP_USER,
        "LEADBOX_SHEETS__ENABLED": "true", "LEADBOX_SHEETS__SPREADSHEET": "sheet-key-1",
        "LEADBOX_SHEETS__ENDPOINT": sheets.endpoint, "LEADBOX_SHEETS__FLUSH_SECONDS": "0.05",
        "LEADBOX_SHEETS__TIMEOUT": "2",
    }


def secret_fragments(info: dict[str, str]) -> list[str]:
    """Every secret value, plus each line of the PEM key (a traceback might print a fragment)."""
    pem_lines = [ln for ln in info["private_key"].splitlines() if len(ln) >= 16 and "-----" not in ln]
    return [*SECRETS.values(), json.dumps(info), info["private_key"], *pem_lines]


@pytest.mark.slow
async def test_run_logs_are_json_lines_without_secrets_or_message_bodies(
    daemon_process: Any, smtp_account: Any, fresh_sheets: SheetsFake, openai_server: FakeOpenAIServer,
    service_account_info: dict[str, str],
) -> None:
    # Failures on the way: the LLM answers 500 once (fallback), the sheet 500 once (retried after
    # checking the ids), a wrong webhook token (401), an invalid lead (422), a wrong admin token.
    openai_server.script([{"kind": "status", "status": 500}, "good"])
    fresh_sheets.script("values_append", "500", times=1)
    p: DaemonProcess = daemon_process(
        secret_env(smtp_account, fresh_sheets, openai_server, service_account_info))
    p.start()
    hook = {"Authorization": f"Bearer {SECRETS['LEADBOX_WEBHOOK_SECRET']}"}
    admin = {"Authorization": f"Bearer {SECRETS['LEADBOX_ADMIN_TOKEN']}"}
    ids: list[str] = []
    async with aiohttp.ClientSession(base_url=p.url) as s:
        for i, mark in enumerate(BODY_MARKS[:2]):
            body = {"name": f"Cliente {i}", "email": f"obs{i}@example.com",
                    "message": f"Hola, ¿me enviáis un presupuesto? {mark}"}
            async with s.post("/leads", json=body, headers=hook) as r:
                assert r.status == 202, await r.text()
                ids.append((await r.json())["id"])
        body = {"name": "X", "email": "x@example.com", "message": f"Hola {BODY_MARKS[2]}"}
        async with s.post("/leads", json=body, headers={"Authorization": "Bearer wrong-token"}) as r:
            assert r.status == 401
        async with s.post("/leads", json={"name": "Y", "email": "not an address",
                                          "message": BODY_MARKS[2]}, headers=hook) as r:
            assert r.status == 422

        async def all_replied() -> bool:
            # The reply no longer waits for the sheet: wait for the row's confirmation too.
            states = []
            for lead_id in ids:
                async with s.get(f"/leads/{lead_id}", headers=admin) as r:
                    assert r.status == 200
                    lead = await r.json()
                    states.append((lead["state"], lead["mirror_status"]))
            return states == [("replied", "done")] * len(ids)

        await wait_for(all_replied, 30, what="both leads replied and in the sheet")
        async with s.get(f"/leads/{ids[0]}", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
    assert p.terminate() == 0
    assert len(smtp_account.messages) == 2 and len(fresh_sheets.rows("sheet-key-1", "Leads")) == 3
    assert fresh_sheets.statuses["500"] == 1 and len(openai_server.requests) == 2

    text = p.log.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) >= 5
    for ln in lines:
        doc = json.loads(ln)  # every line, stderr included, is one JSON object
        assert isinstance(doc, dict) and {"time", "level", "logger", "event"} <= set(doc), ln
    assert any("openai classifier failed" in json.loads(ln)["event"] for ln in lines)
    assert any(json.loads(ln).get("lead_id") == ids[0] for ln in lines)
    for secret in secret_fragments(service_account_info):
        assert secret not in text
    for mark in BODY_MARKS:
        assert mark not in text
    assert "presupuesto" not in text


def test_check_config_masks_secrets(
    smtp_account: Any, fresh_sheets: SheetsFake, openai_server: FakeOpenAIServer,
    service_account_info: dict[str, str], tmp_path: Path,
) -> None:
    db_password = "pg-SECRET-51c0ffee"
    env = {**os.environ, **base_env(tmp_path),
           **secret_env(smtp_account, fresh_sheets, openai_server, service_account_info),
           "DATABASE_URL": f"postgresql://leadbox:{db_password}@127.0.0.1:1/leadbox"}
    res = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", "--config", str(ROOT / "config" / "agent.toml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    for secret in [*secret_fragments(service_account_info), db_password]:
        assert secret not in out
    shown = json.loads(res.stdout)
    assert shown["store"]["url"] == "postgresql://leadbox:***@127.0.0.1:1/leadbox"
    for name in ("openai_api_key", "email_pass", "admin_token", "webhook_secret", "google_credentials_json"):
        assert shown["environment"][name].startswith("***"), name
    assert shown["environment"]["email_user"] == SMTP_USER
    assert openai_server.requests == [] and fresh_sheets.calls["token"] == 0  # it only reads config
