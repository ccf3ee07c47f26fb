"""PostgreSQL: the alert ledger and the digest's last run."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from agent.core.alerts import AlertRow
from agent.core.models import Lead
from agent.stores import alert_sql as q
from agent.stores.common import row_to_lead
from agent.stores.postgres.connection import PostgresBase


def _pg(sql: str) -> Any:
    return sql.replace("?", "%s")


class PostgresAlerts(PostgresBase):
    async def enqueue_alerts(self, lead_id: str, channels: Sequence[str], now: float) -> None:
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(_pg(q.ENQUEUE), [(lead_id, c, now, now) for c in channels])

    async def alerts_due(self, now: float, limit: int) -> builtins.list[AlertRow]:
        async with self.pool.connection() as conn:
            return [q.to_row(r) for r in await (await conn.execute(_pg(q.DUE), (now, limit))).fetchall()]

    async def alert_result(self, row: AlertRow) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(_pg(q.RESULT), (row.status, row.attempts, row.next_attempt_at, row.sent_at,
                                               row.last_error, row.lead_id, row.channel))

    async def alerts_of(self, lead_id: str) -> builtins.list[AlertRow]:
        async with self.pool.connection() as conn:
            return [q.to_row(r) for r in await (await conn.execute(_pg(q.OF_LEAD), (lead_id,))).fetchall()]

    async def digest_last(self) -> float | None:
        async with self.pool.connection() as conn:
            r = await (await conn.execute(_pg(q.DIGEST_GET))).fetchone()
        return float(r["last_at"]) if r else None

    async def set_digest_last(self, ts: float) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(_pg(q.DIGEST_SET), (ts,))

    async def leads_between(self, since: float, until: float, limit: int) -> builtins.list[Lead]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(_pg(q.SINCE), (since, until, limit))).fetchall()
        return [row_to_lead(r) for r in rows]
