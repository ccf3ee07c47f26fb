"""One pause for a whole sending account: a quota or throttling answer stops the transport, not the leads.

- A ``throttle`` answer pauses for the server's hint (``try again in 30 seconds``), else
  exponentially from ``base`` seconds (1 minute by default), doubling while the server keeps
  throttling, up to ``max_seconds``.
- A ``quota`` answer (a daily limit) pauses until the next probe, ``quota_probe`` seconds later.
- While paused, every send raises :class:`Deferred` with the time of the next probe: the worker
  keeps the lead where it is, spending no attempt. When that time comes, exactly one send goes
  out as the probe; concurrent sends wait for its outcome. A probe answered with anything but a
  limit ends the pause; a limit answer pauses again.
- After a throttling pause the account sends one message at a time for as long as the pause
  lasted, so the whole transport slows down instead of bursting into the limit again.

Only the probe can end a pause: the answers of sends that started before it (stragglers) never
do, though a straggler's quota answer turns a throttling pause into a quota pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from agent.errors import Deferred
from agent.mail.smtp_errors import Verdict

log = logging.getLogger("leadbox.reply")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


class SendPause:
    def __init__(
        self, *, base: float = 60.0, quota_probe: float = 3600.0, max_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base = base
        self.quota_probe = quota_probe
        self.max = max_seconds if max_seconds is not None else max(quota_probe, base)
        self.clock = clock
        self.kind: str | None = None  # None while sending; "quota" or "throttle" while paused
        self.reason = ""
        self.since = 0.0
        self.next_probe_at = 0.0
        self.pauses = 0  # pauses started since the process began (a metric)
        self._level = 0  # consecutive throttling pauses: the exponent
        self._delay = 0.0
        self._resumed_at = 0.0
        self._careful_until = 0.0
        self._probe: asyncio.Future[None] | None = None
        self._one_at_a_time = asyncio.Lock()

    @property
    def paused(self) -> bool:
        return self.kind is not None

    def _deferred(self) -> Deferred:
        return Deferred(f"reply-paused: {self.kind}: {self.reason}", self.next_probe_at)

    async def admit(self) -> bool:
        """Before a send: True when this send is the probe; raises Deferred while paused."""
        while self.kind is not None:
            if self.clock() < self.next_probe_at:
                raise self._deferred()
            if self._probe is None:
                self._probe = asyncio.get_running_loop().create_future()
                log.info("reply transport probing", extra={"reason": f"{self.kind}: {self.reason}"})
                return True
            await asyncio.shield(self._probe)  # another send is the probe: wait for its outcome
        return False

    @contextlib.asynccontextmanager
    async def pace(self) -> AsyncIterator[None]:
        """Around a send: one at a time while recovering from throttling."""
        if self.clock() >= self._careful_until:
            yield
            return
        async with self._one_at_a_time:
            if self.kind is not None:  # paused again while this send waited its turn
                raise self._deferred()
            yield

    def settle(self, probe: bool) -> None:
        """After a send, whatever happened: a probe that is still out is over."""
        if probe and self._probe is not None:
            fut, self._probe = self._probe, None
            if not fut.done():
                fut.set_result(None)

    def answered(self, probe: bool) -> None:
        """A send got an answer that is no sending limit: a probe's ends the pause."""
        if probe and self.kind is not None:
            now = self.clock()
            log.warning("reply transport resumed", extra={
                "reason": f"{self.kind} pause over after {now - self.since:.0f}s: the probe was accepted"})
            if self.kind == "throttle":
                self._careful_until = now + self._delay
            self.kind, self.reason, self._resumed_at = None, "", now
        self.settle(probe)

    def unreachable(self, probe: bool) -> None:
        """A probe got no answer at all (server down): stay paused, probe again after the same delay."""
        if probe and self.kind is not None:
            self.next_probe_at = self.clock() + max(self._delay, self.base)
        self.settle(probe)

    def limited(self, verdict: Verdict, probe: bool) -> Deferred:
        """A send met a quota or throttling answer: pause (or stay paused); the lead must wait."""
        now = self.clock()
        try:
            if self.kind is not None and not probe:
                # A straggler that started before the pause: it keeps the pause as it is,
                # except that a quota answer outranks throttling.
                if verdict.kind == "quota" and self.kind == "throttle":
                    self._pause("quota", verdict, now, verdict.retry_after or self.quota_probe, new=False)
                return self._deferred()
            if verdict.kind == "quota":
                delay = verdict.retry_after or self.quota_probe
                self._level = 0
            else:
                # Throttled again by the probe, or soon after resuming: back off further.
                recent = probe or now - self._resumed_at < 2 * max(self._delay, self.base)
                self._level = self._level + 1 if recent and self._delay else 0
                delay = verdict.retry_after or min(self.base * 2 ** self._level, self.max)
            self._pause(verdict.kind, verdict, now, delay, new=self.kind is None)
            return self._deferred()
        finally:
            self.settle(probe)

    def _pause(self, kind: str, verdict: Verdict, now: float, delay: float, *, new: bool) -> None:
        if new:
            self.since = now
            self.pauses += 1
        self.kind, self.reason, self._delay = kind, verdict.describe(), delay
        self.next_probe_at = now + delay
        log.warning("reply transport paused", extra={
            "reason": f"{kind}: {self.reason}; next probe at {_iso(self.next_probe_at)}"})

    def state(self) -> dict[str, Any] | None:
        """The pause for /readyz, or None while sending."""
        if self.kind is None:
            return None
        return {"state": "paused", "kind": self.kind, "reason": self.reason,
                "since": _iso(self.since), "next_probe_at": _iso(self.next_probe_at)}
