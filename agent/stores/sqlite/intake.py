"""SQLite: new leads and interactions (the webhook's batches, and the inbox's leads)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from agent.core.ids import new_id
from agent.core.models import IntakeResult, LeadIn
from agent.stores.common import INSERT_COLUMNS, insert_values
from agent.stores.sqlite.connection import SqliteBase


class SqliteIntake(SqliteBase):
    """``intake_many`` and the one-lead write the inbox ledger reuses."""

    _INSERT = (
        f"INSERT INTO leads ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))}) "
        "ON CONFLICT(email_norm) DO NOTHING"
    )

    def _intake_one(self, db: sqlite3.Connection, item: LeadIn, now: float) -> IntakeResult:
        lead_id = new_id(now)
        cur = db.execute(self._INSERT, insert_values(item, lead_id, now))
        if cur.rowcount == 1:
            return IntakeResult(lead_id, duplicate=False)
        existing = db.execute("SELECT id FROM leads WHERE email_norm = ?", (item.email_norm,)).fetchone()
        db.execute(
            "INSERT INTO interactions (lead_id, intake, message, subject, message_id, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (existing[0], item.intake, item.message, item.subject, item.message_id, now),
        )
        return IntakeResult(existing[0], duplicate=True)

    async def intake_many(self, items: Sequence[LeadIn]) -> list[IntakeResult]:
        def work(db: sqlite3.Connection) -> list[IntakeResult]:
            now = time.time()
            emails = {item.email_norm for item in items}
            if len(emails) == len(items):
                # Fast path: one executemany; if every row went in, all are new leads.
                ids = [new_id(now) for _ in items]
                before = db.total_changes
                db.executemany(self._INSERT, [insert_values(it, i, now) for it, i in zip(items, ids, strict=True)])
                if db.total_changes - before == len(items):
                    return [IntakeResult(i, duplicate=False) for i in ids]
                db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")
            return [self._intake_one(db, item, now) for item in items]
        return await self._run(self._tx, work)
