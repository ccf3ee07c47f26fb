"""PostgreSQL: new leads and interactions, in pipelined round trips whatever the batch size."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg

from agent.core.ids import new_id
from agent.core.models import IntakeResult, LeadIn
from agent.stores.common import INSERT_COLUMNS, insert_values
from agent.stores.postgres.connection import PostgresBase


class PostgresIntake(PostgresBase):
    """``intake_many``, and the rows writer the inbox ledger reuses inside its transaction."""

    _INSERT = (
        f"INSERT INTO leads ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(INSERT_COLUMNS))}) "
        "ON CONFLICT (email_norm) DO NOTHING RETURNING id"
    )

    _INTERACTION = (
        "INSERT INTO interactions (lead_id, intake, message, subject, message_id, received_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)"
    )

    async def _intake_rows(self, conn: psycopg.AsyncConnection[Any], items: Sequence[LeadIn],
                           now: float) -> list[IntakeResult]:
        """Write items inside the caller's transaction; results in the items' order.

        Three pipelined round trips whatever the batch size: insert all, look up the ids
        of those that already existed, add their interactions.
        """
        order = sorted(range(len(items)), key=lambda i: items[i].email_norm)  # stable: lock order
        ids = {i: new_id(now) for i in order}
        results: dict[int, IntakeResult] = {}
        async with conn.cursor() as cur:
            await cur.executemany(self._INSERT, [insert_values(items[i], ids[i], now) for i in order],
                                  returning=True)
            dup: list[int] = []
            for i in order:
                if await cur.fetchone() is not None:
                    results[i] = IntakeResult(ids[i], duplicate=False)
                else:
                    dup.append(i)
                cur.nextset()
            if dup:
                await cur.executemany("SELECT id FROM leads WHERE email_norm = %s",
                                      [(items[i].email_norm,) for i in dup], returning=True)
                for i in dup:
                    row = await cur.fetchone()
                    assert row is not None, "a conflicting lead is committed or ours"
                    results[i] = IntakeResult(row["id"], duplicate=True)
                    cur.nextset()
                await cur.executemany(self._INTERACTION, [
                    (results[i].lead_id, items[i].intake, items[i].message, items[i].subject,
                     items[i].message_id, now) for i in dup])
        return [results[i] for i in range(len(items))]

    async def intake_many(self, items: Sequence[LeadIn]) -> list[IntakeResult]:
        if not items:
            return []
        async with self.pool.connection() as conn, conn.transaction():
            return await self._intake_rows(conn, items, time.time())
