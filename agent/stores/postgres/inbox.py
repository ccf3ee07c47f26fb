"""PostgreSQL: the inbox ledger (keys claimed first, so racing pollers wait) and the checkpoints."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from agent.core.models import EmailIntake, IntakeResult, checkpoint_steps, recorded_outcome
from agent.core.states import InboxOutcome
from agent.stores.common import SingleEmailIntake, erased_key
from agent.stores.postgres.intake import PostgresIntake


class PostgresInbox(PostgresIntake, SingleEmailIntake):
    """Records inbox messages and moves the checkpoint in the same transaction."""

    _ADVANCE_CHECKPOINT = (
        "INSERT INTO inbox_checkpoints (mailbox, uidvalidity, last_uid, updated_at) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (mailbox) DO UPDATE SET "
        "last_uid = CASE WHEN inbox_checkpoints.uidvalidity = excluded.uidvalidity "
        "  THEN greatest(inbox_checkpoints.last_uid, excluded.last_uid) ELSE excluded.last_uid END, "
        "uidvalidity = excluded.uidvalidity, updated_at = excluded.updated_at"
    )

    async def intake_emails(self, batch: Sequence[EmailIntake]) -> list[IntakeResult | None]:
        """Record each message of ``batch`` (as ``intake_email`` would one by one), in one transaction.

        Results, records and checkpoint are those of the one-by-one calls; all or
        nothing. Keys are claimed first, as intake_email does, in key order so two
        pollers racing on overlapping batches lock rows in the same order (a repeated
        key within the batch keeps its first occurrence: the sort is stable). About
        six pipelined round trips per batch, whatever its size.
        """
        if not batch:
            return []
        now = time.time()
        order = sorted(range(len(batch)), key=lambda i: batch[i].dedupe_key)
        async with self.pool.connection() as conn, conn.transaction():
            # A person's erased mail keeps only a hash of its key: never claimed (taken) again.
            hashed = {erased_key(e.dedupe_key): e.dedupe_key for e in batch}
            erased = {hashed[r["dedupe_key"]] for r in await (await conn.execute(
                "SELECT dedupe_key FROM inbox_messages WHERE dedupe_key = ANY(%s)", (list(hashed),))).fetchall()}
            order = [i for i in order if batch[i].dedupe_key not in erased]
            claimed: set[int] = set()
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO inbox_messages (dedupe_key, mailbox, uidvalidity, uid, outcome, seen_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (dedupe_key) DO NOTHING RETURNING 1",
                    [(batch[i].dedupe_key, batch[i].mailbox, batch[i].uidvalidity, batch[i].uid,
                      InboxOutcome.PENDING.value, now)
                     for i in order], returning=True)
                for i in order:
                    if await cur.fetchone() is not None:
                        claimed.add(i)
                    cur.nextset()
            leads = [(i, e.item) for i, e in enumerate(batch) if i in claimed and e.item is not None]
            written = await self._intake_rows(conn, [item for _, item in leads], now) if leads else []
            results: list[IntakeResult | None] = [None] * len(batch)
            for (i, _), res in zip(leads, written, strict=True):
                results[i] = res
            updates: list[tuple[Any, ...]] = []
            for i in sorted(claimed):
                e, done = batch[i], results[i]
                updates.append((done.lead_id if done else None, recorded_outcome(e, done).value, e.skip_reason,
                                e.raw, e.dedupe_key))
            async with conn.cursor() as cur:
                if updates:
                    await cur.executemany(
                        "UPDATE inbox_messages SET lead_id = %s, outcome = %s, reason = %s, raw = %s "
                        "WHERE dedupe_key = %s", updates)
                await cur.executemany(self._ADVANCE_CHECKPOINT,
                                      [(*step, now) for step in checkpoint_steps(batch)])
        return results

    async def get_checkpoint(self, mailbox: str) -> tuple[int, int] | None:
        async with self.pool.connection() as conn:
            r = await (await conn.execute(
                "SELECT uidvalidity, last_uid FROM inbox_checkpoints WHERE mailbox = %s", (mailbox,))).fetchone()
            return (int(r["uidvalidity"]), int(r["last_uid"])) if r else None

    async def set_checkpoint(self, mailbox: str, uidvalidity: int, uid: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO inbox_checkpoints (mailbox, uidvalidity, last_uid, updated_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (mailbox) DO UPDATE SET "
                "uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, "
                "updated_at = excluded.updated_at",
                (mailbox, uidvalidity, uid, time.time()))

    async def inbox_outcomes(self, mailbox: str | None = None) -> dict[str, int]:
        q = "SELECT outcome, count(*) AS n FROM inbox_messages"
        args: tuple[Any, ...] = ()
        if mailbox:
            q += " WHERE mailbox = %s"
            args = (mailbox,)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(q + " GROUP BY outcome", args)).fetchall()  # type: ignore[arg-type]
            return {r["outcome"]: int(r["n"]) for r in rows}
