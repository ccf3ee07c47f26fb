"""Benchmark the Sheets mirror against the local fake: API calls per lead, and outage catch-up.

Why these two numbers: Sheets quotas are per request, so what matters is how
many requests 10,000 leads cost (batching should make it about
10,000 / batch_size); and a Sheets outage must cost nothing but a delay, so we
measure how long the mirror takes to catch up once the server is back.

The "worker" here is a stand-in for agent/core/worker.py: a pool of tasks that call
``mirror(lead)`` and, on TransientError, retry that lead after
max(retry_after, an exponential backoff capped at --worker-max-backoff).

    .venv/bin/python bench/bench_sheets.py [--leads 10000] [--outage 60] [--outage-leads 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.core.models import Category, Lead, Priority, State
from agent.errors import TransientError
from agent.mirror.sheets import SheetMirror
from tests.fixtures.sheets_fake import SheetsFake, make_service_account

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def lead(n: int) -> Lead:
    return Lead(
        id=f"bench-{n:06d}", name=f"Person {n}", email=f"p{n}@example.com", email_norm=f"p{n}@example.com",
        message="hello", intake="webhook", state=State.SAVED, created_at=T0 + timedelta(seconds=n),
        updated_at=T0, source="bench", category=Category.SALES, priority=Priority.MEDIUM,
        summary=f"Lead number {n}",
    )


async def drive(mirror: SheetMirror, leads: list[Lead], concurrency: int, max_backoff: float) -> dict[str, int]:
    """Push every lead through mirror() like the worker would; returns retry counts."""
    queue: asyncio.Queue[tuple[Lead, int]] = asyncio.Queue()
    for item in leads:
        queue.put_nowait((item, 0))
    remaining = len(leads)
    done = asyncio.Event()
    stats = {"transient": 0}

    async def retry_later(item: Lead, attempt: int, delay: float) -> None:
        await asyncio.sleep(delay)
        queue.put_nowait((item, attempt))

    retries: set[asyncio.Task[None]] = set()

    async def worker() -> None:
        nonlocal remaining
        while not done.is_set():
            try:
                item, attempt = await asyncio.wait_for(queue.get(), 0.5)
            except TimeoutError:
                continue
            try:
                await mirror.mirror(item)
            except TransientError as exc:
                stats["transient"] += 1
                delay = max(exc.retry_after or 0.0, min(max_backoff, 0.5 * 2**attempt))
                task = asyncio.create_task(retry_later(item, attempt + 1, delay))
                retries.add(task)
                task.add_done_callback(retries.discard)
                continue
            remaining -= 1
            if remaining == 0:
                done.set()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await done.wait()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return stats


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server = SheetsFake()
    server.start_thread()
    info = make_service_account(server)
    mirror = SheetMirror(
        credentials_info=info, spreadsheet="sheet-key-1", endpoint=server.endpoint,
        batch_size=args.batch_size, flush_seconds=args.flush_seconds,
    )
    out: dict[str, Any] = {"batch_size": args.batch_size, "flush_seconds": args.flush_seconds}
    try:
        # ---- 1. steady state: N leads, count API calls
        t = time.perf_counter()
        await mirror.start()
        stats = await drive(mirror, [lead(i) for i in range(args.leads)], args.concurrency, args.worker_max_backoff)
        out["steady_seconds"] = round(time.perf_counter() - t, 2)
        calls = dict(server.calls)
        out["steady_calls"] = calls
        out["steady_total_calls"] = sum(calls.values())
        out["steady_appends"] = calls.get("values_append", 0)
        out["steady_bound"] = f"<= {args.leads // args.batch_size} + 10"
        out["steady_within_bound"] = out["steady_total_calls"] <= args.leads // args.batch_size + 10
        out["steady_transient"] = stats["transient"]
        rows = server.rows()[1:]
        out["rows_after_steady"] = len(rows)
        out["duplicate_ids"] = len(rows) - len({r[-1] for r in rows})

        # ---- 2. outage: the server goes away while more leads arrive
        server.calls.clear()
        more = [lead(args.leads + i) for i in range(args.outage_leads)]
        server.stop()
        outage_started = time.perf_counter()
        run = asyncio.create_task(drive(mirror, more, args.concurrency, args.worker_max_backoff))
        await asyncio.sleep(args.outage)
        server.start()
        back = time.perf_counter()
        stats = await run
        finished = time.perf_counter()
        out["outage_seconds"] = round(back - outage_started, 2)
        out["outage_leads"] = args.outage_leads
        out["catch_up_seconds"] = round(finished - back, 2)
        out["outage_transient_errors_seen_by_worker"] = stats["transient"]
        out["after_outage_calls"] = dict(server.calls)
        rows = server.rows()[1:]
        out["rows_total"] = len(rows)
        out["duplicate_ids_total"] = len(rows) - len({r[-1] for r in rows})
        out["all_present"] = {r[-1] for r in rows} == {f"bench-{n:06d}" for n in range(args.leads + args.outage_leads)}
    finally:
        await mirror.close()
        server.shutdown()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--leads", type=int, default=10_000)
    p.add_argument("--outage", type=float, default=60.0, help="seconds the sheet server is down")
    p.add_argument("--outage-leads", type=int, default=2_000, help="leads that arrive during the outage")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--flush-seconds", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=100, help="worker tasks calling mirror()")
    p.add_argument("--worker-max-backoff", type=float, default=5.0, help="cap of the stand-in worker's retry delay")
    a = p.parse_args()
    result = asyncio.run(main(a))
    result["machine"] = f"{platform.platform()}; python {platform.python_version()}; {os.cpu_count()} CPUs"
    result["command"] = "python " + " ".join(sys.argv)
    print(json.dumps(result, indent=2))
