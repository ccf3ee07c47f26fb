"""SQLite: the work queue (claim with a lease, write back, retry, recover) and the side jobs' lists."""

from __future__ import annotations

import builtins
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from agent.core.models import Lead, State
from agent.core.states import LedgerStatus, MirrorStatus, ReplyStatus
from agent.stores.common import (
    ACTIVE,
    FAILED,
    FINAL,
    MIRROR_DUE,
    RETRY_STATE,
    UPDATE_COLUMNS,
    row_to_lead,
    update_values,
)
from agent.stores.sqlite.connection import SqliteBase


class SqliteQueue(SqliteBase):
    """One process owns the file: no lease fencing, and final updates may be batched."""

    # The worker may write the final state of a whole batch in one transaction (update_many).
    batch_final_updates = True

    async def claim(self, limit: int, owner: str, lease_seconds: float) -> list[Lead]:
        def work(db: sqlite3.Connection) -> list[Lead]:
            now = time.time()
            rows = db.execute(
                "UPDATE leads SET lease_owner = ?, lease_until = ? WHERE id IN ("
                f"  SELECT id FROM leads WHERE {ACTIVE} AND next_attempt_at <= ? "
                "  AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at LIMIT ?"
                ") RETURNING *",
                (owner, now + lease_seconds, now, now, limit),
            ).fetchall()
            return [row_to_lead(r) for r in rows]
        return await self._run(self._tx, work)

    _UPDATE = (
        "UPDATE leads SET " + ", ".join(f"{c} = ?" for c in UPDATE_COLUMNS)
        + ", lease_owner = CASE WHEN ? THEN NULL ELSE lease_owner END"
        + ", lease_until = CASE WHEN ? THEN NULL ELSE lease_until END WHERE id = ?"
    )

    async def update(
        self, lead: Lead, *, release: bool = False, next_attempt_at: float | None = None,
        ledger_status: LedgerStatus | None = None,
    ) -> None:
        """Persist the lead; ``ledger_status`` also closes its reply-ledger row in the same transaction."""
        def work(db: sqlite3.Connection) -> None:
            now = time.time()
            vals = update_values(lead, now if next_attempt_at is None else next_attempt_at, now)
            db.execute(self._UPDATE, (*vals, release, release, lead.id))
            if ledger_status is not None:
                db.execute("UPDATE replies SET status = ?, sent_at = ? WHERE lead_id = ?",
                           (LedgerStatus(ledger_status).value, now, lead.id))
        await self._run(self._tx, work)

    async def update_many(self, leads: Sequence[tuple[Lead, bool, float | None]]) -> None:
        """Several updates in one transaction (the worker's end-of-batch write)."""
        def work(db: sqlite3.Connection) -> None:
            now = time.time()
            db.executemany(
                self._UPDATE,
                [(*update_values(lead, now if nxt is None else nxt, now), rel, rel, lead.id)
                 for lead, rel, nxt in leads],
            )
            # Close the reply-ledger rows of leads replied in this batch (as update() does).
            sent = LedgerStatus.SENT.value
            db.executemany(
                "UPDATE replies SET status = ?, sent_at = ? WHERE lead_id = ? AND status != ?",
                [(sent, now, lead.id, sent) for lead, _, _ in leads
                 if lead.state is State.REPLIED and lead.reply_status is ReplyStatus.SENT],
            )
        await self._run(self._tx, work)

    async def set_mirror_status(self, lead_id: str, status: MirrorStatus) -> None:
        await self._run(lambda: self.db.execute(
            "UPDATE leads SET mirror_status = ? WHERE id = ?", (MirrorStatus(status).value, lead_id)))

    async def retry(self, lead_id: str | None = None, *, all_failed: bool = False) -> int:
        def work(db: sqlite3.Connection) -> int:
            cond = FAILED + ("" if all_failed else " AND id = ?")
            args: tuple[Any, ...] = () if all_failed else (lead_id,)
            cur = db.execute(
                f"UPDATE leads SET state = {RETRY_STATE}, "
                "attempts = 0, next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, "
                f"updated_at = ? WHERE {cond}",
                (time.time(), time.time(), *args),
            )
            return cur.rowcount
        return await self._run(self._tx, work)

    async def needing_reclassify(self, limit: int) -> builtins.list[Lead]:
        return await self._run(lambda: [row_to_lead(r) for r in self.db.execute(
            f"SELECT * FROM leads WHERE needs_reclassify = 1 AND {FINAL} ORDER BY id LIMIT ?", (limit,))])

    async def mirror_pending(self, limit: int) -> builtins.list[Lead]:
        return await self._run(lambda: [row_to_lead(r) for r in self.db.execute(
            f"SELECT * FROM leads WHERE {MIRROR_DUE} ORDER BY id LIMIT ?", (limit,))])

    async def recover(self) -> None:
        """One process owns a SQLite file: leases left by a killed run are void at start."""
        await self._run(lambda: self.db.execute(
            f"UPDATE leads SET lease_owner = NULL, lease_until = NULL WHERE {ACTIVE} AND lease_owner IS NOT NULL"))
