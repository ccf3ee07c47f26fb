"""Smoke tests for the real-server fixtures: if these fail, every mail test is suspect."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.fixtures.mailservers import DovecotServer, SmtpServer


def _mail(to: str = "someone@example.org", subject: str = "hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "leadbox@example.com"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("body text\n")
    return msg


# ------------------------------------------------------------------ SMTP


def test_smtp_implicit_tls_with_auth(smtp_server: SmtpServer) -> None:
    ctx = smtp_server.client_context()
    with smtplib.SMTP_SSL(smtp_server.host, smtp_server.port_tls, context=ctx, timeout=10) as s:
        s.login(smtp_server.username, smtp_server.password)
        s.send_message(_mail(subject="implicit"))
    (got,) = smtp_server.wait_for(1)
    assert got["tls"] is True
    assert got["login"] == smtp_server.username
    assert got["rcpt_tos"] == ["someone@example.org"]
    assert b"Subject: implicit" in got["data"]


def test_smtp_starttls_with_auth(smtp_server: SmtpServer) -> None:
    ctx = smtp_server.client_context()
    with smtplib.SMTP(smtp_server.host, smtp_server.port_starttls, timeout=10) as s:
        s.starttls(context=ctx)
        s.login(smtp_server.username, smtp_server.password)
        s.send_message(_mail(subject="starttls"))
    (got,) = smtp_server.wait_for(1)
    assert got["tls"] is True
    assert b"Subject: starttls" in got["data"]


def test_smtp_wrong_password_and_untrusted_cert(smtp_server: SmtpServer) -> None:
    ctx = smtp_server.client_context()
    with smtplib.SMTP_SSL(smtp_server.host, smtp_server.port_tls, context=ctx, timeout=10) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(smtp_server.username, "wrong")
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(
            smtp_server.host, smtp_server.port_tls, context=ssl.create_default_context(), timeout=10
        )
    assert smtp_server.messages == []


def test_smtp_stop_and_start_on_same_ports(smtp_server: SmtpServer) -> None:
    port = smtp_server.port_tls
    smtp_server.stop()
    with pytest.raises(OSError):
        smtplib.SMTP_SSL(smtp_server.host, port, context=smtp_server.client_context(), timeout=5)
    smtp_server.start()
    assert smtp_server.port_tls == port
    with smtplib.SMTP_SSL(
        smtp_server.host, port, context=smtp_server.client_context(), timeout=10
    ) as s:
        s.login(smtp_server.username, smtp_server.password)
        s.send_message(_mail(subject="after restart"))
    assert len(smtp_server.wait_for(1)) == 1


def test_smtp_wait_for_times_out_loudly(smtp_server: SmtpServer) -> None:
    with pytest.raises(AssertionError, match="expected 1 SMTP message"):
        smtp_server.wait_for(1, timeout=0.2)


# --------------------------------------------------------------- Dovecot


def test_dovecot_login_tls_and_starttls(dovecot: DovecotServer) -> None:
    c = IMAPClient(dovecot.host, port=dovecot.port_tls, ssl=True, ssl_context=dovecot.ssl_context())
    assert c.login("alice", "secret")
    c.logout()
    c = IMAPClient(dovecot.host, port=dovecot.port, ssl=False)
    c.starttls(dovecot.ssl_context())
    assert c.login("leads@example.com", "mailpass")
    c.logout()


def test_dovecot_wrong_password_and_xoauth2(dovecot: DovecotServer) -> None:
    c = IMAPClient(dovecot.host, port=dovecot.port, ssl=False)
    with pytest.raises(LoginError):
        c.login("bob", "nope")
    c.logout()
    c = IMAPClient(dovecot.host, port=dovecot.port, ssl=False)
    assert b"XOAUTH2" in b" ".join(c.capabilities())
    c.oauth2_login("bob", "hunter2")
    c.logout()


def test_dovecot_append_fetch_reset(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    raw = _mail(subject="stored").as_bytes()
    uid = dovecot.append(user, "INBOX", raw)
    assert isinstance(uid, int)
    dovecot.append(user, "Leads/Processed", raw)
    c = dovecot.client(user)
    c.select_folder("INBOX")
    data = c.fetch([uid], ["BODY.PEEK[]", "FLAGS"])
    assert b"Subject: stored" in data[uid][b"BODY[]"]
    assert b"\\Seen" not in data[uid][b"FLAGS"]
    c.logout()

    dovecot.reset_user(user)
    c = dovecot.client(user)
    assert c.select_folder("INBOX")[b"EXISTS"] == 0
    assert not c.folder_exists("Leads/Processed")
    c.logout()


def test_dovecot_named_user_added_while_running(dovecot: DovecotServer) -> None:
    dovecot.add_user("carol@example.com", "pw-carol")
    c = dovecot.client("carol@example.com")
    assert c.select_folder("INBOX")[b"EXISTS"] == 0
    c.logout()


def test_dovecot_stop_and_start_keeps_mail(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", _mail(subject="survives").as_bytes())
    c = dovecot.client(user)
    c.select_folder("INBOX")
    dovecot.stop()
    with pytest.raises((OSError, IMAPClient.Error, IMAPClient.AbortError)):
        c.noop()
        c.search("ALL")
    c.shutdown()
    dovecot.start()
    c = dovecot.client(user)
    assert c.select_folder("INBOX")[b"EXISTS"] == 1
    c.logout()
