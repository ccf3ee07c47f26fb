"""SMTP transport: implicit TLS (465) or STARTTLS (587) with AUTH (e.g. a Gmail app password).

aiosmtplib keeps the event loop free. Certificate checks are always on; a custom
CA file can be given for private servers.

Sessions are pooled: up to ``pool_size`` authenticated connections, each carrying up to
``max_per_session`` messages before a polite QUIT, so a reply costs MAIL, RCPT and DATA, not a
TLS handshake and AUTH. Any error closes the session it happened on (the next reply opens a
fresh one). A reused session the server has dropped meanwhile fails at MAIL FROM, before
anything about the message was sent or recorded, and that one message is tried again once on a
new connection. The exactly-once rules are per message and unchanged: ``before_commit`` right
before DATA, ``after_commit`` right after DATA's 250, and no answer to DATA is
``DeliveryUncertain``, never a retry.

A quota or throttling answer pauses the whole transport (agent.mail.limits); what each
refusal means is read by agent.mail.smtp_errors.

An account with an OAuth2 token (an ``auth = "xoauth2"`` mailbox: Gmail, Microsoft 365) logs in
with SASL ``AUTH XOAUTH2`` instead of a password, the token taken from its ``TokenSource`` at each
login. A refused token may only be stale or revoked early, so it is invalidated and the login is
tried once more with a freshly refreshed one; a second refusal is ``needs_credentials``, like a
refused password, and the next login refreshes again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosmtplib

from agent.core.models import Health, OutgoingMail
from agent.core.ports import TokenSource
from agent.core.states import HealthState
from agent.errors import ConfigError, DeliveryUncertain, NeedsCredentials, PermanentError, TransientError
from agent.mail.limits import SendPause
from agent.mail.settle import MailboxSentLookup
from agent.mail.smtp_errors import Stage, classify

log = logging.getLogger("leadbox.reply")

# A pooled session unused for this long is closed rather than reused (servers drop idle
# connections after a minute or a few; reusing one only to see it fail costs a round trip).
IDLE_SECONDS = 30.0


@dataclass
class _Session:
    smtp: aiosmtplib.SMTP
    sent: int = 0
    last_used: float = 0.0


class _Stale(Exception):
    """A reused session failed at MAIL FROM: nothing was sent, try a fresh connection."""


_LOGIN_REFUSED = "SMTP login refused: check EMAIL_USER / EMAIL_PASS (an app password for Gmail)"
_TOKEN_REFUSED = "SMTP login refused: the OAuth access token was not accepted (check the account's refresh token)"
_REFRESH_REFUSED = ("SMTP login impossible: refreshing the OAuth access token was refused (check the refresh token "
                    "and GOOGLE_OAUTH_CLIENT_ID / GOOGLE_OAUTH_CLIENT_SECRET)")
_TOKEN_UNREACHABLE = "the OAuth token endpoint is unreachable"


class _NoToken(Exception):
    """The token source gave no token: its refresh was refused (``refused``) or could not be reached.

    Raised instead of the source's own error so that a TransientError of a ledger write during
    the send is never mistaken for the token endpoint's. Carries no text: the source's messages
    stay out of /readyz and the lead's error.
    """

    def __init__(self, refused: bool) -> None:
        super().__init__("refused" if refused else "unreachable")
        self.refused = refused


def xoauth2_initial_response(username: str, token: str) -> bytes:
    """SASL XOAUTH2's one message (Google's and Microsoft's format), base64 for the AUTH line."""
    return base64.b64encode(f"user={username}\x01auth=Bearer {token}\x01\x01".encode())


def _stage(e: aiosmtplib.SMTPResponseException) -> Stage:
    """The SMTP step that was refused, from aiosmtplib's exception type."""
    if isinstance(e, aiosmtplib.SMTPAuthenticationError):
        return "auth"
    if isinstance(e, aiosmtplib.SMTPSenderRefused):
        return "mail"
    if isinstance(e, aiosmtplib.SMTPRecipientRefused):
        return "rcpt"
    if isinstance(e, aiosmtplib.SMTPDataError):
        return "data"
    return "connect"


class SmtpTransport:
    name = "smtp"
    # before_commit runs right before DATA: a ledger row left at 'sending' was never sent.
    commit_point = True

    def __init__(
        self, *, host: str, port: int, security: str, username: str, password: str | None = None,
        oauth2_token: TokenSource | None = None,
        ca_file: str = "", timeout: float = 20.0, from_address: str = "",
        pool_size: int = 4, max_per_session: int = 100, pause: SendPause | None = None,
        lookup: MailboxSentLookup | None = None,
    ) -> None:
        if (password is None) == (oauth2_token is None):
            raise ConfigError("smtp: an account logs in with a password or with an OAuth2 token source (one of them)")
        self.host, self.port, self.security = host, port, security
        self._username, self._password, self._token = username, password, oauth2_token
        self.refused_tokens = 0  # XOAUTH2 logins refused (for tests: a stale token is refreshed once)
        self.timeout = timeout
        self.from_address = from_address or username
        self._tls = ssl.create_default_context(cafile=ca_file or None)
        self._state: dict[str, Any] = {"state": "unknown"}
        self.pool_size = max(1, pool_size)
        self.max_per_session = max(1, max_per_session)
        self._slots = asyncio.Semaphore(self.pool_size)
        self._idle: list[_Session] = []
        self.sessions_opened = 0  # connections opened and authenticated (for tests and the bench)
        # Shared by every sender of this account (replies, alerts): the account's limits are one.
        self.pause = pause or SendPause()
        # reply.settle: looks replies up over IMAP, and says whether each carries a self-copy.
        self.lookup = lookup

    async def _connect(self) -> _Session:
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, use_tls=self.security == "tls",
            start_tls=self.security == "starttls", tls_context=self._tls, timeout=self.timeout)
        await smtp.connect()
        try:
            if self._token is not None:
                await self._login_xoauth2(smtp, self._token)
            else:
                await smtp.login(self._username, self._password or "")
        except BaseException:
            smtp.close()
            raise
        self.sessions_opened += 1
        return _Session(smtp)

    async def _login_xoauth2(self, smtp: aiosmtplib.SMTP, tokens: TokenSource) -> None:
        """``AUTH XOAUTH2`` with the source's token; on a refusal, once more with a refreshed one.

        The token is fetched in a thread (a refresh is a blocking HTTP call). A token the server
        refused is invalidated at once, so whichever login comes next refreshes it; the same
        token handed out again (a static one) is not tried twice. An answer that is not about
        the token (454 too many logins) is raised as it is, for the sending limits to read.
        """
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()
        refused: str | None = None
        code, message = 535, ""
        for attempt in (1, 2):
            try:
                token = await asyncio.to_thread(tokens)
            except NeedsCredentials:
                raise _NoToken(refused=True) from None
            except (TransientError, OSError):
                raise _NoToken(refused=False) from None
            if token == refused:  # a static token: nothing fresher to try
                break
            code, message = await _auth_xoauth2(smtp, self._username, token)
            if code == 235:
                return
            verdict = classify(code, message, "auth")
            if verdict.kind != "credentials":
                break
            self.refused_tokens += 1
            tokens.invalidate()  # whichever login comes next refreshes it
            refused = token
            if attempt == 1:
                log.info("smtp: xoauth2 token refused, trying a refreshed one", extra={"reason": verdict.describe()})
        raise aiosmtplib.SMTPAuthenticationError(code, message)

    def _take_idle(self) -> _Session | None:
        now = time.monotonic()
        while self._idle:
            session = self._idle.pop()  # the most recently used: the least likely to be dropped
            if session.smtp.is_connected and now - session.last_used < IDLE_SECONDS:
                return session
            session.smtp.close()
        return None

    async def _release(self, session: _Session) -> None:
        session.sent += 1
        session.last_used = time.monotonic()
        if session.sent < self.max_per_session:
            self._idle.append(session)
        else:
            await _quit(session.smtp)

    async def _transaction(
        self, session: _Session, msg: OutgoingMail, before_commit: Callable[[], Awaitable[None]] | None,
        after_commit: Callable[[], Awaitable[None]] | None, reused: bool,
    ) -> None:
        smtp = session.smtp
        try:
            await smtp.mail(self.from_address)
        except aiosmtplib.SMTPResponseException as e:
            if reused and e.code == 421:  # "closing connection": the server ended the session
                raise _Stale() from e
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            if reused:
                raise _Stale() from e
            raise
        await smtp.rcpt(msg.to_addr)
        own = self.lookup.self_copy_address if self.lookup is not None else None
        if own and own.lower() != msg.to_addr.lower():
            # Our own copy, in the same transaction: an envelope recipient only (never a header).
            # The server takes both or neither, so finding ours later proves the customer's went.
            try:
                await smtp.rcpt(own)
            except aiosmtplib.SMTPRecipientRefused as e:  # the customer's copy still goes
                log.warning("reply goes without its self-copy (our own address was refused)",
                            extra={"reason": f"{e.code} {e.message}"[:200]})
        if before_commit is not None:
            await before_commit()  # everything up to here is safe to repeat
        try:
            await smtp.data(msg.data)
        except aiosmtplib.SMTPResponseException:
            raise  # the server answered with a code: a definite refusal, safe to retry
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            # The message went out but its answer did not come back: it may be delivered.
            raise DeliveryUncertain(
                f"smtp: no answer after DATA ({type(e).__name__}); not resent to avoid a duplicate") from None
        if after_commit is not None:
            await after_commit()  # recorded before anything else: the unknown window ends here

    async def _deliver(
        self, msg: OutgoingMail, before_commit: Callable[[], Awaitable[None]] | None,
        after_commit: Callable[[], Awaitable[None]] | None,
    ) -> None:
        async with self._slots:
            session = self._take_idle()
            reused = session is not None
            if session is None:
                session = await self._connect()
            try:
                try:
                    await self._transaction(session, msg, before_commit, after_commit, reused)
                except _Stale:
                    session.smtp.close()
                    session = await self._connect()
                    await self._transaction(session, msg, before_commit, after_commit, False)
            except BaseException:
                # Whatever happened (refusal, no answer, a failing ledger write), this session
                # is in an unknown SMTP state: close it. Once DATA was accepted nothing here
                # turns into a retry; the caller decides from the exception alone.
                session.smtp.close()
                raise
            await self._release(session)

    async def send(
        self, msg: OutgoingMail, before_commit: Callable[[], Awaitable[None]] | None = None,
        after_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        probe = await self.pause.admit()  # raises Deferred while the account is paused
        try:
            async with self.pause.pace():
                await self._send(msg, before_commit, after_commit, probe)
        finally:
            self.pause.settle(probe)

    async def _send(
        self, msg: OutgoingMail, before_commit: Callable[[], Awaitable[None]] | None,
        after_commit: Callable[[], Awaitable[None]] | None, probe: bool,
    ) -> None:
        try:
            await self._deliver(msg, before_commit, after_commit)
        except aiosmtplib.SMTPResponseException as e:
            v = classify(e.code, e.message, _stage(e))
            if v.pauses_transport:  # the account's limit: everyone waits, no lead fails
                self._state = {"state": "ok"}
                raise self.pause.limited(v, probe) from None
            self.pause.answered(probe)
            code = f"{v.code} {v.enhanced}" if v.enhanced else str(v.code)
            if v.kind == "credentials":
                self._state = self._refused(_LOGIN_REFUSED if self._token is None else _TOKEN_REFUSED)
                raise TransientError("smtp: login refused (needs credentials)", retry_after=300) from None
            if v.kind == "recipient":
                self._state = {"state": "ok"}
                if e.code >= 500:
                    raise PermanentError(f"smtp: recipient refused ({code})") from None
                raise TransientError(f"smtp: recipient deferred ({code})") from None
            if v.kind == "permanent":
                raise PermanentError(f"smtp: refused with {code}") from None
            self._state = {"state": "degraded", "reason": f"server answered {code}", "since": time.time()}
            raise TransientError(f"smtp: server answered {code}") from None
        except _NoToken as e:  # the server was never asked: like an unreachable one for a probe
            self.pause.unreachable(probe)
            self._state = self._no_token(e)
            if e.refused:
                raise TransientError("smtp: login impossible, the OAuth token refresh was refused (needs credentials)",
                                     retry_after=300) from None
            raise TransientError(f"smtp: {_TOKEN_UNREACHABLE}; will retry") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            self.pause.unreachable(probe)
            self._state = {"state": "down", "reason": type(e).__name__, "since": time.time()}
            raise TransientError(f"smtp: {self.host}:{self.port} unreachable ({type(e).__name__})") from None
        self.pause.answered(probe)
        self._state = {"state": "ok"}

    async def check(self) -> None:
        """Log in without sending, so health() is known before the first reply and follows a
        server that comes back. The session goes to the pool: the next reply uses it."""
        try:
            async with self._slots:
                session = self._take_idle() or await self._connect()
                session.last_used = time.monotonic()
                self._idle.append(session)
        except aiosmtplib.SMTPResponseException as e:
            v = classify(e.code, e.message, _stage(e))
            if v.pauses_transport:  # "454 4.7.0 Too many login attempts": a pause, not bad credentials
                self.pause.limited(v, probe=False)
            elif v.kind == "credentials":
                self._state = self._refused(_LOGIN_REFUSED if self._token is None else _TOKEN_REFUSED)
            else:
                code = f"{v.code} {v.enhanced}" if v.enhanced else str(v.code)
                self._state = {"state": "down", "reason": f"server answered {code}", "since": time.time()}
        except _NoToken as e:
            self._state = self._no_token(e)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            self._state = {"state": "down", "reason": type(e).__name__, "since": time.time()}
        else:
            self._state = {"state": "ok"}

    @staticmethod
    def _refused(reason: str) -> dict[str, Any]:
        return {"state": "needs_credentials", "since": time.time(), "reason": reason}

    @classmethod
    def _no_token(cls, e: _NoToken) -> dict[str, Any]:
        """/readyz's state when the token source gave no token: its fixed text, never the source's."""
        if e.refused:
            return cls._refused(_REFRESH_REFUSED)
        return {"state": "down", "reason": _TOKEN_UNREACHABLE, "since": time.time()}

    async def was_sent(self, message_id: str) -> bool | None:
        """True when the reply is found in the mailbox (reply.settle); else None: SMTP alone
        cannot tell, and an absence right after the attempt proves nothing yet (the settle job
        decides that after its grace period)."""
        if self.lookup is None:
            return None
        search = await self.lookup.find_sent([message_id])
        return True if message_id in search.found else None

    def health(self) -> Health:
        """For /readyz: unknown (nothing sent yet) | ok | degraded | down | needs_credentials | paused."""
        s = self.pause.state() or self._state
        details = {k: v for k, v in s.items() if k not in ("state", "reason")}
        return Health(HealthState(s["state"]), s.get("reason"),
                      {**details, "transport": "smtp", "host": f"{self.host}:{self.port}"})

    async def close(self) -> None:
        """QUIT the pooled sessions (at shutdown)."""
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(s.smtp) for s in idle))


async def _auth_xoauth2(smtp: aiosmtplib.SMTP, username: str, token: str) -> tuple[int, str]:
    """One ``AUTH XOAUTH2`` exchange; the server's final code and text.

    A refusing server (Gmail, Microsoft) first sends its error details as a 334 challenge (base64
    JSON: status, schemes, scope); the client answers with an empty line and then gets the final
    error (535). Written over ``execute_command`` rather than a library helper, which not every
    aiosmtplib we accept has.
    """
    response = await smtp.execute_command(b"AUTH", b"XOAUTH2", xoauth2_initial_response(username, token))
    if response.code == 334:
        response = await smtp.execute_command(b"")
    return response.code, response.message


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    """QUIT is a courtesy: once DATA was accepted, a failing QUIT must not turn into a retry."""
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        smtp.close()
