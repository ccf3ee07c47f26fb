"""SQLite: the reply ledger (through the shared gate in ``agent.stores.ledger``) and known contacts."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from agent.core.settle import UncertainReply
from agent.core.states import GatePrior, LedgerStatus
from agent.stores import ledger
from agent.stores.sqlite.connection import SqliteBase

T = TypeVar("T")


class _Tx:
    """A SQLite write transaction as the gate's ``LedgerTx`` (calls run inline, never suspend)."""

    for_update = ""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def one(self, sql: str, args: Sequence[Any]) -> Sequence[Any] | None:
        row = self.db.execute(sql, args).fetchone()
        return None if row is None else tuple(row)

    async def run(self, sql: str, args: Sequence[Any]) -> int:
        return self.db.execute(sql, args).rowcount


def _inline(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the gate over ``_Tx``) inside a sync transaction."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("a SQLite transaction step suspended; it must run inline")


class SqliteReplies(SqliteBase):
    """The ledger row is written before a reply is sent; the gate's checks read it."""

    async def reply_gate(
        self, lead_id: str, to_addr: str, message_id: str, *, window_since: float | None,
        cap_since: float, cap: int, contact: str | None = None,
        day_since: float | None = None, day_cap: int = 0,
    ) -> tuple[str | None, GatePrior]:
        """The reply's stateful checks and the ledger row, in one transaction (``agent.stores.ledger``)."""
        def work(db: sqlite3.Connection) -> tuple[str | None, GatePrior]:
            return _inline(ledger.reply_gate(
                _Tx(db), lead_id, to_addr, message_id, now=time.time(), window_since=window_since,
                cap_since=cap_since, cap=cap, contact=contact, day_since=day_since, day_cap=day_cap))
        return await self._run(self._tx, work)

    async def reply_begin(self, lead_id: str, to_addr: str, message_id: str) -> GatePrior:
        """Only the ledger part of the gate, no checks (for tools and tests)."""
        def work(db: sqlite3.Connection) -> GatePrior:
            return _inline(ledger.reply_gate(_Tx(db), lead_id, to_addr, message_id, now=time.time(),
                                             checks=False))[1]
        return await self._run(self._tx, work)

    async def reply_cap_opens_at(self, since: float, cap: int, exclude_lead: str = "") -> float | None:
        return await self._run(lambda: _inline(ledger.cap_row(_Tx(self.db), since, cap, exclude_lead)))

    async def reply_done(self, lead_id: str, status: LedgerStatus) -> None:
        await self._run(lambda: self.db.execute(
            "UPDATE replies SET status = ?, sent_at = ? WHERE lead_id = ?",
            (LedgerStatus(status).value, time.time(), lead_id)))

    async def uncertain_replies(self, *, since: float, lead_id: str | None = None,
                                limit: int = 200) -> list[UncertainReply]:
        q, args = ledger.uncertain_query(since, lead_id, limit)
        return await self._run(lambda: [UncertainReply(r[0], r[1], float(r[2]), r[3], r[4])
                                        for r in self.db.execute(q, args).fetchall()])

    async def settle_reply(self, lead_id: str, *, sent: bool, reason: str, now: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            return _inline(ledger.settle_reply(_Tx(db), lead_id, sent=sent, reason=reason, now=now))
        return await self._run(self._tx, work)

    async def replies_since(self, to_addr: str | None, since: datetime, exclude_lead: str = "") -> int:
        """Replies counted by the window and the cap since a time (for tools and tests)."""
        q, args = ledger.replies_since_query(to_addr, since.timestamp(), exclude_lead)
        return await self._run(lambda: int(self.db.execute(q, args).fetchone()[0]))

    async def add_known_emails(self, emails: Sequence[str]) -> int:
        def work(db: sqlite3.Connection) -> int:
            now = time.time()
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO known_emails (email_norm, source, added_at) VALUES (?, 'sheet', ?)",
                [(e, now) for e in emails])
            return db.total_changes - before
        return await self._run(self._tx, work)

    async def is_known_contact(self, email_norm: str) -> bool:
        return await self._run(lambda: self.db.execute(
            "SELECT 1 FROM known_emails WHERE email_norm = ?", (email_norm,)).fetchone() is not None)
