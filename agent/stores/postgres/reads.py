"""PostgreSQL: what the API, the CLI and the metrics read."""

from __future__ import annotations

import builtins

from agent.core.models import Category, Lead, Priority, State
from agent.core.states import ReplyStatus
from agent.stores.common import ACTIVE, list_query, row_to_interaction, row_to_lead
from agent.stores.postgres.connection import PostgresBase


class PostgresReads(PostgresBase):
    """Leads by id, email and filter; counts per state."""

    async def get(self, lead_id: str) -> Lead | None:
        async with self.pool.connection() as conn:
            r = await (await conn.execute("SELECT * FROM leads WHERE id = %s", (lead_id,))).fetchone()
            if r is None:
                return None
            lead = row_to_lead(r)
            rows = await (await conn.execute(
                "SELECT * FROM interactions WHERE lead_id = %s ORDER BY id", (lead_id,))).fetchall()
            lead.interactions = [row_to_interaction(i) for i in rows]
            return lead

    async def get_by_email(self, email_norm: str) -> Lead | None:
        async with self.pool.connection() as conn:
            r = await (await conn.execute("SELECT id FROM leads WHERE email_norm = %s", (email_norm,))).fetchone()
        return await self.get(r["id"]) if r else None

    async def list(
        self, *, state: State | None = None, category: Category | None = None,
        priority: Priority | None = None, limit: int = 50, cursor: str | None = None,
        reply_status: ReplyStatus | None = None, mailbox: str | None = None,
    ) -> tuple[builtins.list[Lead], str | None]:
        q, args = list_query(state, category, priority, limit, cursor, reply_status, mailbox)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(q.replace("?", "%s"), args)).fetchall()  # type: ignore[arg-type]
        leads = [row_to_lead(r) for r in rows[:limit]]
        nxt = leads[-1].id if len(rows) > limit and leads else None
        return leads, nxt

    async def counts(self) -> dict[str, int]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute("SELECT state, count(*) AS n FROM leads GROUP BY state")).fetchall()
            return {r["state"]: int(r["n"]) for r in rows}

    async def queue_depth(self) -> int:
        async with self.pool.connection() as conn:
            r = await (await conn.execute(f"SELECT count(*) AS n FROM leads WHERE {ACTIVE}")).fetchone()
            return int(r["n"]) if r else 0
