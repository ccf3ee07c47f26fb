"""The small interfaces the core owns; adapters at the edges implement them.

The core (pipeline, worker, intake) imports only this module for outside
systems, never aiohttp, imapclient, openai, gspread or smtplib.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any, Protocol

from agent.core.alerts import AlertRow
from agent.core.models import (
    Category,
    Classification,
    EmailIntake,
    Health,
    IntakeResult,
    Lead,
    LeadIn,
    OutgoingMail,
    Priority,
)
from agent.core.queries import LeadEvent, LeadFilter, Overview
from agent.core.settle import SettleLedger
from agent.core.states import GatePrior, LedgerStatus, MirrorStatus, ReplyStatus, State


class Classifier(Protocol):
    """Decides category, summary, language and confidence for one message."""

    name: str

    async def classify(self, text: str, *, subject: str | None = None) -> Classification:
        """Raise TransientError when the backend is unavailable right now."""
        ...

    # Tokens spent so far (0 for a classifier that does not pay per call), for metrics.
    tokens_used: int

    def health(self) -> Health:
        """For /readyz: ``down`` while the backend is cut off (an open circuit breaker)."""
        ...

    def circuit(self) -> str | None:
        """The circuit breaker's state (closed, half-open, open), or None without one."""
        ...

    async def probe(self) -> bool:
        """Does the backend answer again? One cheap call at most (always True offline)."""
        ...

    async def close(self) -> None: ...


class Mirror(Protocol):
    """Mirrors leads to an outside table (Google Sheets)."""

    name: str

    async def start(self) -> None: ...

    def submit(self, lead: Lead) -> asyncio.Future[None]:
        """Queue the lead's row and return at once (idempotent per lead id).

        The future settles when the row is durably in the sheet, or fails with TransientError
        (retry later) or PermanentError (permission, not found). Raises TransientError at once
        when the mirror is not taking rows now (outage cooldown, shutdown).
        """
        ...

    async def mirror(self, lead: Lead) -> None:
        """``submit`` and wait for the outcome (the catch-up job)."""
        ...

    async def known_emails(self) -> set[str]:
        """Normalized emails already present in the sheet (for sheets.import_existing)."""
        ...

    def health(self) -> Health:
        """For /readyz: ok | degraded | permission_denied | not_found | disabled, and rows waiting."""
        ...

    async def update_row(self, lead: Lead) -> bool:
        """Rewrite the lead's row, found by its id column; False when the sheet has no row for it."""
        ...

    async def erase_rows(self, lead_ids: builtins.list[str], email_norm: str) -> int:
        """Delete (or blank) the rows of these leads, by the id column, else by the email column.

        Returns how many rows went. Raises PermanentError when the sheet has neither column.
        """
        ...

    def forget(self, lead_ids: builtins.list[str]) -> None:
        """Drop rows of these leads that are queued in memory and not written yet."""
        ...

    # Set by the daemon: which of these lead ids still exist (no row is written for an erased lead).
    exists: Callable[[builtins.list[str]], Awaitable[set[str]]] | None

    async def close(self) -> None: ...


class MailTransport(Protocol):
    """Sends one fully built reply."""

    name: str
    # True when send() calls before_commit right before its point of no return (SMTP DATA): a
    # reply whose ledger row was left at 'sending' certainly did not go out, so was_sent() is
    # not asked. False (the outbox) when only was_sent() can tell.
    commit_point: bool

    async def send(
        self, msg: OutgoingMail, before_commit: Callable[[], Awaitable[None]] | None = None,
        after_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Raise TransientError (server down, 4xx) or PermanentError (5xx on the recipient).

        ``before_commit`` is awaited right before the point of no return (SMTP DATA,
        the outbox rename): a crash before it means the reply certainly did not go out.
        ``after_commit`` is awaited as soon as the server accepted the message (before
        QUIT), so the window in which a crash leaves the outcome unknown stays small.
        """
        ...

    async def was_sent(self, message_id: str) -> bool | None:
        """True/False when the transport can tell whether a message went out; None when it cannot
        (SMTP: True when the mailbox has it, see reply.settle; else None)."""
        ...

    def health(self) -> Health:
        """For /readyz: whether replies can go out now, and why not."""
        ...

    async def check(self) -> None:
        """Refresh ``health()`` by trying the way out without sending anything (an SMTP login);
        a no-op where ``health()`` is computed live (the outbox)."""
        ...

    async def close(self) -> None:
        """Release connections kept between replies (at shutdown)."""
        ...


class TokenSource(Protocol):
    """An OAuth2 access token for the next XOAUTH2 login (IMAP or SMTP) of one account.

    Here rather than in an adapter because the inbox (IMAP) and the reply transport (SMTP) both
    log in with it, and adapters do not import each other. Calling it may block (a refresh over
    HTTP): async callers run it in a thread. ``invalidate`` forgets the token after a server
    refused it, so the next call refreshes it even if its expiry said it was still good (a token
    can be revoked early).
    """

    def __call__(self) -> str: ...

    def invalidate(self) -> None: ...


class LeadQueue(Protocol):
    """The work queue: intake writes leads, the worker claims them under a lease and writes them back."""

    # True when the worker may write a whole batch's final states in one transaction
    # (``update_many``): a single-process store. A store that fences every write by its lease
    # says False, and the worker writes each lead as it finishes.
    batch_final_updates: bool

    async def intake_many(self, items: Sequence[LeadIn]) -> builtins.list[IntakeResult]:
        """Write intakes durably in one transaction; a known email becomes an interaction."""
        ...

    async def claim(self, limit: int, owner: str, lease_seconds: float) -> builtins.list[Lead]:
        """Lease up to ``limit`` due leads in non-final states for this owner."""
        ...

    async def update(
        self, lead: Lead, *, release: bool = False, next_attempt_at: float | None = None,
        ledger_status: LedgerStatus | None = None,
    ) -> None:
        """Persist a lead's pipeline fields; ``release`` drops the lease; ``next_attempt_at`` (epoch
        seconds) schedules the next try; ``ledger_status`` closes its reply-ledger row atomically."""
        ...

    async def update_many(self, leads: Sequence[tuple[Lead, bool, float | None]]) -> None:
        """(lead, release, next_attempt_at) updates in one transaction; a replied lead's ledger row
        is closed with it. Used when ``batch_final_updates`` is True."""
        ...

    async def retry(self, lead_id: str | None = None, *, all_failed: bool = False) -> int:
        """Put failed leads back in the queue; returns how many."""
        ...

    async def recover(self) -> None:
        """At start: void the leases a killed run of this process left (a no-op where leases of
        other replicas are live work)."""
        ...

    async def set_mirror_status(self, lead_id: str, status: MirrorStatus) -> None: ...

    async def needing_reclassify(self, limit: int) -> builtins.list[Lead]:
        """Final leads decided by a fallback classifier, for the re-classification job."""
        ...

    async def mirror_pending(self, limit: int) -> builtins.list[Lead]:
        """Leads past the mirror step whose row is not in the sheet yet."""
        ...


class ReplyLedger(Protocol):
    """One ledger row per reply, written before sending: the basis of "exactly once"."""

    async def reply_gate(
        self, lead_id: str, to_addr: str, message_id: str, *, window_since: float | None,
        cap_since: float, cap: int, contact: str | None = None,
        day_since: float | None = None, day_cap: int = 0,
    ) -> tuple[str | None, GatePrior]:
        """Known-contact, per-mailbox window and the caps' checks plus the ledger row, atomically.

        ``to_addr`` is the mailbox key (see validation.mailbox_key); ``contact`` the lead's
        normalized email, also checked against known contacts. The caps (``cap`` replies since
        ``cap_since``, ``day_cap`` since ``day_since``; 0 = none) apply to a fresh row and to a
        row left at 'retry' or 'sending' alike: a reply that waited still needs a free slot.

        Returns (skip_reason, prior): prior None for a fresh row, ``GateNote.RESUMED`` when a
        row that waited or stopped before its point of no return is reset to 'sending',
        ``GateNote.ELSEWHERE`` when a concurrent attempt holds the row, else the row's status
        (sent, committing, uncertain). Over a cap the reason is 'reply-cap' (hourly) or
        'reply-cap-day' and the ledger is left as it was.
        """
        ...

    async def reply_cap_opens_at(self, since: float, cap: int, exclude_lead: str = "") -> float | None:
        """When the cap-th newest counted reply since ``since`` was gated (epoch), or None.

        A cap over the window starting at ``since`` frees a slot when that reply leaves it.
        """
        ...

    async def reply_done(self, lead_id: str, status: LedgerStatus) -> None: ...

    async def add_known_emails(self, emails: Sequence[str]) -> int:
        """Mark addresses as known contacts (imported from a sheet): never auto-replied."""
        ...


class InboxLedger(Protocol):
    """One record per inbox message (by dedupe key) and each mailbox's checkpoint."""

    async def intake_emails(self, batch: Sequence[EmailIntake]) -> builtins.list[IntakeResult | None]:
        """Record each message and advance the mailboxes' checkpoints, all in one transaction.

        A dedupe key seen before (or earlier in the batch) is ignored: None in its place. An
        entry without ``item`` records a skipped or (with ``raw``) quarantined message.
        """
        ...

    async def intake_email(
        self, item: LeadIn | None, *, mailbox: str, uidvalidity: int, uid: int,
        dedupe_key: str, skip_reason: str | None = None, raw: bytes | None = None,
    ) -> IntakeResult | None:
        """One message as ``intake_emails`` records it (the poller's one-by-one path, used
        when a batch cannot be written as a whole)."""
        ...

    async def get_checkpoint(self, mailbox: str) -> tuple[int, int] | None:
        """(uidvalidity, last processed uid) for a mailbox, or None."""
        ...

    async def set_checkpoint(self, mailbox: str, uidvalidity: int, uid: int) -> None: ...


class LeadReads(Protocol):
    """What the API, the CLI and the metrics read."""

    async def get(self, lead_id: str) -> Lead | None: ...

    async def list(
        self, *, state: State | None = None, category: Category | None = None,
        priority: Priority | None = None, limit: int = 50, cursor: str | None = None,
        reply_status: ReplyStatus | None = None, mailbox: str | None = None,
    ) -> tuple[builtins.list[Lead], str | None]: ...

    async def counts(self) -> dict[str, int]:
        """Leads per state (for metrics and queue depth)."""
        ...


class Leadership(Protocol):
    """Leadership for singleton jobs (one inbox poller per mailbox among replicas)."""

    async def try_acquire_leadership(self, name: str) -> bool:
        """True while this process leads ``name``; call before each turn (always True for a
        single-process store)."""
        ...

    async def release_leadership(self, name: str) -> None: ...


class InboxStore(InboxLedger, Leadership, Protocol):
    """What the inbox poller needs: the inbox ledger, and leadership of its mailbox."""


class ConsoleData(Protocol):
    """What the console reads and writes: filtered pages, figures, people's actions, users."""

    async def console_page(self, f: LeadFilter, limit: int, cursor: str | None = None,
                           ) -> tuple[builtins.list[Lead], str | None]: ...

    async def index_search(self, limit: int = 2000) -> int:
        """Bring the full-text index up to date by at most ``limit`` leads; returns how many it added."""
        ...

    async def console_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Leads per state and per category, over the whole store."""
        ...

    async def console_overview(self, since: date) -> Overview: ...

    async def lead_events(self, lead_id: str) -> builtins.list[LeadEvent]: ...

    async def add_event(self, lead_id: str, kind: str, actor: str, detail: dict[str, Any]) -> None: ...

    async def correct(self, lead_id: str, category: Category, priority: Priority, by: str) -> bool:
        """Set category and priority, recording who, when and the values before the first correction."""
        ...

    async def reopen_for_reply(self, lead_id: str) -> bool:
        """A skipped lead with no reply sent goes back to the reply step; False otherwise."""
        ...

    async def mark_handled(self, lead_id: str, by: str) -> bool: ...

    async def assign(self, lead_id: str, user: str | None, by: str) -> bool: ...

    async def corrections(self) -> builtins.list[tuple[Lead, dict[str, Any]]]: ...

    async def user_hash(self, name: str) -> str | None: ...

    async def user_names(self) -> builtins.list[str]: ...

    async def user_put(self, name: str, password_hash: str) -> bool: ...

    async def user_delete(self, name: str) -> bool: ...


class PersonalData(Protocol):
    """A person's data: found by their address's dedupe key, exported, erased or anonymized."""

    async def person_leads(self, email_norm: str, email: str) -> builtins.list[Lead]:
        """Every lead of the person (their address's lead and honeypot posts made with it)."""
        ...

    async def person_records(self, lead_ids: builtins.list[str]) -> dict[str, Any]:
        """Reply ledger rows and people's actions of these leads."""
        ...

    async def leases_held(self, lead_ids: builtins.list[str]) -> bool:
        """True while a worker is processing any of these leads."""
        ...

    async def existing_ids(self, lead_ids: builtins.list[str]) -> set[str]: ...

    async def erase_person(self, email_norm: str, email: str) -> dict[str, int]:
        """Delete the person's leads and what carries their address or text; counts per place."""
        ...

    async def truncate_wal(self) -> None: ...

    async def erased_keys(self, keys: builtins.list[str]) -> set[str]: ...

    async def people_before(self, cutoff: float, limit: int = 500) -> builtins.list[tuple[str, str]]:
        """(email_norm, email) of people with a lead that arrived before ``cutoff``."""
        ...

    async def anonymize_person(self, email_norm: str, email: str) -> builtins.list[str]: ...

    async def add_pending_erasure(self, email_norm: str, lead_ids: builtins.list[str]) -> None: ...

    async def pending_erasures(self) -> builtins.list[tuple[int, str, builtins.list[str], float]]: ...

    async def done_erasure(self, erasure_id: int) -> None: ...


class AlertLedger(Protocol):
    """Team alerts: one row per lead and channel (pending -> sent | failed), and the digest's last run."""

    async def enqueue_alerts(self, lead_id: str, channels: Sequence[str], now: float) -> None:
        """Idempotent: a (lead, channel) already there is left as it is."""
        ...

    async def alerts_due(self, now: float, limit: int) -> builtins.list[AlertRow]: ...

    async def alert_result(self, row: AlertRow) -> None: ...

    async def alerts_of(self, lead_id: str) -> builtins.list[AlertRow]: ...

    async def digest_last(self) -> float | None: ...

    async def set_digest_last(self, ts: float) -> None: ...

    async def leads_between(self, since: float, until: float, limit: int) -> builtins.list[Lead]: ...


class Store(LeadQueue, ReplyLedger, SettleLedger, InboxLedger, LeadReads, Leadership, ConsoleData, PersonalData,
            AlertLedger, Protocol):
    """Durable leads and their queue, the reply and inbox ledgers, reads, leadership and the console's data."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the store cannot be reached."""
        ...


class PipelineMetrics(Protocol):
    """What the worker and the pipeline count (``agent.app.metrics.Metrics`` in the daemon)."""

    def observe_step(self, step: str, seconds: float) -> None: ...

    def retry(self, step: str) -> None: ...

    def failure(self, step: str) -> None: ...

    def lead_processed(self, outcome: str, category: str | None) -> None: ...

    def reply_sent(self, transport: str) -> None: ...

    def reply_failed(self) -> None: ...


class IntakeMetrics(Protocol):
    """What the intakes count."""

    def lead_received(self, intake: str) -> None: ...

    def duplicate(self, intake: str) -> None: ...

    def inbox_polled(self, mailbox: str, when: float | None = None) -> None: ...

    def inbox_message(self, mailbox: str, outcome: str) -> None: ...

    def set_adapter_up(self, adapter: str, up: bool) -> None: ...


class NoMetrics:
    """Counts nothing: the metrics of a pipeline or intake run without a registry (tools, tests)."""

    def observe_step(self, step: str, seconds: float) -> None:
        pass

    def retry(self, step: str) -> None:
        pass

    def failure(self, step: str) -> None:
        pass

    def lead_processed(self, outcome: str, category: str | None) -> None:
        pass

    def reply_sent(self, transport: str) -> None:
        pass

    def reply_failed(self) -> None:
        pass

    def lead_received(self, intake: str) -> None:
        pass

    def duplicate(self, intake: str) -> None:
        pass

    def inbox_polled(self, mailbox: str, when: float | None = None) -> None:
        pass

    def inbox_message(self, mailbox: str, outcome: str) -> None:
        pass

    def set_adapter_up(self, adapter: str, up: bool) -> None:
        pass
