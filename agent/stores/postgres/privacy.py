"""PostgreSQL: a person's data, found, exported and erased (personal-data requests and retention).

Rows are deleted; their dead tuples stay on disk until the table is vacuumed, which is the
operator's VACUUM policy (autovacuum by default; see docs/operations.md). Inbox records keep only
a hash of their dedupe key, so the inbox never takes the person's old mail back in.
"""

from __future__ import annotations

import builtins
import json
import time
from typing import Any

from agent.core.models import Lead
from agent.core.states import State
from agent.stores.common import erased_key, row_to_interaction, row_to_lead
from agent.stores.postgres.connection import PostgresBase

PERSON = "(email_norm = %s OR (email_norm LIKE 'honeypot:%%' AND lower(email) = %s))"


class PostgresPrivacy(PostgresBase):
    """Find, export and erase a person's data; the ids the sheet mirror may still write."""

    async def person_leads(self, email_norm: str, email: str) -> builtins.list[Lead]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(f"SELECT * FROM leads WHERE {PERSON} ORDER BY created_at, id",
                                             (email_norm, email.lower()))).fetchall()
            leads = [row_to_lead(r) for r in rows]
            for lead in leads:
                lead.interactions = [row_to_interaction(i) for i in await (await conn.execute(
                    "SELECT * FROM interactions WHERE lead_id = %s ORDER BY id", (lead.id,))).fetchall()]
        return leads

    async def person_records(self, lead_ids: builtins.list[str]) -> dict[str, Any]:
        if not lead_ids:
            return {"replies": [], "events": []}
        async with self.pool.connection() as conn:
            replies = [dict(r) for r in await (await conn.execute(
                "SELECT lead_id, to_addr, message_id, status, created_at, sent_at FROM replies "
                "WHERE lead_id = ANY(%s)", (lead_ids,))).fetchall()]
            events = [dict(r) for r in await (await conn.execute(
                "SELECT lead_id, at, kind, actor, detail FROM lead_events WHERE lead_id = ANY(%s) ORDER BY id",
                (lead_ids,))).fetchall()]
        return {"replies": replies, "events": events}

    async def leases_held(self, lead_ids: builtins.list[str]) -> bool:
        if not lead_ids:
            return False
        async with self.pool.connection() as conn:
            r = await (await conn.execute("SELECT 1 FROM leads WHERE id = ANY(%s) AND lease_until > %s",
                                          (lead_ids, time.time()))).fetchone()
        return r is not None

    async def existing_ids(self, lead_ids: builtins.list[str]) -> set[str]:
        if not lead_ids:
            return set()
        async with self.pool.connection() as conn:
            return {r["id"] for r in await (await conn.execute(
                "SELECT id FROM leads WHERE id = ANY(%s)", (lead_ids,))).fetchall()}

    async def _scrub_inbox(self, conn: Any, ids: builtins.list[str], needle: str | None) -> int:
        cond = "lead_id = ANY(%s)" + (" OR (raw IS NOT NULL AND position(%s in lower(convert_from(raw, "
                                      "'UTF8'))) > 0)" if needle else "")
        args: tuple[Any, ...] = (ids, needle) if needle else (ids,)
        try:
            keys = [r["dedupe_key"] for r in await (await conn.execute(
                f"SELECT dedupe_key FROM inbox_messages WHERE {cond}", args)).fetchall()]
        except Exception:  # noqa: BLE001 - a raw mail that is not UTF-8: fall back to the leads' own records
            keys = [r["dedupe_key"] for r in await (await conn.execute(
                "SELECT dedupe_key FROM inbox_messages WHERE lead_id = ANY(%s)", (ids,))).fetchall()]
        for key in keys:
            await conn.execute("UPDATE inbox_messages SET dedupe_key = %s, lead_id = NULL, raw = NULL, reason = NULL, "
                               "outcome = 'erased' WHERE dedupe_key = %s", (erased_key(key), key))
        return len(keys)

    async def erase_person(self, email_norm: str, email: str) -> dict[str, int]:
        needle = email.lower()
        async with self.pool.connection() as conn, conn.transaction():
            ids = [r["id"] for r in await (await conn.execute(
                f"SELECT id FROM leads WHERE {PERSON} FOR UPDATE", (email_norm, needle))).fetchall()]
            out = {"leads": len(ids)}
            out["interactions"] = (await conn.execute(
                "DELETE FROM interactions WHERE lead_id = ANY(%s)", (ids,))).rowcount
            out["replies"] = (await conn.execute("DELETE FROM replies WHERE lead_id = ANY(%s)", (ids,))).rowcount
            out["events"] = (await conn.execute("DELETE FROM lead_events WHERE lead_id = ANY(%s)", (ids,))).rowcount
            async with conn.transaction():  # a savepoint: a failed raw scan must not abort the erasure
                out["inbox_records"] = await self._scrub_inbox(conn, ids, needle)
            out["known_emails"] = (await conn.execute("DELETE FROM known_emails WHERE email_norm = %s",
                                                      (email_norm,))).rowcount
            await conn.execute("DELETE FROM leads WHERE id = ANY(%s)", (ids,))
        return out

    async def truncate_wal(self) -> None:
        """Nothing to do here: PostgreSQL's WAL and dead tuples follow the server's own policy."""

    async def erased_keys(self, keys: builtins.list[str]) -> set[str]:
        if not keys:
            return set()
        hashed = {erased_key(k): k for k in keys}
        async with self.pool.connection() as conn:
            return {hashed[r["dedupe_key"]] for r in await (await conn.execute(
                "SELECT dedupe_key FROM inbox_messages WHERE dedupe_key = ANY(%s)", (list(hashed),))).fetchall()}

    async def people_before(self, cutoff: float, limit: int = 500) -> builtins.list[tuple[str, str]]:
        async with self.pool.connection() as conn:
            return [(r["email_norm"], r["email"]) for r in await (await conn.execute(
                "SELECT email_norm, email FROM leads WHERE created_at < %s AND email_norm NOT LIKE 'anonymized:%%' "
                "ORDER BY created_at LIMIT %s", (cutoff, limit))).fetchall()]

    async def anonymize_person(self, email_norm: str, email: str) -> builtins.list[str]:
        async with self.pool.connection() as conn, conn.transaction():
            ids = [r["id"] for r in await (await conn.execute(
                f"SELECT id FROM leads WHERE {PERSON} FOR UPDATE", (email_norm, email.lower()))).fetchall()]
            for lead_id in ids:
                await conn.execute(
                    "UPDATE leads SET email_norm = %s, email = '', name = '', message = '', phone = NULL, "
                    "company = NULL, source = NULL, metadata = '{}', subject = NULL, message_id = NULL, "
                    "in_reply_to = NULL, refs = NULL, clean_text = NULL, auto_headers = '{}', summary = NULL, "
                    "last_error = NULL, correction = NULL, state = CASE WHEN state IN (%s, %s, %s) THEN state "
                    "ELSE %s END WHERE id = %s",
                    (f"anonymized:{lead_id}", State.REPLIED.value, State.SKIPPED.value, State.FAILED.value,
                     State.SKIPPED.value, lead_id))
            await conn.execute("DELETE FROM interactions WHERE lead_id = ANY(%s)", (ids,))
            await conn.execute("UPDATE replies SET to_addr = 'anonymized' WHERE lead_id = ANY(%s)", (ids,))
            await conn.execute("DELETE FROM lead_events WHERE lead_id = ANY(%s)", (ids,))
            async with conn.transaction():
                await self._scrub_inbox(conn, ids, None)
            await conn.execute("DELETE FROM known_emails WHERE email_norm = %s", (email_norm,))
        return ids

    async def add_pending_erasure(self, email_norm: str, lead_ids: builtins.list[str]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("INSERT INTO pending_erasures (email_norm, lead_ids, created_at) VALUES (%s, %s, %s)",
                               (email_norm, json.dumps(lead_ids), time.time()))

    async def pending_erasures(self) -> builtins.list[tuple[int, str, builtins.list[str], float]]:
        async with self.pool.connection() as conn:
            return [(int(r["id"]), r["email_norm"], json.loads(r["lead_ids"]), float(r["created_at"]))
                    for r in await (await conn.execute(
                        "SELECT id, email_norm, lead_ids, created_at FROM pending_erasures ORDER BY id")).fetchall()]

    async def done_erasure(self, erasure_id: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM pending_erasures WHERE id = %s", (erasure_id,))
