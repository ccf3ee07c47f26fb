"""Every state and outcome leadbox records, as StrEnums, and the groups derived from them.

Stores write these values as text, the API shows them, filters validate against them. The
groups below (final states, ledger rows that count as a reply, ...) are the only place a set
of values is spelled out: SQL ``IN`` lists, query validators and the worker derive from them.
A StrEnum compares equal to its text, so ``lead.state == "replied"`` keeps working.
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    """Where a lead is in the pipeline; ``replied``, ``skipped`` and ``failed`` are final."""

    RECEIVED = "received"
    CLASSIFIED = "classified"
    SAVED = "saved"
    MIRRORED = "mirrored"
    REPLIED = "replied"
    SKIPPED = "skipped"
    FAILED = "failed"


# Tuples, in declaration order, so SQL lists built from them read the same every time.
FINAL_STATES: tuple[State, ...] = (State.REPLIED, State.SKIPPED, State.FAILED)
ACTIVE_STATES: tuple[State, ...] = tuple(s for s in State if s not in FINAL_STATES)
# States past ``saved``: the mirror step has run, so the mirror catch-up job may look at them.
PAST_MIRROR_STEP: tuple[State, ...] = (State.MIRRORED, *FINAL_STATES)


class ReplyStatus(enum.StrEnum):
    """The lead's reply as the API shows it (``reply.status``)."""

    PENDING = "pending"  # not decided yet
    WAITING = "waiting"  # over a reply cap, or the transport paused by the server's limits
    SENT = "sent"
    SKIPPED = "skipped"  # no reply, with ``reply.reason``
    UNCERTAIN = "uncertain"  # interrupted at the point of no return: never sent again


class LedgerStatus(enum.StrEnum):
    """A row of the reply ledger, written before the reply is sent (exactly once)."""

    SENDING = "sending"  # written by the gate; nothing left the process yet
    COMMITTING = "committing"  # right before the transport's point of no return (SMTP DATA)
    SENT = "sent"
    UNCERTAIN = "uncertain"  # a crash or error during the commit: outcome unknown
    RETRY = "retry"  # the send failed before its point of no return: send again later


# A row in these states was stopped before its point of no return: a new attempt may resume it.
LEDGER_RESUMABLE: tuple[LedgerStatus, ...] = (LedgerStatus.SENDING, LedgerStatus.RETRY)
# Rows that count as "a reply went (or may have gone) out" for the per-mailbox window and the cap.
LEDGER_COUNTED: tuple[LedgerStatus, ...] = (
    LedgerStatus.SENT, LedgerStatus.SENDING, LedgerStatus.COMMITTING, LedgerStatus.UNCERTAIN)


class GateNote(enum.StrEnum):
    """What the reply gate says besides a ledger status it found."""

    RESUMED = "resumed"  # an earlier attempt stopped before its point of no return: row reset to sending
    ELSEWHERE = "sending-elsewhere"  # a concurrent attempt wrote the row first


# The gate's second answer: None for a fresh ledger row, else a prior status or a note.
GatePrior = LedgerStatus | GateNote | None


class MirrorStatus(enum.StrEnum):
    """The lead's row in the sheet."""

    PENDING = "pending"  # not written yet (or deferred: Google slow or down)
    DONE = "done"
    DISABLED = "disabled"  # no mirror configured
    ERROR = "error"  # refused (permission, sheet not found): retried by the catch-up job


# Rows the catch-up job writes again.
MIRROR_TO_RETRY: tuple[MirrorStatus, ...] = (MirrorStatus.PENDING, MirrorStatus.ERROR)


class IntakeStatus(enum.StrEnum):
    """What ``POST /leads`` answers for a stored intake (``status`` in its JSON)."""

    RECEIVED = "received"  # a new lead (202)
    DUPLICATE = "duplicate"  # a known address: kept as an interaction on its lead (200)


class InboxOutcome(enum.StrEnum):
    """What became of one inbox message (the inbox ledger's ``outcome``, poll summaries, metrics)."""

    LEAD = "lead"
    INTERACTION = "interaction"  # a known sender: kept on the existing lead
    SKIPPED = "skipped"  # not a lead (automatic mail, too large, ...), with a reason
    QUARANTINED = "quarantined"  # unparseable: raw bytes kept
    ALREADY_SEEN = "already_seen"  # its dedupe key was recorded before: nothing written
    PENDING = "pending"  # PostgreSQL only: the key is claimed, the record not written yet


# Outcomes that make a lead or an interaction: they get ``inbox.after`` and wake the worker.
INBOX_TAKEN: tuple[InboxOutcome, ...] = (InboxOutcome.LEAD, InboxOutcome.INTERACTION)


class HealthState(enum.StrEnum):
    """An adapter's state as ``/readyz`` reports it."""

    OK = "ok"
    UNKNOWN = "unknown"  # not tried yet (no reply sent since start)
    PAUSED = "paused"  # held back on purpose (the mail server's sending limits), resumes by itself
    CONNECTING = "connecting"  # not connected yet (first contact, or reconnecting)
    DEGRADED = "degraded"  # working around a problem (a deferred sheet row, ...)
    DISABLED = "disabled"  # not configured
    NOT_LEADER = "not_leader"  # another replica does this job
    STOPPED = "stopped"
    DOWN = "down"
    NEEDS_CREDENTIALS = "needs_credentials"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"


# States that make /readyz answer 503: a human or the other side must act.
UNREADY: tuple[HealthState, ...] = (
    HealthState.DOWN, HealthState.NEEDS_CREDENTIALS, HealthState.PERMISSION_DENIED, HealthState.NOT_FOUND)
