"""PostgreSQL: leadership for singleton jobs (one inbox poller per mailbox among the replicas).

A session advisory lock on a dedicated connection outside the pool: PostgreSQL drops it when that
session ends, so a dead leader is replaced at the next poll of another replica.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg.rows import dict_row

from agent.stores.postgres.connection import PostgresBase
from agent.stores.postgres.schema import advisory_key


def _leader_key(name: str) -> int:
    return advisory_key(f"leadbox:leader:{name}")


class PostgresLeadership(PostgresBase):
    """``try_acquire_leadership`` before each turn, ``release_leadership`` when stepping down."""

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
