"""SQLite: a person's data, found, exported and erased (personal-data requests and retention).

Erasure runs with ``secure_delete`` on, so freed pages are zeroed, purges the full-text index
(FTS5 keeps deleted terms until ``optimize``; its own secure-delete needs SQLite 3.44) and ends
with a WAL checkpoint that truncates the log, so neither the database file nor the WAL keeps
the person's text. Inbox records keep only a hash of their dedupe key (the Message-ID), so the
inbox never takes the person's old mail back in.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from agent.core.models import Lead
from agent.core.states import State
from agent.stores.common import PERSON, erased_key, row_to_interaction, row_to_lead
from agent.stores.sqlite.connection import SqliteBase

T = TypeVar("T")


class SqlitePrivacy(SqliteBase):
    """Find, export and erase a person's data; the ids the sheet mirror may still write."""

    async def person_leads(self, email_norm: str, email: str) -> builtins.list[Lead]:
        def work() -> builtins.list[Lead]:
            leads = [row_to_lead(r) for r in self.db.execute(
                f"SELECT * FROM leads WHERE {PERSON} ORDER BY rowid", (email_norm, email.lower()))]
            for lead in leads:
                lead.interactions = [row_to_interaction(i) for i in self.db.execute(
                    "SELECT * FROM interactions WHERE lead_id = ? ORDER BY id", (lead.id,))]
            return leads
        return await self._run(work)

    async def person_records(self, lead_ids: builtins.list[str]) -> dict[str, Any]:
        """The reply ledger rows and people's actions kept for these leads (for an export)."""
        def work() -> dict[str, Any]:
            marks = ",".join("?" * len(lead_ids))
            replies = [dict(r) for r in self.db.execute(
                f"SELECT lead_id, to_addr, message_id, status, created_at, sent_at FROM replies "
                f"WHERE lead_id IN ({marks})", lead_ids)]
            events = [dict(r) for r in self.db.execute(
                f"SELECT lead_id, at, kind, actor, detail FROM lead_events WHERE lead_id IN ({marks}) ORDER BY id",
                lead_ids)]
            return {"replies": replies, "events": events}
        return await self._run(work) if lead_ids else {"replies": [], "events": []}

    async def leases_held(self, lead_ids: builtins.list[str]) -> bool:
        """True while a worker holds any of these leads (a lead in flight)."""
        if not lead_ids:
            return False
        return await self._run(lambda: self.db.execute(
            f"SELECT 1 FROM leads WHERE id IN ({','.join('?' * len(lead_ids))}) AND lease_until > ?",
            (*lead_ids, time.time())).fetchone() is not None)

    async def existing_ids(self, lead_ids: builtins.list[str]) -> set[str]:
        if not lead_ids:
            return set()
        return await self._run(lambda: {r[0] for r in self.db.execute(
            f"SELECT id FROM leads WHERE id IN ({','.join('?' * len(lead_ids))})", lead_ids)})

    async def erase_person(self, email_norm: str, email: str) -> dict[str, int]:
        """Delete the person's leads and everything that carries their address or text; counts per place."""
        needle = email.lower()

        def work(db: sqlite3.Connection) -> dict[str, int]:
            ids = [r[0] for r in db.execute(f"SELECT id FROM leads WHERE {PERSON}", (email_norm, needle))]
            marks = ",".join("?" * len(ids))
            out = {"leads": len(ids), "interactions": 0, "replies": 0, "events": 0, "inbox_records": 0,
                   "known_emails": 0}
            if ids:
                out["interactions"] = db.execute(f"DELETE FROM interactions WHERE lead_id IN ({marks})", ids).rowcount
                out["replies"] = db.execute(f"DELETE FROM replies WHERE lead_id IN ({marks})", ids).rowcount
                out["events"] = db.execute(f"DELETE FROM lead_events WHERE lead_id IN ({marks})", ids).rowcount
            keys = [r[0] for r in db.execute(
                f"SELECT dedupe_key FROM inbox_messages WHERE lead_id IN ({marks or 'NULL'}) OR "
                "(raw IS NOT NULL AND instr(lower(CAST(raw AS TEXT)), ?) > 0)", (*ids, needle))]
            for key in keys:
                db.execute("UPDATE inbox_messages SET dedupe_key = ?, lead_id = NULL, raw = NULL, reason = NULL, "
                           "outcome = 'erased' WHERE dedupe_key = ?", (erased_key(key), key))
            out["inbox_records"] = len(keys)
            out["known_emails"] = db.execute("DELETE FROM known_emails WHERE email_norm = ?", (email_norm,)).rowcount
            if ids:
                db.execute(f"DELETE FROM leads WHERE id IN ({marks})", ids)
            return out

        return await self._erase(work, lambda r: bool(r["leads"]))

    async def _erase(self, work: Callable[[sqlite3.Connection], T], touched_leads: Callable[[T], bool]) -> T:
        """One write transaction with ``secure_delete`` on (freed pages are zeroed), then the
        full-text index purged when leads were touched, then the WAL emptied: the one way every
        erasure leaves the files."""
        self.db.execute("PRAGMA secure_delete = ON")
        try:
            out = await self._run(self._tx, work)
            if touched_leads(out):
                await self._run(self._tx, lambda d: d.execute("INSERT INTO leads_fts(leads_fts) VALUES ('optimize')"))
        finally:
            self.db.execute("PRAGMA secure_delete = OFF")
        await self.truncate_wal()
        return out

    async def truncate_wal(self) -> None:
        """Copy the WAL into the database and empty it, so deleted text lives in neither file."""
        for _ in range(50):
            busy = await self._run(lambda: self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
            if not busy:
                return
            await asyncio.sleep(0.05)

    async def erased_keys(self, keys: builtins.list[str]) -> set[str]:
        """Which of these inbox dedupe keys belong to erased mail (never to be taken again)."""
        if not keys:
            return set()
        hashed = {erased_key(k): k for k in keys}
        return await self._run(lambda: {hashed[r[0]] for r in self.db.execute(
            f"SELECT dedupe_key FROM inbox_messages WHERE dedupe_key IN ({','.join('?' * len(hashed))})",
            list(hashed))})

    async def people_before(self, cutoff: float, limit: int = 500) -> builtins.list[tuple[str, str]]:
        """(email_norm, email) of leads that arrived before ``cutoff`` and are not anonymized yet."""
        return await self._run(lambda: [(r[0], r[1]) for r in self.db.execute(
            "SELECT email_norm, email FROM leads WHERE created_at < ? AND email_norm NOT LIKE 'anonymized:%' "
            "ORDER BY created_at LIMIT ?", (cutoff, limit))])

    async def anonymize_person(self, email_norm: str, email: str) -> builtins.list[str]:
        """Keep category, priority, dates and language; remove everything that names the person."""
        needle = email.lower()

        def work(db: sqlite3.Connection) -> builtins.list[str]:
            ids = [r[0] for r in db.execute(f"SELECT id FROM leads WHERE {PERSON}", (email_norm, needle))]
            for lead_id in ids:
                db.execute(
                    "UPDATE leads SET email_norm = ?, email = '', name = '', message = '', phone = NULL, "
                    "company = NULL, source = NULL, metadata = '{}', subject = NULL, message_id = NULL, "
                    "in_reply_to = NULL, refs = NULL, clean_text = NULL, auto_headers = '{}', summary = NULL, "
                    "last_error = NULL, correction = NULL, state = CASE WHEN state IN (?, ?, ?) THEN state "
                    "ELSE ? END WHERE id = ?",
                    (f"anonymized:{lead_id}", State.REPLIED.value, State.SKIPPED.value, State.FAILED.value,
                     State.SKIPPED.value, lead_id))
            if ids:
                marks = ",".join("?" * len(ids))
                db.execute(f"DELETE FROM interactions WHERE lead_id IN ({marks})", ids)
                db.execute(f"UPDATE replies SET to_addr = 'anonymized' WHERE lead_id IN ({marks})", ids)
                db.execute(f"DELETE FROM lead_events WHERE lead_id IN ({marks})", ids)
                for (key,) in db.execute(f"SELECT dedupe_key FROM inbox_messages WHERE lead_id IN ({marks})",
                                         ids).fetchall():
                    db.execute("UPDATE inbox_messages SET dedupe_key = ?, raw = NULL, reason = NULL "
                               "WHERE dedupe_key = ?", (erased_key(key), key))
            db.execute("DELETE FROM known_emails WHERE email_norm = ?", (email_norm,))
            return ids

        return await self._erase(work, bool)

    # -- erasures the sheet has not confirmed yet --------------------------------
    async def add_pending_erasure(self, email_norm: str, lead_ids: builtins.list[str]) -> None:
        await self._run(self._tx, lambda db: db.execute(
            "INSERT INTO pending_erasures (email_norm, lead_ids, created_at) VALUES (?, ?, ?)",
            (email_norm, json.dumps(lead_ids), time.time())))

    async def pending_erasures(self) -> builtins.list[tuple[int, str, builtins.list[str], float]]:
        return await self._run(lambda: [(r[0], r[1], json.loads(r[2]), r[3]) for r in self.db.execute(
            "SELECT id, email_norm, lead_ids, created_at FROM pending_erasures ORDER BY id")])

    async def done_erasure(self, erasure_id: int) -> None:
        await self._erase(lambda d: d.execute("DELETE FROM pending_erasures WHERE id = ?", (erasure_id,)),
                          lambda _: False)
