"""SQLite: what the console reads and writes (filters with full-text search, actions, users).

Search uses an FTS5 index over name, email, company and message, kept by triggers (migration 2)
with diacritics folded, so ``Lopez`` finds ``López``. Pages are keyset-paginated on the
time-ordered id. Reads run on the read-only connection in a thread; actions are small writes.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from datetime import date, timedelta
from typing import Any

from agent.core.models import Category, Lead, Priority
from agent.core.queries import LeadEvent, LeadFilter, Overview
from agent.core.states import ReplyStatus, State
from agent.stores.common import EPOCH, console_where, day_start, row_to_lead
from agent.stores.sqlite.connection import SqliteBase


class SqliteConsole(SqliteBase):
    """The console's queries and actions on SQLite."""

    async def index_search(self, limit: int = 2000) -> int:
        """Add up to ``limit`` new leads to the full-text index, in one transaction; returns how many.

        Batches cost about 12 µs a lead, against 200 µs for an insert trigger in the webhook's
        small transactions.
        """
        def work(db: sqlite3.Connection) -> int:
            done = db.execute("SELECT indexed_rowid FROM search_index_state").fetchone()[0]
            top = db.execute("SELECT max(rowid) FROM (SELECT rowid FROM leads WHERE rowid > ? ORDER BY rowid "
                             "LIMIT ?)", (done, limit)).fetchone()[0]
            if top is None:
                return 0
            n = db.execute("INSERT INTO leads_fts(rowid, name, email, company, message) SELECT rowid, name, "
                           "email, company, message FROM leads WHERE rowid > ? AND rowid <= ?", (done, top)).rowcount
            db.execute("UPDATE search_index_state SET indexed_rowid = ?", (top,))
            return int(n)
        return await self._run(self._tx, work)

    async def console_page(self, f: LeadFilter, limit: int, cursor: str | None = None,
                           ) -> tuple[builtins.list[Lead], str | None]:
        """Newest first in arrival order (the rowid), which FTS5 also walks natively: a search
        stops after ``limit`` matches instead of sorting every match."""
        where, args = console_where(f, "?")
        terms = f.terms()
        if terms:  # a search sees every lead: index what the job has not reached yet
            for _ in range(25):
                if await self.index_search(5000) < 5000:
                    break
        table = "leads_fts JOIN leads ON leads.rowid = leads_fts.rowid" if terms else "leads"
        order = "leads_fts.rowid" if terms else "leads.rowid"
        if terms:
            where.insert(0, "leads_fts MATCH ?")
            args.insert(0, " AND ".join(f'"{t}"*' for t in terms))
        if cursor:
            where.append(f"{order} < (SELECT rowid FROM leads WHERE id = ?)")
            args.append(cursor)
        # Rows arrive in created_at order, so a date range is also a rowid range: two index probes
        # bound the walk instead of sorting every row of the range (the exact test stays above).
        if f.since:
            where.append(f"{order} >= coalesce((SELECT rowid FROM leads WHERE created_at >= ? "
                         "ORDER BY created_at LIMIT 1), 1 << 62)")
            args.append(day_start(f.since))
        if f.until:
            where.append(f"{order} <= coalesce((SELECT rowid FROM leads WHERE created_at < ? "
                         "ORDER BY created_at DESC LIMIT 1), 0)")
            args.append(day_start(f.until) + 86400)
        sql = (f"SELECT leads.* FROM {table}" + (" WHERE " + " AND ".join(where) if where else "") +
               f" ORDER BY {order} DESC LIMIT ?")
        params = (*args, limit + 1)

        def work(db: sqlite3.Connection) -> tuple[builtins.list[Lead], str | None]:
            rows = db.execute(sql, params).fetchall()
            leads = [row_to_lead(r) for r in rows[:limit]]
            return leads, (leads[-1].id if len(rows) > limit and leads else None)
        return await self._read(work)

    async def console_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        def work(db: sqlite3.Connection) -> tuple[dict[str, int], dict[str, int]]:
            states = {r[0]: r[1] for r in db.execute("SELECT state, count(*) FROM leads GROUP BY state")}
            cats = {r[0]: r[1] for r in db.execute(
                "SELECT category, count(*) FROM leads WHERE category IS NOT NULL GROUP BY category")}
            return states, cats
        return await self._read(work)

    async def console_overview(self, since: date) -> Overview:
        start = day_start(since)

        def work(db: sqlite3.Connection) -> Overview:
            # Both scans read only the covering index on (created_at, category, ...).
            per_day: dict[date, dict[str, int]] = {}
            fallbacks = 0
            for day, cat, n, fb in db.execute(
                    "SELECT CAST(created_at / 86400 AS INTEGER), coalesce(category, 'none'), count(*), "
                    "sum(needs_reclassify) FROM leads WHERE created_at >= ? GROUP BY 1, 2", (start,)):
                per_day.setdefault(EPOCH + timedelta(days=day), {})[cat] = n
                fallbacks += fb or 0
            lat = sorted(r[0] for r in db.execute(
                "SELECT replied_at - created_at FROM leads WHERE created_at >= ? AND replied_at IS NOT NULL",
                (start,)))
            states = {r[0]: r[1] for r in db.execute("SELECT state, count(*) FROM leads GROUP BY state")}
            return Overview(per_day=per_day, states=states, reply_seconds=lat, fallbacks=fallbacks)
        return await self._read(work)

    async def lead_events(self, lead_id: str) -> builtins.list[LeadEvent]:
        def work() -> builtins.list[LeadEvent]:
            return [LeadEvent(at=r[0], kind=r[1], actor=r[2], detail=json.loads(r[3] or "{}"))
                    for r in self.db.execute("SELECT at, kind, actor, detail FROM lead_events "
                                             "WHERE lead_id = ? ORDER BY id", (lead_id,))]
        return await self._run(work)

    def _event(self, db: sqlite3.Connection, lead_id: str, kind: str, actor: str, detail: dict[str, Any]) -> None:
        db.execute("INSERT INTO lead_events (lead_id, at, kind, actor, detail) VALUES (?, ?, ?, ?, ?)",
                   (lead_id, time.time(), kind, actor, json.dumps(detail, ensure_ascii=False)))

    async def add_event(self, lead_id: str, kind: str, actor: str, detail: dict[str, Any]) -> None:
        await self._run(self._tx, lambda db: self._event(db, lead_id, kind, actor, detail))

    async def correct(self, lead_id: str, category: Category, priority: Priority, by: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            r = db.execute("SELECT category, priority, correction FROM leads WHERE id = ?", (lead_id,)).fetchone()
            if r is None:
                return False
            earlier = json.loads(r[2]) if r[2] else None
            previous = earlier["previous"] if earlier else {"category": r[0], "priority": r[1]}
            now = time.time()
            correction = {"category": category.value, "priority": priority.value, "by": by, "at": now,
                          "previous": previous}
            db.execute("UPDATE leads SET category = ?, priority = ?, priority_rule = 'corrected', correction = ?, "
                       "updated_at = ? WHERE id = ?",
                       (category.value, priority.value, json.dumps(correction), now, lead_id))
            self._event(db, lead_id, "corrected", by, {"category": category.value, "priority": priority.value,
                                                       "previous": previous})
            return True
        return await self._run(self._tx, work)

    async def reopen_for_reply(self, lead_id: str) -> bool:
        """A skipped lead goes back to the reply step (once: only while no reply was sent)."""
        def work(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE leads SET state = ?, skip_reason = NULL, reply_status = ?, reply_reason = NULL, "
                "attempts = 0, next_attempt_at = ?, updated_at = ? WHERE id = ? AND state = ? AND reply_status != ?",
                (State.MIRRORED.value, ReplyStatus.PENDING.value, time.time(), time.time(), lead_id,
                 State.SKIPPED.value, ReplyStatus.SENT.value))
            return cur.rowcount == 1
        return await self._run(self._tx, work)

    async def mark_handled(self, lead_id: str, by: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE leads SET handled_by = ?, handled_at = ? WHERE id = ? AND handled_by IS NULL",
                             (by, time.time(), lead_id))
            if cur.rowcount:
                self._event(db, lead_id, "handled", by, {})
            return cur.rowcount == 1
        return await self._run(self._tx, work)

    async def assign(self, lead_id: str, user: str | None, by: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE leads SET assigned_to = ? WHERE id = ?", (user, lead_id))
            if cur.rowcount:
                self._event(db, lead_id, "assigned", by, {"user": user or "-"})
            return cur.rowcount == 1
        return await self._run(self._tx, work)

    async def corrections(self) -> builtins.list[tuple[Lead, dict[str, Any]]]:
        def work(db: sqlite3.Connection) -> builtins.list[tuple[Lead, dict[str, Any]]]:
            return [(row_to_lead(r), json.loads(r["correction"])) for r in db.execute(
                "SELECT * FROM leads WHERE correction IS NOT NULL ORDER BY id")]
        return await self._read(work)

    # -- users ------------------------------------------------------------
    async def user_hash(self, name: str) -> str | None:
        def work() -> str | None:
            r = self.db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
            return r[0] if r else None
        return await self._run(work)

    async def user_names(self) -> builtins.list[str]:
        return await self._run(lambda: [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name")])

    async def user_put(self, name: str, password_hash: str) -> bool:
        """Add or replace; True when the user is new."""
        def work(db: sqlite3.Connection) -> bool:
            new = db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None
            db.execute("INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
                       (name, password_hash, time.time()))
            return new
        return await self._run(self._tx, work)

    async def user_delete(self, name: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 1
        return await self._run(self._tx, work)


