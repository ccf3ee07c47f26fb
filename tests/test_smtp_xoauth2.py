"""Replies of an ``auth = "xoauth2"`` mailbox over SMTP ``AUTH XOAUTH2`` with the mailbox's own login.

Against the session's aiosmtpd (it speaks XOAUTH2 as Gmail does: a refused token gets a 334 with
error JSON, then 535), Dovecot (which takes the bearer token of its passwd-file user) and the
fake Google token endpoint of tests/fixtures/sheets_fake.py (refresh-token grants). The daemon
test uses a static token (``INBOX_OAUTH_TOKEN``): a daemon's refresh token would go to Google.
The refresh itself is proven on the transport with the real ``GoogleTokenSource``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from agent.core.models import OutgoingMail
from agent.errors import TransientError
from agent.intake.imap_auth import GoogleTokenSource
from agent.mail.smtp import SmtpTransport, xoauth2_initial_response
from tests.fixtures.daemon import wait_for
from tests.test_inbox import mail
from tests.test_mailboxes import boxes_env

CLIENT_ID, CLIENT_SECRET = "cid-123.apps.example", "client-secret-9f8e7d"


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record of our process (ours, aiosmtplib, google-auth, urllib3) with its fields;
    the test SMTP server's own debug log (``mail.log``) is the server's, not ours."""
    return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if not r.name.startswith("mail.log"))


def _reply(to: str, from_addr: str) -> OutgoingMail:
    mid = f"<reply-{uuid.uuid4().hex[:8]}@ourco.example>"
    data = (f"From: {from_addr}\r\nTo: {to}\r\nSubject: Re: hola\r\nMessage-ID: {mid}\r\n\r\nGracias.\r\n").encode()
    return OutgoingMail(message_id=mid, from_addr=from_addr, to_addr=to, data=data)


def _transport(smtp: Any, user: str, tokens: Any) -> SmtpTransport:
    return SmtpTransport(host=smtp.host, port=smtp.port_tls, security="tls", username=user, oauth2_token=tokens,
                         ca_file=smtp.ca_file, timeout=5, from_address="soporte@ourco.example")


def test_the_initial_response_is_the_sasl_xoauth2_format() -> None:
    assert xoauth2_initial_response("a@b.example", "ya29.x") == (
        b"dXNlcj1hQGIuZXhhbXBsZQFhdXRoPUJlYXJlciB5YTI5LngBAQ==")  # "user=a@b.example^Aauth=Bearer ya29.x^A^A"


async def test_an_xoauth2_mailbox_replies_from_its_address_over_its_own_login_and_settles_in_its_account(
        dovecot: Any, smtp_server: Any, tmp_path: Path, make_daemon: Any, caplog: pytest.LogCaptureFixture) -> None:
    """ventas logs in with a password, soporte with XOAUTH2; info's token is not taken by SMTP: its
    mailbox shows needs_credentials in /readyz, its lead keeps waiting, and the token shows nowhere."""
    caplog.set_level(logging.DEBUG)
    token = f"ya29.static-{uuid.uuid4().hex}"  # Dovecot takes a bearer token equal to the password
    ventas, soporte, info = (f"{n}-{uuid.uuid4().hex[:6]}@leadbox.test" for n in ("ventas", "soporte", "info"))
    dovecot.add_user(ventas, "pw-" + ventas[:6])
    for user in (soporte, info):
        dovecot.add_user(user, token)
    smtp_server.users[ventas] = "pw-" + ventas[:6]
    smtp_server.oauth_tokens[soporte] = token  # info: none, so its SMTP login is refused

    def provider(message: dict[str, Any]) -> None:  # the server delivers our self-copy to our INBOX
        for user in (ventas, soporte):
            if user in message["rcpt_tos"]:
                dovecot.append(user, "INBOX", message["data"])

    smtp_server.sink.on_accept = provider
    boxes = [{"name": "ventas", "username": ventas, "from_address": "ventas@ourco.example", "password_env": "PW_V"},
             {"name": "soporte", "username": soporte, "from_address": "soporte@ourco.example", "auth": "xoauth2"},
             {"name": "info", "username": info, "from_address": "info@ourco.example", "auth": "xoauth2"}]
    dovecot.append(ventas, "INBOX", mail(1))
    dovecot.append(soporte, "INBOX", mail(2))
    dovecot.append(info, "INBOX", mail(3))
    env = {**boxes_env(dovecot, smtp_server, boxes, tmp_path, PW_V="pw-" + ventas[:6], INBOX_OAUTH_TOKEN=token),
           "LEADBOX_REPLY__SETTLE": "self-copy", "LEADBOX_REPLY__SETTLE_INTERVAL": "3600"}
    try:
        d, client = await make_daemon(env)
        sent = await asyncio.to_thread(smtp_server.wait_for, 2, 20)
        by_to = {m["rcpt_tos"][0]: m for m in sent}
        assert set(by_to) == {"cliente1@empresa1.example", "cliente2@empresa2.example"}
        m = by_to["cliente2@empresa2.example"]
        head = message_from_bytes(m["data"], policy=policy.default)
        assert head["From"].addresses[0].addr_spec == "soporte@ourco.example"
        assert m["mail_from"] == "soporte@ourco.example"
        assert (m["login"], m["mechanism"], m["token"]) == (soporte, "XOAUTH2", token)  # not the [reply] account
        assert m["rcpt_tos"] == ["cliente2@empresa2.example", soporte]  # its own self-copy
        assert (by_to["cliente1@empresa1.example"]["login"], by_to["cliente1@empresa1.example"]["mechanism"]) == (
            ventas, "password")
        # reply.settle looks soporte's replies up in soporte's own account, logging in with XOAUTH2.
        found = await d.box_lookups["soporte"].find_sent([head["Message-ID"]])
        assert found.error is None and found.found == {head["Message-ID"]: "INBOX"}

        async def refused() -> bool:
            r = (await (await client.get("/readyz")).json())["checks"]["reply"]
            return bool(r["mailboxes"]["info"]["state"] == "needs_credentials")
        await wait_for(refused, what="info's SMTP login refused")
        ready = await client.get("/readyz")
        body = await ready.text()
        mailboxes = json.loads(body)["checks"]["reply"]["mailboxes"]
        assert mailboxes["soporte"]["state"] == "ok" and mailboxes["info"]["state"] == "needs_credentials"
        assert "OAuth access token was not accepted" in mailboxes["info"]["reason"]
        info_lead = await d.store.get_by_email("cliente3@empresa3.example")
        assert info_lead is not None and info_lead.state.value == "mirrored"
        assert "credentials" in (info_lead.last_error or "")
        assert not any(m["rcpt_tos"][0] == "cliente3@empresa3.example" for m in smtp_server.messages)
        assert {login for login, _ in smtp_server.sink.refused_tokens} == {info}
        b64 = xoauth2_initial_response(info, token).decode()
        for text in (body, info_lead.last_error or "", _logged(caplog)):
            assert token not in text and b64 not in text
    finally:
        smtp_server.users.pop(ventas, None)


async def test_a_refused_token_is_refreshed_once_through_the_token_source(
        smtp_server: Any, fresh_sheets: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A token the server no longer takes (revoked before its expiry) is invalidated and
    refreshed, and the reply goes out with the fresh one; the next session uses it without a
    refresh. When the server refuses the fresh one too, that is needs_credentials, and no
    token, refresh token or client secret is in the error, /readyz or the logs."""
    caplog.set_level(logging.DEBUG)
    user, refresh = "soporte@ourco.example", f"1//refresh-{uuid.uuid4().hex}"
    fresh_sheets.register_refresh_token(refresh, CLIENT_ID, CLIENT_SECRET)
    tokens = GoogleTokenSource(CLIENT_ID, CLIENT_SECRET, refresh, token_uri=fresh_sheets.token_uri, timeout=5)
    stale = await asyncio.to_thread(tokens)  # cached: google-auth believes it good for an hour
    revoked = {stale}

    def newest_only(login: str, token: str) -> bool:  # the newest token the endpoint issued, unless revoked
        return login == user and token == fresh_sheets.issued[-1] and token not in revoked

    smtp_server.sink.accept_token = newest_only
    t = _transport(smtp_server, user, tokens)
    try:
        await t.send(_reply("cliente@empresa.example", "soporte@ourco.example"))
        [m] = smtp_server.wait_for(1)
        fresh = fresh_sheets.issued[-1]
        assert fresh_sheets.issued == [stale, fresh] and fresh != stale  # refreshed exactly once
        assert (m["login"], m["mechanism"], m["token"]) == (user, "XOAUTH2", fresh)
        assert smtp_server.sink.refused_tokens == [(user, stale)] and t.refused_tokens == 1
        assert t.health().state.value == "ok"
        await t.close()  # the next session logs in again, with the cached fresh token
        await t.send(_reply("otro@empresa.example", "soporte@ourco.example"))
        assert len(smtp_server.wait_for(2)) == 2 and fresh_sheets.issued == [stale, fresh]
        await t.close()

        smtp_server.sink.accept_token = lambda login, token: False  # the grant itself is revoked
        with pytest.raises(TransientError) as e:
            await t.send(_reply("tercero@empresa.example", "soporte@ourco.example"))
        assert "needs credentials" in str(e.value)
        assert len(fresh_sheets.issued) == 3  # the refused cached token, then one refresh, then stop
        health = t.health()
        assert health.state.value == "needs_credentials"
        shown = f"{e.value} {json.dumps(health.as_json())} {_logged(caplog)}"
        for secret in (stale, fresh, *fresh_sheets.issued, refresh, CLIENT_SECRET):
            assert secret not in shown
        assert len(smtp_server.messages) == 2
    finally:
        await t.close()


async def test_a_refused_refresh_is_needs_credentials_and_an_unreachable_endpoint_is_down(
        smtp_server: Any, fresh_sheets: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user, refresh = "soporte@ourco.example", f"1//revoked-{uuid.uuid4().hex}"  # never registered
    t = _transport(smtp_server, user, GoogleTokenSource(CLIENT_ID, CLIENT_SECRET, refresh,
                                                        token_uri=fresh_sheets.token_uri, timeout=5))
    with pytest.raises(TransientError) as e:
        await t.send(_reply("cliente@empresa.example", "soporte@ourco.example"))
    health = t.health()
    assert "needs credentials" in str(e.value) and health.state.value == "needs_credentials"
    assert "refreshing the OAuth access token was refused" in (health.reason or "")
    await t.check()  # /readyz's login says the same
    assert t.health().state.value == "needs_credentials"
    shown = f"{e.value} {json.dumps(health.as_json())} {_logged(caplog)}"
    assert refresh not in shown and CLIENT_SECRET not in shown

    fresh_sheets.register_refresh_token(refresh, CLIENT_ID, CLIENT_SECRET)
    with fresh_sheets.down():
        with pytest.raises(TransientError) as e:
            await t.send(_reply("cliente@empresa.example", "soporte@ourco.example"))
        assert "token endpoint is unreachable" in str(e.value) and t.health().state.value == "down"
    assert smtp_server.messages == [] and smtp_server.sink.refused_tokens == []
    await t.close()


async def test_a_single_xoauth2_inbox_without_email_pass_replies_over_its_own_token(
        dovecot: Any, smtp_server: Any, tmp_path: Path, make_daemon: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The single-mailbox config (no inbox.mailboxes) with inbox.auth = "xoauth2" and no EMAIL_PASS:
    the [reply] account logs in with AUTH XOAUTH2 as the inbox's user, with the inbox's token.
    Without EMAIL_PASS and without xoauth2, the config error still names both ways."""
    caplog.set_level(logging.DEBUG)
    token = f"ya29.single-{uuid.uuid4().hex}"
    user = f"ventas-{uuid.uuid4().hex[:6]}@leadbox.test"
    dovecot.add_user(user, token)
    smtp_server.oauth_tokens[user] = token
    dovecot.append(user, "INBOX", mail(1))
    env = boxes_env(dovecot, smtp_server, [], tmp_path, INBOX_OAUTH_TOKEN=token)
    for key in ("LEADBOX_INBOX__MAILBOXES", "EMAIL_PASS", "EMAIL_USER"):
        env.pop(key)
    env.update({"LEADBOX_INBOX__USERNAME": user, "LEADBOX_INBOX__AUTH": "xoauth2"})
    d, _ = await make_daemon(env)
    [m] = await asyncio.to_thread(smtp_server.wait_for, 1, 20)
    assert m["rcpt_tos"][0] == "cliente1@empresa1.example"
    assert (m["login"], m["mechanism"], m["token"]) == (user, "XOAUTH2", token)
    assert token not in _logged(caplog)

    from agent.config import load_config
    from agent.errors import ConfigError

    env["LEADBOX_INBOX__AUTH"] = "password"
    with pytest.raises(ConfigError, match="EMAIL_PASS.*xoauth2"):
        load_config(None, env=env)
