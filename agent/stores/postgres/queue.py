"""PostgreSQL: the work queue: claimed with FOR UPDATE SKIP LOCKED and a lease, written back fenced."""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from typing import Any

from agent.core.models import Lead
from agent.core.states import LedgerStatus, MirrorStatus
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
from agent.stores.postgres.connection import DB_NOW, PostgresBase


class PostgresQueue(PostgresBase):
    """Leases on the database clock; a replica that lost a lease cannot write the lead back."""

    # Final updates go one by one: each is fenced by its own lease.
    batch_final_updates = False

    async def claim(self, limit: int, owner: str, lease_seconds: float) -> list[Lead]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                f"UPDATE leads SET lease_owner = %(owner)s, lease_until = {DB_NOW} + %(lease)s "
                "WHERE id IN ("
                f"  SELECT id FROM leads WHERE {ACTIVE} AND next_attempt_at <= %(now)s "
                f"  AND (lease_until IS NULL OR lease_until < {DB_NOW}) "
                "  ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
                ") RETURNING *",
                {"owner": owner, "lease": float(lease_seconds), "now": time.time(), "limit": limit},
            )).fetchall()
        for r in rows:
            self._claimed[r["id"]] = (owner, float(lease_seconds))
        return [row_to_lead(r) for r in rows]

    # A fenced write applies only while the lead is still leased to ``fence`` (None: no
    # fence). A write that keeps the lease renews it; a release drops it.
    _UPDATE = (
        "UPDATE leads SET " + ", ".join(f"{c} = %s" for c in UPDATE_COLUMNS)
        + ", lease_owner = CASE WHEN %s THEN NULL ELSE lease_owner END"
        + f", lease_until = CASE WHEN %s THEN NULL WHEN %s::text IS NOT NULL THEN {DB_NOW} + %s"
        + " ELSE lease_until END"
        + " WHERE id = %s AND (%s::text IS NULL OR lease_owner = %s)"
    )

    def _update_args(self, lead: Lead, release: bool, nxt: float | None, now: float) -> tuple[Any, ...]:
        fence, lease = self._claimed.get(lead.id, (None, 0.0))
        vals = update_values(lead, now if nxt is None else nxt, now)
        return (*vals, release, release, fence, lease, lead.id, fence, fence)

    async def update(
        self, lead: Lead, *, release: bool = False, next_attempt_at: float | None = None,
        ledger_status: LedgerStatus | None = None,
    ) -> None:
        """Persist a lead; ``ledger_status`` also closes its reply-ledger row in the same transaction.

        From a lease holder that lost its lease this is a no-op, ledger included: the new
        holder owns the lead. The fence stays armed after a refused write, so every later
        write of that stale attempt is refused too; a successful release disarms it.
        """
        args = self._update_args(lead, release, next_attempt_at, time.time())
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self._UPDATE, args)
            applied = cur.rowcount > 0
            if applied and ledger_status is not None:
                await conn.execute("UPDATE replies SET status = %s, sent_at = %s WHERE lead_id = %s",
                                   (LedgerStatus(ledger_status).value, time.time(), lead.id))
        if release and applied:
            self._claimed.pop(lead.id, None)

    async def update_many(self, leads: Sequence[tuple[Lead, bool, float | None]]) -> None:
        """Several updates in one transaction (the worker's end-of-batch write), in id order."""
        if not leads:
            return
        now = time.time()
        ordered = sorted(leads, key=lambda t: t[0].id)
        args = [self._update_args(lead, rel, nxt, now) for lead, rel, nxt in ordered]
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(self._UPDATE, args)
        for lead, rel, _ in ordered:
            if rel:
                self._claimed.pop(lead.id, None)

    async def set_mirror_status(self, lead_id: str, status: MirrorStatus) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE leads SET mirror_status = %s WHERE id = %s",
                               (MirrorStatus(status).value, lead_id))

    async def retry(self, lead_id: str | None = None, *, all_failed: bool = False) -> int:
        cond = FAILED + ("" if all_failed else " AND id = %s")
        args: tuple[Any, ...] = () if all_failed else (lead_id,)
        now = time.time()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE leads SET state = {RETRY_STATE}, "
                "attempts = 0, next_attempt_at = %s, lease_owner = NULL, lease_until = NULL, "
                f"updated_at = %s WHERE {cond}",  # type: ignore[arg-type]
                (now, now, *args))
            return cur.rowcount

    async def needing_reclassify(self, limit: int) -> builtins.list[Lead]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                f"SELECT * FROM leads WHERE needs_reclassify = 1 AND {FINAL} ORDER BY id LIMIT %s",  # type: ignore[arg-type]
                (limit,))).fetchall()
        return [row_to_lead(r) for r in rows]

    async def mirror_pending(self, limit: int) -> builtins.list[Lead]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                f"SELECT * FROM leads WHERE {MIRROR_DUE} ORDER BY id LIMIT %s", (limit,))).fetchall()  # type: ignore[arg-type]
        return [row_to_lead(r) for r in rows]

    async def recover(self) -> None:
        """Nothing to do: other replicas' leases are live work, and ours expire by themselves.

        (SQLite clears every lease at start because one process owns the file; here a
        restarted replica has a new owner name, and its old leases run out at
        ``lease_until``, after which any replica claims those leads.)
        """
