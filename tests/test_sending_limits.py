"""Sending limits against a real aiosmtpd server: a quota or throttling answer pauses the transport.

The server's refusal policy (``smtp_server.sink.refuse``) answers like Gmail does past its
limits. Workers run with ``max_attempts = 1``: a lead that spent a single attempt on a limit
would be ``failed``, so "nothing failed" also proves that waiting spends no attempt.
"""

from __future__ import annotations

import asyncio
import email
import logging
import sqlite3
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import post_lead, settle, wait_for
from tests.test_cli import leadbox
from tests.test_smtp_replies import smtp_env

TOKEN = "limits-admin-token"
QUOTA = "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits see gsmtp"


def limits_env(smtp: Any, **over: str) -> dict[str, str]:
    return {**smtp_env(smtp, "tls"), "LEADBOX_WORKER__MAX_ATTEMPTS": "1", "LEADBOX_WORKER__CONCURRENCY": "4",
            "LEADBOX_ADMIN_TOKEN": TOKEN, **over}


def lead_of(m: dict[str, Any]) -> str:
    return str(email.message_from_bytes(m["data"], policy=policy.default)["X-Leadbox-Lead"])


async def readyz(c: Any) -> tuple[int, dict[str, Any]]:
    r = await c.get("/readyz")
    return r.status, (await r.json())


async def metric(c: Any, name: str) -> float:
    text = await (await c.get("/metrics")).text()
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


@pytest.mark.slow
async def test_daily_quota_pauses_replies_then_every_lead_is_answered_once(
    make_daemon: Any, smtp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="leadbox.reply")
    lock, accepted, flipped, first = threading.Lock(), [0], [False], [0.0]

    def refuse(stage: str) -> str | None:  # Gmail past its daily limit, until the switch flips
        if stage != "mail":
            return None
        with lock:
            if flipped[0]:
                return None
            if accepted[0] >= 3:
                first[0] = first[0] or time.monotonic()
                return QUOTA
            accepted[0] += 1
            return None

    smtp_server.sink.refuse = refuse
    probe_every = 0.6  # seconds: quota_probe_minutes = 0.01
    d, c = await make_daemon(limits_env(smtp_server, LEADBOX_REPLY__QUOTA_PROBE_MINUTES="0.01"))
    ids = [(await post_lead(c, f"q{i}@cliente.example", f"Hola, quiero un presupuesto {i}"))[1] for i in range(12)]

    async def probed() -> bool:  # the first refusals, then some probe intervals
        with lock:
            started = first[0]
        return bool(started) and time.monotonic() - started > 5 * probe_every
    await wait_for(probed, 20, what="a quota refusal and a few probe intervals")

    status, body = await readyz(c)
    reply = body["checks"]["reply"]
    assert status == 200, body  # the webhook stays ready while replies are paused
    assert reply["state"] == "paused" and reply["kind"] == "quota" and "5.4.5" in reply["reason"]
    assert reply["next_probe_at"]
    assert await metric(c, "leadbox_reply_paused") == 1.0
    r = await c.get("/leads?reply=waiting", headers={"Authorization": f"Bearer {TOKEN}"})
    waiting = (await r.json())["leads"]
    assert waiting and all(x["state"] == "mirrored" and x["reply"]["waiting_until"] for x in waiting)
    assert all(x["attempts"] == 0 and "reply-paused: quota" in x["reply"]["reason"] for x in waiting)

    with lock:
        flipped[0] = True
        paused_for = time.monotonic() - first[0]
    await settle(d, 12, timeout=30)
    refusals = len(smtp_server.sink.refusals)
    # The first refusal and the sends already in flight with it (concurrency 4), then at most
    # one probe per interval: no lead hammers the server on its own.
    assert 2 <= refusals <= 4 + paused_for / probe_every, (refusals, paused_for)
    per_lead = Counter(lead_of(m) for m in smtp_server.messages)
    assert set(per_lead) == set(ids) and max(per_lead.values()) == 1  # all answered, once
    for lead_id in ids:
        lead = await d.store.get(lead_id)
        assert lead is not None and lead.state.value == "replied" and lead.attempts == 0, lead
    status, body = await readyz(c)
    assert status == 200 and body["checks"]["reply"]["state"] == "ok"
    assert await metric(c, "leadbox_reply_paused") == 0.0
    changes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reply transport")]
    assert "reply transport paused" in changes and changes[-1] == "reply transport resumed"


@pytest.mark.slow
async def test_421_bursts_pause_everyone_and_nothing_fails(make_daemon: Any, smtp_server: Any) -> None:
    lock, window = threading.Lock(), [0.0, 0]

    def refuse(stage: str) -> str | None:  # at most 2 messages per 0.3 s, else 421
        if stage != "mail":
            return None
        with lock:
            now = time.monotonic()
            if now - window[0] > 0.3:
                window[0], window[1] = now, 0
            window[1] += 1
            return "421 4.7.0 Try again later, closing connection. (MAIL) - gsmtp" if window[1] > 2 else None

    smtp_server.sink.refuse = refuse
    d, c = await make_daemon(limits_env(smtp_server, LEADBOX_REPLY__PAUSE_SECONDS="0.2"))
    ids = [(await post_lead(c, f"t{i}@cliente.example", f"Necesito soporte, caso {i}"))[1] for i in range(16)]
    await settle(d, 16, timeout=40)
    per_lead = Counter(lead_of(m) for m in smtp_server.messages)
    assert set(per_lead) == set(ids) and max(per_lead.values()) == 1
    for lead_id in ids:
        lead = await d.store.get(lead_id)
        assert lead is not None and lead.state.value == "replied" and lead.attempts == 0, lead
    pauses = d.svc.transport.pause.pauses  # type: ignore[attr-defined]
    refusals = len(smtp_server.sink.refusals)
    assert pauses >= 1 and refusals >= 1
    # Each pause stops every sender: at most the sends already in flight (4) meet the 421, each
    # at most twice (a pooled session's 421 is first taken for a dropped session and retried once).
    assert refusals <= 2 * 4 * pauses, (refusals, pauses)


async def test_454_at_login_is_throttling_not_bad_credentials(make_daemon: Any, smtp_server: Any) -> None:
    lock, flipped = threading.Lock(), [False]

    def refuse(stage: str) -> str | None:  # every login refused as "too many", until the switch flips
        with lock:
            if stage != "auth" or flipped[0]:
                return None
        return "454 4.7.0 Too many login attempts, please try again later. - gsmtp"

    smtp_server.sink.refuse = refuse
    d, c = await make_daemon(limits_env(smtp_server, LEADBOX_REPLY__PAUSE_SECONDS="1.5"))

    async def paused() -> bool:
        return (await readyz(c))[1]["checks"].get("reply", {}).get("state") == "paused"
    # The daemon's start-up login meets the 454 first: a pause, not needs_credentials.
    await wait_for(paused, what="the transport paused by a 454 at AUTH")
    status, body = await readyz(c)
    assert status == 200 and body["checks"]["reply"]["kind"] == "throttle", body
    _, lead_id = await post_lead(c, "login@cliente.example", "Hola, ¿precio del plan anual?")
    await wait_for(paused, what="still paused")
    with lock:
        flipped[0] = True
    await settle(d, 1, timeout=30)
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state.value == "replied" and lead.attempts == 0
    assert [lead_of(m) for m in smtp_server.messages] == [lead_id]


async def test_recipient_refusal_stays_a_per_lead_error(make_daemon: Any, smtp_server: Any) -> None:
    def refuse(stage: str) -> str | None:
        return "550 5.1.1 The email account that you tried to reach does not exist." if stage == "rcpt" else None

    smtp_server.sink.refuse = refuse
    d, c = await make_daemon(limits_env(smtp_server))
    _, lead_id = await post_lead(c, "nobody@cliente.example", "Hola, quiero un presupuesto")
    await settle(d, 1)
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state.value == "failed" and "5.1.1" in (lead.last_error or "")
    status, body = await readyz(c)
    assert status == 200 and body["checks"]["reply"]["state"] == "ok"


def outbox_leads(tmp: Path) -> Counter[str]:
    return Counter(str(email.message_from_bytes(p.read_bytes(), policy=policy.default)["X-Leadbox-Lead"])
                   for p in (tmp / "outbox").glob("*.eml"))


@pytest.mark.slow
async def test_caps_hold_replies_back_until_the_window_opens(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon({"LEADBOX_REPLY__MAX_PER_DAY": "3", "LEADBOX_REPLY__MAX_PER_HOUR": "0",
                              "LEADBOX_ADMIN_TOKEN": TOKEN})
    ids = [(await post_lead(c, f"day{i}@cliente.example", f"Hola, quiero un presupuesto {i}"))[1] for i in range(7)]

    async def waiting(n: int) -> list[dict[str, Any]]:
        r = await c.get("/leads?reply=waiting", headers={"Authorization": f"Bearer {TOKEN}"})
        leads = (await r.json())["leads"]
        return leads if len(leads) == n else []

    async def four_wait() -> bool:  # the three replies are written, the other four wait
        return sum(outbox_leads(tmp_path).values()) == 3 and bool(await waiting(4))
    await wait_for(four_wait, what="3 replies sent and 4 waiting for the daily cap")
    for x in await waiting(4):
        assert x["state"] == "mirrored" and x["attempts"] == 0 and x["reply"]["reason"].startswith("reply-cap-day")
        until = datetime.fromisoformat(x["reply"]["waiting_until"])
        assert until > datetime.now(UTC) + timedelta(hours=23)  # when the first reply leaves the 24 h

    # The console shows them too: a badge in the list, the time in the lead's timeline.
    await c.post("/console/login", data={"user": "", "password": TOKEN})
    listing = await (await c.get("/console/leads", headers={"Accept-Language": "en"})).text()
    assert listing.count("waiting (sending limits)") == 4
    page = await (await c.get(f"/console/leads/{x['id']}", headers={"Accept-Language": "en"})).text()
    assert "Reply: waiting (sending limits)" in page and "until 20" in page

    res = await asyncio.to_thread(leadbox, tmp_path, "leads", "list", "--reply", "waiting")
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 4, res.stderr
    assert all("reply waits until" in line and "reply-cap-day" in line for line in res.stdout.splitlines())

    # A day passes for the ledger: the first replies leave the window, the waiting leads are due.
    with sqlite3.connect(tmp_path / "leadbox.db", timeout=10) as db:
        db.execute("UPDATE replies SET created_at = created_at - 86400")
        db.execute("UPDATE leads SET next_attempt_at = 0 WHERE reply_status = 'waiting'")

    async def six_sent() -> bool:
        return sum(outbox_leads(tmp_path).values()) == 6 and bool(await waiting(1))
    await wait_for(six_sent, what="three more replies, the last one still waiting")
    sent = outbox_leads(tmp_path)
    assert max(sent.values()) == 1 and set(sent) < set(ids)


async def test_a_reply_that_would_come_too_late_is_skipped(make_daemon: Any, smtp_server: Any) -> None:
    """Over the hourly cap with max_delay_hours = 0.5, and paused by a quota whose next probe
    is later than that: no "thanks for writing" an hour late."""
    lock, accepted = threading.Lock(), [0]

    def refuse(stage: str) -> str | None:
        with lock:
            if stage != "mail":
                return None
            accepted[0] += 1
            return QUOTA if accepted[0] > 3 else None

    smtp_server.sink.refuse = refuse
    d, c = await make_daemon(limits_env(
        smtp_server, LEADBOX_REPLY__MAX_PER_HOUR="2", LEADBOX_REPLY__MAX_DELAY_HOURS="0.5",
        LEADBOX_WORKER__CONCURRENCY="1"))
    ids = [(await post_lead(c, f"late{i}@cliente.example", f"Hola, quiero un presupuesto {i}"))[1] for i in range(4)]
    await settle(d, 4)
    leads = [await d.store.get(i) for i in ids]
    assert Counter(x.state.value for x in leads if x) == {"replied": 2, "skipped": 2}
    assert {x.skip_reason for x in leads if x and x.state.value == "skipped"} == {"reply-too-late"}
    assert len(smtp_server.messages) == 2

    # Paused by a daily quota whose next probe (60 min) is past the 30 min delay: skipped too.
    smtp_server.clear()
    smtp_server.sink.refuse = lambda stage: QUOTA if stage == "mail" else None
    d.svc.reply.max_per_hour = 0
    _, lead_id = await post_lead(c, "late-q@cliente.example", "Hola, ¿tenéis precio para empresas?")
    await settle(d, 5)
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state.value == "skipped" and lead.skip_reason == "reply-too-late"
    assert smtp_server.messages == [] and len(smtp_server.sink.refusals) == 1
