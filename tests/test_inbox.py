"""InboxPoller against the real Dovecot fixture: exactly once, loop-safe, never stuck.

These tests drive the poller directly on a real SQLite store (no worker), so
they can look at exactly what was recorded. tests/test_inbox_daemon.py runs
the whole daemon (leads, replies, /readyz, IDLE).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from agent.app.inbox_commands import backfill, poll_once
from agent.app.metrics import Metrics
from agent.config import Config, load_config
from agent.intake.inbox import InboxPoller
from agent.intake.inbox_record import dedupe_key
from agent.stores.sqlite import SqliteStore
from tests.fixtures.daemon import ROOT, base_env
from tests.fixtures.mailservers import DovecotServer

DATA = ROOT / "tests" / "data" / "emails"


def mail(i: int, *, sender: str | None = None, subject: str | None = None, body: str | None = None,
         message_id: str | None = "auto", extra: dict[str, str] | None = None) -> bytes:
    """A small lead-like message; ``message_id=None`` leaves the header out."""
    msg = EmailMessage()
    msg["From"] = sender or f"Cliente {i} <cliente{i}@empresa{i}.example>"
    msg["To"] = "leads@ourco.example"
    msg["Subject"] = subject or f"Cotización {i}"
    if message_id == "auto":
        msg["Message-ID"] = f"<lead-{i}@empresa{i}.example>"
    elif message_id is not None:
        msg["Message-ID"] = message_id
    for k, v in (extra or {}).items():
        msg[k] = v
    msg.set_content(body or f"Hola, necesitamos {i} licencias. ¿Nos envían precios?\n")
    return msg.as_bytes()


def inbox_env(dovecot: DovecotServer, user: str, tmp: Path, **over: str) -> dict[str, str]:
    env = base_env(tmp)
    env.update({
        "LEADBOX_INBOX__ENABLED": "true",
        "LEADBOX_INBOX__START": "all",
        "LEADBOX_INBOX__HOST": "127.0.0.1",
        "LEADBOX_INBOX__PORT": str(dovecot.port_tls),
        "LEADBOX_INBOX__CA_FILE": dovecot.ca_file,
        "LEADBOX_INBOX__TIMEOUT": "5",
        "EMAIL_USER": user,
        "EMAIL_PASS": dovecot.users[user],
    })
    env.update(over)
    return env


def make_config(dovecot: DovecotServer, user: str, tmp: Path, **over: str) -> Config:
    return load_config(str(ROOT / "config" / "agent.toml"), env=inbox_env(dovecot, user, tmp, **over))


PollerFactory = Callable[..., Awaitable[tuple[InboxPoller, SqliteStore]]]


@pytest.fixture
async def make_poller(tmp_path: Path) -> AsyncIterator[PollerFactory]:
    made: list[tuple[InboxPoller, SqliteStore]] = []

    async def make(config: Config, store: SqliteStore | None = None,
                   on_intake: Callable[[], None] | None = None) -> tuple[InboxPoller, SqliteStore]:
        if store is None:
            store = SqliteStore(config.store_url)
            await store.open()
        p = InboxPoller(config, store, Metrics(), on_intake=on_intake)
        made.append((p, store))
        return p, store

    yield make
    stores = []
    for p, s in made:
        await p.stop()
        if s not in stores:
            stores.append(s)
    for s in stores:
        if s._db is not None:  # noqa: SLF001 - closed by the test already?
            await s.close()


def leads_count(store: SqliteStore) -> int:
    return int(store.db.execute("SELECT count(*) FROM leads").fetchone()[0])


def records(store: SqliteStore) -> list[dict[str, Any]]:
    rows = store.db.execute("SELECT * FROM inbox_messages ORDER BY uid").fetchall()
    return [dict(r) for r in rows]


# ------------------------------------------------------------------ basics


async def test_new_mail_becomes_leads_once_and_is_marked_seen(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    uids = [dovecot.append(user, "INBOX", mail(i)) for i in range(3)]
    kicks: list[int] = []
    poller, store = await make_poller(make_config(dovecot, user, tmp_path), on_intake=lambda: kicks.append(1))
    s = await poller.poll()
    assert s is not None and (s.fetched, s.leads) == (3, 3)
    assert kicks, "on_intake was not called"
    assert leads_count(store) == 3
    cp = await store.get_checkpoint(poller.mailbox)
    assert cp is not None and cp[1] == max(u for u in uids if u)
    # A second poll finds nothing; a new mail is taken alone.
    again = await poller.poll()
    assert again is not None and again.fetched == 0
    dovecot.append(user, "INBOX", mail(3))
    third = await poller.poll()
    assert third is not None and (third.fetched, third.leads) == (1, 1)
    assert leads_count(store) == 4
    # After-action "seen" ran in the IMAP thread after the batch was durable.
    await poller._call(lambda: None)  # noqa: SLF001 - wait for queued after-actions
    c = dovecot.client(user)
    c.select_folder("INBOX")
    assert sorted(c.search("SEEN")) == sorted(c.search("ALL"))
    c.logout()
    assert poller.state()["state"] == "ok"


async def test_restart_with_the_same_store_takes_nothing_twice(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    for i in range(5):
        dovecot.append(user, "INBOX", mail(i))
    config = make_config(dovecot, user, tmp_path)
    first, store = await make_poller(config)
    assert (await first.poll()).leads == 5  # type: ignore[union-attr]
    await first.stop()
    await store.close()
    # Forget the checkpoint's protection on purpose: only the Message-ID records stop a second take.
    store2 = SqliteStore(config.store_url)
    await store2.open()
    await store2.set_checkpoint(first.mailbox, 1, 0)
    second, _ = await make_poller(config, store=store2)
    s = await second.poll()
    assert s is not None and s.leads == 0 and s.already_seen == 5
    assert leads_count(store2) == 5


async def test_uidvalidity_change_rescans_and_dedupes(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    folder = "Inbound"
    raws = [mail(i) for i in range(4)] + [mail(99, message_id=None)]  # one without Message-ID
    for r in raws:
        dovecot.append(user, folder, r)
    poller, store = await make_poller(make_config(dovecot, user, tmp_path, LEADBOX_INBOX__FOLDER=folder))
    assert (await poller.poll()).leads == 5  # type: ignore[union-attr]
    before = await store.get_checkpoint(poller.mailbox)
    # Rebuild the mailbox with the same mails: new UIDVALIDITY, UIDs from 1 again, plus one new mail.
    c = dovecot.client(user)
    c.delete_folder(folder)
    c.create_folder(folder)
    c.multiappend(folder, [*raws, mail(5)])
    c.logout()
    s = await poller.poll()
    after = await store.get_checkpoint(poller.mailbox)
    assert before is not None and after is not None and after[0] != before[0]
    assert s is not None and (s.fetched, s.leads, s.already_seen) == (6, 1, 5)
    assert leads_count(store) == 6


@pytest.mark.slow
async def test_500_mails_in_one_poll(dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    c = dovecot.client(user, tls=False)
    c.multiappend("INBOX", [mail(i) for i in range(500)])
    c.logout()
    poller, store = await make_poller(make_config(dovecot, user, tmp_path, LEADBOX_INBOX__BATCH_SIZE="100"))
    s = await poller.poll()
    assert s is not None and (s.fetched, s.leads) == (500, 500)
    assert leads_count(store) == 500
    assert (await store.inbox_outcomes()) == {"lead": 500}


@pytest.mark.slow
async def test_server_killed_mid_batch_loses_nothing(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    c = dovecot.client(user, tls=False)
    c.multiappend("INBOX", [mail(i) for i in range(200)])
    c.logout()
    stopped: list[bool] = []

    def kill_after_first_batch() -> None:
        # Runs on the loop after batch 1 is durable, while batch 2 is being fetched.
        if not stopped:
            stopped.append(True)
            dovecot.stop()

    config = make_config(dovecot, user, tmp_path, LEADBOX_INBOX__BATCH_SIZE="20")
    poller, store = await make_poller(config, on_intake=kill_after_first_batch)
    assert await poller.poll_guarded() is False  # the outage is a state, not an exception
    assert poller.state()["state"] == "down" and "reason" in poller.state()
    partial = leads_count(store)
    assert 20 <= partial < 200
    dovecot.start()
    assert await poller.poll_guarded() is True
    assert leads_count(store) == 200
    assert (await store.inbox_outcomes()) == {"lead": 200}
    assert poller.state()["state"] == "ok"


# ------------------------------------------------------------------ what is not a lead


async def test_automatic_mail_and_our_own_replies_make_no_lead(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    own = mail(1, sender="Leadbox <leads@ourco.example>", extra={"Auto-Submitted": "auto-replied"})
    for name in ("bounce", "mailing_list", "auto_submitted", "out_of_office"):
        dovecot.append(user, "INBOX", (DATA / f"{name}.eml").read_bytes())
    dovecot.append(user, "INBOX", own)
    poller, store = await make_poller(make_config(dovecot, user, tmp_path))
    s = await poller.poll()
    assert s is not None and (s.fetched, s.leads, s.skipped) == (5, 0, 5)
    assert leads_count(store) == 0
    reasons = [r["reason"] for r in records(store)]
    assert all(reasons) and len(set(reasons)) >= 3, reasons
    # Automatic mail is left unread for a human.
    await poller._call(lambda: None)  # noqa: SLF001
    c = dovecot.client(user)
    c.select_folder("INBOX")
    assert c.search("SEEN") == []
    c.logout()


async def test_unparseable_mail_is_quarantined_and_the_next_one_still_taken(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    garbage = (DATA / "garbage.eml").read_bytes()
    dovecot.append(user, "INBOX", garbage)
    dovecot.append(user, "INBOX", mail(1))
    config = make_config(dovecot, user, tmp_path, LEADBOX_INBOX__QUARANTINE_FOLDER="Leads/Quarantine")
    poller, store = await make_poller(config)
    s = await poller.poll()
    assert s is not None and (s.quarantined, s.leads) == (1, 1)
    rec = [r for r in records(store) if r["outcome"] == "quarantined"]
    assert len(rec) == 1 and rec[0]["raw"].replace(b"\r\n", b"\n") == garbage
    assert rec[0]["reason"].startswith("unparseable")
    await poller._call(lambda: None)  # noqa: SLF001
    c = dovecot.client(user)
    assert c.folder_status("Leads/Quarantine", ["MESSAGES"])[b"MESSAGES"] == 1
    c.select_folder("INBOX")
    assert len(c.search("ALL")) == 1  # only the lead is left in INBOX
    c.logout()


async def test_too_large_mail_is_skipped_without_download(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(1, body="x" * 4000 + "\n"))
    dovecot.append(user, "INBOX", mail(2))
    poller, store = await make_poller(make_config(dovecot, user, tmp_path, LEADBOX_INBOX__MAX_MESSAGE_BYTES="2048"))
    s = await poller.poll()
    assert s is not None and (s.skipped, s.leads) == (1, 1)
    big = [r for r in records(store) if r["outcome"] == "skipped"]
    assert big[0]["reason"].startswith("too-large") and big[0]["raw"] is None
    assert big[0]["dedupe_key"] == "mid:<lead-1@empresa1.example>"  # the header alone was fetched


# ------------------------------------------------------------------ after-actions


async def test_move_action_moves_leads_and_creates_the_folder(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    for i in range(3):
        dovecot.append(user, "INBOX", mail(i))
    config = make_config(dovecot, user, tmp_path, LEADBOX_INBOX__AFTER="move",
                         LEADBOX_INBOX__MOVE_TO="Leads/Processed")
    poller, store = await make_poller(config)
    assert (await poller.poll()).leads == 3  # type: ignore[union-attr]
    await poller._call(lambda: None)  # noqa: SLF001
    c = dovecot.client(user)
    assert c.folder_status("Leads/Processed", ["MESSAGES"])[b"MESSAGES"] == 3
    c.select_folder("INBOX")
    assert c.search("ALL") == []
    c.logout()
    # Moving does not make the poller take anything again.
    dovecot.append(user, "INBOX", mail(7))
    s = await poller.poll()
    assert s is not None and (s.fetched, s.leads) == (1, 1)


async def test_failed_after_action_loses_nothing(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    """A move into an impossible folder fails; the leads are stored and not taken twice."""
    user = dovecot.add_user()
    for i in range(2):
        dovecot.append(user, "INBOX", mail(i))
    config = make_config(dovecot, user, tmp_path, LEADBOX_INBOX__AFTER="move",
                         LEADBOX_INBOX__MOVE_TO="bad\x01name")
    poller, store = await make_poller(config)
    assert (await poller.poll()).leads == 2  # type: ignore[union-attr]
    await poller._call(lambda: None)  # noqa: SLF001
    s = await poller.poll()
    assert s is not None and s.fetched == 0
    assert leads_count(store) == 2


async def test_label_action_uses_a_keyword_on_servers_without_gmail_labels(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    uid = dovecot.append(user, "INBOX", mail(1))
    config = make_config(dovecot, user, tmp_path, LEADBOX_INBOX__AFTER="label", LEADBOX_INBOX__LABEL="Leads")
    poller, _ = await make_poller(config)
    assert (await poller.poll()).leads == 1  # type: ignore[union-attr]
    await poller._call(lambda: None)  # noqa: SLF001
    c = dovecot.client(user)
    c.select_folder("INBOX")
    assert b"Leads" in c.get_flags([uid])[uid]
    c.logout()


# ------------------------------------------------------------------ connection and login


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_tls_and_starttls_with_the_test_ca(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory, security: str) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(1))
    port = dovecot.port_tls if security == "tls" else dovecot.port
    config = make_config(dovecot, user, tmp_path, LEADBOX_INBOX__SECURITY=security,
                         LEADBOX_INBOX__PORT=str(port))
    poller, _ = await make_poller(config)
    assert (await poller.poll()).leads == 1  # type: ignore[union-attr]


async def test_untrusted_certificate_is_down_not_accepted(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    config = make_config(dovecot, user, tmp_path, LEADBOX_INBOX__CA_FILE="")
    poller, _ = await make_poller(config)
    assert await poller.poll_guarded() is False
    st = poller.state()
    assert st["state"] == "down" and "CERTIFICATE" in st["reason"].upper()
    assert 0 <= st["retry_in_seconds"] <= 1.0  # first retry: 1 s with jitter


async def test_xoauth2_login_with_a_static_token(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(1))
    # Dovecot (passwd-file + xoauth2) checks the bearer token against the password.
    config = make_config(dovecot, user, tmp_path, LEADBOX_INBOX__AUTH="xoauth2",
                         INBOX_OAUTH_TOKEN=dovecot.users[user], EMAIL_PASS="")
    poller, _ = await make_poller(config)
    assert (await poller.poll()).leads == 1  # type: ignore[union-attr]
    bad = make_config(dovecot, user, tmp_path, LEADBOX_INBOX__AUTH="xoauth2", INBOX_OAUTH_TOKEN="wrong")
    poller2, _ = await make_poller(bad)
    assert await poller2.poll_guarded() is False
    assert poller2.state()["state"] == "needs_credentials"


async def test_not_leader_skips_the_poll(dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(1))
    poller, store = await make_poller(make_config(dovecot, user, tmp_path))

    class Follower:
        """The store as a replica that lost the election sees it (leadership is the store's job)."""

        def __init__(self, inner: SqliteStore) -> None:
            self.inner = inner

        async def try_acquire_leadership(self, name: str) -> bool:
            return False

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    poller.store = Follower(store)
    assert await poller.poll() is None
    assert poller.state()["state"] == "not_leader"
    assert leads_count(store) == 0


# ------------------------------------------------------------------ one-shot commands


async def test_poll_once_prints_a_json_summary(
        dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(1))
    dovecot.append(user, "INBOX", (DATA / "bounce.eml").read_bytes())
    config = make_config(dovecot, user, tmp_path)
    assert await poll_once(config) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"fetched": 2, "leads": 1, "interactions": 0, "skipped": 1, "quarantined": 0}
    assert await poll_once(config) == 0
    assert json.loads(capsys.readouterr().out)["fetched"] == 0


async def test_poll_once_with_a_wrong_password_exits_nonzero(
        dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = dovecot.add_user()
    assert await poll_once(make_config(dovecot, user, tmp_path, EMAIL_PASS="nope")) == 2
    assert "login refused" in capsys.readouterr().err


async def test_backfill_retakes_old_mail_without_duplicates_or_moving_the_checkpoint(
        dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = dovecot.add_user()
    for i in range(4):
        dovecot.append(user, "INBOX", mail(i))
    config = make_config(dovecot, user, tmp_path)
    assert await poll_once(config) == 0
    capsys.readouterr()
    store = SqliteStore(config.store_url)
    await store.open()
    mailbox = "default"  # the single-mailbox config is the mailbox named default
    cp = await store.get_checkpoint(mailbox)
    assert cp is not None
    # Lose two records (as if they were processed by an older version without keys), then backfill.
    store.db.execute("DELETE FROM inbox_messages WHERE uid IN (SELECT uid FROM inbox_messages ORDER BY uid LIMIT 2)")
    store.db.execute("DELETE FROM leads WHERE email_norm IN ('cliente0@empresa0.example')")
    await store.close()
    assert await backfill(config, "2000-01-01") == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out.splitlines()[0])
    assert out["fetched"] == 4 and out["leads"] == 1 and out["interactions"] == 1
    assert "msg/s" in captured.err and "ETA" in captured.err
    store = SqliteStore(config.store_url)
    await store.open()
    assert await store.get_checkpoint(mailbox) == cp
    await store.close()
    assert await backfill(config, "not-a-date") == 2


def test_dedupe_key_prefers_message_id_then_hash() -> None:
    from agent.intake.email_parse import parse_email

    with_id = parse_email(mail(1))
    assert dedupe_key(with_id, mail(1)) == "mid:<lead-1@empresa1.example>"
    raw = mail(2, message_id=None)
    key = dedupe_key(parse_email(raw), raw)
    other = mail(3, message_id=None)
    assert key.startswith("sha256:") and key != dedupe_key(parse_email(other), other)


async def test_stop_is_prompt_and_idempotent_without_start(
        dovecot: DovecotServer, tmp_path: Path, make_poller: PollerFactory) -> None:
    user = dovecot.add_user()
    poller, _ = await make_poller(make_config(dovecot, user, tmp_path))
    await poller.poll()
    await asyncio.wait_for(poller.stop(), timeout=10)
    assert poller.state()["state"] == "stopped"
