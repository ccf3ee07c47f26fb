"""Inbox intake recording: what each fetched message becomes in the store, written once.

Every message turns into one ``EmailIntake`` (a lead, or a skip / quarantine record with its
reason) and a whole fetched batch is written in one store transaction, the mailbox checkpoint
included. When the batch cannot be written as a whole for a reason that is not the store being
down (a message that cannot become a lead, a value the database refuses), the same entries are
written one message at a time: a message whose intake keeps failing is counted, and after
``MAX_INTAKE_FAILURES`` quarantined with its raw bytes, so one bad message never blocks the mailbox.
The store being down (or the network) is raised: the poll fails, the checkpoint has not moved, and
the poller retries with backoff.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from agent.core.models import EmailIntake, IntakeResult, recorded_outcome
from agent.core.ports import InboxLedger, IntakeMetrics
from agent.core.states import InboxOutcome
from agent.errors import LeadboxError, TransientError
from agent.intake.email_parse import ParsedEmail, to_lead_in
from agent.intake.imap import FetchedMessage

__all__ = ["MAX_INTAKE_FAILURES", "InboxRecorder", "dedupe_key"]

log = logging.getLogger("leadbox.inbox")

# A message whose intake keeps raising (not the store being down) is quarantined after this.
MAX_INTAKE_FAILURES = 3


def dedupe_key(parsed: ParsedEmail | None, raw: bytes | None, message_id: str | None = None) -> str:
    """Per-message idempotency key: the Message-ID, or a hash of the bytes when it has none.

    It must survive a UIDVALIDITY change, so it never contains the UID.
    """
    mid = (parsed.message_id if parsed is not None else None) or message_id
    mid = (mid or "").strip()
    if mid:
        return "mid:" + mid[:900]
    return "sha256:" + hashlib.sha256(raw or b"").hexdigest()


def is_store_down(e: BaseException) -> bool:
    """The store or the network, not the message: stop the poll and retry it later."""
    if isinstance(e, TransientError | OSError | LeadboxError):
        return True
    # Database driver errors about the connection, by name (no driver import here).
    return type(e).__name__ in {"OperationalError", "InterfaceError", "ConnectionError", "PoolTimeout"}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One message's record, and the log line to write once it is durable (None for a lead)."""

    intake: EmailIntake
    note: tuple[int, str] | None = None


class InboxRecorder:
    """Records fetched, parsed messages of one mailbox; answers each message's outcome."""

    def __init__(self, store: InboxLedger, mailbox: str, max_bytes: int, metrics: IntakeMetrics, *,
                 source: str | None = None) -> None:
        self.store = store
        self.mailbox = mailbox
        self.source = source  # the mailbox's `source`, for leads whose mail names none
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._failures: dict[str, int] = {}  # dedupe key -> failed intakes so far

    def _entry(self, msg: FetchedMessage, parsed: ParsedEmail | None, uidvalidity: int) -> _Entry:
        """The record for one message; raises when a would-be lead cannot become a LeadIn."""
        key = dedupe_key(parsed, msg.raw, msg.message_id)
        where = (self.mailbox, uidvalidity, msg.uid, key)
        if parsed is None:
            reason = f"too-large: {msg.size} bytes (limit {self.max_bytes})"
            return _Entry(EmailIntake(None, *where, skip_reason=reason), (logging.INFO, "inbox: skipped"))
        if parsed.quarantine:
            return _Entry(EmailIntake(None, *where, skip_reason=parsed.skip_reason, raw=msg.raw),
                          (logging.WARNING, "inbox: quarantined"))
        if parsed.skip_reason:
            return _Entry(EmailIntake(None, *where, skip_reason=parsed.skip_reason),
                          (logging.INFO, "inbox: not a lead"))
        item = to_lead_in(parsed)
        item = replace(item, mailbox=self.mailbox, source=item.source or self.source)
        return _Entry(EmailIntake(item, *where))

    def _outcome(self, entry: _Entry, result: IntakeResult | None) -> InboxOutcome:
        """Log, count and name what a durable record became."""
        if entry.note is not None:
            log.log(entry.note[0], entry.note[1], extra={"mailbox": self.mailbox, "reason": entry.intake.skip_reason})
            return recorded_outcome(entry.intake, None)
        if result is None:
            return InboxOutcome.ALREADY_SEEN
        if result.duplicate:
            self.metrics.duplicate("email")
        else:
            self.metrics.lead_received("email")
        return result.outcome

    async def record(self, messages: Sequence[tuple[FetchedMessage, ParsedEmail | None]], uidvalidity: int,
                     stopping: Callable[[], bool]) -> list[InboxOutcome]:
        """Record a fetched batch; the outcome per message, in order.

        Fewer outcomes than messages only when ``stopping`` turned true during the one-by-one
        path: the rest stay above the checkpoint for the next poll.
        """
        try:
            entries: list[_Entry] | None = [self._entry(m, p, uidvalidity) for m, p in messages]
        except Exception:  # noqa: BLE001 - the one-by-one path decides about this message
            entries = None
        if entries is not None:
            try:
                results = await self.store.intake_emails([e.intake for e in entries])
            except Exception as e:
                if is_store_down(e):
                    raise  # the store or the network: stop here, the checkpoint is safe
                log.warning("inbox: batch intake failed; retrying it one message at a time",
                            extra={"mailbox": self.mailbox, "reason": f"{type(e).__name__}: {e}"[:300]})
            else:
                return [self._outcome(e, r) for e, r in zip(entries, results, strict=True)]
        outcomes: list[InboxOutcome] = []
        for msg, parsed in messages:
            if stopping():
                break
            outcomes.append(await self._record_one(msg, parsed, uidvalidity))
        return outcomes

    async def _record_one(self, msg: FetchedMessage, parsed: ParsedEmail | None, uidvalidity: int) -> InboxOutcome:
        entry: _Entry | None = None
        try:
            entry = self._entry(msg, parsed, uidvalidity)
            result = await self._write_one(entry.intake)
        except Exception as e:
            if is_store_down(e) or (entry is not None and entry.intake.item is None):
                raise  # the store, or a skip record that could not be written: retry the poll
            key = dedupe_key(parsed, msg.raw, msg.message_id)
            n = self._failures.get(key, 0) + 1
            self._failures[key] = n
            if n < MAX_INTAKE_FAILURES:
                raise
            reason = f"unparseable: intake failed {n} times: {type(e).__name__}: {e}"[:300]
            entry = _Entry(EmailIntake(None, self.mailbox, uidvalidity, msg.uid, key, skip_reason=reason, raw=msg.raw),
                           (logging.ERROR, "inbox: quarantined after repeated failures"))
            result = await self._write_one(entry.intake)
            self._failures.pop(key, None)
        return self._outcome(entry, result)

    async def _write_one(self, e: EmailIntake) -> IntakeResult | None:
        return await self.store.intake_email(e.item, mailbox=e.mailbox, uidvalidity=e.uidvalidity, uid=e.uid,
                                             dedupe_key=e.dedupe_key, skip_reason=e.skip_reason, raw=e.raw)
