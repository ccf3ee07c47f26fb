"""A small circuit breaker for remote backends (the LLM endpoint first).

Why: when the endpoint is down, every lead would otherwise wait for its own
timeouts and retries before falling back. After ``failure_threshold``
consecutive failures the breaker *opens* and callers skip the endpoint at once;
after ``reset_seconds`` it lets one trial call through (*half-open*): success
closes it, failure opens it again for another period.

The clock is injectable so tests can move time without sleeping.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Closed → open after N consecutive failures → half-open after a timeout.

    In half-open only one trial is allowed at a time; its outcome decides
    whether the breaker closes or opens again. Not thread-safe on purpose: it
    lives on one event loop, and every method is synchronous and short.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_seconds: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_seconds < 0:
            raise ValueError("reset_seconds must be >= 0")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose timeout has passed reports half-open."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_seconds:
            self._state = BreakerState.HALF_OPEN
            self._trial_in_flight = False
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def seconds_until_retry(self) -> float:
        """How long until an open breaker lets a trial through (0 when it already would)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.reset_seconds - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May the caller try the remote side now?

        Closed: yes. Open: no. Half-open: yes for exactly one caller until that
        caller records its outcome, so a recovering endpoint is not stampeded.
        """
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        if self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        """The remote side answered: close and forget past failures."""
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        """The remote side failed: count it, and open when the threshold is reached
        or when the half-open trial failed."""
        state = self.state
        self._failures += 1
        self._trial_in_flight = False
        if state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._open()

    def release(self) -> None:
        """The allowed call ended without telling anything about the endpoint's
        health (e.g. a per-message refusal): let another trial go through."""
        self._trial_in_flight = False

    def _open(self) -> None:
        if self._state is not BreakerState.OPEN:
            self.times_opened += 1
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
