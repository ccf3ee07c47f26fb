"""Durable intake with group commit: concurrent requests share one transaction.

A webhook request is answered only after its record is committed. Requests that
arrive while a commit is in flight are collected and committed together next,
so throughput grows with load instead of paying one commit per request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.models import IntakeResult, LeadIn
from agent.ports import Store

BUSY_RATE = 3000.0  # requests/s above which intake has the loop to itself (the worker yields)


class IntakeBatcher:
    def __init__(self, store: Store, max_batch: int = 512) -> None:
        self.store = store
        self.max_batch = max_batch
        self._pending: list[tuple[LeadIn, asyncio.Future[IntakeResult]]] = []
        self._flushing = False
        self._window_start = 0.0
        self._window_count = 0
        self._prev_count = 0

    def busy(self) -> bool:
        """True during a heavy burst (over ~3,000 requests/s): the worker then yields the loop.

        Below that the loop has room for both, and a worker that yielded under steady
        load would fall behind for good. The rate spans the previous and the current
        half-second window, so it does not drop to zero each time a window starts.
        """
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed > 1.0:
            return False
        return (self._prev_count + self._window_count) / (0.5 + elapsed) >= BUSY_RATE

    async def submit(self, item: LeadIn) -> IntakeResult:
        now = time.monotonic()
        if now - self._window_start > 0.5:
            recent = now - self._window_start < 1.0
            self._prev_count = self._window_count if recent else 0
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[IntakeResult] = loop.create_future()
        self._pending.append((item, fut))
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    results = await self.store.intake_many([item for item, _ in batch])
                except Exception as e:  # the store is down: every waiter gets the error
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, fut), res in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(res)
        finally:
            self._flushing = False

    def stats(self) -> dict[str, Any]:
        return {"pending": len(self._pending)}
