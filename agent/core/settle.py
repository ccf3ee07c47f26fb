"""Settle "uncertain" replies: look them up in the mailbox instead of leaving customers unanswered.

A reply is ``uncertain`` when the process died (or the connection broke) inside SMTP ``DATA``:
the server may or may not have taken it. Every reply carries leadbox's own Message-ID, so the
mailbox it went out from can tell (``SentLookup``, over IMAP):

- found (in the \\Sent folder, or our own copy in INBOX / the self-copy folder): the lead is
  ``replied``; the evidence is its ``reply.reason``;
- not found ``grace`` seconds after the attempt: the server did not take it; the lead goes back to
  the reply step for exactly one more send (the marker ``RESENT`` in ``reply.reason`` says so, and a
  second uncertain outcome is never re-sent: it waits for a human);
- the mailbox cannot be read: nothing changes, the next check tries again.

Leads whose attempt is older than ``max_age`` are no longer looked at (a human decides), except
when one is asked for by id (``leadbox leads settle ID``). One lookup (one IMAP session) serves
every lead of a check.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("leadbox.settle")

# The reply.reason of a lead sent once more after its first attempt was not found.
RESENT = "settle: no copy found in the mailbox after the grace period; sent once more"
# The reply.reason of a lead settled as sent starts with this.
FOUND = "settle: found in the mailbox"


@dataclass(frozen=True, slots=True)
class UncertainReply:
    """A reply the ledger holds as ``uncertain`` (its lead ``failed`` / ``uncertain``)."""

    lead_id: str
    message_id: str
    attempted_at: float  # epoch seconds: when the attempt passed the reply gate
    reply_reason: str | None = None
    mailbox: str | None = None  # the lead's mailbox (inbox.mailboxes): whose account sent the reply


@dataclass(frozen=True, slots=True)
class SentSearch:
    """What one mailbox session found: Message-ID -> folder, for the ids it was asked about.

    ``error`` set: the mailbox could not be read (down, login refused, folder missing), so
    nothing can be concluded from an absence.
    """

    found: dict[str, str] = field(default_factory=dict)
    folders: tuple[str, ...] = ()
    mode: str = ""
    error: str | None = None


class SentLookup(Protocol):
    """Looks replies up by Message-ID in the mailbox they went out from."""

    async def find_sent(self, message_ids: Sequence[str]) -> SentSearch:
        """One bounded session for all ids; never raises for a server problem (``error``)."""
        ...


class SettleLedger(Protocol):
    """The store's part: uncertain replies and their settling."""

    async def uncertain_replies(self, *, since: float, lead_id: str | None = None,
                                limit: int = 200) -> list[UncertainReply]:
        """Uncertain replies attempted at or after ``since`` (or the one of ``lead_id``), oldest first."""
        ...

    async def settle_reply(self, lead_id: str, *, sent: bool, reason: str, now: float) -> bool:
        """Atomically, only while the ledger row is still ``uncertain``: sent -> ledger ``sent``, lead
        ``replied``; not sent -> ledger ``retry``, lead back to the reply step. False when another
        process settled it first."""
        ...


class Outcome(enum.StrEnum):
    REPLIED = "replied"  # found: the lead is replied
    RESENT = "resent"  # not found after the grace period: queued for one more send
    WAITING = "waiting"  # not found yet, inside the grace period
    UNKNOWN = "unknown"  # the mailbox could not be read: tried again next time
    KEPT = "kept"  # not found, but already re-sent once (or too old): left for a human
    GONE = "gone"  # settled meanwhile by another process


@dataclass(frozen=True, slots=True)
class Settled:
    lead_id: str
    outcome: Outcome
    detail: str


def _decide(r: UncertainReply, search: SentSearch, *, now: float, grace: float,
            max_age: float) -> tuple[Outcome, str]:
    if search.error is not None:
        return Outcome.UNKNOWN, search.error
    folder = search.found.get(r.message_id)
    if folder is not None:
        return Outcome.REPLIED, f"{FOUND}: {r.message_id} in {folder!r} ({search.mode})"
    where = ", ".join(repr(f) for f in search.folders) or "the mailbox"
    age = now - r.attempted_at
    if age < grace:
        return Outcome.WAITING, f"not in {where} yet ({age:.0f} s after the attempt; grace {grace:.0f} s)"
    if (r.reply_reason or "").startswith(RESENT):
        return Outcome.KEPT, f"not in {where}, and already sent once more: left for a human"
    if age > max_age:
        return Outcome.KEPT, f"not in {where}; the attempt is older than reply.uncertain_max_age"
    return Outcome.RESENT, f"not in {where} {age:.0f} s after the attempt"


async def settle_uncertain(
    store: SettleLedger, lookup: SentLookup, *, now: float, grace: float, max_age: float,
    lead_id: str | None = None, limit: int = 200, by_mailbox: Mapping[str, SentLookup] | None = None,
) -> list[Settled]:
    """One check: the uncertain replies (all recent ones, or the one of ``lead_id``) looked up and
    settled, one mailbox session per account (``by_mailbox``: the account of the leads of a mailbox
    whose replies go out over its own login; ``lookup`` for the rest). Returns what became of each."""
    since = 0.0 if lead_id is not None else now - max_age
    rows = await store.uncertain_replies(since=since, lead_id=lead_id, limit=limit)
    groups: dict[int, tuple[SentLookup, list[UncertainReply]]] = {}
    for r in rows:
        account = (by_mailbox or {}).get(r.mailbox or "", lookup)
        groups.setdefault(id(account), (account, []))[1].append(r)
    out: list[Settled] = []
    for account, group in groups.values():
        out += await _settle_group(store, account, group, now=now, grace=grace, max_age=max_age)
    return out


async def _settle_group(store: SettleLedger, lookup: SentLookup, rows: list[UncertainReply], *, now: float,
                        grace: float, max_age: float) -> list[Settled]:
    search = await lookup.find_sent([r.message_id for r in rows])
    out: list[Settled] = []
    for r in rows:
        outcome, detail = _decide(r, search, now=now, grace=grace, max_age=max_age)
        if outcome in (Outcome.REPLIED, Outcome.RESENT):
            reason = detail if outcome is Outcome.REPLIED else RESENT
            if not await store.settle_reply(r.lead_id, sent=outcome is Outcome.REPLIED, reason=reason, now=now):
                outcome = Outcome.GONE
            else:
                log.info("reply settled", extra={"lead_id": r.lead_id, "state": outcome.value, "reason": detail})
        out.append(Settled(r.lead_id, outcome, detail))
    if search.error is not None:
        log.warning("settle: mailbox not readable; uncertain replies stay as they are",
                    extra={"reason": f"{search.error} ({len(rows)} waiting)"})
    return out
