"""SQLite: the inbox ledger (one record per message, by dedupe key) and the mailbox checkpoints."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from agent.core.models import EmailIntake, IntakeResult, checkpoint_steps, recorded_outcome
from agent.stores.common import SingleEmailIntake, erased_key
from agent.stores.sqlite.intake import SqliteIntake


class SqliteInbox(SqliteIntake, SingleEmailIntake):
    """Records inbox messages and moves the checkpoint in the same transaction."""

    async def intake_emails(self, batch: Sequence[EmailIntake]) -> list[IntakeResult | None]:
        """Record each message of ``batch`` (as ``intake_email`` would one by one), in order, in one transaction.

        Results, records and checkpoint are those of the one-by-one calls (a key
        seen earlier in the batch is already seen; the checkpoint ends at the
        batch's highest uid per UIDVALIDITY run), but there is one commit and one
        thread hop per fetched batch instead of per message. All or nothing: if
        any write fails, no message of the batch is recorded and the checkpoint
        stays where it was.
        """
        if not batch:
            return []

        def work(db: sqlite3.Connection) -> list[IntakeResult | None]:
            now = time.time()
            keys = list(dict.fromkeys(e.dedupe_key for e in batch))
            # A person's erased mail keeps only a hash of its key: it is "seen" under that hash too.
            lookup = {k: k for k in keys} | {erased_key(k): k for k in keys}
            wanted = list(lookup)
            taken: set[str] = set()
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                taken.update(lookup[r[0]] for r in db.execute(
                    f"SELECT dedupe_key FROM inbox_messages WHERE dedupe_key IN ({','.join('?' * len(chunk))})",
                    chunk))
            results: list[IntakeResult | None] = []
            rows: list[tuple[Any, ...]] = []
            for e in batch:
                if e.dedupe_key in taken:
                    results.append(None)
                    continue
                taken.add(e.dedupe_key)
                res = self._intake_one(db, e.item, now) if e.item is not None else None
                results.append(res)
                rows.append((e.dedupe_key, e.mailbox, e.uidvalidity, e.uid, res.lead_id if res else None,
                             recorded_outcome(e, res).value, e.skip_reason, e.raw, now))
            db.executemany(
                "INSERT INTO inbox_messages (dedupe_key, mailbox, uidvalidity, uid, lead_id, outcome, "
                "reason, raw, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            for mailbox, uidvalidity, uid in checkpoint_steps(batch):
                self._advance(db, mailbox, uidvalidity, uid, now)
            return results
        return await self._run(self._tx, work)

    @staticmethod
    def _advance(db: sqlite3.Connection, mailbox: str, uidvalidity: int, uid: int, now: float) -> None:
        db.execute(
            "INSERT INTO inbox_checkpoints (mailbox, uidvalidity, last_uid, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(mailbox) DO UPDATE SET "
            "last_uid = CASE WHEN inbox_checkpoints.uidvalidity = excluded.uidvalidity "
            "  THEN max(inbox_checkpoints.last_uid, excluded.last_uid) ELSE excluded.last_uid END, "
            "uidvalidity = excluded.uidvalidity, updated_at = excluded.updated_at",
            (mailbox, uidvalidity, uid, now),
        )

    async def get_checkpoint(self, mailbox: str) -> tuple[int, int] | None:
        def work() -> tuple[int, int] | None:
            r = self.db.execute(
                "SELECT uidvalidity, last_uid FROM inbox_checkpoints WHERE mailbox = ?", (mailbox,)
            ).fetchone()
            return (r[0], r[1]) if r else None
        return await self._run(work)

    async def set_checkpoint(self, mailbox: str, uidvalidity: int, uid: int) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO inbox_checkpoints (mailbox, uidvalidity, last_uid, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity, "
                "last_uid = excluded.last_uid, updated_at = excluded.updated_at",
                (mailbox, uidvalidity, uid, time.time()),
            )
        await self._run(self._tx, work)

    async def inbox_outcomes(self, mailbox: str | None = None) -> dict[str, int]:
        def work() -> dict[str, int]:
            q = "SELECT outcome, count(*) FROM inbox_messages"
            args: tuple[Any, ...] = ()
            if mailbox:
                q += " WHERE mailbox = ?"
                args = (mailbox,)
            return {r[0]: r[1] for r in self.db.execute(q + " GROUP BY outcome", args)}
        return await self._run(work)
