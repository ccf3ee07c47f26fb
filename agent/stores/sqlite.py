"""SQLite store: the embedded default (one file in the data directory, WAL mode).

Writes and small lookups run inline on the event loop on one connection (they
take microseconds; a thread hop per call measured slower under load), heavy reads
on a read-only connection in a thread, and WAL checkpoints on a thread of their
own. Callers batch (intake_many) so a busy webhook pays one commit per batch. WAL with
synchronous=NORMAL survives a process crash (SIGKILL) without losing a
committed intake; only a power loss can drop the last transactions.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from agent.core.models import EmailIntake, IntakeResult, Lead, LeadIn, checkpoint_steps
from agent.core.writable import file_problem
from agent.errors import ConfigError, LeadboxError
from agent.stores.common import (
    INSERT_COLUMNS,
    UPDATE_COLUMNS,
    insert_values,
    new_id,
    row_to_interaction,
    row_to_lead,
    update_values,
)

T = TypeVar("T")

_ACTIVE = "state NOT IN ('replied','skipped','failed')"

MIGRATIONS: list[str] = [
    # 1: the initial schema
    f"""
    CREATE TABLE leads (
      id TEXT PRIMARY KEY,
      email_norm TEXT NOT NULL UNIQUE,
      email TEXT NOT NULL,
      name TEXT NOT NULL,
      message TEXT NOT NULL,
      intake TEXT NOT NULL,
      phone TEXT, company TEXT, source TEXT,
      metadata TEXT NOT NULL DEFAULT '{{}}',
      subject TEXT, message_id TEXT, in_reply_to TEXT, refs TEXT, clean_text TEXT,
      auto_headers TEXT NOT NULL DEFAULT '{{}}',
      state TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      last_error TEXT,
      next_attempt_at REAL NOT NULL,
      lease_owner TEXT, lease_until REAL,
      category TEXT, summary TEXT, language TEXT, confidence REAL, classifier TEXT,
      needs_reclassify INTEGER NOT NULL DEFAULT 0,
      priority TEXT, priority_rule TEXT,
      mirror_status TEXT NOT NULL DEFAULT 'pending',
      reply_status TEXT NOT NULL DEFAULT 'pending',
      reply_reason TEXT, reply_message_id TEXT, replied_at REAL,
      skip_reason TEXT,
      created_at REAL NOT NULL,
      updated_at REAL NOT NULL
    );
    CREATE INDEX leads_due ON leads(next_attempt_at) WHERE {_ACTIVE};
    CREATE INDEX leads_state ON leads(state, id);
    CREATE INDEX leads_mirror ON leads(id) WHERE mirror_status IN ('pending','error') AND state IN ('mirrored','replied','skipped','failed');
    CREATE INDEX leads_reclassify ON leads(id) WHERE needs_reclassify = 1;
    CREATE TABLE interactions (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      lead_id TEXT NOT NULL REFERENCES leads(id),
      intake TEXT NOT NULL, message TEXT NOT NULL, subject TEXT, message_id TEXT,
      received_at REAL NOT NULL
    );
    CREATE INDEX interactions_lead ON interactions(lead_id, id);
    CREATE TABLE replies (
      lead_id TEXT PRIMARY KEY,
      to_addr TEXT NOT NULL,
      message_id TEXT NOT NULL,
      status TEXT NOT NULL,
      created_at REAL NOT NULL,
      sent_at REAL
    );
    CREATE INDEX replies_to ON replies(to_addr, created_at);
    CREATE INDEX replies_time ON replies(created_at);
    CREATE TABLE inbox_messages (
      dedupe_key TEXT PRIMARY KEY,
      mailbox TEXT NOT NULL, uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL,
      lead_id TEXT, outcome TEXT NOT NULL, reason TEXT, raw BLOB,
      seen_at REAL NOT NULL
    );
    CREATE TABLE inbox_checkpoints (
      mailbox TEXT PRIMARY KEY, uidvalidity INTEGER NOT NULL, last_uid INTEGER NOT NULL,
      updated_at REAL NOT NULL
    );
    CREATE TABLE known_emails (
      email_norm TEXT PRIMARY KEY, source TEXT NOT NULL, added_at REAL NOT NULL
    );
    """,
    # 2: the reply caps count sent replies in a window without reading the table (issue 20)
    "CREATE INDEX replies_counted ON replies(created_at, status, lead_id);",
]


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative/path.db`` or ``sqlite:////abs/path.db``."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"store.url: expected sqlite:///path or postgresql://..., got {url.split(':', 1)[0]}:…")
    return Path(url[len("sqlite:///"):])


class SqliteStore:
    """The Store protocol on one SQLite file."""

    # One process owns the file (no lease fencing needed), so the worker may write the
    # final state of a whole batch in one transaction (update_many).
    batch_final_updates = True

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._reader: sqlite3.Connection | None = None
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None

    # -- plumbing -------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Writes and small lookups run inline on the event loop.

        They take microseconds (WAL, synchronous=NORMAL: a commit does not fsync; checkpoints
        run on their own thread), and measured under load a thread hop per call cost more
        than the call itself (GIL hand-offs). Heavy reads go through _read instead.
        """
        return fn(*args)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Scans (lists, counts) on a read-only connection in a thread: WAL lets them run
        beside the writer without holding up the event loop."""
        if str(self.path) == ":memory:":
            return fn(self.db)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._with_reader, fn)

    def _with_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            self._reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                           check_same_thread=False)
            self._reader.row_factory = sqlite3.Row
            self._reader.execute("PRAGMA busy_timeout=10000")
        return fn(self._reader)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    def _open(self) -> None:
        try:
            db = self._connect()
            self._db = db
            self._migrate()
        except (OSError, sqlite3.Error) as e:
            if self._db is not None:
                self._db.close()
                self._db = None
            raise self._open_error(e) from None
        if str(self.path) != ":memory:":
            # Checkpoints (copying the WAL into the database, with an fsync) would otherwise
            # run inside whichever commit crosses 1,000 pages and stall that intake batch.
            # A thread of their own runs them PASSIVE (never blocking writers) instead.
            db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # Inline on the event loop: wait for another process's lock (a CLI command) at most
        # 2 s, then fail fast (the webhook answers 503, the worker retries).
        db.execute("PRAGMA busy_timeout=2000")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def _open_error(self, e: OSError | sqlite3.Error) -> LeadboxError:
        """One line naming the file, the user id and the fix, instead of sqlite's bare
        'unable to open database file' and a traceback (e.g. a root-owned bind mount)."""
        where = f"cannot open the SQLite store {self.path.absolute()}"
        problem = file_problem(self.path)
        if problem is not None:
            return LeadboxError(f"{where}: {problem}")
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return LeadboxError(f"{where}: {why}; fix: point store.url at a SQLite file this process "
                            "can write, or move the damaged file away")

    def _checkpoint_loop(self) -> None:
        con = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            con.execute("PRAGMA busy_timeout=1000")
            while not self._stop_checkpoints.wait(0.5):
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    continue  # busy or locked: the next round catches up
        finally:
            con.close()

    def _migrate(self) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version > current:
                    for stmt in sql.split(";"):
                        if stmt.strip():
                            db.execute(stmt)
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def open(self) -> None:
        await self._run(self._open)

    async def close(self) -> None:
        """Idempotent: a failed start closes the store, and the caller may close it again."""
        if self._closed:
            return
        self._closed = True

        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join, 5)

        def _close_reader() -> None:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        await asyncio.get_running_loop().run_in_executor(self._executor, _close_reader)

        def _close() -> None:
            if self._db is not None:
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass  # the next start checkpoints what is left
                self._db.close()
                self._db = None
        await self._run(_close)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda: self.db.execute("SELECT 1").fetchone())

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            out = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return out

    # -- intake ---------------------------------------------------------
    _INSERT = (
        f"INSERT INTO leads ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))}) "
        "ON CONFLICT(email_norm) DO NOTHING"
    )

    def _intake_one(self, db: sqlite3.Connection, item: LeadIn, now: float) -> IntakeResult:
        lead_id = new_id(now)
        cur = db.execute(self._INSERT, insert_values(item, lead_id, now))
        if cur.rowcount == 1:
            return IntakeResult(lead_id, duplicate=False)
        existing = db.execute("SELECT id FROM leads WHERE email_norm = ?", (item.email_norm,)).fetchone()
        db.execute(
            "INSERT INTO interactions (lead_id, intake, message, subject, message_id, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (existing[0], item.intake, item.message, item.subject, item.message_id, now),
        )
        return IntakeResult(existing[0], duplicate=True)

    async def intake_many(self, items: Sequence[LeadIn]) -> list[IntakeResult]:
        def work(db: sqlite3.Connection) -> list[IntakeResult]:
            now = time.time()
            emails = {item.email_norm for item in items}
            if len(emails) == len(items):
                # Fast path: one executemany; if every row went in, all are new leads.
                ids = [new_id(now) for _ in items]
                before = db.total_changes
                db.executemany(self._INSERT, [insert_values(it, i, now) for it, i in zip(items, ids, strict=True)])
                if db.total_changes - before == len(items):
                    return [IntakeResult(i, duplicate=False) for i in ids]
                db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")
            return [self._intake_one(db, item, now) for item in items]
        return await self._run(self._tx, work)

    async def intake_email(
        self, item: LeadIn | None, *, mailbox: str, uidvalidity: int, uid: int,
        dedupe_key: str, skip_reason: str | None = None, raw: bytes | None = None,
    ) -> IntakeResult | None:
        def work(db: sqlite3.Connection) -> IntakeResult | None:
            now = time.time()
            seen = db.execute("SELECT 1 FROM inbox_messages WHERE dedupe_key = ?", (dedupe_key,)).fetchone()
            result: IntakeResult | None = None
            if seen is None:
                if item is not None:
                    result = self._intake_one(db, item, now)
                    outcome = "interaction" if result.duplicate else "lead"
                else:
                    outcome = "quarantined" if raw is not None else "skipped"
                db.execute(
                    "INSERT INTO inbox_messages (dedupe_key, mailbox, uidvalidity, uid, lead_id, outcome, "
                    "reason, raw, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (dedupe_key, mailbox, uidvalidity, uid, result.lead_id if result else None,
                     outcome, skip_reason, raw, now),
                )
            self._advance(db, mailbox, uidvalidity, uid, now)
            return result
        return await self._run(self._tx, work)

    async def intake_emails(self, batch: Sequence[EmailIntake]) -> list[IntakeResult | None]:
        """``intake_email`` for each message of ``batch``, in order, in one transaction.

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
            taken: set[str] = set()
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                taken.update(r[0] for r in db.execute(
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
                if res is not None:
                    outcome = "interaction" if res.duplicate else "lead"
                else:
                    outcome = "quarantined" if e.raw is not None else "skipped"
                rows.append((e.dedupe_key, e.mailbox, e.uidvalidity, e.uid, res.lead_id if res else None,
                             outcome, e.skip_reason, e.raw, now))
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

    # -- work queue -----------------------------------------------------
    async def claim(self, limit: int, owner: str, lease_seconds: float) -> list[Lead]:
        def work(db: sqlite3.Connection) -> list[Lead]:
            now = time.time()
            rows = db.execute(
                "UPDATE leads SET lease_owner = ?, lease_until = ? WHERE id IN ("
                f"  SELECT id FROM leads WHERE {_ACTIVE} AND next_attempt_at <= ? "
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
        ledger_status: str | None = None,
    ) -> None:
        """Persist the lead; ``ledger_status`` also closes its reply-ledger row in the same transaction."""
        def work(db: sqlite3.Connection) -> None:
            now = time.time()
            vals = update_values(lead, now if next_attempt_at is None else next_attempt_at, now)
            db.execute(self._UPDATE, (*vals, release, release, lead.id))
            if ledger_status is not None:
                db.execute("UPDATE replies SET status = ?, sent_at = ? WHERE lead_id = ?",
                           (ledger_status, now, lead.id))
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
            db.executemany(
                "UPDATE replies SET status = 'sent', sent_at = ? WHERE lead_id = ? AND status != 'sent'",
                [(now, lead.id) for lead, _, _ in leads if lead.state.value == "replied" and lead.reply_status == "sent"],
            )
        await self._run(self._tx, work)

    async def set_mirror_status(self, lead_id: str, status: str) -> None:
        await self._run(lambda: self.db.execute(
            "UPDATE leads SET mirror_status = ? WHERE id = ?", (status, lead_id)))

    # -- reading --------------------------------------------------------
    async def get(self, lead_id: str) -> Lead | None:
        def work() -> Lead | None:
            r = self.db.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone()
            if r is None:
                return None
            lead = row_to_lead(r)
            lead.interactions = [
                row_to_interaction(i) for i in self.db.execute(
                    "SELECT * FROM interactions WHERE lead_id = ? ORDER BY id", (lead_id,))
            ]
            return lead
        return await self._run(work)

    async def get_by_email(self, email_norm: str) -> Lead | None:
        def work() -> str | None:
            r = self.db.execute("SELECT id FROM leads WHERE email_norm = ?", (email_norm,)).fetchone()
            return r[0] if r else None
        lead_id = await self._run(work)
        return await self.get(lead_id) if lead_id else None

    async def list(
        self, *, state: str | None = None, category: str | None = None,
        priority: str | None = None, limit: int = 50, cursor: str | None = None,
        reply_status: str | None = None,
    ) -> tuple[builtins.list[Lead], str | None]:
        def work(db: sqlite3.Connection) -> tuple[builtins.list[Lead], str | None]:
            where, args = [], []
            for col, val in (("state", state), ("category", category), ("priority", priority),
                             ("reply_status", reply_status)):
                if val:
                    where.append(f"{col} = ?")
                    args.append(val)
            if cursor:
                where.append("id < ?")
                args.append(cursor)
            q = "SELECT * FROM leads" + (" WHERE " + " AND ".join(where) if where else "")
            rows = db.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit + 1)).fetchall()
            leads = [row_to_lead(r) for r in rows[:limit]]
            nxt = leads[-1].id if len(rows) > limit and leads else None
            return leads, nxt
        return await self._read(work)

    async def counts(self) -> dict[str, int]:
        return await self._read(lambda db: {
            r[0]: r[1] for r in db.execute("SELECT state, count(*) FROM leads GROUP BY state")
        })

    async def queue_depth(self) -> int:
        return await self._read(
            lambda db: db.execute(f"SELECT count(*) FROM leads WHERE {_ACTIVE}").fetchone()[0])

    async def retry(self, lead_id: str | None = None, *, all_failed: bool = False) -> int:
        def work(db: sqlite3.Connection) -> int:
            cond = "state = 'failed'" + ("" if all_failed else " AND id = ?")
            args: tuple[Any, ...] = () if all_failed else (lead_id,)
            cur = db.execute(
                "UPDATE leads SET state = CASE WHEN category IS NULL THEN 'received' "
                "WHEN priority IS NULL THEN 'classified' ELSE 'mirrored' END, "
                "attempts = 0, next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, "
                f"updated_at = ? WHERE {cond}",
                (time.time(), time.time(), *args),
            )
            return cur.rowcount
        return await self._run(self._tx, work)

    # -- replies ledger -------------------------------------------------
    async def reply_begin(self, lead_id: str, to_addr: str, message_id: str) -> str | None:
        def work(db: sqlite3.Connection) -> str | None:
            r = db.execute("SELECT status FROM replies WHERE lead_id = ?", (lead_id,)).fetchone()
            if r is not None and r[0] not in ("retry", "sending"):
                return str(r[0])
            if r is not None:  # an earlier attempt stopped before the point of no return
                db.execute("UPDATE replies SET status = 'sending', message_id = ? WHERE lead_id = ?",
                           (message_id, lead_id))
                return "resumed"
            db.execute(
                "INSERT INTO replies (lead_id, to_addr, message_id, status, created_at) "
                "VALUES (?, ?, ?, 'sending', ?)", (lead_id, to_addr, message_id, time.time()))
            return None
        return await self._run(self._tx, work)

    _COUNTED = "status IN ('sent','sending','committing','uncertain')"

    def _cap_row(self, db: sqlite3.Connection, since: float, cap: int, exclude: str) -> float | None:
        """created_at of the cap-th newest counted reply since ``since`` (reads at most cap rows)."""
        r = db.execute(
            f"SELECT created_at FROM replies WHERE created_at >= ? AND {self._COUNTED} AND lead_id != ? "
            "ORDER BY created_at DESC LIMIT 1 OFFSET ?", (since, exclude, cap - 1)).fetchone()
        return None if r is None else float(r[0])

    async def reply_gate(
        self, lead_id: str, to_addr: str, message_id: str, *, window_since: float | None,
        cap_since: float, cap: int, contact: str | None = None,
        day_since: float | None = None, day_cap: int = 0,
    ) -> tuple[str | None, str | None]:
        """The reply's stateful checks and the ledger row, in one transaction.

        Returns (skip_reason, prior). A lead whose ledger row is final already passed the
        gate: its prior status is returned as by reply_begin. A row left at 'retry' or
        'sending' (a reply that waited or was interrupted) meets the caps again, then is reset
        to 'sending' with a fresh time ("resumed"). A fresh lead meets the known-contact,
        per-address window and caps (each cap query reads at most ``cap`` rows) before a
        'sending' row is written.
        """
        def work(db: sqlite3.Connection) -> tuple[str | None, str | None]:
            r = db.execute("SELECT status FROM replies WHERE lead_id = ?", (lead_id,)).fetchone()
            if r is not None and r[0] not in ("retry", "sending"):
                return None, str(r[0])
            if r is None:
                if db.execute("SELECT 1 FROM known_emails WHERE email_norm IN (?, ?)",
                              (to_addr, contact or to_addr)).fetchone():
                    return "known-contact", None
                if window_since is not None and db.execute(
                    f"SELECT 1 FROM replies WHERE to_addr = ? AND created_at >= ? AND {self._COUNTED} LIMIT 1",
                    (to_addr, window_since),
                ).fetchone():
                    return "reply-window", None
            if cap and self._cap_row(db, cap_since, cap, lead_id) is not None:
                return "reply-cap", None
            if day_cap and day_since is not None and self._cap_row(db, day_since, day_cap, lead_id) is not None:
                return "reply-cap-day", None
            if r is not None:  # waited, or an earlier attempt stopped before the point of no return
                db.execute("UPDATE replies SET status = 'sending', message_id = ?, created_at = ? "
                           "WHERE lead_id = ?", (message_id, time.time(), lead_id))
                return None, "resumed"
            db.execute(
                "INSERT INTO replies (lead_id, to_addr, message_id, status, created_at) "
                "VALUES (?, ?, ?, 'sending', ?)", (lead_id, to_addr, message_id, time.time()))
            return None, None
        return await self._run(self._tx, work)

    async def reply_cap_opens_at(self, since: float, cap: int, exclude_lead: str = "") -> float | None:
        return await self._run(lambda: self._cap_row(self.db, since, cap, exclude_lead))

    async def reply_done(self, lead_id: str, status: str) -> None:
        await self._run(lambda: self.db.execute(
            "UPDATE replies SET status = ?, sent_at = ? WHERE lead_id = ?", (status, time.time(), lead_id)))

    async def replies_since(self, to_addr: str | None, since: datetime, exclude_lead: str = "") -> int:
        def work() -> int:
            q = "SELECT count(*) FROM replies WHERE created_at >= ? AND status IN ('sent','sending','committing','uncertain') AND lead_id != ?"
            args: tuple[Any, ...] = (since.timestamp(), exclude_lead)
            if to_addr is not None:
                q += " AND to_addr = ?"
                args = (*args, to_addr)
            return int(self.db.execute(q, args).fetchone()[0])
        return await self._run(work)

    # -- side jobs ------------------------------------------------------
    async def needing_reclassify(self, limit: int) -> builtins.list[Lead]:
        return await self._run(lambda: [row_to_lead(r) for r in self.db.execute(
            "SELECT * FROM leads WHERE needs_reclassify = 1 AND state IN ('replied','skipped','failed') ORDER BY id LIMIT ?", (limit,))])

    async def mirror_pending(self, limit: int) -> builtins.list[Lead]:
        return await self._run(lambda: [row_to_lead(r) for r in self.db.execute(
            "SELECT * FROM leads WHERE mirror_status IN ('pending','error') "
            "AND state IN ('mirrored','replied','skipped','failed') ORDER BY id LIMIT ?", (limit,))])

    async def add_known_emails(self, emails: Sequence[str]) -> int:
        def work(db: sqlite3.Connection) -> int:
            now = time.time()
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO known_emails (email_norm, source, added_at) VALUES (?, 'sheet', ?)",
                [(e, now) for e in emails])
            return db.total_changes - before
        return await self._run(self._tx, work)

    async def recover(self) -> None:
        """One process owns a SQLite file: leases left by a killed run are void at start."""
        await self._run(lambda: self.db.execute(
            f"UPDATE leads SET lease_owner = NULL, lease_until = NULL WHERE {_ACTIVE} AND lease_owner IS NOT NULL"))

    async def is_known_contact(self, email_norm: str) -> bool:
        return await self._run(lambda: self.db.execute(
            "SELECT 1 FROM known_emails WHERE email_norm = ?", (email_norm,)).fetchone() is not None)

    # -- leadership -----------------------------------------------------
    async def try_acquire_leadership(self, name: str) -> bool:
        """Always True: one process owns a SQLite file, so it leads every mailbox.

        (PostgresStore elects one replica per name with an advisory lock; the
        inbox poller calls this before every poll with either store.)
        """
        return True

    async def release_leadership(self, name: str) -> None:
        """Nothing to release: there is no one else to hand over to."""
