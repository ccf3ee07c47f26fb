"""The small interfaces the core owns; adapters at the edges implement them.

The core (pipeline, worker, intake) imports only this module for outside
systems, never aiohttp, imapclient, openai, gspread or smtplib.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from agent.core.models import Classification, IntakeResult, Lead, LeadIn, OutgoingMail


class Classifier(Protocol):
    """Decides category, summary, language and confidence for one message."""

    name: str

    async def classify(self, text: str, *, subject: str | None = None) -> Classification:
        """Raise TransientError when the backend is unavailable right now."""
        ...

    def state(self) -> dict[str, Any]:
        """Adapter state for /readyz (e.g. circuit breaker)."""
        ...


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

    def state(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class MailTransport(Protocol):
    """Sends one fully built reply."""

    name: str

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
        """True/False when the transport can tell whether a message went out; None when it cannot."""
        ...

    def state(self) -> dict[str, Any]: ...

    async def close(self) -> None:
        """Release connections kept between replies (at shutdown)."""
        ...


class Store(Protocol):
    """Durable leads, interactions, the work queue, reply ledger and inbox checkpoints."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the store cannot be reached."""
        ...

    async def intake_many(self, items: Sequence[LeadIn]) -> builtins.list[IntakeResult]:
        """Write intakes durably in one transaction; a known email becomes an interaction."""
        ...

    async def intake_email(
        self, item: LeadIn | None, *, mailbox: str, uidvalidity: int, uid: int,
        dedupe_key: str, skip_reason: str | None = None, raw: bytes | None = None,
    ) -> IntakeResult | None:
        """Record one inbox message and advance the mailbox checkpoint in the same transaction.

        ``dedupe_key`` is the Message-ID (or a hash of the raw message): a key seen before
        is ignored (returns None). ``item`` None with ``skip_reason`` records a skipped or
        quarantined message (``raw`` kept for quarantine).
        """
        ...

    async def get_checkpoint(self, mailbox: str) -> tuple[int, int] | None:
        """(uidvalidity, last processed uid) for a mailbox, or None."""
        ...

    async def set_checkpoint(self, mailbox: str, uidvalidity: int, uid: int) -> None: ...

    async def claim(self, limit: int, owner: str, lease_seconds: float) -> builtins.list[Lead]:
        """Lease up to ``limit`` due leads in non-final states for this owner."""
        ...

    async def update(
        self, lead: Lead, *, release: bool = False, next_attempt_at: float | None = None,
        ledger_status: str | None = None,
    ) -> None:
        """Persist a lead's pipeline fields; ``release`` drops the lease; ``next_attempt_at`` (epoch
        seconds) schedules the next try; ``ledger_status`` closes its reply-ledger row atomically."""
        ...

    async def set_mirror_status(self, lead_id: str, status: str) -> None: ...

    async def get_by_email(self, email_norm: str) -> Lead | None: ...

    async def queue_depth(self) -> int: ...

    async def is_known_contact(self, email_norm: str) -> bool: ...

    async def try_acquire_leadership(self, name: str) -> bool:
        """Leadership for singleton jobs (the inbox poll); always True for a single-process store."""
        ...

    async def release_leadership(self, name: str) -> None: ...

    async def get(self, lead_id: str) -> Lead | None: ...

    async def list(
        self, *, state: str | None = None, category: str | None = None,
        priority: str | None = None, limit: int = 50, cursor: str | None = None,
        reply_status: str | None = None,
    ) -> tuple[builtins.list[Lead], str | None]: ...

    async def retry(self, lead_id: str | None = None, *, all_failed: bool = False) -> int:
        """Put failed leads back in the queue; returns how many."""
        ...

    async def reply_begin(self, lead_id: str, to_addr: str, message_id: str) -> str | None:
        """Record the intent to send a reply.

        Returns None for a fresh row, "resumed" when an earlier attempt stopped before the
        point of no return (row reset to 'sending'), else the final prior status
        ("sent", "committing", "uncertain").
        """
        ...

    async def reply_gate(
        self, lead_id: str, to_addr: str, message_id: str, *, window_since: float | None,
        cap_since: float, cap: int, contact: str | None = None,
        day_since: float | None = None, day_cap: int = 0,
    ) -> tuple[str | None, str | None]:
        """Known-contact, per-mailbox window and global cap checks plus the ledger row, atomically.

        ``to_addr`` is the mailbox key (see validation.mailbox_key); ``contact`` the lead's
        normalized email, also checked against known contacts. The caps (``cap`` replies since
        ``cap_since``, ``day_cap`` since ``day_since``; 0 = none) apply to a fresh row and to a
        row left at 'retry' or 'sending' alike: a reply that waited still needs a free slot.

        Returns (skip_reason, prior) where prior is as reply_begin's; over a cap the reason is
        'reply-cap' (hourly) or 'reply-cap-day' and the ledger is left as it was.
        """
        ...

    async def reply_cap_opens_at(self, since: float, cap: int, exclude_lead: str = "") -> float | None:
        """When the cap-th newest counted reply since ``since`` was gated (epoch), or None.

        A cap over the window starting at ``since`` frees a slot when that reply leaves it.
        """
        ...

    async def reply_done(self, lead_id: str, status: str) -> None: ...

    async def replies_since(self, to_addr: str | None, since: datetime) -> int:
        """Auto-replies sent to ``to_addr`` (or to anyone when None) since a time."""
        ...

    async def counts(self) -> dict[str, int]:
        """Leads per state (for metrics and queue depth)."""
        ...

    async def needing_reclassify(self, limit: int) -> builtins.list[Lead]: ...

    async def mirror_pending(self, limit: int) -> builtins.list[Lead]:
        """Leads past ``saved`` whose mirror has not succeeded yet."""
        ...

    async def add_known_emails(self, emails: Sequence[str]) -> int:
        """Mark addresses as known contacts (imported from a sheet): never auto-replied."""
        ...
