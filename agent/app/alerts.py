"""Team alerts: the sender job that works through the alert ledger, and the digest.

Delivery rests on the ledger (``alerts`` table): a qualifying lead gets one ``pending`` row per
channel when its priority is decided. This job sends each due row and only then records it
``sent``. So a receiver outage or a crash loses nothing (the row stays pending and is retried
with backoff), and in normal running each lead alerts at most once per channel. A crash
between the send and the record sends that alert again, with the same ``Idempotency-Key`` (the
lead id) and, for e-mail, the same Message-ID, so a receiver can drop the repeat.

E-mail alerts have one row per team address (``email:<address>``), each sent as its own message
and recorded on its own: a recipient the server refuses, or one whose send fails for a while,
never makes the others get the alert twice. A permanent refusal (a 5xx, like the webhook's
4xx) fails that address's row at once; a transient one retries only that address.

E-mail alerts and the digest go through the reply transport directly, not through the reply
gate: they are never held by the auto-reply window or caps, never counted as replies, and loop
protection (which is about customers) does not apply to the team's own address.

With replicas, one holds the ``alerts`` lock and sends; one holds ``alerts-digest`` and sends
the digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from zoneinfo import ZoneInfo

import aiohttp

from agent.app.metrics import Metrics
from agent.config import Config
from agent.core.alerts import (
    WEBHOOK,
    AlertPolicy,
    AlertRow,
    digest_text,
    email_channel,
    email_text,
    lead_url,
    render_webhook,
    sign,
)
from agent.core.backoff import backoff_delay
from agent.core.models import Lead, OutgoingMail
from agent.core.ports import MailTransport, Store
from agent.errors import LeadboxError, PermanentError

__all__ = ["AlertSender", "alert_policy"]

log = logging.getLogger("leadbox.alerts")

BATCH = 50
DIGEST_FIRST_WINDOW = 24 * 3600.0  # the first digest covers the last day
DIGEST_MAX_LEADS = 5000


class _Refused(Exception):
    """The receiver answered with a status that retrying will not change (a 4xx)."""


def alert_policy(config: Config) -> AlertPolicy | None:
    """Which leads alert, and the ledger rows each gets: the webhook, and one per team address."""
    a = config.settings.alerts
    if not a.min_priority or not a.channels():
        return None
    rows = ((WEBHOOK,) if a.webhook_url else ()) + tuple(email_channel(to) for to in dict.fromkeys(a.recipients()))
    return AlertPolicy(a.min_priority, tuple(a.categories), rows)


class AlertSender:
    def __init__(self, config: Config, store: Store, transport: MailTransport, metrics: Metrics) -> None:
        self.cfg = config.settings.alerts
        self.store, self.transport, self.metrics = store, transport, metrics
        self.secret = config.secrets.alerts_secret
        self.public_url = config.settings.http.public_url
        self.from_address = config.settings.reply.from_address
        self.from_name = config.sender_name or "leadbox"
        self.domain = config.message_id_domain
        self._session: aiohttp.ClientSession | None = None
        self._running = False

    # -- the sender job ------------------------------------------------
    async def run_due(self) -> int:
        """Send every due alert once; returns how many went out. Never raises."""
        if self._running or not await self.store.try_acquire_leadership("alerts"):
            return 0
        self._running = True
        sent = 0
        try:
            for row in await self.store.alerts_due(time.time(), BATCH):
                sent += await self._one(row)
        finally:
            self._running = False
        return sent

    async def _one(self, row: AlertRow) -> int:
        lead = await self.store.get(row.lead_id)
        now = time.time()
        if lead is None:  # erased meanwhile: nothing to say
            await self.store.alert_result(replace(row, status="failed", last_error="lead erased"))
            return 0
        try:
            if row.channel == WEBHOOK:
                await self._post(lead)
            else:
                await self._email(lead, row)
        except Exception as e:  # noqa: BLE001 - every failure is a retry or a give-up, never a crash
            reason = f"{type(e).__name__}: {e}"[:300]
            attempts = row.attempts + 1
            # A webhook's 4xx, or a mail server's 5xx (this address refused): retrying changes nothing.
            refused = isinstance(e, _Refused | PermanentError)
            give_up = refused or now - row.created_at > self.cfg.give_up_hours * 3600
            delay = backoff_delay(attempts, self.cfg.retry_base, self.cfg.retry_max)
            await self.store.alert_result(replace(
                row, status="failed" if give_up else "pending", attempts=attempts,
                next_attempt_at=now + delay, last_error=reason))
            self.metrics.alert(row.kind, "failed" if give_up else "retry")
            log.warning("alert not delivered" + ("; giving up" if give_up else "; will retry"),
                        extra={"lead_id": lead.id, "reason": f"{row.label}: {reason}", "attempt": attempts})
            return 0
        await self.store.alert_result(replace(row, status="sent", attempts=row.attempts + 1, sent_at=time.time(),
                                              last_error=None))
        self.metrics.alert(row.kind, "sent")
        log.info("alert sent", extra={"lead_id": lead.id, "reason": row.label})
        return 1

    async def _post(self, lead: Lead) -> None:
        body = render_webhook(lead, self.cfg.webhook_format, lead_url(self.public_url, lead.id))
        headers = {"Content-Type": "application/json", "Idempotency-Key": lead.id,
                   "User-Agent": "leadbox-alerts"}
        if self.secret:
            ts = int(time.time())
            headers["X-Leadbox-Timestamp"] = str(ts)
            headers["X-Leadbox-Signature"] = sign(self.secret, ts, body)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.timeout))
        async with self._session.post(self.cfg.webhook_url, data=body, headers=headers,
                                      allow_redirects=False) as resp:
            if 200 <= resp.status < 300:
                return
            text = (await resp.text(errors="replace"))[:200]
            if 400 <= resp.status < 500 and resp.status not in (408, 425, 429):
                raise _Refused(f"HTTP {resp.status}: {text}")
            raise LeadboxError(f"HTTP {resp.status}: {text}")

    def _mail(self, to: str, subject: str, body: str, message_id: str) -> OutgoingMail:
        msg = EmailMessage()
        msg["From"] = f"{self.from_name} <{self.from_address}>"
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(body)
        data = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        return OutgoingMail(message_id=message_id, from_addr=self.from_address, to_addr=to, data=data)

    async def _email(self, lead: Lead, row: AlertRow) -> None:
        """The alert to the row's address; a row of before per-address rows (``email``) goes to
        every address, as it did then. The Message-ID is per lead and address, so a repeat after a
        crash carries the same one however ``email_to`` was reordered meanwhile."""
        subject, body = email_text(lead, lead_url(self.public_url, lead.id))
        for to in [row.to] if row.to else self.cfg.recipients():
            tag = hashlib.sha256(to.strip().lower().encode()).hexdigest()[:12]
            await self.transport.send(self._mail(to, subject, body, f"<alert-{lead.id}-{tag}@{self.domain}>"))

    # -- the digest ----------------------------------------------------
    async def send_digest(self) -> bool:
        """The leads since the last digest by category and priority, and the failed ones, to email_to.

        Only the replica holding ``alerts-digest`` sends; the last run is recorded after the send."""
        to = self.cfg.recipients()
        if not to or not await self.store.try_acquire_leadership("alerts-digest"):
            return False
        now = time.time()
        since = await self.store.digest_last() or now - DIGEST_FIRST_WINDOW
        leads = await self.store.leads_between(since, now, DIGEST_MAX_LEADS)
        zone = ZoneInfo(self.cfg.timezone)
        subject, body = digest_text(leads, datetime.fromtimestamp(since, zone), datetime.fromtimestamp(now, zone))
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S%f")  # one id per digest run
        try:
            for i, addr in enumerate(to):
                await self.transport.send(self._mail(addr, subject, body, f"<digest-{stamp}-{i}@{self.domain}>"))
        except Exception as e:  # noqa: BLE001 - the next run covers this period too
            self.metrics.alert("digest", "retry")
            log.warning("digest not sent; the next one covers this period too",
                        extra={"reason": f"{type(e).__name__}: {e}"[:300]})
            return False
        await self.store.set_digest_last(now)
        self.metrics.alert("digest", "sent")
        log.info("digest sent", extra={"reason": f"{len(leads)} leads"})
        return True

    async def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._session.close(), timeout=2.0)
