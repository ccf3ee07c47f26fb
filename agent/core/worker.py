"""The worker: claims due leads in bounded batches and drives each through STEPS.

Failures of a step are retried with exponential backoff and jitter; after
``max_attempts`` the lead is ``failed`` with its last error kept (a human can
``leadbox leads retry``). A step that must wait (``Deferred``: the mail transport is paused,
a reply cap is full) leaves the lead in its state until the given time, spending no
attempt. An unexpected exception is treated like a transient
failure with its traceback kept, so the loop never dies and never drops a lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from agent.config import WorkerConfig
from agent.core.backoff import backoff_delay
from agent.core.models import FINAL_STATES, Lead, State
from agent.core.pipeline import STEPS, Services, Step
from agent.core.states import LedgerStatus, ReplyStatus
from agent.errors import Deferred, PermanentError, TransientError

log = logging.getLogger("leadbox.worker")


class Worker:
    def __init__(self, svc: Services, cfg: WorkerConfig, steps: Sequence[Step] = STEPS,
                 contended: Callable[[], bool] = lambda: False) -> None:
        self.svc, self.cfg, self.steps = svc, cfg, list(steps)
        self.contended = contended
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{random.randrange(1 << 30):x}"
        self._running = False
        self._again = False
        self._stopping = False
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._batched = svc.store.batch_final_updates
        self._finals: list[Lead] = []

    # -- scheduling -----------------------------------------------------
    def kick(self) -> None:
        """Start a sweep now (new intake) unless one runs; a running sweep loops again."""
        if self._stopping:
            return
        if self._running:
            self._again = True
            return
        task = asyncio.get_running_loop().create_task(self.sweep())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sweep(self) -> int:
        """Drain due work in batches; the scheduler calls this periodically as the safety net."""
        if self._running or self._stopping:
            self._again = True
            return 0
        self._running = True
        current = asyncio.current_task()
        if current is not None:  # scheduler-started sweeps too: stop() waits for them
            self._tasks.add(current)
            current.add_done_callback(self._tasks.discard)
        done = 0
        running: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping:
                self._again = False
                contended = self.contended()
                size = min(self.cfg.batch_size, 8) if contended else self.cfg.batch_size
                leads = []
                if len(running) < size:
                    leads = await self.svc.store.claim(size - len(running), self.owner, self.cfg.lease_seconds)
                if not leads and not running:
                    if self._again:
                        continue
                    break
                t0 = time.monotonic()
                for lead in leads:
                    task = asyncio.get_running_loop().create_task(self._guarded(lead))
                    running.add(task)
                    task.add_done_callback(running.discard)
                done += len(leads)
                # Keep the batch's places filled: claim again once half of them are free, so a
                # batch never waits for its slowest lead (an LLM answer, a slow SMTP server).
                # While intake is busy, or the queue is empty for now, finish what runs first.
                await _until_at_most(running, size // 2 if leads and not contended else 0)
                await self._flush_finals()
                # Intake has priority: while requests pile up the worker takes small
                # batches and about a twentieth of the loop, and drains the backlog after.
                if contended:
                    await asyncio.sleep(min(0.5, 19 * (time.monotonic() - t0)))
                else:
                    await asyncio.sleep(0)
            await _until_at_most(running, 0)
            await self._flush_finals()
        except Exception:
            log.exception("worker sweep failed; will retry on the next tick")
        finally:
            if running:  # left by an error or a cancellation: their leases are released
                for task in list(running):
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self._flush_finals()
            self._running = False
        return done

    async def _flush_finals(self) -> None:
        if not self._finals:
            return
        finals, self._finals = self._finals, []
        await self.svc.store.update_many([(lead, True, None) for lead in finals])

    async def stop(self, grace: float) -> None:
        """No new batches; wait up to ``grace`` for in-flight leads (their leases keep them safe)."""
        self._stopping = True
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still, timeout=1)

    # -- one lead -------------------------------------------------------
    async def _guarded(self, lead: Lead) -> None:
        async with contextlib.AsyncExitStack() as held:
            await self.process(lead, held)

    async def process(self, lead: Lead, held: contextlib.AsyncExitStack | None = None) -> None:
        """Drive one lead through the steps.

        ``worker.concurrency`` bounds the leads inside steps that do not bound themselves; a
        step that has its own limit (the LLM call: ``classifier.concurrency``) runs before the
        lead takes one of those places, so slow remote calls do not hold the rest back.
        """
        store, metrics = self.svc.store, self.svc.metrics
        for step in self.steps:
            if lead.state is not step.applies_to:
                continue
            if held is not None and not step.limits_itself:
                await held.enter_async_context(self._sem)
                held = None  # taken: kept until the lead leaves the worker
            t0 = time.perf_counter()
            try:
                await step.run(lead, self.svc)
            except Deferred as e:  # not the lead's fault (a paused transport, a full cap): no attempt spent
                await self.svc.store.update(lead, release=True, next_attempt_at=max(e.until, time.time() + 0.2))
                return
            except TransientError as e:
                await self._retry(lead, step.name, str(e), e.retry_after)
                return
            except PermanentError as e:
                await self._fail(lead, step.name, str(e))
                return
            except asyncio.CancelledError:
                await store.update(lead, release=True)
                raise
            except Exception as e:  # noqa: BLE001 - a bug or an unexpected reply: keep the traceback, retry
                tb = traceback.format_exc(limit=5)
                log.error("step crashed", extra={"lead_id": lead.id, "state": lead.state.value,
                                                 "reason": f"{step.name}: {type(e).__name__}"})
                await self._retry(lead, step.name, f"{type(e).__name__}: {e}\n{tb}", None)
                return
            finally:
                metrics.observe_step(step.name, time.perf_counter() - t0)
            if step.calls_classifier and lead.classifier != self.svc.local_classifier.name:  # keep a paid answer
                await store.update(lead)
        ledger = LedgerStatus.SENT if lead.state is State.REPLIED and lead.reply_status is ReplyStatus.SENT else None
        if self._batched:
            # Written with the rest of the batch. A crash before that re-runs the reply
            # step, which finds the reply already out (ledger or was_sent) and sends nothing.
            self._finals.append(lead)
        else:
            await store.update(lead, release=True, ledger_status=ledger)
        if lead.state in FINAL_STATES:
            metrics.lead_processed(lead.state.value, lead.category.value if lead.category else "none")
        log.info("lead done", extra={"lead_id": lead.id, "state": lead.state.value,
                                     "category": lead.category.value if lead.category else None,
                                     "intake": lead.intake, "reason": lead.skip_reason})

    async def _retry(self, lead: Lead, step: str, error: str, retry_after: float | None) -> None:
        lead.attempts += 1
        lead.last_error = f"{step}: {error}"
        self.svc.metrics.retry(step)
        if lead.attempts >= self.cfg.max_attempts:
            await self._fail(lead, step, error)
            return
        delay = backoff_delay(lead.attempts, self.cfg.backoff_base, self.cfg.backoff_max, retry_after)
        log.warning("step failed, will retry", extra={
            "lead_id": lead.id, "state": lead.state.value, "reason": lead.last_error[:300],
            "duration_ms": int(delay * 1000)})
        await self.svc.store.update(lead, release=True, next_attempt_at=time.time() + delay)

    async def _fail(self, lead: Lead, step: str, error: str) -> None:
        lead.last_error = f"{step}: {error}"
        lead.state = State.FAILED
        self.svc.metrics.failure(step)
        self.svc.metrics.lead_processed(State.FAILED.value, lead.category.value if lead.category else "none")
        log.error("lead failed", extra={"lead_id": lead.id, "reason": lead.last_error[:300]})
        await self.svc.store.update(lead, release=True)


async def _until_at_most(running: set[asyncio.Task[None]], n: int) -> None:
    """Wait until at most ``n`` of the ``running`` tasks are left (each removes itself when done)."""
    if len(running) <= n:
        return
    enough = asyncio.Event()

    def check(_: asyncio.Task[None]) -> None:
        if len(running) <= n:
            enough.set()

    tasks = list(running)
    for task in tasks:
        task.add_done_callback(check)
    try:
        await enough.wait()
    finally:
        for task in tasks:
            task.remove_done_callback(check)
