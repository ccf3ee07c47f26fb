"""How many LLM calls may be in flight, and backing off when the provider says "slow down".

``classifier.concurrency`` is the ceiling. The provider's signals lower the working limit:
a 429, or rate-limit headers (``x-ratelimit-remaining-requests`` / ``-tokens``) showing fewer
requests or tokens left in the window than the calls we could have in flight. Then the limit
halves (at most once per second, so one burst of 429s does not collapse it to 1) and new calls
wait out the pause the server asked for (``Retry-After``, or the headers' reset time, capped).
Each run of successes as long as the limit raises it by one again, up to the ceiling.

None of this opens the circuit breaker: a rate limit says the endpoint is healthy and busy,
not broken. The breaker still counts real failures (5xx, timeouts, refused connections).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Mapping

__all__ = ["AdaptiveLimit", "parse_reset"]

MAX_PAUSE = 60.0
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """OpenAI's reset durations ("20ms", "1s", "6m0s", "1h2m3.5s") in seconds; None if unreadable."""
    if not value:
        return None
    parts = _DURATION_RE.findall(value.strip())
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class AdaptiveLimit:
    """A semaphore whose size follows the provider's rate-limit signals."""

    def __init__(self, maximum: int, *, tokens_per_call: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if maximum < 1:
            raise ValueError("classifier.concurrency must be at least 1")
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self.peak = 0  # the most calls ever in flight at once (state() and tests)
        self.tokens_per_call = tokens_per_call
        self.slowdowns = 0  # how often the limit was cut (for state() and tests)
        self._clock = clock
        self._paused_until = 0.0
        self._last_cut = float("-inf")
        self._successes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self) -> None:
        while True:
            pause = self.paused_for
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if self.in_flight < self.limit:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, but leaving: pass the turn on
                raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def succeeded(self) -> None:
        if self.limit < self.maximum:
            self._successes += 1
            if self._successes >= self.limit:
                self._successes = 0
                self.limit += 1
                self._wake()

    def slow_down(self, pause: float | None) -> None:
        """The provider asked us to slow down: halve the limit and pause new calls."""
        now = self._clock()
        if now - self._last_cut >= 1.0:
            self._last_cut = now
            self.limit = max(1, self.limit // 2)
            self._successes = 0
            self.slowdowns += 1
        if pause:
            self._paused_until = max(self._paused_until, now + min(pause, MAX_PAUSE))

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Read one HTTP answer of the provider (every answer, retried ones included)."""
        if status == 429:
            pause = _retry_after(headers)
            self.slow_down(1.0 if pause is None else pause)
            return
        left_requests = _int(headers.get("x-ratelimit-remaining-requests"))
        left_tokens = _int(headers.get("x-ratelimit-remaining-tokens"))
        if left_requests is not None and left_requests < self.limit:
            self.slow_down(parse_reset(headers.get("x-ratelimit-reset-requests")))
        elif left_tokens is not None and left_tokens < self.limit * self.tokens_per_call:
            self.slow_down(parse_reset(headers.get("x-ratelimit-reset-tokens")))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None
