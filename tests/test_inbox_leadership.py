"""Several replicas, one mailbox: a PostgreSQL advisory lock lets exactly one poll; a survivor takes over."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.mailservers import DovecotServer
from tests.test_inbox import inbox_env, mail


async def inbox_state(session: aiohttp.ClientSession, d: DaemonProcess) -> str:
    async with session.get(f"{d.url}/readyz") as r:
        return str((await r.json())["checks"]["inbox"]["state"])


async def until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def inbox_records(url: str) -> int:
    with psycopg.connect(url) as con:
        row = con.execute("SELECT count(*) FROM inbox_messages").fetchone()
        return int(row[0]) if row else 0


@pytest.mark.slow
async def test_one_replica_polls_and_another_takes_over_when_it_dies(
    daemon_process: Any, dovecot: DovecotServer, pg_url: str, tmp_path: Path,
) -> None:
    user = dovecot.add_user()
    for i in range(1, 4):
        dovecot.append(user, "INBOX", mail(i))
    env = {k: v for k, v in inbox_env(dovecot, user, tmp_path).items() if not k.startswith("LEADBOX_STORE")}
    env.update({"DATABASE_URL": pg_url, "LEADBOX_INBOX__POLL_INTERVAL": "0.5"})
    a, b = daemon_process(env), daemon_process(env)
    a.start()
    b.start()
    outbox = tmp_path / "outbox"  # one outbox for both replicas, as docs/postgres.md says

    def replies() -> int:
        return len(list(outbox.glob("*.eml")))

    async with aiohttp.ClientSession() as s:
        async def both_polled() -> bool:
            states = {await inbox_state(s, a), await inbox_state(s, b)}
            return replies() >= 3 and states == {"ok", "not_leader"}
        await until(both_polled, 30, "one leader and one follower, 3 replies")
        leader, follower = (a, b) if await inbox_state(s, a) == "ok" else (b, a)
        leader.kill()  # SIGKILL: PostgreSQL frees the dead session's advisory lock
        for i in range(4, 6):
            dovecot.append(user, "INBOX", mail(i))

        async def taken_over() -> bool:
            return replies() >= 5 and await inbox_state(s, follower) == "ok"
        await until(taken_over, 30, "the follower to take over and answer the new mail")
    await asyncio.sleep(1.5)  # a few more polls: nothing may be taken twice
    assert follower.terminate() == 0
    assert replies() == 5
    assert inbox_records(pg_url) == 5
