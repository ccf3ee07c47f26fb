"""SMTP transport: implicit TLS (465) or STARTTLS (587) with AUTH (e.g. a Gmail app password).

aiosmtplib keeps the event loop free. Certificate checks are always on; a custom
CA file can be given for private servers.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiosmtplib

from agent.core.models import OutgoingMail
from agent.errors import DeliveryUncertain, PermanentError, TransientError


class SmtpTransport:
    name = "smtp"

    def __init__(
        self, *, host: str, port: int, security: str, username: str, password: str,
        ca_file: str = "", timeout: float = 20.0, from_address: str = "",
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self._username, self._password = username, password
        self.timeout = timeout
        self.from_address = from_address or username
        self._tls = ssl.create_default_context(cafile=ca_file or None)
        self._state: dict[str, Any] = {"state": "unknown"}

    async def _deliver(
        self, msg: OutgoingMail, before_commit: Callable[[], Awaitable[None]] | None,
        after_commit: Callable[[], Awaitable[None]] | None,
    ) -> None:
        rcpts = [msg.to_addr]
        data = msg.data
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, use_tls=self.security == "tls",
            start_tls=self.security == "starttls", tls_context=self._tls, timeout=self.timeout)
        await smtp.connect()
        try:
            await smtp.login(self._username, self._password)
            await smtp.mail(self.from_address)
            for rcpt in rcpts:
                await smtp.rcpt(rcpt)
            if before_commit is not None:
                await before_commit()  # everything up to here is safe to repeat
            try:
                await smtp.data(data)
            except aiosmtplib.SMTPResponseException:
                raise  # the server answered with a code: a definite refusal, safe to retry
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
                # The message went out but its answer did not come back: it may be delivered.
                raise DeliveryUncertain(
                    f"smtp: no answer after DATA ({type(e).__name__}); not resent to avoid a duplicate") from None
            if after_commit is not None:
                await after_commit()  # recorded before QUIT: the unknown window ends here
        finally:
            # QUIT is a courtesy: once DATA was accepted, a failing QUIT must not turn
            # into a retry (that would send the reply twice).
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()

    async def send(
        self, msg: OutgoingMail, before_commit: Callable[[], Awaitable[None]] | None = None,
        after_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        try:
            await self._deliver(msg, before_commit, after_commit)
        except aiosmtplib.SMTPAuthenticationError:
            self._state = {"state": "needs_credentials", "since": time.time(),
                           "reason": "SMTP login refused: check EMAIL_USER / EMAIL_PASS (an app password for Gmail)"}
            raise TransientError("smtp: login refused (needs credentials)", retry_after=300) from None
        except aiosmtplib.SMTPRecipientRefused as e:
            self._state = {"state": "ok"}
            if e.code >= 500:
                raise PermanentError(f"smtp: recipient refused ({e.code})") from None
            raise TransientError(f"smtp: recipient deferred ({e.code})") from None
        except aiosmtplib.SMTPResponseException as e:
            if e.code >= 500 and e.code not in (530, 535, 554):
                raise PermanentError(f"smtp: refused with {e.code}") from None
            self._state = {"state": "degraded", "reason": f"server answered {e.code}", "since": time.time()}
            raise TransientError(f"smtp: server answered {e.code}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            self._state = {"state": "down", "reason": type(e).__name__, "since": time.time()}
            raise TransientError(f"smtp: {self.host}:{self.port} unreachable ({type(e).__name__})") from None
        self._state = {"state": "ok"}

    async def was_sent(self, message_id: str) -> bool | None:
        return None  # SMTP cannot tell: an interrupted send is not repeated

    def state(self) -> dict[str, Any]:
        return {**self._state, "transport": "smtp", "host": f"{self.host}:{self.port}"}
