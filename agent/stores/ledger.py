"""The reply gate, written once for both engines: the stateful checks and the ledger row.

Each store opens a transaction and hands it over as a ``LedgerTx`` (SQL with ``?`` placeholders;
PostgreSQL's adapter turns them into ``%s`` and locks the ledger row with ``FOR UPDATE``). The
gate decides, in that one transaction:

1. A lead whose ledger row is final-ish (sent, committing, uncertain) already passed the gate:
   its status is returned.
2. With ``checks``: a fresh lead meets the known-contact and per-mailbox window checks; a fresh
   lead and a row left at ``sending``/``retry`` (a reply that waited or was interrupted) alike
   meet the hourly and daily caps (each cap query reads at most ``cap`` rows).
3. A row left at ``sending``/``retry`` is reset to ``sending`` with a fresh time (``resumed``);
   otherwise a ``sending`` row is written, and losing that insert to a concurrent attempt
   answers ``sending-elsewhere``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from agent.core.states import LEDGER_RESUMABLE, GateNote, GatePrior, LedgerStatus, ReplyStatus, State
from agent.errors import PermanentError
from agent.stores.common import COUNTED_REPLY

# The known-contact, window and cap checks stop a reply with these reasons (lead.skip_reason).
KNOWN_CONTACT = "known-contact"
REPLY_WINDOW = "reply-window"
REPLY_CAP = "reply-cap"
REPLY_CAP_DAY = "reply-cap-day"


class LedgerTx(Protocol):
    """One open transaction of a store, as the gate needs it."""

    # Appended to the SELECT of the ledger row: " FOR UPDATE" on PostgreSQL, "" on SQLite
    # (whose write transaction already excludes every other writer).
    for_update: str

    async def one(self, sql: str, args: Sequence[Any]) -> Sequence[Any] | None:
        """The first row of a query, or None."""
        ...

    async def run(self, sql: str, args: Sequence[Any]) -> int:
        """Execute a statement; the number of rows it changed."""
        ...


async def cap_row(tx: LedgerTx, since: float, cap: int, exclude_lead: str) -> float | None:
    """``created_at`` of the cap-th newest counted reply since ``since`` (reads at most cap rows):
    None while the cap is not reached; else the cap frees a slot when that reply leaves the window."""
    row = await tx.one(
        f"SELECT created_at FROM replies WHERE created_at >= ? AND {COUNTED_REPLY} AND lead_id != ? "
        "ORDER BY created_at DESC LIMIT 1 OFFSET ?", (since, exclude_lead, cap - 1))
    return None if row is None else float(row[0])


async def reply_gate(
    tx: LedgerTx, lead_id: str, to_addr: str, message_id: str, *, now: float,
    window_since: float | None = None, cap_since: float = 0.0, cap: int = 0,
    contact: str | None = None, day_since: float | None = None, day_cap: int = 0, checks: bool = True,
) -> tuple[str | None, GatePrior]:
    """(skip_reason, prior): see the module docstring. ``checks`` False only records the intent."""
    row = await tx.one(f"SELECT status FROM replies WHERE lead_id = ?{tx.for_update}", (lead_id,))
    if row is not None:
        try:
            status = LedgerStatus(row[0])
        except ValueError:  # a ledger state this code does not know: never guess "sent"
            raise PermanentError(f"reply ledger in unexpected state {row[0]!r}") from None
        if status not in LEDGER_RESUMABLE:
            return None, status
    if checks:
        if row is None:
            if await tx.one("SELECT 1 FROM known_emails WHERE email_norm IN (?, ?)",
                            (to_addr, contact or to_addr)) is not None:
                return KNOWN_CONTACT, None
            if window_since is not None and await tx.one(
                    f"SELECT 1 FROM replies WHERE to_addr = ? AND created_at >= ? AND {COUNTED_REPLY} LIMIT 1",
                    (to_addr, window_since)) is not None:
                return REPLY_WINDOW, None
        # The caps apply to a row that waited (or was interrupted) as to a fresh one.
        if cap and await cap_row(tx, cap_since, cap, lead_id) is not None:
            return REPLY_CAP, None
        if day_cap and day_since is not None and await cap_row(tx, day_since, day_cap, lead_id) is not None:
            return REPLY_CAP_DAY, None
    if row is not None:  # waited, or an earlier attempt stopped before its point of no return
        await tx.run("UPDATE replies SET status = ?, message_id = ?, created_at = ? WHERE lead_id = ?",
                     (LedgerStatus.SENDING.value, message_id, now, lead_id))
        return None, GateNote.RESUMED
    inserted = await tx.run(
        "INSERT INTO replies (lead_id, to_addr, message_id, status, created_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (lead_id) DO NOTHING",
        (lead_id, to_addr, message_id, LedgerStatus.SENDING.value, now))
    if not inserted:  # a concurrent attempt wrote it first (PostgreSQL; SQLite serializes writers)
        return None, GateNote.ELSEWHERE
    return None, None


def replies_since_query(to_addr: str | None, since: float, exclude_lead: str) -> tuple[str, tuple[Any, ...]]:
    """Replies (sent or possibly sent) to ``to_addr``, or to anyone, since a time: SQL and args."""
    q = f"SELECT count(*) FROM replies WHERE created_at >= ? AND {COUNTED_REPLY} AND lead_id != ?"
    args: tuple[Any, ...] = (since, exclude_lead)
    if to_addr is not None:
        q += " AND to_addr = ?"
        args = (*args, to_addr)
    return q, args


# Settling uncertain replies (agent.core.settle): the rows to look up, and the two outcomes.
UNCERTAIN_SQL = (
    "SELECT r.lead_id, r.message_id, r.created_at, l.reply_reason, l.mailbox FROM replies r "
    "JOIN leads l ON l.id = r.lead_id "
    f"WHERE r.status = '{LedgerStatus.UNCERTAIN.value}' AND l.state = '{State.FAILED.value}' "
    f"AND l.reply_status = '{ReplyStatus.UNCERTAIN.value}' AND r.created_at >= ?")
_FAILED = f"state = '{State.FAILED.value}' AND reply_status = '{ReplyStatus.UNCERTAIN.value}'"


SETTLED_EVENT = "reply_settled"  # lead_events.kind of a settled reply


def uncertain_query(since: float, lead_id: str | None, limit: int) -> tuple[str, tuple[Any, ...]]:
    if lead_id is not None:
        return UNCERTAIN_SQL + " AND r.lead_id = ? ORDER BY r.created_at LIMIT ?", (since, lead_id, limit)
    return UNCERTAIN_SQL + " ORDER BY r.created_at LIMIT ?", (since, limit)


async def settle_reply(tx: LedgerTx, lead_id: str, *, sent: bool, reason: str, now: float) -> bool:
    """Only while the ledger row is still ``uncertain``: found -> sent / replied; not found ->
    retry / back to the reply step (``mirrored``), due now. False when settled elsewhere first."""
    row = await tx.one(f"SELECT created_at FROM replies WHERE lead_id = ? AND status = ?{tx.for_update}",
                       (lead_id, LedgerStatus.UNCERTAIN.value))
    if row is None:
        return False
    if sent:
        changed = await tx.run(
            f"UPDATE leads SET state = '{State.REPLIED.value}', reply_status = '{ReplyStatus.SENT.value}', "
            "reply_reason = ?, replied_at = ?, last_error = NULL, updated_at = ? WHERE id = ? AND " + _FAILED,
            (reason, float(row[0]), now, lead_id))
        status = LedgerStatus.SENT
    else:
        changed = await tx.run(
            f"UPDATE leads SET state = '{State.MIRRORED.value}', reply_status = '{ReplyStatus.PENDING.value}', "
            "reply_reason = ?, last_error = NULL, attempts = 0, next_attempt_at = ?, lease_owner = NULL, "
            "lease_until = NULL, updated_at = ? WHERE id = ? AND " + _FAILED, (reason, now, now, lead_id))
        status = LedgerStatus.RETRY
    if changed != 1:  # the lead moved meanwhile (a manual retry): leave the ledger as it is
        return False
    await tx.run("UPDATE replies SET status = ?, sent_at = ? WHERE lead_id = ?", (status.value, now, lead_id))
    # The lead's timeline (the console's lead page) keeps the evidence.
    detail = {"outcome": "replied" if sent else "sent-again", "evidence": reason}
    await tx.run("INSERT INTO lead_events (lead_id, at, kind, actor, detail) VALUES (?, ?, ?, ?, ?)",
                 (lead_id, now, SETTLED_EVENT, "settle", json.dumps(detail, ensure_ascii=False)))
    return True
