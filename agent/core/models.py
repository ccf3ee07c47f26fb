"""Value types shared by the core and the adapters. No I/O here."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.core.states import (
    FINAL_STATES,
    UNREADY,
    HealthState,
    InboxOutcome,
    IntakeStatus,
    MirrorStatus,
    ReplyStatus,
    State,
)

__all__ = ["FINAL_STATES", "Category", "Classification", "EmailIntake", "Health", "Interaction", "IntakeResult",
           "Lead", "LeadIn", "OutgoingMail", "Priority", "State", "checkpoint_steps",
           "recorded_outcome"]


class Category(enum.StrEnum):
    SALES = "sales"
    SUPPORT = "support"
    INFO = "info"
    SPAM = "spam"


class Priority(enum.StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True, slots=True)
class Classification:
    """What a classifier decided about one message, and who decided it."""

    category: Category
    summary: str
    language: str  # ISO 639-1, e.g. "es", "en", "pt"
    confidence: float  # 0..1
    classifier: str  # "local", "openai", ...
    # True when the preferred backend was unavailable and a fallback decided:
    # a scheduler job re-classifies the lead later (never re-sending a reply).
    needs_reclassify: bool = False


@dataclass(slots=True)
class LeadIn:
    """A validated contact from any intake, before it is stored."""

    name: str
    email: str  # as given (trimmed)
    email_norm: str  # dedupe key
    message: str
    intake: str = "webhook"  # "webhook" | "email"
    phone: str | None = None
    company: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    message_id: str | None = None  # RFC 5322 Message-ID of an email lead
    in_reply_to: str | None = None
    references: str | None = None
    # Text for the classifier (quotes and signatures stripped); None -> message.
    clean_text: str | None = None
    # Headers that matter for loop protection of the reply (lower-cased names).
    auto_headers: dict[str, str] = field(default_factory=dict)
    # Set when the intake already knows the lead gets no processing (a filled honeypot):
    # it is stored final, as skipped with this reason.
    skip_reason: str | None = None
    mailbox: str | None = None  # the mailbox (its name) an email lead came in through


@dataclass(slots=True)
class Lead:
    """A stored lead, as the worker and the API see it."""

    id: str
    name: str
    email: str
    email_norm: str
    message: str
    intake: str
    state: State
    created_at: datetime
    updated_at: datetime
    phone: str | None = None
    company: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: str | None = None
    clean_text: str | None = None
    auto_headers: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    last_error: str | None = None
    category: Category | None = None
    summary: str | None = None
    language: str | None = None
    confidence: float | None = None
    classifier: str | None = None
    needs_reclassify: bool = False
    priority: Priority | None = None
    priority_rule: str | None = None
    mirror_status: MirrorStatus = MirrorStatus.PENDING
    reply_status: ReplyStatus = ReplyStatus.PENDING
    reply_reason: str | None = None
    reply_message_id: str | None = None
    replied_at: datetime | None = None
    skip_reason: str | None = None
    next_attempt_at: datetime | None = None  # when the worker takes it next (a waiting reply)
    interactions: list[Interaction] = field(default_factory=list)
    mailbox: str | None = None  # the mailbox an email lead came in through (None for the webhook)
    # Set by people in the console: {"category", "priority", "by", "at", "previous": {...}}.
    correction: dict[str, Any] | None = None
    assigned_to: str | None = None
    handled_by: str | None = None

    @property
    def text_for_classifier(self) -> str:
        return self.clean_text or self.message


@dataclass(slots=True)
class Interaction:
    """A later contact from a known lead: kept, never answered again."""

    id: int
    lead_id: str
    intake: str
    message: str
    received_at: datetime
    message_id: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """Outcome of writing one intake: a new lead or a repeat of a known one."""

    lead_id: str
    duplicate: bool

    @property
    def status(self) -> IntakeStatus:
        return IntakeStatus.DUPLICATE if self.duplicate else IntakeStatus.RECEIVED

    @property
    def outcome(self) -> InboxOutcome:
        return InboxOutcome.INTERACTION if self.duplicate else InboxOutcome.LEAD


@dataclass(frozen=True, slots=True)
class EmailIntake:
    """One inbox message for ``intake_emails``: the arguments of one ``intake_email`` call.

    ``item`` None records a skipped message (``skip_reason``) or, with ``raw``,
    a quarantined one; ``dedupe_key`` is its Message-ID or a hash of the bytes.
    """

    item: LeadIn | None
    mailbox: str
    uidvalidity: int
    uid: int
    dedupe_key: str
    skip_reason: str | None = None
    raw: bytes | None = None


def recorded_outcome(entry: EmailIntake, result: IntakeResult | None) -> InboxOutcome:
    """What the inbox ledger records for ``entry`` once written: ``result`` is its intake's answer."""
    if result is not None:
        return result.outcome
    return InboxOutcome.QUARANTINED if entry.raw is not None else InboxOutcome.SKIPPED


def checkpoint_steps(batch: Sequence[EmailIntake]) -> list[tuple[str, int, int]]:
    """The checkpoint writes that ``intake_email`` one by one over ``batch`` amounts to.

    Each call moves its mailbox's checkpoint to max(last uid, uid) under the same
    UIDVALIDITY and to the uid itself under a new one. So per mailbox, a run of
    consecutive messages with one UIDVALIDITY equals a single call with the run's
    highest uid: (mailbox, uidvalidity, uid) per run, in order.
    """
    steps: list[tuple[str, int, int]] = []
    current: dict[str, int] = {}  # mailbox -> index of its open run in steps
    for e in batch:
        i = current.get(e.mailbox)
        if i is not None and steps[i][1] == e.uidvalidity:
            if e.uid > steps[i][2]:
                steps[i] = (e.mailbox, e.uidvalidity, e.uid)
            continue
        current[e.mailbox] = len(steps)
        steps.append((e.mailbox, e.uidvalidity, e.uid))
    return steps


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A reply ready to go: envelope addresses and the RFC 5322 bytes (CRLF line endings)."""

    message_id: str
    from_addr: str
    to_addr: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Health:
    """What an adapter says about itself for ``/readyz``: a state, why, and details for humans."""

    state: HealthState
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state not in UNREADY

    def as_json(self) -> dict[str, Any]:
        """``{"state", "reason", ...details}``: the shape ``/readyz`` shows under ``checks``."""
        return {"state": self.state.value, "reason": self.reason, **self.details}
