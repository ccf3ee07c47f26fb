"""SQLite plumbing: the connections, transactions, WAL checkpoints and the store's life cycle.

The SQLite store is the embedded default (one file in the data directory, WAL mode).

Writes and small lookups run inline on the event loop on one connection (they
take microseconds; a thread hop per call measured slower under load), heavy reads
on a read-only connection in a thread, and WAL checkpoints on a thread of their
own. Callers batch (intake_many) so a busy webhook pays one commit per batch. WAL with
synchronous=NORMAL survives a process crash (SIGKILL) without losing a
committed intake; only a power loss can drop the last transactions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from agent.core.writable import file_problem
from agent.errors import LeadboxError
from agent.stores.sqlite.schema import migrate, sqlite_path

T = TypeVar("T")


class SqliteBase:
    """What every part of the SQLite store runs on: ``_run`` inline, ``_read`` in a thread, ``_tx``."""

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
            migrate(db)
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
