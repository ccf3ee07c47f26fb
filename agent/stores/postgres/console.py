"""PostgreSQL: what the console reads and writes (filters with full-text search, actions, users).

Search uses a GIN index on ``to_tsvector('simple', name || email || company || message)``
(migration 2) and prefix queries, so ``ana lop`` finds ``Ana López``'s lead by its words.
Pages are keyset-paginated on the time-ordered id.
"""

from __future__ import annotations

import builtins
import json
import time
from datetime import date, timedelta
from typing import Any

from agent.core.models import Category, Lead, Priority
from agent.core.queries import LeadEvent, LeadFilter, Overview
from agent.core.states import ReplyStatus, State
from agent.stores.common import EPOCH, console_where, day_start, row_to_lead
from agent.stores.postgres.connection import PostgresBase

TSV = ("to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || "
       "coalesce(company, '') || ' ' || coalesce(message, ''))")


class PostgresConsole(PostgresBase):
    """The console's queries and actions on PostgreSQL."""

    async def index_search(self, limit: int = 2000) -> int:
        """Nothing to do: the GIN index is maintained by PostgreSQL on insert (a few % of intake)."""
        return 0

    async def console_page(self, f: LeadFilter, limit: int, cursor: str | None = None,
                           ) -> tuple[builtins.list[Lead], str | None]:
        where, args = console_where(f, "%s")
        terms = f.terms()
        if terms:
            where.append(f"{TSV} @@ to_tsquery('simple', %s)")
            args.append(" & ".join(f"{t}:*" for t in terms))
        if cursor:
            where.append("(created_at, id) < (SELECT created_at, id FROM leads WHERE id = %s)")
            args.append(cursor)
        # Arrival order: created_at, with the id to break ties (ids are not in time order as text).
        sql = ("SELECT * FROM leads" + (" WHERE " + " AND ".join(where) if where else "") +
               " ORDER BY created_at DESC, id DESC LIMIT %s")
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(sql, (*args, limit + 1))).fetchall()  # type: ignore[arg-type]
        leads = [row_to_lead(r) for r in rows[:limit]]
        return leads, (leads[-1].id if len(rows) > limit and leads else None)

    async def console_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        async with self.pool.connection() as conn:
            states = {r["state"]: int(r["n"]) for r in await (await conn.execute(
                "SELECT state, count(*) AS n FROM leads GROUP BY state")).fetchall()}
            cats = {r["category"]: int(r["n"]) for r in await (await conn.execute(
                "SELECT category, count(*) AS n FROM leads WHERE category IS NOT NULL GROUP BY category")).fetchall()}
        return states, cats

    async def console_overview(self, since: date) -> Overview:
        start = day_start(since)
        async with self.pool.connection() as conn:
            per_day: dict[date, dict[str, int]] = {}
            fallbacks = 0
            for r in await (await conn.execute(
                    "SELECT floor(created_at / 86400)::int AS day, coalesce(category, 'none') AS cat, "
                    "count(*) AS n, sum(needs_reclassify) AS fb FROM leads WHERE created_at >= %s "
                    "GROUP BY 1, 2", (start,))).fetchall():
                per_day.setdefault(EPOCH + timedelta(days=r["day"]), {})[r["cat"]] = int(r["n"])
                fallbacks += int(r["fb"] or 0)
            states = {r["state"]: int(r["n"]) for r in await (await conn.execute(
                "SELECT state, count(*) AS n FROM leads GROUP BY state")).fetchall()}
            lat = sorted(float(r["s"]) for r in await (await conn.execute(
                "SELECT replied_at - created_at AS s FROM leads WHERE replied_at IS NOT NULL AND created_at >= %s",
                (start,))).fetchall())
        return Overview(per_day=per_day, states=states, reply_seconds=lat, fallbacks=fallbacks)

    async def lead_events(self, lead_id: str) -> builtins.list[LeadEvent]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT at, kind, actor, detail FROM lead_events WHERE lead_id = %s ORDER BY id",
                (lead_id,))).fetchall()
        return [LeadEvent(at=r["at"], kind=r["kind"], actor=r["actor"], detail=json.loads(r["detail"] or "{}"))
                for r in rows]

    @staticmethod
    async def _event(conn: Any, lead_id: str, kind: str, actor: str, detail: dict[str, Any]) -> None:
        await conn.execute("INSERT INTO lead_events (lead_id, at, kind, actor, detail) VALUES (%s, %s, %s, %s, %s)",
                           (lead_id, time.time(), kind, actor, json.dumps(detail, ensure_ascii=False)))

    async def add_event(self, lead_id: str, kind: str, actor: str, detail: dict[str, Any]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await self._event(conn, lead_id, kind, actor, detail)

    async def correct(self, lead_id: str, category: Category, priority: Priority, by: str) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            r = await (await conn.execute("SELECT category, priority, correction FROM leads WHERE id = %s FOR UPDATE",
                                          (lead_id,))).fetchone()
            if r is None:
                return False
            earlier = json.loads(r["correction"]) if r["correction"] else None
            previous = earlier["previous"] if earlier else {"category": r["category"], "priority": r["priority"]}
            now = time.time()
            correction = {"category": category.value, "priority": priority.value, "by": by, "at": now,
                          "previous": previous}
            await conn.execute(
                "UPDATE leads SET category = %s, priority = %s, priority_rule = 'corrected', correction = %s, "
                "updated_at = %s WHERE id = %s",
                (category.value, priority.value, json.dumps(correction), now, lead_id))
            await self._event(conn, lead_id, "corrected", by, {"category": category.value,
                                                              "priority": priority.value, "previous": previous})
        return True

    async def reopen_for_reply(self, lead_id: str) -> bool:
        now = time.time()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE leads SET state = %s, skip_reason = NULL, reply_status = %s, reply_reason = NULL, "
                "attempts = 0, next_attempt_at = %s, updated_at = %s "
                "WHERE id = %s AND state = %s AND reply_status != %s",
                (State.MIRRORED.value, ReplyStatus.PENDING.value, now, now, lead_id, State.SKIPPED.value,
                 ReplyStatus.SENT.value))
            return cur.rowcount == 1

    async def mark_handled(self, lead_id: str, by: str) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE leads SET handled_by = %s, handled_at = %s WHERE id = %s AND handled_by IS NULL",
                (by, time.time(), lead_id))
            if cur.rowcount:
                await self._event(conn, lead_id, "handled", by, {})
            return cur.rowcount == 1

    async def assign(self, lead_id: str, user: str | None, by: str) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("UPDATE leads SET assigned_to = %s WHERE id = %s", (user, lead_id))
            if cur.rowcount:
                await self._event(conn, lead_id, "assigned", by, {"user": user or "-"})
            return cur.rowcount == 1

    async def corrections(self) -> builtins.list[tuple[Lead, dict[str, Any]]]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT * FROM leads WHERE correction IS NOT NULL ORDER BY id")).fetchall()
        return [(row_to_lead(r), json.loads(r["correction"])) for r in rows]

    async def user_hash(self, name: str) -> str | None:
        async with self.pool.connection() as conn:
            r = await (await conn.execute("SELECT password_hash FROM users WHERE name = %s", (name,))).fetchone()
        return r["password_hash"] if r else None

    async def user_names(self) -> builtins.list[str]:
        async with self.pool.connection() as conn:
            return [r["name"] for r in await (await conn.execute("SELECT name FROM users ORDER BY name")).fetchall()]

    async def user_put(self, name: str, password_hash: str) -> bool:
        async with self.pool.connection() as conn:
            r = await (await conn.execute(
                "INSERT INTO users (name, password_hash, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash "
                "RETURNING (xmax = 0) AS inserted", (name, password_hash, time.time()))).fetchone()
        return bool(r and r["inserted"])

    async def user_delete(self, name: str) -> bool:
        async with self.pool.connection() as conn:
            return (await conn.execute("DELETE FROM users WHERE name = %s", (name,))).rowcount == 1
