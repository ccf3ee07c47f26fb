"""Settling "uncertain" replies from the mailbox (reply.settle), against a real Dovecot.

The SMTP server here (aiosmtpd, implicit TLS + AUTH) behaves like a provider: a message it takes
is filed at once, before its 250, in the account's mailbox over IMAP APPEND: into the \\Sent
folder (``sent-folder``, as Gmail does) or, for the envelope recipient that is the account
itself, into its INBOX (``self-copy``). Each message has a fate:

- ``accept``: filed, 250;
- ``silent``: taken and filed, but the answer never comes in time (the client gives up: the
  reply is ``uncertain`` although it went out);
- ``lose``: the answer never comes in time and the message is not taken (``uncertain``, and the
  customer has no answer).

Dovecot's \\Sent folder comes from ``special_use`` in the namespace config
(tests/fixtures/mailservers.py); a test creates it when it wants it.

``make_daemon`` comes last in every test's arguments: set up last, it is torn down first, so a
daemon (and its pooled SMTP sessions) is stopped before the SMTP server even when a test fails.
"""

from __future__ import annotations

import asyncio
import email
import threading
import uuid
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from agent.core.settle import FOUND, RESENT, Outcome
from agent.core.states import ReplyStatus, State
from tests.drivers import SlowSink, slow_smtp
from tests.fixtures.daemon import post_lead, wait_for
from tests.fixtures.mailservers import free_port
from tests.test_cli import clean_env, leadbox, no_traceback


class FilingSink(SlowSink):
    """Takes replies as a provider does, filing each accepted one in the account's mailbox."""

    def __init__(self, dovecot: Any, account: str, mode: str) -> None:
        super().__init__(0.0)
        self.dovecot, self.account, self.mode = dovecot, account, mode
        self.fates: list[str] = []  # one per message, in order; 'accept' when empty
        self.delivered: list[dict[str, Any]] = []  # taken by the server (the customer's copy went)
        self._guard = threading.Lock()

    def to_customers(self) -> list[dict[str, Any]]:
        with self._guard:
            return list(self.delivered)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fate = self.fates.pop(0) if self.fates else "accept"
        if fate == "lose":  # no answer in time, and in the end the message is not taken
            await asyncio.sleep(3.0)
            return "451 4.3.0 not taken"
        data = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        rcpts = list(envelope.rcpt_tos)

        def file_and_keep() -> None:  # together, even if the client dies meanwhile
            with self._guard:
                if self.mode == "sent-folder":
                    self.dovecot.append(self.account, "Sent", data)
                elif self.account in rcpts:
                    self.dovecot.append(self.account, "INBOX", data)
                self.delivered.append({"rcpt_tos": rcpts, "data": data})

        await asyncio.to_thread(file_and_keep)
        if fate == "silent":  # taken and filed; the answer comes after the client's timeout
            await asyncio.sleep(3.0)
        return "250 OK"


@pytest.fixture
def account(dovecot: Any) -> tuple[str, str]:
    user, password = f"settle-{uuid.uuid4().hex[:8]}@leadbox.test", "pw-settle"
    dovecot.add_user(user, password)
    return user, password


@pytest.fixture
def provider(tls_cert: Any, dovecot: Any, account: tuple[str, str]) -> Any:
    """Build the provider's SMTP server for a mode: ``provider(mode) -> (port, sink)``."""
    made: list[Any] = []

    def make(mode: str) -> tuple[int, FilingSink]:
        port = free_port()
        controller, sink = slow_smtp(tls_cert, {account[0]: account[1]}, 0.0, port,
                                     FilingSink(dovecot, account[0], mode))
        made.append(controller)
        assert isinstance(sink, FilingSink)
        return port, sink

    yield make
    for c in made:
        c.stop()


def settle_env(tls_cert: Any, dovecot: Any, account: tuple[str, str], smtp_port: int, mode: str,
               imap_port: int | None = None) -> dict[str, str]:
    user, password = account
    return {
        "LEADBOX_REPLY__TRANSPORT": "smtp", "LEADBOX_REPLY__SMTP_HOST": "127.0.0.1",
        "LEADBOX_REPLY__SMTP_PORT": str(smtp_port), "LEADBOX_REPLY__SMTP_SECURITY": "tls",
        "LEADBOX_REPLY__CA_FILE": tls_cert.ca_file, "LEADBOX_REPLY__SMTP_TIMEOUT": "1",
        "EMAIL_USER": user, "EMAIL_PASS": password,
        "LEADBOX_REPLY__SETTLE": mode, "LEADBOX_REPLY__SETTLE_GRACE_SECONDS": "3600",
        "LEADBOX_REPLY__SETTLE_INTERVAL": "3600",  # the tests run each check themselves
        # Settling logs in to the [inbox] server with EMAIL_USER / EMAIL_PASS, even unpolled.
        "LEADBOX_INBOX__HOST": "127.0.0.1", "LEADBOX_INBOX__PORT": str(imap_port or dovecot.port_tls),
        "LEADBOX_INBOX__CA_FILE": dovecot.ca_file, "LEADBOX_INBOX__TIMEOUT": "5",
        "LEADBOX_ADMIN_TOKEN": "admin-tok",
    }


async def uncertain(d: Any, lead_id: str) -> None:
    async def done() -> bool:
        lead = await d.store.get(lead_id)
        return bool(lead and lead.state is State.FAILED and lead.reply_status is ReplyStatus.UNCERTAIN)
    await wait_for(done, 20, what=f"lead {lead_id} failed / uncertain")


async def replied(d: Any, lead_id: str) -> None:
    async def done() -> bool:
        lead = await d.store.get(lead_id)
        return bool(lead and lead.state is State.REPLIED)
    await wait_for(done, 20, what=f"lead {lead_id} replied")


def folder_ids(dovecot: Any, user: str, folder: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in dovecot.header_lines(user, folder, "MESSAGE-ID")]


def make_sent_folder(dovecot: Any, user: str) -> None:
    c = dovecot.client(user, tls=False)
    try:
        c.create_folder("Sent")
        assert any(b"\\Sent" in flags for flags, _d, name in c.list_folders() if name == "Sent")
    finally:
        c.logout()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sent-folder", "auto"])
async def test_an_accepted_reply_settles_as_replied_without_a_second_message(
    provider: Any, tls_cert: Any, dovecot: Any, account: tuple[str, str], mode: str,
    make_daemon: Any,
) -> None:
    port, sink = provider("sent-folder" if mode == "sent-folder" else "self-copy")
    if mode == "sent-folder":
        make_sent_folder(dovecot, account[0])
    sink.fates = ["silent"]
    d, c = await make_daemon(settle_env(tls_cert, dovecot, account, port, mode))
    _, lead_id = await post_lead(c, "ana@cliente.example", "Hola, quiero un presupuesto para una web.")
    await uncertain(d, lead_id)
    assert len(sink.to_customers()) == 1  # it did go out: the answer was lost
    sessions = d.sent_lookup.sessions

    done = await d.settle_replies()

    assert [(x.lead_id, x.outcome) for x in done] == [(lead_id, Outcome.REPLIED)]
    assert d.sent_lookup.sessions == sessions + 1
    r = await c.get(f"/leads/{lead_id}", headers={"Authorization": "Bearer admin-tok"})
    body = await r.json()
    assert body["state"] == "replied" and body["reply"]["status"] == "sent"
    assert body["reply"]["reason"].startswith(FOUND) and body["reply"]["message_id"] in body["reply"]["reason"]
    [event] = await d.store.lead_events(lead_id)  # the lead's timeline keeps the evidence
    assert (event.kind, event.actor, event.detail["outcome"]) == ("reply_settled", "settle", "replied")
    assert event.detail["evidence"] == body["reply"]["reason"]
    await asyncio.sleep(1.0)  # a wrong second send would show now (the worker sweeps every 0.2 s)
    assert len(sink.to_customers()) == 1
    assert await d.settle_replies() == []  # nothing uncertain is left
    [m] = sink.to_customers()
    headers = m["data"].split(b"\r\n\r\n", 1)[0].decode()
    if mode == "auto":  # Dovecot offers no X-GM-EXT-1: auto is self-copy
        assert d.sent_lookup.resolved == "self-copy"
        assert m["rcpt_tos"] == ["ana@cliente.example", account[0]]
        assert account[0] not in headers  # an envelope recipient only, never a header
        assert folder_ids(dovecot, account[0], "INBOX") == [body["reply"]["message_id"]]
    else:
        assert m["rcpt_tos"] == ["ana@cliente.example"]


@pytest.mark.parametrize("mode", ["sent-folder", "self-copy"])
async def test_a_lost_reply_is_sent_exactly_once_more_after_the_grace_period(
    provider: Any, tls_cert: Any, dovecot: Any, account: tuple[str, str], mode: str,
    make_daemon: Any,
) -> None:
    port, sink = provider(mode)
    if mode == "sent-folder":
        make_sent_folder(dovecot, account[0])
    sink.fates = ["lose", "lose", "lose"]
    d, c = await make_daemon(settle_env(tls_cert, dovecot, account, port, mode))
    ids = [(await post_lead(c, f"l{i}@cliente.example", f"Necesito soporte con mi pedido {i}."))[1]
           for i in range(3)]
    for lead_id in ids:
        await uncertain(d, lead_id)
    assert sink.to_customers() == []
    sessions = d.sent_lookup.sessions

    # Inside the grace period an absence proves nothing: nothing changes, nothing is sent.
    done = await d.settle_replies()
    assert sorted(x.lead_id for x in done) == sorted(ids) and {x.outcome for x in done} == {Outcome.WAITING}
    assert d.sent_lookup.sessions == sessions + 1  # one IMAP session for the three leads

    d.config.settings.reply.settle_grace_seconds = 0  # the grace period is over
    done = await d.settle_replies()
    assert {x.outcome for x in done} == {Outcome.RESENT}
    for lead_id in ids:
        await replied(d, lead_id)
        lead = await d.store.get(lead_id)
        assert lead is not None and lead.reply_reason == RESENT and lead.reply_status is ReplyStatus.SENT
        assert [(e.kind, e.detail["outcome"]) for e in await d.store.lead_events(lead_id)] == [
            ("reply_settled", "sent-again")]
    assert await d.settle_replies() == []
    await asyncio.sleep(1.0)  # a third send would show now
    got = sorted(m["rcpt_tos"][0] for m in sink.to_customers())
    assert got == sorted(f"l{i}@cliente.example" for i in range(3))  # each exactly once
    await d.stop()  # before the SMTP server: its pooled sessions end with a QUIT


async def test_a_resent_reply_lost_again_is_left_for_a_human(
    provider: Any, tls_cert: Any, dovecot: Any, account: tuple[str, str],
    make_daemon: Any,
) -> None:
    port, sink = provider("self-copy")
    sink.fates = ["lose", "lose"]
    d, c = await make_daemon(settle_env(tls_cert, dovecot, account, port, "self-copy"))
    d.config.settings.reply.settle_grace_seconds = 0
    _, lead_id = await post_lead(c, "bea@cliente.example", "Hola, ¿tienen precios para tiendas online?")
    await uncertain(d, lead_id)
    assert [x.outcome for x in await d.settle_replies()] == [Outcome.RESENT]
    await wait_for(lambda: _is_uncertain_again(d, lead_id), 20, what="the second attempt lost too")
    assert [x.outcome for x in await d.settle_replies()] == [Outcome.KEPT]
    await asyncio.sleep(1.0)
    assert sink.to_customers() == []  # tried twice, never a third time; a human decides
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state is State.FAILED and lead.reply_status is ReplyStatus.UNCERTAIN
    await d.stop()  # before the SMTP server: its pooled sessions end with a QUIT


async def _is_uncertain_again(d: Any, lead_id: str) -> bool:
    lead = await d.store.get(lead_id)
    return bool(lead and lead.state is State.FAILED and lead.reply_reason == RESENT)


@pytest.mark.parametrize("problem", ["imap-down", "no-sent-folder", "sent-folder-gone"])
async def test_an_unreadable_mailbox_leaves_the_reply_uncertain_and_sends_nothing(
    provider: Any, tls_cert: Any, dovecot: Any, account: tuple[str, str], problem: str,
    make_daemon: Any,
) -> None:
    mode = "self-copy" if problem == "imap-down" else "sent-folder"
    port, sink = provider(mode)
    sink.fates = ["lose"]
    env = settle_env(tls_cert, dovecot, account, port, mode,
                     imap_port=free_port() if problem == "imap-down" else None)
    if problem == "sent-folder-gone":
        env["LEADBOX_REPLY__SENT_FOLDER"] = "Enviados"
    d, c = await make_daemon(env)
    d.config.settings.reply.settle_grace_seconds = 0
    _, lead_id = await post_lead(c, "eva@cliente.example", "Quiero información sobre sus servicios.")
    await uncertain(d, lead_id)

    [x] = await d.settle_replies()

    assert x.outcome is Outcome.UNKNOWN and "imap" in x.detail
    await asyncio.sleep(1.0)
    assert sink.to_customers() == []
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state is State.FAILED and lead.reply_status is ReplyStatus.UNCERTAIN
    await d.stop()  # before the SMTP server: its pooled sessions end with a QUIT


async def test_self_copies_are_never_leads_and_go_to_their_folder(
    provider: Any, tls_cert: Any, dovecot: Any, account: tuple[str, str],
    make_daemon: Any,
) -> None:
    port, sink = provider("self-copy")
    env = {**settle_env(tls_cert, dovecot, account, port, "self-copy"),
           "LEADBOX_INBOX__ENABLED": "true", "LEADBOX_INBOX__START": "all", "LEADBOX_INBOX__POLL_INTERVAL": "0.3"}
    d, c = await make_daemon(env)
    _, lead_id = await post_lead(c, "flor@cliente.example", "Hola, necesito una cotización para una app.")
    await replied(d, lead_id)
    mid = (await d.store.get(lead_id)).reply_message_id  # type: ignore[union-attr]

    async def copy_moved() -> bool:
        return await asyncio.to_thread(folder_ids, dovecot, account[0], "Leads/Sent") == [mid]
    await wait_for(copy_moved, 20, what="the self-copy moved to Leads/Sent")

    assert folder_ids(dovecot, account[0], "INBOX") == []
    assert await d.store.counts() == {"replied": 1}  # our copy is no lead
    assert len(sink.to_customers()) == 1
    # The moved copy still settles: a lookup finds it in the self-copy folder.
    search = await d.sent_lookup.find_sent([mid])
    assert search.found == {mid: "Leads/Sent"}
    await d.stop()  # before the SMTP server: its pooled sessions end with a QUIT


@pytest.mark.slow
async def test_leads_settle_on_the_command_line(
    provider: Any, tls_cert: Any, dovecot: Any, account: tuple[str, str], tmp_path: Path,
    make_daemon: Any,
) -> None:
    port, sink = provider("self-copy")
    sink.fates = ["silent"]
    env = settle_env(tls_cert, dovecot, account, port, "self-copy")
    d, c = await make_daemon(env)
    _, lead_id = await post_lead(c, "gil@cliente.example", "Buenas, quiero saber el precio del plan anual.")
    await uncertain(d, lead_id)
    await d.stop()

    res = await asyncio.to_thread(leadbox, tmp_path, "leads", "settle", lead_id, env=clean_env(tmp_path, **env))
    no_traceback(res)
    assert res.returncode == 0, res.stderr
    assert f"lead {lead_id}: replied" in res.stdout
    again = await asyncio.to_thread(leadbox, tmp_path, "leads", "settle", lead_id, env=clean_env(tmp_path, **env))
    assert again.returncode == 1 and "no uncertain reply" in again.stderr
    missing = await asyncio.to_thread(leadbox, tmp_path, "leads", "settle", "nope", env=clean_env(tmp_path, **env))
    assert missing.returncode == 1 and "no lead with id" in missing.stderr
    usage = await asyncio.to_thread(leadbox, tmp_path, "leads", "settle", env=clean_env(tmp_path, **env))
    assert usage.returncode == 2 and "needs a lead id" in usage.stderr
    msg = email.message_from_bytes(sink.to_customers()[0]["data"], policy=policy.default)
    assert msg["To"] and account[0] not in str(msg["To"])


async def test_each_mailbox_replies_settle_in_the_account_they_went_out_from(
    smtp_server: Any, dovecot: Any, tmp_path: Path,
    make_daemon: Any,
) -> None:
    """inbox.mailboxes: a reply goes out over its mailbox's own login, with that account's
    self-copy, and is looked up there (the [reply] account here is no IMAP account at all)."""
    from tests.test_inbox import mail
    from tests.test_mailboxes import boxes_env

    ventas, soporte = (f"{n}-{uuid.uuid4().hex[:6]}@leadbox.test" for n in ("ventas", "soporte"))
    for user in (ventas, soporte):
        dovecot.add_user(user, "pw-" + user[:6])
        smtp_server.users[user] = "pw-" + user[:6]
    held = threading.Event()

    def provider(message: dict[str, Any]) -> None:  # files our copy; the first answer comes too late
        for user in (ventas, soporte):
            if user in message["rcpt_tos"]:
                dovecot.append(user, "INBOX", message["data"])
        if not held.is_set():
            held.set()
            threading.Event().wait(2.0)

    smtp_server.sink.on_accept = provider
    boxes = [{"name": "ventas", "username": ventas, "from_address": "ventas@ourco.example", "password_env": "PW_V"},
             {"name": "soporte", "username": soporte, "from_address": "soporte@ourco.example",
              "password_env": "PW_S"}]
    dovecot.append(soporte, "INBOX", mail(7))
    env = {**boxes_env(dovecot, smtp_server, boxes, tmp_path, PW_V="pw-" + ventas[:6], PW_S="pw-" + soporte[:6]),
           "LEADBOX_REPLY__SMTP_TIMEOUT": "1", "LEADBOX_REPLY__SETTLE": "self-copy",
           "LEADBOX_REPLY__SETTLE_INTERVAL": "3600"}
    d, _c = await make_daemon(env)

    async def uncertain_lead() -> bool:
        leads, _ = await d.store.list(reply_status=ReplyStatus.UNCERTAIN)
        return len(leads) == 1
    await wait_for(uncertain_lead, 20, what="the soporte lead uncertain")
    [lead], _ = await d.store.list(reply_status=ReplyStatus.UNCERTAIN)
    assert lead.mailbox == "soporte"
    [m] = await asyncio.to_thread(smtp_server.wait_for, 1)  # taken; its answer came too late
    assert m["login"] == soporte and m["rcpt_tos"] == ["cliente7@empresa7.example", soporte]
    sessions = d.box_lookups["soporte"].sessions

    [x] = await d.settle_replies()

    assert (x.lead_id, x.outcome) == (lead.id, Outcome.REPLIED), x.detail
    assert d.box_lookups["soporte"].sessions == sessions + 1
    await asyncio.sleep(0.5)
    assert len(smtp_server.messages) == 1
    await d.stop()


async def test_auto_on_a_gmail_server_uses_the_sent_folder_and_no_self_copy(
    provider: Any, tls_cert: Any, dovecot: Any, account: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    make_daemon: Any,
) -> None:
    """Dovecot cannot offer X-GM-EXT-1, so only that one capability answer is changed here; the
    session, the \\Sent folder and the search are real."""
    from imapclient import IMAPClient

    real = IMAPClient.has_capability
    monkeypatch.setattr(IMAPClient, "has_capability",
                        lambda self, cap: cap.upper() == "X-GM-EXT-1" or real(self, cap))
    port, sink = provider("sent-folder")  # Gmail files every accepted message in Sent
    make_sent_folder(dovecot, account[0])
    sink.fates = ["silent"]
    d, c = await make_daemon(settle_env(tls_cert, dovecot, account, port, "auto"))
    await d.sent_lookup.resolve()
    assert d.sent_lookup.resolved == "sent-folder" and d.sent_lookup.self_copy_address is None
    _, lead_id = await post_lead(c, "hugo@cliente.example", "Hola, ¿cuánto cuesta una tienda online?")
    await uncertain(d, lead_id)

    [x] = await d.settle_replies()

    assert x.outcome is Outcome.REPLIED and "'Sent'" in x.detail
    [m] = sink.to_customers()
    assert m["rcpt_tos"] == ["hugo@cliente.example"]  # no self-copy on Gmail
    await d.stop()
