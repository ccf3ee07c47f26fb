"""Rows waiting for the sheet, taken off the queue in batches by one flush task.

A batch goes out when it is full (``batch_size``), when no new row has come for a short quiet
period (``quiet_seconds``: the burst is over, nobody gains from waiting), or at the latest
``flush_seconds`` after its first row (a steady trickle still gets written), and at once when
the batcher closes. Nothing upstream waits for these timers: ``add`` returns a future that the
caller may watch (the pipeline records the outcome in the store) or await (the catch-up job).
One batch is written at a time, so rows that arrive during a write form the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.errors import LeadboxError, TransientError

__all__ = ["Pending", "RowBatcher"]


@dataclass
class Pending:
    lead_id: str
    row: list[str]
    future: asyncio.Future[None]
    enqueued_at: float


def resolve(item: Pending) -> None:
    if not item.future.done():
        item.future.set_result(None)


def reject(item: Pending, error: LeadboxError) -> None:
    if not item.future.done():
        item.future.set_exception(error)
        item.future.exception()  # retrieved: no "never retrieved" noise when nobody waits


class RowBatcher:
    """The queue and its flush task; ``write`` settles every future of the batch it is given."""

    def __init__(
        self, write: Callable[[list[Pending]], Awaitable[None]], *, batch_size: int,
        flush_seconds: float, quiet_seconds: float,
    ) -> None:
        self._write = write
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.quiet_seconds = min(quiet_seconds, flush_seconds)
        self._queue: list[Pending] = []
        self._by_id: dict[str, Pending] = {}
        self._inflight: list[Pending] = []
        self._last_added = 0.0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.closing = False

    @property
    def waiting(self) -> int:
        """Rows queued or being written."""
        return len(self._queue) + len(self._inflight)

    def add(self, lead_id: str, row: list[str]) -> asyncio.Future[None]:
        """Queue a row (or join the one already queued for this lead) and return its future."""
        item = self._by_id.get(lead_id)
        if item is not None:
            return item.future
        loop = asyncio.get_running_loop()
        self._ensure_running()
        item = Pending(lead_id, row, loop.create_future(), loop.time())
        self._by_id[lead_id] = item
        self._queue.append(item)
        self._last_added = item.enqueued_at
        assert self._wake is not None
        if len(self._queue) == 1 or len(self._queue) >= self.batch_size:
            self._wake.set()
        return item.future

    def drop(self, lead_ids: set[str]) -> int:
        """Forget queued rows of these leads (an erased person); their futures settle as done."""
        kept: list[Pending] = []
        dropped = 0
        for item in self._queue:
            if item.lead_id in lead_ids:
                self._by_id.pop(item.lead_id, None)
                resolve(item)
                dropped += 1
            else:
                kept.append(item)
        self._queue = kept
        return dropped

    def take_queued(self) -> list[Pending]:
        """Remove every row not yet being written (the mirror fails them fast during an outage)."""
        rest, self._queue = self._queue, []
        for item in rest:
            self._by_id.pop(item.lead_id, None)
        return rest

    def _ensure_running(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sheet-mirror-flush")

    async def _due(self) -> None:
        """Return when the queue's first batch should go out."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while len(self._queue) < self.batch_size and not self.closing:
            now = loop.time()
            due = min(self._queue[0].enqueued_at + self.flush_seconds, self._last_added + self.quiet_seconds)
            if due <= now:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), due - now)
            except TimeoutError:
                pass

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if self.closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._due()
            batch = self._queue[: self.batch_size]
            del self._queue[: self.batch_size]
            self._inflight = batch
            try:
                await self._write(batch)
            finally:
                self._inflight = []
                for item in batch:
                    self._by_id.pop(item.lead_id, None)

    async def close(self, timeout: float) -> None:
        """Write what is queued (bounded by ``timeout``); rows left over fail as transient."""
        self.closing = True
        if self._wake is not None:
            self._wake.set()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        leftover = self._inflight + self._queue
        self._inflight, self._queue = [], []
        self._by_id.clear()
        for item in leftover:
            reject(item, TransientError("sheets: shut down before the row was written"))
        self._task = None

    def reopen(self) -> None:
        self.closing = False
