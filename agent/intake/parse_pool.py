"""Parsing fetched mail off the event loop: worker processes for a backlog, a thread for a trickle.

Parsing is the expensive part of the inbox (``policy.default``; ~0.25 ms a message). With cores to
spare (3 or more: one stays with the daemon's IMAP, TLS and store work) a large batch is parsed in
worker processes, otherwise in a thread. On 2 cores worker processes were slower than the thread
(bench/results_inbox.md). A pool that breaks is given up for the thread, never for lost mail.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from agent.intake.email_parse import ParsedEmail, parse_email

__all__ = ["PARSE_RESERVED_CORES", "PROCESS_PARSE_MIN", "ParseOptions", "ParsePool"]

log = logging.getLogger("leadbox.inbox")

# Batches at least this big are parsed in worker processes when there are cores to spare.
PROCESS_PARSE_MIN = 64
# Cores left to this process (event loop, IMAP/TLS thread, store thread) when sizing the pool.
PARSE_RESERVED_CORES = 1


@dataclass(frozen=True)
class ParseOptions:
    own_addresses: frozenset[str]
    own_domains: frozenset[str]
    max_bytes: int
    form_senders: frozenset[str] = frozenset()


def parse_many(raws: list[bytes], opts: ParseOptions) -> list[ParsedEmail]:
    """Parse a chunk of messages (module level so worker processes can run it)."""
    return [parse_email(r, own_addresses=opts.own_addresses, own_domains=opts.own_domains,
                        max_bytes=opts.max_bytes, form_senders=opts.form_senders) for r in raws]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ParsePool:
    """``parse(raws)``: in worker processes (started on first need) or in a thread."""

    def __init__(self, opts: ParseOptions) -> None:
        self.opts = opts
        # Worker processes only pay off with at least 2 of them beside this process.
        self.workers = max(1, _cpu_count() - PARSE_RESERVED_CORES)
        self.pool: ProcessPoolExecutor | None = None
        self.closed = False

    async def parse(self, raws: list[bytes]) -> list[ParsedEmail]:
        """The parsed messages, in order."""
        loop = asyncio.get_running_loop()
        if len(raws) >= PROCESS_PARSE_MIN and self.workers > 1 and not self.closed:
            pool = self._process_pool()
            step = math.ceil(len(raws) / self.workers)
            chunks = [raws[i:i + step] for i in range(0, len(raws), step)]
            try:
                parts = await asyncio.gather(
                    *(loop.run_in_executor(pool, parse_many, c, self.opts) for c in chunks))
                return [p for part in parts for p in part]
            except Exception as e:  # noqa: BLE001 - a broken pool must not stop intake
                log.warning("inbox: parse workers failed; parsing in a thread",
                            extra={"reason": f"{type(e).__name__}: {e}"})
                self.workers = 1
        return await asyncio.to_thread(parse_many, raws, self.opts)

    def _process_pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            # spawn, not fork: this process has threads (IMAP, SQLite, IDLE).
            ctx = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
        return self.pool

    def close(self) -> None:
        """Stop the worker processes (parsing goes on in a thread if asked again)."""
        self.closed = True
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
