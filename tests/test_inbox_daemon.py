"""The whole daemon with the inbox on, against the real Dovecot: mail in, leads and replies out.

Replies go to the outbox transport (.eml files), so a test can read exactly
what a customer would receive and count that nobody got two.
"""

from __future__ import annotations

import asyncio
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from agent.app.daemon import Daemon
from tests.fixtures.daemon import DaemonFactory, wait_for
from tests.fixtures.mailservers import DovecotServer
from tests.test_inbox import inbox_env, mail


def outbox(tmp: Path) -> list[Any]:
    d = tmp / "outbox"
    if not d.exists():
        return []
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(d.glob("*.eml"))]


def env(dovecot: DovecotServer, user: str, tmp: Path, **over: str) -> dict[str, str]:
    # A long interval: polls in these tests come from poll_now(), IDLE or start-up.
    return inbox_env(dovecot, user, tmp, LEADBOX_INBOX__POLL_INTERVAL="3600", **over)


async def replies_for(tmp: Path, n: int) -> list[Any]:
    await wait_for(lambda: _ge(len(outbox(tmp)), n), what=f"{n} reply file(s)")
    return outbox(tmp)


async def _ge(a: int, b: int) -> bool:
    return a >= b


async def stored(d: Daemon, n: int) -> None:
    async def ok() -> bool:
        return sum((await d.store.inbox_outcomes()).values()) >= n
    await wait_for(ok, what=f"{n} inbox records")


async def test_mail_becomes_lead_and_threaded_auto_reply_once_across_restarts(
        dovecot: DovecotServer, tmp_path: Path, make_daemon: DaemonFactory) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(1))
    dovecot.append(user, "INBOX", mail(2))
    d, client = await make_daemon(env(dovecot, user, tmp_path))
    replies = await replies_for(tmp_path, 2)
    by_to = {str(m["To"].addresses[0].addr_spec): m for m in replies}
    r1 = by_to["cliente1@empresa1.example"]
    assert r1["In-Reply-To"] == "<lead-1@empresa1.example>"
    assert "<lead-1@empresa1.example>" in r1["References"]
    assert r1["Auto-Submitted"] == "auto-replied"
    assert r1["Subject"].startswith("Re:")
    # A repeat sender: a new mail is an interaction on the same lead, with no second reply.
    dovecot.append(user, "INBOX", mail(1, message_id="<second@empresa1.example>", subject="Otra pregunta"))
    d.inbox.poll_now()
    await stored(d, 3)
    lead = await d.store.get_by_email("cliente1@empresa1.example")
    assert lead is not None
    await wait_for(lambda: _ge(len(outbox(tmp_path)), 2), what="outbox")
    assert len((await d.store.get(lead.id)).interactions) == 1  # type: ignore[union-attr]
    await d.stop()
    # Restart on the same store: nothing is taken or answered again; new mail still is.
    dovecot.append(user, "INBOX", mail(3))
    d2, _ = await make_daemon(env(dovecot, user, tmp_path))
    await replies_for(tmp_path, 3)
    await stored(d2, 4)
    d2.inbox.poll_now()
    await asyncio.sleep(0.5)
    outcomes = await d2.store.inbox_outcomes()
    assert outcomes == {"lead": 3, "interaction": 1}
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in outbox(tmp_path)) == [
        "cliente1@empresa1.example", "cliente2@empresa2.example", "cliente3@empresa3.example"]


async def test_uidvalidity_change_answers_nobody_twice(
        dovecot: DovecotServer, tmp_path: Path, make_daemon: DaemonFactory) -> None:
    user = dovecot.add_user()
    folder = "Contact"
    raws = [mail(i) for i in range(3)]
    for r in raws:
        dovecot.append(user, folder, r)
    d, _ = await make_daemon(env(dovecot, user, tmp_path, LEADBOX_INBOX__FOLDER=folder))
    await replies_for(tmp_path, 3)
    c = dovecot.client(user)
    c.delete_folder(folder)
    c.create_folder(folder)
    c.multiappend(folder, [*raws, mail(10)])
    c.logout()
    d.inbox.poll_now()
    await replies_for(tmp_path, 4)
    await wait_for(lambda: _ge(d.inbox.state().get("last_uid") or 0, 4), what="re-scan")
    d.inbox.poll_now()
    await asyncio.sleep(0.5)
    tos = [str(m["To"].addresses[0].addr_spec) for m in outbox(tmp_path)]
    assert sorted(tos) == sorted(set(tos)) and len(tos) == 4


async def test_wrong_password_shows_needs_credentials_then_recovers(
        dovecot: DovecotServer, tmp_path: Path, make_daemon: DaemonFactory) -> None:
    user = dovecot.add_user("inbox-creds-test", "the-old-one")
    dovecot.append(user, "INBOX", mail(1))
    d, client = await make_daemon(env(dovecot, user, tmp_path, EMAIL_PASS="the-new-one"))

    async def state() -> tuple[int, dict[str, Any]]:
        resp = await client.get("/readyz")
        return resp.status, (await resp.json())["checks"]["inbox"]

    async def needs() -> bool:
        return (await state())[1]["state"] == "needs_credentials"

    await wait_for(needs, what="needs_credentials")
    status, inbox = await state()
    assert status == 503 and "login refused" in inbox["reason"] and inbox["retry_in_seconds"] > 60
    # Someone fixes the account's password; the next poll (here forced) recovers.
    dovecot.add_user(user, "the-new-one")
    d.inbox.poll_now()

    async def ok() -> bool:
        return (await state())[1]["state"] == "ok"

    await wait_for(ok, what="inbox ok again")
    await replies_for(tmp_path, 1)
    assert (await client.get("/readyz")).status == 200


@pytest.mark.slow
async def test_idle_picks_up_new_mail_quickly(
        dovecot: DovecotServer, tmp_path: Path, make_daemon: DaemonFactory) -> None:
    user = dovecot.add_user()
    d, _ = await make_daemon(env(dovecot, user, tmp_path, LEADBOX_INBOX__IDLE="true"))

    async def idling() -> bool:
        return d.inbox.state()["state"] == "ok" and d.inbox.state().get("idle") == "ok"

    await wait_for(idling, what="IDLE connection")
    await asyncio.sleep(0.2)  # let the IDLE command reach the server
    t0 = time.monotonic()
    await asyncio.to_thread(dovecot.append, user, "INBOX", mail(1))
    await replies_for(tmp_path, 1)
    delay = time.monotonic() - t0
    print(f"IDLE: APPEND -> reply file in {delay:.2f} s")
    # The poll interval is an hour, so only IDLE can explain the reply; the bound is generous.
    assert d.inbox.idle_events >= 1
    assert delay < 10


async def test_admin_endpoint_triggers_a_poll(
        dovecot: DovecotServer, tmp_path: Path, make_daemon: DaemonFactory) -> None:
    user = dovecot.add_user()
    d, client = await make_daemon(env(dovecot, user, tmp_path, LEADBOX_ADMIN_TOKEN="tok"))
    await wait_for(lambda: _ge(int(d.inbox.state()["state"] == "ok"), 1), what="first poll")
    dovecot.append(user, "INBOX", mail(5))
    resp = await client.post("/inbox/poll", headers={"Authorization": "Bearer tok"})
    assert resp.status == 202
    await replies_for(tmp_path, 1)
    metrics = await (await client.get("/metrics")).text()
    assert 'leadbox_inbox_messages_total{mailbox="' in metrics and 'outcome="lead"' in metrics


async def test_first_start_takes_only_new_mail_by_default(
        dovecot: DovecotServer, tmp_path: Path, make_daemon: DaemonFactory) -> None:
    """An existing inbox is not auto-answered wholesale: with inbox.start = "now" old mail is left alone."""
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(1))
    dovecot.append(user, "INBOX", mail(2))
    d, _ = await make_daemon({**env(dovecot, user, tmp_path), "LEADBOX_INBOX__START": "now"})

    async def checkpointed() -> bool:
        return await d.store.get_checkpoint(d.inbox.mailbox) is not None
    await wait_for(checkpointed, what="first poll")
    dovecot.append(user, "INBOX", mail(3))
    d.inbox.poll_now()
    replies = await replies_for(tmp_path, 1)
    assert [str(m["To"].addresses[0].addr_spec) for m in replies] == ["cliente3@empresa3.example"]
    assert sum((await d.store.counts()).values()) == 1
