"""ImapMailbox against the real Dovecot fixture."""

from __future__ import annotations

import threading
from email.message import EmailMessage

import pytest

from agent.errors import NeedsCredentials, TransientError
from agent.intake.imap import ImapMailbox
from tests.fixtures.mailservers import DovecotServer


def raw(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ana <ana@cliente.example>"
    msg["To"] = "leads@example.com"
    msg["Subject"] = subject
    msg.set_content(f"body of {subject}\n")
    return msg.as_bytes()


def mailbox(dovecot: DovecotServer, user: str, **kw: object) -> ImapMailbox:
    args: dict[str, object] = {
        "security": "tls",
        "username": user,
        "password": dovecot.users[user],
        "ca_file": dovecot.ca_file,
        "timeout": 10,
    }
    args.update(kw)
    port = dovecot.port_tls if args["security"] == "tls" else dovecot.port
    return ImapMailbox(dovecot.host, port, **args)  # type: ignore[arg-type]


def test_tls_fetch_new_uids_without_setting_seen(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    u1 = dovecot.append(user, "INBOX", raw("one"))
    u2 = dovecot.append(user, "INBOX", raw("two"))
    mb = mailbox(dovecot, user)
    mb.connect()
    uidvalidity, uidnext = mb.select()
    assert uidvalidity > 0 and uidnext == (u2 or 0) + 1
    assert mb.new_uids(0) == [u1, u2]
    assert mb.new_uids(u2 or 0) == []  # "n:*" returns the last UID; filtered out
    got = mb.fetch([u1, u2])
    assert b"Subject: one" in got[u1] and b"Subject: two" in got[u2]
    assert mb.client.get_flags([u1])[u1] == ()
    mb.close()


def test_fetch_skips_oversized(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    small = dovecot.append(user, "INBOX", raw("small"))
    big = dovecot.append(user, "INBOX", raw("big") + b"x" * 50_000)
    mb = mailbox(dovecot, user)
    mb.connect()
    sizes = mb.sizes([small, big])  # type: ignore[list-item]
    assert sizes[big] > 50_000 > sizes[small]  # type: ignore[index]
    assert set(mb.fetch([small, big], max_bytes=10_000)) == {small}  # type: ignore[list-item]
    mb.close()


def test_starttls_and_xoauth2(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", raw("s"))
    mb = mailbox(dovecot, user, security="starttls")
    mb.connect()
    assert len(mb.new_uids(0)) == 1
    mb.close()
    token = dovecot.users[user]
    mb = mailbox(dovecot, user, password=None, oauth2_token=lambda: token)
    mb.connect()
    assert len(mb.new_uids(0)) == 1
    mb.close()


def test_wrong_password_needs_credentials(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    with pytest.raises(NeedsCredentials, match="login refused"):
        mailbox(dovecot, user, password="wrong").connect()
    with pytest.raises(NeedsCredentials):
        mailbox(dovecot, user, password=None, oauth2_token=lambda: "bad-token").connect()


def test_untrusted_certificate_is_transient_not_silently_accepted(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    with pytest.raises(TransientError, match="SSLCertVerificationError"):
        mailbox(dovecot, user, ca_file=None).connect()


def test_mark_seen_move_and_label(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    u1 = dovecot.append(user, "INBOX", raw("seen"))
    u2 = dovecot.append(user, "INBOX", raw("move"))
    u3 = dovecot.append(user, "INBOX", raw("label"))
    mb = mailbox(dovecot, user)
    mb.connect()
    mb.mark_seen([u1])  # type: ignore[list-item]
    assert b"\\Seen" in mb.client.get_flags([u1])[u1]
    mb.move([u2], "Leads/Processed")  # type: ignore[list-item]
    assert mb.new_uids(0) == [u1, u3]
    status = mb.client.folder_status("Leads/Processed", [b"MESSAGES"])
    assert status[b"MESSAGES"] == 1
    assert mb.add_label([u3], "Leadbox Processed") == "keyword"  # Dovecot: no X-GM-EXT-1
    assert b"Leadbox_Processed" in mb.client.get_flags([u3])[u3]
    mb.close()


def test_idle_wakes_on_append(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    mb = mailbox(dovecot, user)
    mb.connect()
    assert mb.idle_wait(0.2) is False
    timer = threading.Timer(0.3, dovecot.append, args=(user, "INBOX", raw("wake")))
    timer.start()
    try:
        assert mb.idle_wait(10) is True
    finally:
        timer.join()
    assert len(mb.new_uids(0)) == 1
    mb.close()


@pytest.mark.slow
def test_server_stopped_midway_is_transient_then_recovers(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    uid = dovecot.append(user, "INBOX", raw("outage"))
    mb = mailbox(dovecot, user)
    mb.connect()
    dovecot.stop()
    with pytest.raises(TransientError):
        mb.fetch([uid])  # type: ignore[list-item]
    assert not mb.connected
    with pytest.raises(TransientError):
        mb.connect()
    dovecot.start()
    mb.connect()
    assert uid in mb.fetch([uid])  # type: ignore[list-item]
    mb.close()
