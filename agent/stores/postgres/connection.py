"""PostgreSQL plumbing: the pool, the store's life cycle, and lease fencing.

Same public methods and behaviour as ``SqliteStore`` (the reference), with what
sharing needs on top:

- Dedupe is the unique index on ``email_norm`` (``INSERT ... ON CONFLICT DO
  NOTHING``), so two replicas receiving one address at once make one lead.
  A batch is written in ``email_norm`` order: two batches that share addresses
  take their index locks in the same order and cannot deadlock.
- The work queue is claimed with ``FOR UPDATE SKIP LOCKED`` and a lease
  (``lease_owner``, ``lease_until``) measured on the *database* clock, so the
  replicas' clocks do not have to agree. A replica that dies keeps its leads
  only until the lease runs out; then another claims them.
- Lease fencing: a replica that lost a lease (it stalled past ``lease_until``
  and another replica claimed the lead) must not write the lead back nor start
  its reply. ``update`` and ``reply_begin`` therefore check that the lead is
  still leased to the owner that claimed it in this process, and
  ``reply_begin`` renews the lease so the send itself runs under a fresh lease.
  Writes for leads this process never claimed (re-classification, admin) are
  not fenced, as in SQLite.
- Migrations run at start-up under a transaction-level advisory lock: replicas
  that start together wait for the first one and then find nothing to do.
- Leadership (one inbox poller per mailbox) is a session advisory lock on a
  dedicated connection outside the pool. PostgreSQL drops it when that session
  ends, so a dead leader is replaced at the next poll of another replica.

Connections come from a psycopg_pool pool that checks each connection before
lending it, so a database restart costs the calls made while it is down (they
raise; the webhook answers 503 and the worker retries) and nothing after.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from agent.errors import ConfigError, TransientError
from agent.stores.postgres.schema import migrate

# The database clock as epoch seconds: leases use it so replicas need not agree on time.
DB_NOW = "extract(epoch from clock_timestamp())::double precision"

# Defaults added to the DSN when it does not set them: fail a connect in seconds, and
# notice a vanished server through TCP keepalives instead of waiting forever.
_CONN_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
    "application_name": "leadbox",
}


class LeaseLost(TransientError):
    """Another replica now holds this lead's lease (ours ran out): leave the lead to it."""


class PostgresBase:
    """What every part of the PostgreSQL store runs on: the pool and the leases claimed here."""

    def __init__(self, url: str, pool_size: int = 5, *, pool_timeout: float = 5.0) -> None:
        if not url.startswith(("postgres://", "postgresql://")):
            raise ConfigError("store.url: expected postgresql://user@host:port/dbname")
        try:
            given = conninfo_to_dict(url)
        except psycopg.ProgrammingError as e:
            raise ConfigError(f"store.url / DATABASE_URL: not a valid PostgreSQL URL: {e}") from None
        self.conninfo = make_conninfo(url, **{k: v for k, v in _CONN_DEFAULTS.items() if k not in given})
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] | None = None
        # Leadership: one session outside the pool whose advisory locks are our leaderships.
        self._leader_conn: psycopg.AsyncConnection[Any] | None = None
        self._leading: set[str] = set()
        self._leader_lock = asyncio.Lock()
        # lead id -> (owner, lease seconds) for leases claimed by this process (fencing).
        self._claimed: dict[str, tuple[str, float]] = {}

    @property
    def pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def open(self) -> None:
        """Open the pool and bring the schema up to date (one replica migrates, others wait)."""
        pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
            self.conninfo, min_size=1, max_size=self.pool_size, open=False,
            timeout=self.pool_timeout, name="leadbox",
            kwargs={"autocommit": True, "row_factory": dict_row},
            # A connection broken by a server restart is found and replaced before use,
            # not handed to a caller that would fail on it.
            check=AsyncConnectionPool.check_connection,
        )
        try:
            await pool.open(wait=True, timeout=self.pool_timeout)
        except Exception as e:  # noqa: BLE001 - whatever stops the first connection is this one config error
            await pool.close()
            host = conninfo_to_dict(self.conninfo).get("host", "localhost")
            raise ConfigError(
                f"store.url / DATABASE_URL: cannot connect to PostgreSQL at {host}: {e}; "
                "check the URL and that the server is up") from None
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            await self._close_pool()
            raise

    async def _migrate(self) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await migrate(conn)

    async def schema_version(self) -> int:
        """The applied migration version (for tests and ``check-config``-style diagnostics)."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT max(version) AS v FROM schema_version")).fetchone()
            return int((row or {}).get("v") or 0)

    async def ping(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")

    async def _renew_fenced(self, conn: psycopg.AsyncConnection[Any], lead_id: str) -> None:
        """Inside a transaction: renew our lease on a lead claimed here, or raise LeaseLost.

        Locks the lead row, so a replica claiming the lead waits for (and then sees) the
        renewed lease, and the step that follows runs under a full lease.
        """
        fence = self._claimed.get(lead_id)
        if fence is None:
            return
        owner, lease = fence
        cur = await conn.execute(
            f"UPDATE leads SET lease_until = {DB_NOW} + %s WHERE id = %s AND lease_owner = %s",
            (lease, lead_id, owner))
        if cur.rowcount == 0:  # the fence stays armed: later writes of this attempt fail too
            raise LeaseLost(f"lead {lead_id}: its lease passed to another replica; leaving the reply to it")

    async def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
