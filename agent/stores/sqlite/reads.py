"""SQLite: what the API, the CLI and the metrics read (heavy scans on the read-only connection)."""

from __future__ import annotations

import builtins
import sqlite3

from agent.core.models import Category, Lead, Priority, State
from agent.core.states import ReplyStatus
from agent.stores.common import ACTIVE, list_query, row_to_interaction, row_to_lead
from agent.stores.sqlite.connection import SqliteBase


class SqliteReads(SqliteBase):
    """Leads by id, email and filter; counts per state."""

    async def get(self, lead_id: str) -> Lead | None:
        def work() -> Lead | None:
            r = self.db.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone()
            if r is None:
                return None
            lead = row_to_lead(r)
            lead.interactions = [
                row_to_interaction(i) for i in self.db.execute(
                    "SELECT * FROM interactions WHERE lead_id = ? ORDER BY id", (lead_id,))
            ]
            return lead
        return await self._run(work)

    async def get_by_email(self, email_norm: str) -> Lead | None:
        def work() -> str | None:
            r = self.db.execute("SELECT id FROM leads WHERE email_norm = ?", (email_norm,)).fetchone()
            return r[0] if r else None
        lead_id = await self._run(work)
        return await self.get(lead_id) if lead_id else None

    async def list(
        self, *, state: State | None = None, category: Category | None = None,
        priority: Priority | None = None, limit: int = 50, cursor: str | None = None,
        reply_status: ReplyStatus | None = None, mailbox: str | None = None,
    ) -> tuple[builtins.list[Lead], str | None]:
        q, args = list_query(state, category, priority, limit, cursor, reply_status, mailbox)

        def work(db: sqlite3.Connection) -> tuple[builtins.list[Lead], str | None]:
            rows = db.execute(q, args).fetchall()
            leads = [row_to_lead(r) for r in rows[:limit]]
            nxt = leads[-1].id if len(rows) > limit and leads else None
            return leads, nxt
        return await self._read(work)

    async def counts(self) -> dict[str, int]:
        return await self._read(lambda db: {
            r[0]: r[1] for r in db.execute("SELECT state, count(*) FROM leads GROUP BY state")
        })

    async def queue_depth(self) -> int:
        return await self._read(
            lambda db: db.execute(f"SELECT count(*) FROM leads WHERE {ACTIVE}").fetchone()[0])
