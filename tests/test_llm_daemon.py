"""The OpenAI classifier at the daemon level (issue 3): the real daemon and the real openai SDK
against the local Chat Completions fake (tests/fixtures/openai_fake.py), and the `classify` and
`eval` commands as users run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.app.daemon import Daemon
from agent.core.models import Lead
from tests.fixtures.daemon import ROOT, base_env, post_lead, settle, wait_for
from tests.fixtures.openai_fake import FakeOpenAIServer

DOWN = {"kind": "status", "status": 503}


def llm_env(server: FakeOpenAIServer, **settings: str) -> dict[str, str]:
    env = {
        "LEADBOX_CLASSIFIER__BACKEND": "openai",
        "LEADBOX_CLASSIFIER__BASE_URL": server.base_url,
        "OPENAI_API_KEY": "test",
        "LEADBOX_CLASSIFIER__MAX_RETRIES": "0",
        "LEADBOX_CLASSIFIER__TIMEOUT": "5",
        "LEADBOX_CLASSIFIER__RECLASSIFY_INTERVAL": "3600",  # the tests call daemon.reclassify()
    }
    env.update({f"LEADBOX_CLASSIFIER__{k.upper()}": v for k, v in settings.items()})
    return env




async def lead(d: Daemon, lead_id: str) -> Lead:
    found = await d.store.get(lead_id)
    assert found is not None
    return found


def outbox(tmp: Path) -> list[Path]:
    return sorted((tmp / "outbox").glob("*.eml"))


async def test_a_good_answer_is_used(
    make_daemon: Any, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script([{"kind": "good", "category": "support", "language": "en", "confidence": 0.8,
                           "summary": "The customer cannot log in since yesterday."}])
    d, c = await make_daemon(llm_env(openai_server))
    message = "Hi, since yesterday I cannot log in to my account. Can you help?"
    _, lead_id = await post_lead(c, "ana@example.com", message)
    await settle(d, 1)
    x = await lead(d, lead_id)
    assert (x.classifier, x.category, x.priority) == ("openai", "support", "high")
    assert x.summary == "The customer cannot log in since yesterday."
    assert x.needs_reclassify is False and x.state == "replied"
    assert openai_server.lead_texts() == [message]
    assert len(outbox(tmp_path)) == 1
    r = await c.get("/readyz")
    assert r.status == 200 and (await r.json())["checks"]["classifier"]["breaker"] == "closed"


@pytest.mark.slow
async def test_endpoint_down_falls_back_then_reclassify_updates_without_a_second_reply(
    make_daemon: Any, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script([DOWN] * 100)
    d, c = await make_daemon(llm_env(openai_server, breaker_failures="2", breaker_reset_seconds="0.5"))
    messages = [f"Hola, ¿me enviáis un presupuesto para la tienda número {i}?" for i in range(3)]
    ids = [(await post_lead(c, f"p{i}@example.com", m))[1] for i, m in enumerate(messages)]
    await settle(d, 3)
    for i in ids:
        x = await lead(d, i)
        assert (x.state, x.classifier, x.needs_reclassify, x.category) == ("replied", "local", True, "sales")
    assert len(outbox(tmp_path)) == 3
    r = await c.get("/readyz")
    assert r.status == 503 and (await r.json())["checks"]["classifier"]["breaker"] == "open"

    # Still down: the breaker is open, so a run makes no call at all.
    before = len(openai_server.requests)
    await d.reclassify()
    assert len(openai_server.requests) == before

    # Still down after the breaker's reset time: one cheap trial call, no call per lead.
    async def half_open() -> bool:
        return d.svc.classifier.state()["breaker"] == "half-open"

    await wait_for(half_open, 10, what="the breaker to allow a trial")
    await d.reclassify()
    assert len(openai_server.requests) == before + 1
    assert [(await lead(d, i)).needs_reclassify for i in ids] == [True] * len(ids)

    # Back: the next run re-classifies the marked leads, and nobody is answered again. The model
    # refuses the first one: that is this message's problem and must not hold up the others.
    openai_server.reset()
    info = {"kind": "good", "category": "info", "summary": "Asks for a quote."}
    openai_server.script(["good", "refusal", info, info])
    await wait_for(half_open, 10, what="the breaker to allow a trial")
    await d.reclassify()
    assert len(openai_server.requests) == 4  # the trial + one per lead
    refused = await lead(d, min(ids))  # the job takes marked leads in id order
    assert (refused.classifier, refused.needs_reclassify, refused.category) == ("local", True, "sales")
    openai_server.script([info, info])
    await d.reclassify()  # the endpoint is up: the refused lead gets its turn again
    for i in ids:
        x = await lead(d, i)
        assert (x.classifier, x.category, x.needs_reclassify) == ("openai", "info", False)
        assert x.summary == "Asks for a quote." and x.state == "replied"
        assert x.priority_rule and x.priority_rule.startswith("category:info")
    assert len(openai_server.requests) == 6
    assert len(outbox(tmp_path)) == 3
    assert (await c.get("/readyz")).status == 200
    await d.reclassify()  # nothing left to do: no call (not even a probe)
    assert len(openai_server.requests) == 6


async def test_no_llm_call_for_duplicates_or_loop_stopped_senders(
    make_daemon: Any, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    d, c = await make_daemon(llm_env(openai_server))
    first = "Hola, ¿me enviáis un presupuesto para una web? FIRST-MARK"
    status, first_id = await post_lead(c, "ana@example.com", first)
    assert status == 202
    await settle(d, 1)
    status, dup_id = await post_lead(c, "ana@example.com", "Otra cosa más. DUPLICATE-MARK")
    assert (status, dup_id) == (200, first_id)
    status, noreply_id = await post_lead(c, "no-reply@notifications.example", "Your order shipped. NOREPLY-MARK")
    assert status == 202
    # A later lead as a barrier: once it is done, the worker has seen everything before it.
    last = "Hola, ¿cuál es vuestro horario? LAST-MARK"
    await post_lead(c, "luis@example.com", last)
    await settle(d, 3)
    assert openai_server.lead_texts() == [first, last]
    x = await lead(d, noreply_id)
    assert x.state == "skipped" and x.classifier == "local" and x.skip_reason
    assert len(outbox(tmp_path)) == 2


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    full.update({**base_env(cwd), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args, "--config", str(ROOT / "config" / "agent.toml")],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=60)


LABELED = [
    {"message": "Hola, ¿me enviáis un presupuesto para una tienda online?", "category": "sales"},
    {"message": "Mi cuenta no funciona desde ayer, no puedo acceder al panel.", "category": "support"},
    {"message": "¿Cuál es vuestro horario de atención y dónde estáis?", "category": "info"},
    {"message": "Buy cheap SEO backlinks now, guaranteed first page! Click here", "category": "spam"},
]


@pytest.mark.slow
def test_classify_command_local_and_openai(openai_server: FakeOpenAIServer, tmp_path: Path) -> None:
    text = "Mi cuenta no funciona desde ayer, no puedo acceder al panel."
    res = cli(["classify", text], tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["classifier"], out["category"], out["priority_label"]) == ("local", "support", "Alta")
    assert openai_server.requests == []

    openai_server.script([{"kind": "good", "category": "support", "summary": "Cannot log in."}])
    res = cli(["classify", text, "--classifier", "openai"], tmp_path, llm_env(openai_server, backend="local"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["classifier"], out["category"], out["summary"]) == ("openai", "support", "Cannot log in.")
    assert out["needs_reclassify"] is False
    assert openai_server.lead_texts() == [text]


@pytest.mark.slow
def test_eval_command_json_local_and_openai(openai_server: FakeOpenAIServer, tmp_path: Path) -> None:
    data = tmp_path / "labeled.jsonl"
    data.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in LABELED), encoding="utf-8")
    res = cli(["eval", str(data), "--json"], tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert {"accuracy", "per_category", "confusion", "n"} <= set(report)
    assert report["n"] == len(LABELED) and report["accuracy"] == 1.0
    assert openai_server.requests == []

    openai_server.script([{"kind": "good", "category": "spam"}] * len(LABELED))
    res = cli(["eval", str(data), "--json", "--classifier", "openai"], tmp_path,
              llm_env(openai_server, backend="local"))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["n"] == len(LABELED) and report["accuracy"] == 0.25  # the fake said spam to all
    assert sorted(openai_server.lead_texts()) == sorted(x["message"] for x in LABELED)


async def test_a_lead_reclassified_into_an_alerting_priority_alerts_once(
    make_daemon: Any, openai_server: FakeOpenAIServer
) -> None:
    """The local fallback decided sales (medium: no team alert); the LLM, back, says support
    (high): the re-classified lead alerts the team once, and a second pass adds nothing."""
    from tests.test_alerts import Receiver

    receiver = Receiver()
    await receiver.start()
    try:
        openai_server.script([DOWN] * 2)
        env = {**llm_env(openai_server, breaker_failures="1", breaker_reset_seconds="0.2"),
               "LEADBOX_ALERTS__WEBHOOK_URL": receiver.url, "LEADBOX_ALERTS__RETRY_BASE": "0.2"}
        d, c = await make_daemon(env)
        _, lead_id = await post_lead(c, "q@example.com", "Hola, ¿me enviáis un presupuesto para una tienda online?")
        await settle(d, 1)
        x = await lead(d, lead_id)
        assert (x.classifier, x.category, x.priority, x.needs_reclassify) == ("local", "sales", "medium", True)
        assert d.alert_sender is not None
        await d.alert_sender.run_due()
        assert receiver.got == []
        openai_server.reset()
        support = {"kind": "good", "category": "support", "summary": "Cannot reach the shop."}
        openai_server.script(["good", support])

        async def reclassified() -> bool:
            await d.reclassify()
            return not (await lead(d, lead_id)).needs_reclassify

        await wait_for(reclassified, 10, what="the lead re-classified")
        assert ((await lead(d, lead_id)).category, (await lead(d, lead_id)).priority) == ("support", "high")
        await wait_for(lambda: _got(receiver), what="the alert")
        await d.reclassify()
        await d.alert_sender.run_due()
        assert receiver.keys() == [lead_id]
    finally:
        await receiver.stop()


async def _got(receiver: Any) -> bool:
    return bool(receiver.got)
