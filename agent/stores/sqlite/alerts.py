"""SQLite: the alert ledger and the digest's last run."""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Sequence

from agent.core.alerts import AlertRow
from agent.core.models import Lead
from agent.stores import alert_sql as q
from agent.stores.common import row_to_lead
from agent.stores.sqlite.connection import SqliteBase


class SqliteAlerts(SqliteBase):
    async def enqueue_alerts(self, lead_id: str, channels: Sequence[str], now: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.executemany(q.ENQUEUE, [(lead_id, c, now, now) for c in channels])
        await self._run(self._tx, work)

    async def alerts_due(self, now: float, limit: int) -> builtins.list[AlertRow]:
        return await self._run(lambda: [q.to_row(r) for r in self.db.execute(q.DUE, (now, limit)).fetchall()])

    async def alert_result(self, row: AlertRow) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(q.RESULT, (row.status, row.attempts, row.next_attempt_at, row.sent_at, row.last_error,
                                  row.lead_id, row.channel))
        await self._run(self._tx, work)

    async def alerts_of(self, lead_id: str) -> builtins.list[AlertRow]:
        return await self._run(lambda: [q.to_row(r) for r in self.db.execute(q.OF_LEAD, (lead_id,)).fetchall()])

    async def digest_last(self) -> float | None:
        def work() -> float | None:
            r = self.db.execute(q.DIGEST_GET).fetchone()
            return float(r[0]) if r else None
        return await self._run(work)

    async def set_digest_last(self, ts: float) -> None:
        await self._run(self._tx, lambda db: db.execute(q.DIGEST_SET, (ts,)))

    async def leads_between(self, since: float, until: float, limit: int) -> builtins.list[Lead]:
        return await self._read(lambda db: [row_to_lead(r) for r in db.execute(q.SINCE, (since, until, limit))])
