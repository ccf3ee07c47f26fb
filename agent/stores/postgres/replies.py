"""PostgreSQL: the reply ledger (through the shared gate in ``agent.stores.ledger``), fenced by
the lead's lease, and the known contacts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from agent.core.settle import UncertainReply
from agent.core.states import GatePrior, LedgerStatus
from agent.stores import ledger
from agent.stores.postgres.connection import PostgresBase


class _Tx:
    """A PostgreSQL transaction as the gate's ``LedgerTx``: ``?`` placeholders become ``%s``."""

    for_update = " FOR UPDATE"

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def one(self, sql: str, args: Sequence[Any]) -> Sequence[Any] | None:
        row = await (await self.conn.execute(sql.replace("?", "%s"), args)).fetchone()  # type: ignore[arg-type]
        return None if row is None else tuple(row.values())

    async def run(self, sql: str, args: Sequence[Any]) -> int:
        return (await self.conn.execute(sql.replace("?", "%s"), args)).rowcount  # type: ignore[arg-type]


class PostgresReplies(PostgresBase):
    """The ledger row is written before a reply is sent; only the lease holder gets through."""

    async def reply_gate(
        self, lead_id: str, to_addr: str, message_id: str, *, window_since: float | None,
        cap_since: float, cap: int, contact: str | None = None,
        day_since: float | None = None, day_cap: int = 0,
    ) -> tuple[str | None, GatePrior]:
        """The reply's stateful checks and the ledger row in one transaction (``agent.stores.ledger``).

        For a lead claimed here, only while we hold its lease (renewed, so the send runs under a
        fresh lease; LeaseLost otherwise). Fencing makes "sending again" after ``resumed`` safe
        across replicas: the replica that lost the lease can no longer reach 'committing' (see
        reply_done), so only the current holder's send commits.
        """
        async with self.pool.connection() as conn, conn.transaction():
            await self._renew_fenced(conn, lead_id)
            return await ledger.reply_gate(
                _Tx(conn), lead_id, to_addr, message_id, now=time.time(), window_since=window_since,
                cap_since=cap_since, cap=cap, contact=contact, day_since=day_since, day_cap=day_cap)

    async def reply_begin(self, lead_id: str, to_addr: str, message_id: str) -> GatePrior:
        """Only the ledger part of the gate, no checks, fenced likewise (for tools and tests)."""
        async with self.pool.connection() as conn, conn.transaction():
            await self._renew_fenced(conn, lead_id)
            return (await ledger.reply_gate(_Tx(conn), lead_id, to_addr, message_id, now=time.time(),
                                            checks=False))[1]

    async def reply_cap_opens_at(self, since: float, cap: int, exclude_lead: str = "") -> float | None:
        async with self.pool.connection() as conn:
            return await ledger.cap_row(_Tx(conn), since, cap, exclude_lead)

    async def reply_done(self, lead_id: str, status: LedgerStatus) -> None:
        """Set the ledger status; for a lead claimed here, only while we still hold its lease.

        Raises LeaseLost otherwise: called as the transport's ``before_commit`` with
        'committing', that stops a stale replica right before its point of no return.
        """
        async with self.pool.connection() as conn, conn.transaction():
            await self._renew_fenced(conn, lead_id)
            await conn.execute("UPDATE replies SET status = %s, sent_at = %s WHERE lead_id = %s",
                               (LedgerStatus(status).value, time.time(), lead_id))

    async def uncertain_replies(self, *, since: float, lead_id: str | None = None,
                                limit: int = 200) -> list[UncertainReply]:
        q, args = ledger.uncertain_query(since, lead_id, limit)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(q.replace("?", "%s"), args)).fetchall()  # type: ignore[arg-type]
        return [UncertainReply(r["lead_id"], r["message_id"], float(r["created_at"]), r["reply_reason"],
                               r["mailbox"])
                for r in rows]

    async def settle_reply(self, lead_id: str, *, sent: bool, reason: str, now: float) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            return await ledger.settle_reply(_Tx(conn), lead_id, sent=sent, reason=reason, now=now)

    async def replies_since(self, to_addr: str | None, since: datetime, exclude_lead: str = "") -> int:
        """Replies counted by the window and the cap since a time (for tools and tests)."""
        q, args = ledger.replies_since_query(to_addr, since.timestamp(), exclude_lead)
        async with self.pool.connection() as conn:
            row = await _Tx(conn).one(q, args)
            return int(row[0]) if row else 0

    async def add_known_emails(self, emails: Sequence[str]) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO known_emails (email_norm, source, added_at) "
                "SELECT e, 'sheet', %s FROM unnest(%s::text[]) AS e ON CONFLICT DO NOTHING",
                (time.time(), list(emails)))
            return cur.rowcount

    async def is_known_contact(self, email_norm: str) -> bool:
        async with self.pool.connection() as conn:
            r = await (await conn.execute("SELECT 1 FROM known_emails WHERE email_norm = %s",
                                          (email_norm,))).fetchone()
            return r is not None
