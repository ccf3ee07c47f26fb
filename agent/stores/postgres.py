"""PostgreSQL store: several replicas of the daemon share one database.

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
import builtins
import hashlib
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from agent.core.models import EmailIntake, IntakeResult, Lead, LeadIn, checkpoint_steps
from agent.errors import ConfigError, TransientError
from agent.stores.common import (
    INSERT_COLUMNS,
    UPDATE_COLUMNS,
    insert_values,
    new_id,
    row_to_interaction,
    row_to_lead,
    update_values,
)

_ACTIVE = "state NOT IN ('replied','skipped','failed')"
# The database clock as epoch seconds: leases use it so replicas need not agree on time.
_DB_NOW = "extract(epoch from clock_timestamp())::double precision"

MIGRATIONS: list[str] = [
    # 1: the initial schema, the SQLite one translated (epoch seconds as DOUBLE PRECISION,
    # BYTEA, identity ids). Ids and emails use the "C" collation: byte order keeps the
    # time-ordered ids sorted by arrival whatever the database's locale, and is cheaper.
    f"""
    CREATE TABLE leads (
      id TEXT COLLATE "C" PRIMARY KEY,
      email_norm TEXT COLLATE "C" NOT NULL UNIQUE,
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
      next_attempt_at DOUBLE PRECISION NOT NULL,
      lease_owner TEXT, lease_until DOUBLE PRECISION,
      category TEXT, summary TEXT, language TEXT, confidence DOUBLE PRECISION, classifier TEXT,
      needs_reclassify INTEGER NOT NULL DEFAULT 0,
      priority TEXT, priority_rule TEXT,
      mirror_status TEXT NOT NULL DEFAULT 'pending',
      reply_status TEXT NOT NULL DEFAULT 'pending',
      reply_reason TEXT, reply_message_id TEXT, replied_at DOUBLE PRECISION,
      skip_reason TEXT,
      created_at DOUBLE PRECISION NOT NULL,
      updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX leads_due ON leads(next_attempt_at) WHERE {_ACTIVE};
    CREATE INDEX leads_state ON leads(state, id);
    CREATE INDEX leads_mirror ON leads(id)
      WHERE mirror_status IN ('pending','error') AND state IN ('mirrored','replied','skipped','failed');
    CREATE INDEX leads_reclassify ON leads(id) WHERE needs_reclassify = 1;
    CREATE TABLE interactions (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      lead_id TEXT COLLATE "C" NOT NULL REFERENCES leads(id),
      intake TEXT NOT NULL, message TEXT NOT NULL, subject TEXT, message_id TEXT,
      received_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX interactions_lead ON interactions(lead_id, id);
    CREATE TABLE replies (
      lead_id TEXT COLLATE "C" PRIMARY KEY,
      to_addr TEXT COLLATE "C" NOT NULL,
      message_id TEXT NOT NULL,
      status TEXT NOT NULL,
      created_at DOUBLE PRECISION NOT NULL,
      sent_at DOUBLE PRECISION
    );
    CREATE INDEX replies_to ON replies(to_addr, created_at);
    CREATE INDEX replies_time ON replies(created_at);
    CREATE TABLE inbox_messages (
      dedupe_key TEXT COLLATE "C" PRIMARY KEY,
      mailbox TEXT NOT NULL, uidvalidity BIGINT NOT NULL, uid BIGINT NOT NULL,
      lead_id TEXT, outcome TEXT NOT NULL, reason TEXT, raw BYTEA,
      seen_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE inbox_checkpoints (
      mailbox TEXT PRIMARY KEY, uidvalidity BIGINT NOT NULL, last_uid BIGINT NOT NULL,
      updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE known_emails (
      email_norm TEXT COLLATE "C" PRIMARY KEY, source TEXT NOT NULL,
      added_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 2: the reply caps count sent replies in a window without reading the table (issue 20)
    "CREATE INDEX replies_counted ON replies(created_at, status, lead_id);",
]

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


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (same in every replica and release).

    Python's ``hash`` is salted per process, and PostgreSQL's ``hashtext`` is only 32
    bits and not a documented stable interface, so a truncated BLAKE2b digest is used.
    """
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


MIGRATION_LOCK = advisory_key("leadbox:migrate")


def _leader_key(name: str) -> int:
    return advisory_key(f"leadbox:leader:{name}")


class LeaseLost(TransientError):
    """Another replica now holds this lead's lease (ours ran out): leave the lead to it."""


class PostgresStore:
    """The Store protocol on PostgreSQL, safe for several processes at once."""

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

    # -- plumbing -------------------------------------------------------
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
        except Exception as e:
            await pool.close()
            host = conninfo_to_dict(self.conninfo).get("host", "localhost")
            raise ConfigError(
                f"store.url / DATABASE_URL: cannot connect to PostgreSQL at {host}: {e}; "
                "check the URL and that the server is up") from None
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            # Transaction-level: released at commit or rollback, even if we crash mid-way.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await (await conn.execute("SELECT max(version) AS v FROM schema_version")).fetchone()
            current = (row or {}).get("v") or 0
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version > current:
                    await conn.execute(sql)  # type: ignore[arg-type]  # trusted DDL, no parameters
                    await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    async def schema_version(self) -> int:
        """The applied migration version (for tests and ``check-config``-style diagnostics)."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT max(version) AS v FROM schema_version")).fetchone()
            return int((row or {}).get("v") or 0)

    async def close(self) -> None:
        await self._drop_leader_conn()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")

    # -- intake ---------------------------------------------------------
    _INSERT = (
        f"INSERT INTO leads ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(INSERT_COLUMNS))}) "
        "ON CONFLICT (email_norm) DO NOTHING RETURNING id"
    )
    _INTERACTION = (
        "INSERT INTO interactions (lead_id, intake, message, subject, message_id, received_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)"
    )

    async def _intake_rows(self, conn: psycopg.AsyncConnection[Any], items: Sequence[LeadIn],
                           now: float) -> list[IntakeResult]:
        """Write items inside the caller's transaction; results in the items' order.

        Three pipelined round trips whatever the batch size: insert all, look up the ids
        of those that already existed, add their interactions.
        """
        order = sorted(range(len(items)), key=lambda i: items[i].email_norm)  # stable: lock order
        ids = {i: new_id(now) for i in order}
        results: dict[int, IntakeResult] = {}
        async with conn.cursor() as cur:
            await cur.executemany(self._INSERT, [insert_values(items[i], ids[i], now) for i in order],
                                  returning=True)
            dup: list[int] = []
            for i in order:
                if await cur.fetchone() is not None:
                    results[i] = IntakeResult(ids[i], duplicate=False)
                else:
                    dup.append(i)
                cur.nextset()
            if dup:
                await cur.executemany("SELECT id FROM leads WHERE email_norm = %s",
                                      [(items[i].email_norm,) for i in dup], returning=True)
                for i in dup:
                    row = await cur.fetchone()
                    assert row is not None, "a conflicting lead is committed or ours"
                    results[i] = IntakeResult(row["id"], duplicate=True)
                    cur.nextset()
                await cur.executemany(self._INTERACTION, [
                    (results[i].lead_id, items[i].intake, items[i].message, items[i].subject,
                     items[i].message_id, now) for i in dup])
        return [results[i] for i in range(len(items))]

    async def intake_many(self, items: Sequence[LeadIn]) -> list[IntakeResult]:
        if not items:
            return []
        async with self.pool.connection() as conn, conn.transaction():
            return await self._intake_rows(conn, items, time.time())

    async def intake_email(
        self, item: LeadIn | None, *, mailbox: str, uidvalidity: int, uid: int,
        dedupe_key: str, skip_reason: str | None = None, raw: bytes | None = None,
    ) -> IntakeResult | None:
        now = time.time()
        async with self.pool.connection() as conn, conn.transaction():
            # Claim the key first: a second poller racing on the same message waits here
            # for the first one's commit and then finds the key taken.
            cur = await conn.execute(
                "INSERT INTO inbox_messages (dedupe_key, mailbox, uidvalidity, uid, outcome, seen_at) "
                "VALUES (%s, %s, %s, %s, 'pending', %s) ON CONFLICT (dedupe_key) DO NOTHING RETURNING 1",
                (dedupe_key, mailbox, uidvalidity, uid, now))
            result: IntakeResult | None = None
            if await cur.fetchone() is not None:
                if item is not None:
                    result = (await self._intake_rows(conn, [item], now))[0]
                    outcome = "interaction" if result.duplicate else "lead"
                else:
                    outcome = "quarantined" if raw is not None else "skipped"
                await conn.execute(
                    "UPDATE inbox_messages SET lead_id = %s, outcome = %s, reason = %s, raw = %s "
                    "WHERE dedupe_key = %s",
                    (result.lead_id if result else None, outcome, skip_reason, raw, dedupe_key))
            await conn.execute(
                "INSERT INTO inbox_checkpoints (mailbox, uidvalidity, last_uid, updated_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (mailbox) DO UPDATE SET "
                "last_uid = CASE WHEN inbox_checkpoints.uidvalidity = excluded.uidvalidity "
                "  THEN greatest(inbox_checkpoints.last_uid, excluded.last_uid) ELSE excluded.last_uid END, "
                "uidvalidity = excluded.uidvalidity, updated_at = excluded.updated_at",
                (mailbox, uidvalidity, uid, now))
            return result

    _ADVANCE_CHECKPOINT = (
        "INSERT INTO inbox_checkpoints (mailbox, uidvalidity, last_uid, updated_at) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (mailbox) DO UPDATE SET "
        "last_uid = CASE WHEN inbox_checkpoints.uidvalidity = excluded.uidvalidity "
        "  THEN greatest(inbox_checkpoints.last_uid, excluded.last_uid) ELSE excluded.last_uid END, "
        "uidvalidity = excluded.uidvalidity, updated_at = excluded.updated_at"
    )

    async def intake_emails(self, batch: Sequence[EmailIntake]) -> list[IntakeResult | None]:
        """``intake_email`` for each message of ``batch``, in order, in one transaction.

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
            claimed: set[int] = set()
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO inbox_messages (dedupe_key, mailbox, uidvalidity, uid, outcome, seen_at) "
                    "VALUES (%s, %s, %s, %s, 'pending', %s) ON CONFLICT (dedupe_key) DO NOTHING RETURNING 1",
                    [(batch[i].dedupe_key, batch[i].mailbox, batch[i].uidvalidity, batch[i].uid, now)
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
                if done is not None:
                    outcome = "interaction" if done.duplicate else "lead"
                else:
                    outcome = "quarantined" if e.raw is not None else "skipped"
                updates.append((done.lead_id if done else None, outcome, e.skip_reason, e.raw, e.dedupe_key))
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

    # -- work queue -----------------------------------------------------
    async def claim(self, limit: int, owner: str, lease_seconds: float) -> list[Lead]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                f"UPDATE leads SET lease_owner = %(owner)s, lease_until = {_DB_NOW} + %(lease)s "
                "WHERE id IN ("
                f"  SELECT id FROM leads WHERE {_ACTIVE} AND next_attempt_at <= %(now)s "
                f"  AND (lease_until IS NULL OR lease_until < {_DB_NOW}) "
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
        + f", lease_until = CASE WHEN %s THEN NULL WHEN %s::text IS NOT NULL THEN {_DB_NOW} + %s"
        + " ELSE lease_until END"
        + " WHERE id = %s AND (%s::text IS NULL OR lease_owner = %s)"
    )

    def _update_args(self, lead: Lead, release: bool, nxt: float | None, now: float) -> tuple[Any, ...]:
        fence, lease = self._claimed.get(lead.id, (None, 0.0))
        vals = update_values(lead, now if nxt is None else nxt, now)
        return (*vals, release, release, fence, lease, lead.id, fence, fence)

    async def update(
        self, lead: Lead, *, release: bool = False, next_attempt_at: float | None = None,
        ledger_status: str | None = None,
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
                                   (ledger_status, time.time(), lead.id))
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

    async def set_mirror_status(self, lead_id: str, status: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE leads SET mirror_status = %s WHERE id = %s", (status, lead_id))

    # -- reading --------------------------------------------------------
    async def get(self, lead_id: str) -> Lead | None:
        async with self.pool.connection() as conn:
            r = await (await conn.execute("SELECT * FROM leads WHERE id = %s", (lead_id,))).fetchone()
            if r is None:
                return None
            lead = row_to_lead(r)
            rows = await (await conn.execute(
                "SELECT * FROM interactions WHERE lead_id = %s ORDER BY id", (lead_id,))).fetchall()
            lead.interactions = [row_to_interaction(i) for i in rows]
            return lead

    async def get_by_email(self, email_norm: str) -> Lead | None:
        async with self.pool.connection() as conn:
            r = await (await conn.execute("SELECT id FROM leads WHERE email_norm = %s", (email_norm,))).fetchone()
        return await self.get(r["id"]) if r else None

    async def list(
        self, *, state: str | None = None, category: str | None = None,
        priority: str | None = None, limit: int = 50, cursor: str | None = None,
        reply_status: str | None = None,
    ) -> tuple[builtins.list[Lead], str | None]:
        where: list[str] = []
        args: list[Any] = []
        for col, val in (("state", state), ("category", category), ("priority", priority),
                             ("reply_status", reply_status)):
            if val:
                where.append(f"{col} = %s")
                args.append(val)
        if cursor:
            where.append("id < %s")
            args.append(cursor)
        q = "SELECT * FROM leads" + (" WHERE " + " AND ".join(where) if where else "")
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(q + " ORDER BY id DESC LIMIT %s", (*args, limit + 1))).fetchall()  # type: ignore[arg-type]
        leads = [row_to_lead(r) for r in rows[:limit]]
        nxt = leads[-1].id if len(rows) > limit and leads else None
        return leads, nxt

    async def counts(self) -> dict[str, int]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute("SELECT state, count(*) AS n FROM leads GROUP BY state")).fetchall()
            return {r["state"]: int(r["n"]) for r in rows}

    async def queue_depth(self) -> int:
        async with self.pool.connection() as conn:
            r = await (await conn.execute(f"SELECT count(*) AS n FROM leads WHERE {_ACTIVE}")).fetchone()
            return int(r["n"]) if r else 0

    async def retry(self, lead_id: str | None = None, *, all_failed: bool = False) -> int:
        cond = "state = 'failed'" + ("" if all_failed else " AND id = %s")
        args: tuple[Any, ...] = () if all_failed else (lead_id,)
        now = time.time()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE leads SET state = CASE WHEN category IS NULL THEN 'received' "
                "WHEN priority IS NULL THEN 'classified' ELSE 'mirrored' END, "
                "attempts = 0, next_attempt_at = %s, lease_owner = NULL, lease_until = NULL, "
                f"updated_at = %s WHERE {cond}",  # type: ignore[arg-type]
                (now, now, *args))
            return cur.rowcount

    # -- replies ledger -------------------------------------------------
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
            f"UPDATE leads SET lease_until = {_DB_NOW} + %s WHERE id = %s AND lease_owner = %s",
            (lease, lead_id, owner))
        if cur.rowcount == 0:  # the fence stays armed: later writes of this attempt fail too
            raise LeaseLost(f"lead {lead_id}: its lease passed to another replica; leaving the reply to it")

    async def reply_begin(self, lead_id: str, to_addr: str, message_id: str) -> str | None:
        """Record the intent to send; for a lead claimed here, only while we hold its lease.

        None for a fresh row; "resumed" when a row left at 'retry' or 'sending' (an attempt
        stopped before its point of no return) is reset to 'sending'; else the prior
        status ("sent", "committing", "uncertain"). Fencing makes "sending
        again" safe across replicas: the replica that lost the lease can no longer reach
        'committing' (see reply_done), so only the current holder's send commits.
        """
        async with self.pool.connection() as conn, conn.transaction():
            await self._renew_fenced(conn, lead_id)
            cur = await conn.execute(
                "INSERT INTO replies (lead_id, to_addr, message_id, status, created_at) "
                "VALUES (%s, %s, %s, 'sending', %s) ON CONFLICT (lead_id) DO NOTHING RETURNING 1",
                (lead_id, to_addr, message_id, time.time()))
            if await cur.fetchone() is not None:
                return None
            r = await (await conn.execute(
                "SELECT status FROM replies WHERE lead_id = %s FOR UPDATE", (lead_id,))).fetchone()
            assert r is not None
            if r["status"] not in ("retry", "sending"):
                return str(r["status"])
            # An earlier attempt stopped before its point of no return.
            await conn.execute("UPDATE replies SET status = 'sending', message_id = %s WHERE lead_id = %s",
                               (message_id, lead_id))
            return "resumed"

    _COUNTED = "status IN ('sent','sending','committing','uncertain')"

    async def _cap_row(self, conn: Any, since: float, cap: int, exclude: str) -> float | None:
        """created_at of the cap-th newest counted reply since ``since`` (reads at most cap rows)."""
        r = await (await conn.execute(
            f"SELECT created_at FROM replies WHERE created_at >= %s AND {self._COUNTED} AND lead_id != %s "
            "ORDER BY created_at DESC LIMIT 1 OFFSET %s", (since, exclude, cap - 1))).fetchone()
        return None if r is None else float(r["created_at"])

    async def reply_gate(
        self, lead_id: str, to_addr: str, message_id: str, *, window_since: float | None,
        cap_since: float, cap: int, contact: str | None = None,
        day_since: float | None = None, day_cap: int = 0,
    ) -> tuple[str | None, str | None]:
        """The reply's stateful checks and the ledger row in one transaction (see SqliteStore).

        Fenced like reply_begin: only the replica holding the lead's lease passes. Replicas
        taking the caps' last slots at once may overshoot a cap by the few sends in flight.
        """
        async with self.pool.connection() as conn, conn.transaction():
            await self._renew_fenced(conn, lead_id)
            r = await (await conn.execute(
                "SELECT status FROM replies WHERE lead_id = %s FOR UPDATE", (lead_id,))).fetchone()
            if r is not None and r["status"] not in ("retry", "sending"):
                return None, str(r["status"])
            if r is None:
                if await (await conn.execute(
                        "SELECT 1 FROM known_emails WHERE email_norm IN (%s, %s)",
                        (to_addr, contact or to_addr))).fetchone():
                    return "known-contact", None
                if window_since is not None and await (await conn.execute(
                        f"SELECT 1 FROM replies WHERE to_addr = %s AND created_at >= %s AND {self._COUNTED} LIMIT 1",
                        (to_addr, window_since))).fetchone():
                    return "reply-window", None
            if cap and await self._cap_row(conn, cap_since, cap, lead_id) is not None:
                return "reply-cap", None
            if day_cap and day_since is not None and await self._cap_row(conn, day_since, day_cap, lead_id) is not None:
                return "reply-cap-day", None
            if r is not None:  # waited, or an earlier attempt stopped before its point of no return
                await conn.execute(
                    "UPDATE replies SET status = 'sending', message_id = %s, created_at = %s WHERE lead_id = %s",
                    (message_id, time.time(), lead_id))
                return None, "resumed"
            cur = await conn.execute(
                "INSERT INTO replies (lead_id, to_addr, message_id, status, created_at) "
                "VALUES (%s, %s, %s, 'sending', %s) ON CONFLICT (lead_id) DO NOTHING RETURNING 1",
                (lead_id, to_addr, message_id, time.time()))
            if await cur.fetchone() is None:  # a concurrent attempt wrote it first
                return None, "sending-elsewhere"
            return None, None

    async def reply_cap_opens_at(self, since: float, cap: int, exclude_lead: str = "") -> float | None:
        async with self.pool.connection() as conn:
            return await self._cap_row(conn, since, cap, exclude_lead)

    async def reply_done(self, lead_id: str, status: str) -> None:
        """Set the ledger status; for a lead claimed here, only while we still hold its lease.

        Raises LeaseLost otherwise: called as the transport's ``before_commit`` with
        'committing', that stops a stale replica right before its point of no return.
        """
        async with self.pool.connection() as conn, conn.transaction():
            await self._renew_fenced(conn, lead_id)
            await conn.execute("UPDATE replies SET status = %s, sent_at = %s WHERE lead_id = %s",
                               (status, time.time(), lead_id))

    async def replies_since(self, to_addr: str | None, since: datetime, exclude_lead: str = "") -> int:
        q = ("SELECT count(*) AS n FROM replies WHERE created_at >= %s "
             "AND status IN ('sent','sending','committing','uncertain') AND lead_id != %s")
        args: tuple[Any, ...] = (since.timestamp(), exclude_lead)
        if to_addr is not None:
            q += " AND to_addr = %s"
            args = (*args, to_addr)
        async with self.pool.connection() as conn:
            r = await (await conn.execute(q, args)).fetchone()  # type: ignore[arg-type]
            return int(r["n"]) if r else 0

    # -- side jobs ------------------------------------------------------
    async def needing_reclassify(self, limit: int) -> builtins.list[Lead]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT * FROM leads WHERE needs_reclassify = 1 AND state IN ('replied','skipped','failed') ORDER BY id LIMIT %s", (limit,))).fetchall()
        return [row_to_lead(r) for r in rows]

    async def mirror_pending(self, limit: int) -> builtins.list[Lead]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT * FROM leads WHERE mirror_status IN ('pending','error') "
                "AND state IN ('mirrored','replied','skipped','failed') ORDER BY id LIMIT %s",
                (limit,))).fetchall()
        return [row_to_lead(r) for r in rows]

    async def add_known_emails(self, emails: Sequence[str]) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO known_emails (email_norm, source, added_at) "
                "SELECT e, 'sheet', %s FROM unnest(%s::text[]) AS e ON CONFLICT DO NOTHING",
                (time.time(), list(emails)))
            return cur.rowcount

    async def recover(self) -> None:
        """Nothing to do: other replicas' leases are live work, and ours expire by themselves.

        (SQLite clears every lease at start because one process owns the file; here a
        restarted replica has a new owner name, and its old leases run out at
        ``lease_until``, after which any replica claims those leads.)
        """

    async def is_known_contact(self, email_norm: str) -> bool:
        async with self.pool.connection() as conn:
            r = await (await conn.execute("SELECT 1 FROM known_emails WHERE email_norm = %s",
                                          (email_norm,))).fetchone()
            return r is not None

    # -- leadership -----------------------------------------------------
    async def try_acquire_leadership(self, name: str) -> bool:
        """True while this process leads ``name`` (e.g. ``inbox:INBOX``); call before each turn.

        The lock belongs to a dedicated session: if that session died (server restart,
        network), PostgreSQL has already released the lock, so we drop what we thought we
        held and compete again on a new connection. Errors mean "not leading now".
        """
        async with self._leader_lock:
            try:
                conn = await self._leader_connection()
                if name in self._leading:
                    await asyncio.wait_for(conn.execute("SELECT 1"), self.pool_timeout)
                    return True
                cur = await asyncio.wait_for(
                    conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_leader_key(name),)),
                    self.pool_timeout)
                row = await cur.fetchone()
            except (psycopg.Error, OSError, TimeoutError):
                await self._drop_leader_conn()
                return False
            if row is not None and row["ok"]:
                self._leading.add(name)
                return True
            return False

    async def release_leadership(self, name: str) -> None:
        """Step down (e.g. the poller stops) so another replica can lead at once."""
        async with self._leader_lock:
            if name not in self._leading:
                return
            self._leading.discard(name)
            conn = self._leader_conn
            if conn is None:
                return
            try:
                await asyncio.wait_for(
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_leader_key(name),)), self.pool_timeout)
            except (psycopg.Error, OSError, TimeoutError):
                await self._drop_leader_conn()  # the session's end releases it anyway

    async def _leader_connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._leader_conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        await self._drop_leader_conn()
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, row_factory=dict_row)
        self._leader_conn = conn
        return conn

    async def _drop_leader_conn(self) -> None:
        """Forget every leadership: they all lived in this session."""
        self._leading.clear()
        conn, self._leader_conn = self._leader_conn, None
        if conn is not None and not conn.closed:
            try:  # release now: the server frees a closed session's locks only a moment later
                await asyncio.wait_for(conn.execute("SELECT pg_advisory_unlock_all()"), 1.0)
            except (psycopg.Error, OSError, TimeoutError):
                pass
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (psycopg.Error, OSError, TimeoutError):
                pass
