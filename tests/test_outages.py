"""Outages of the three remote services while leads keep coming: nothing lost, intake stays fast.

Every scenario runs the daemon in-process with all three adapters on (SMTP replies through
STARTTLS, the OpenAI-compatible classifier, the Sheets mirror), each reached through a
FaultProxy (tests/drivers.py) so one of them can be made to fail in a controlled way:

- down: connection refused for a while;
- slow: every answer held back (below the client timeouts: slow, not broken);
- garbage: SMTP 451 to everything / binary noise, LLM malformed JSON and 500s, Sheets 500/429.

Leads are posted at a steady rate before and during the fault; then the fault ends and the
test waits for the catch-up. At the end every lead is replied exactly once (SMTP messages
counted by X-Leadbox-Lead), the sheet holds exactly one row per lead, nothing waits for
re-classification, and no webhook request took more than 5 s. Latencies (p50/p99/max)
before and during the fault and the catch-up time are printed (pytest -s shows them).

Fast mode (default): a 2 s fault per scenario. Long mode (LEADBOX_LONG=1): 20 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.drivers import (
    BYTES,
    DOWN,
    HTTP_429,
    HTTP_500,
    LONG,
    SLOW,
    SMTP_4XX,
    DropAfterDataSink,
    FaultProxy,
    figures,
    lead_header,
    slow_smtp,
)
from tests.fixtures.daemon import DaemonFactory, all_final, wait_for
from tests.fixtures.mailservers import free_port
from tests.test_smtp_replies import smtp_env

FAULT_SECONDS = 20.0 if LONG else 1.5
BASE_SECONDS = 2.0 if LONG else 0.5
RATE = 25.0  # webhook posts per second
CATCH_UP_TIMEOUT = 120.0


@pytest.fixture
def proxies(smtp_server: Any, openai_server: Any, fresh_sheets: Any) -> Iterator[dict[str, FaultProxy]]:
    made = {
        "smtp": FaultProxy("127.0.0.1", smtp_server.port_starttls),
        "llm": FaultProxy("127.0.0.1", openai_server.port),
        "sheets": FaultProxy("127.0.0.1", fresh_sheets.port),
    }
    yield made
    for p in made.values():
        p.close()


def full_env(smtp: Any, proxies: dict[str, FaultProxy], service_account: dict[str, str]) -> dict[str, str]:
    return {
        # Replies over SMTP (STARTTLS, so a fault can also speak plain-text SMTP).
        "LEADBOX_REPLY__TRANSPORT": "smtp", "LEADBOX_REPLY__SMTP_HOST": "127.0.0.1",
        "LEADBOX_REPLY__SMTP_PORT": str(proxies["smtp"].port), "LEADBOX_REPLY__SMTP_SECURITY": "starttls",
        "LEADBOX_REPLY__CA_FILE": smtp.ca_file, "EMAIL_USER": smtp.username, "EMAIL_PASS": smtp.password,
        "LEADBOX_REPLY__FROM_ADDRESS": smtp.username, "LEADBOX_REPLY__SMTP_TIMEOUT": "2",
        # The LLM classifier.
        "LEADBOX_CLASSIFIER__BACKEND": "openai", "OPENAI_API_KEY": "test",
        "LEADBOX_CLASSIFIER__BASE_URL": f"{proxies['llm'].url}/v1", "LEADBOX_CLASSIFIER__TIMEOUT": "2",
        "LEADBOX_CLASSIFIER__MAX_RETRIES": "1", "LEADBOX_CLASSIFIER__BREAKER_RESET_SECONDS": "1",
        "LEADBOX_CLASSIFIER__RECLASSIFY_INTERVAL": "1",
        # The sheet mirror.
        "LEADBOX_SHEETS__ENABLED": "true", "LEADBOX_SHEETS__SPREADSHEET": "sheet-key-1",
        "LEADBOX_SHEETS__ENDPOINT": proxies["sheets"].url, "GOOGLE_CREDENTIALS_JSON": json.dumps(service_account),
        "LEADBOX_SHEETS__FLUSH_SECONDS": "0.2", "LEADBOX_SHEETS__TIMEOUT": "2",
        # A retry budget longer than the outage (with the defaults it is about 8 minutes).
        "LEADBOX_WORKER__MAX_ATTEMPTS": "1000", "LEADBOX_REPLY__MAX_PER_HOUR": "0",
    }


async def feed(client: Any, tag: str, start: int, seconds: float) -> tuple[list[str], list[float]]:
    """Post leads at RATE per second for ``seconds``; return their ids and each request's latency."""
    ids: list[str] = []
    lat: list[float] = []
    t_end = time.monotonic() + seconds
    i = start
    while time.monotonic() < t_end:
        body = {"name": f"Cliente {i}", "email": f"{tag}-{i}@outage.example",
                "message": f"Hola, ¿nos pasan un presupuesto para la tienda online número {i}? Gracias."}
        t0 = time.perf_counter()
        r = await client.post("/leads", json=body)
        lat.append(time.perf_counter() - t0)
        assert r.status == 202, (r.status, await r.text())
        ids.append((await r.json())["id"])
        i += 1
        await asyncio.sleep(max(0.0, 1 / RATE - lat[-1]))
    return ids, lat


async def caught_up(d: Any, smtp: Any, sheets: Any, ids: list[str]) -> bool:
    if not await all_final(d, len(ids)):
        return False
    if len({lead_header(m["data"]) for m in smtp.messages}) < len(ids):
        return False
    if len(sheets.rows()) - 1 < len(ids):
        return False
    pending = [x for x in await asyncio.gather(*(d.store.get(i) for i in ids))
               if x is None or x.needs_reclassify or x.mirror_status != "done"]
    return not pending


def garbage_llm(openai_server: Any) -> None:
    openai_server.script(["malformed", {"kind": "status", "status": 500}] * 5000)


SCENARIOS = [
    ("smtp", DOWN), ("smtp", SLOW), ("smtp", SMTP_4XX),
    ("llm", DOWN), ("llm", SLOW), ("llm", "scripted-garbage"),
    ("sheets", DOWN), ("sheets", SLOW), ("sheets", HTTP_500),
]
if LONG:  # more kinds of garbage, only in the long run (each scenario costs ~5 s)
    SCENARIOS += [("smtp", BYTES), ("sheets", HTTP_429)]


@pytest.mark.slow
@pytest.mark.parametrize(("service", "mode"), SCENARIOS, ids=[f"{s}-{m}" for s, m in SCENARIOS])
async def test_outage_loses_nothing_and_intake_keeps_answering(
    make_daemon: DaemonFactory, smtp_server: Any, openai_server: Any, fresh_sheets: Any,
    service_account_info: dict[str, str], proxies: dict[str, FaultProxy], service: str, mode: str,
) -> None:
    d, client = await make_daemon(full_env(smtp_server, proxies, service_account_info))
    tag = f"{service}-{mode}"
    ids, before = await feed(client, tag, 0, BASE_SECONDS)
    proxy = proxies[service]
    t_fault = time.monotonic()
    if mode == "scripted-garbage":
        garbage_llm(openai_server)
    else:
        proxy.set(mode, delay=1.0 if service == "sheets" else 0.5)
    more, during = await feed(client, tag, len(ids), FAULT_SECONDS)
    ids += more
    queued = sum(v for k, v in (await d.store.counts()).items() if k not in ("replied", "skipped", "failed"))
    ready = await client.get("/readyz")
    if mode == "scripted-garbage":
        openai_server.reset()
    else:
        proxy.set("pass")
    t_recover = time.monotonic()
    await wait_for(lambda: caught_up(d, smtp_server, fresh_sheets, ids), CATCH_UP_TIMEOUT,
                   what=f"catch-up after the {tag} fault")
    catch_up = time.monotonic() - t_recover
    await asyncio.sleep(0.3)  # a late duplicate would arrive now

    per_lead = Counter(lead_header(m["data"]) for m in smtp_server.messages)
    rows = fresh_sheets.rows()[1:]
    row_ids = Counter(r[-1] for r in rows)
    counts = await d.store.counts()
    print(f"\noutage {tag}: {len(ids)} leads, fault {t_recover - t_fault:.1f}s, "
          f"not final at the end of the fault {queued}, /readyz during {ready.status}; "
          f"intake before [{figures(before)}] during [{figures(during)}]; catch-up {catch_up:.1f}s; "
          f"states {dict(counts)}; smtp msgs {sum(per_lead.values())}; sheet rows {len(rows)}")
    assert counts == {"replied": len(ids)}
    assert set(per_lead) == set(ids) and max(per_lead.values()) == 1, "a lead answered twice or not at all"
    assert set(row_ids) == set(ids) and max(row_ids.values()) == 1, "sheet rows != leads"
    assert max(before + during) < 5.0, "a webhook request took more than 5 s"


@pytest.mark.slow
async def test_slow_smtp_answer_after_data_never_sends_twice(
    make_daemon: DaemonFactory, tls_cert: Any, smtp_server: Any,
) -> None:
    """The server takes the message but answers DATA after the client's timeout.

    The client cannot know the message went out; sending it again would answer the
    customer twice. It must end like a kill inside DATA: reply status 'uncertain', no resend.
    """
    port = free_port()
    controller, sink = slow_smtp(tls_cert, smtp_server.users, delay=3.0, port=port)
    try:
        env = {**smtp_env(smtp_server, "tls", port=port),
               "LEADBOX_REPLY__SMTP_TIMEOUT": "1", "LEADBOX_WORKER__MAX_ATTEMPTS": "100"}
        d, client = await make_daemon(env)
        r = await client.post("/leads", json={"name": "Ana", "email": "ana@slowsmtp.example",
                                              "message": "Hola, quiero un presupuesto para una web."})
        lead_id = (await r.json())["id"]

        async def settled_or_twice() -> bool:
            return len(sink.messages) > 1 or await all_final(d, 1)
        await wait_for(settled_or_twice, 30, what="the lead to settle")
        await asyncio.sleep(3.5)  # let a second, late DATA finish too
        lead = await d.store.get(lead_id)
        assert lead is not None
        print(f"\nslow DATA answer: {len(sink.messages)} message(s) taken by the server, lead "
              f"{lead.state.value} / reply {lead.reply_status}")
        assert len(sink.messages) == 1, "the customer was answered twice"
        assert lead.reply_status in ("sent", "uncertain")
    finally:
        controller.stop()


@pytest.mark.slow
async def test_failed_quit_after_accepted_data_never_sends_twice(
    make_daemon: DaemonFactory, tls_cert: Any, smtp_server: Any,
) -> None:
    """The server accepts the reply (250), then the connection drops before QUIT is answered.

    The reply is out: a failing QUIT must not become a retry (a second reply).
    """
    port = free_port()
    controller, sink = slow_smtp(tls_cert, smtp_server.users, delay=0.0, port=port,
                                 sink=DropAfterDataSink(0.0))
    try:
        env = {**smtp_env(smtp_server, "tls", port=port),
               "LEADBOX_REPLY__SMTP_TIMEOUT": "1", "LEADBOX_WORKER__MAX_ATTEMPTS": "100"}
        d, client = await make_daemon(env)
        r = await client.post("/leads", json={"name": "Ana", "email": "ana@quitdrop.example",
                                              "message": "Hola, quiero un presupuesto para una web."})
        lead_id = (await r.json())["id"]
        await wait_for(lambda: all_final(d, 1), 30, what="the lead to settle")
        await asyncio.sleep(1.5)  # a retry would have sent again by now (backoff 0.2 s in tests)
        lead = await d.store.get(lead_id)
        assert lead is not None and (lead.state.value, lead.reply_status) == ("replied", "sent")
        assert len(sink.messages) == 1, "the customer was answered twice"
    finally:
        controller.stop()
