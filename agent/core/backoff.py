"""Retry spacing shared by the worker and the inbox poller."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds before the next attempt: base * 2^(attempt-1), capped, with 50-100% jitter."""
    if retry_after is not None and retry_after > 0:
        return min(retry_after, cap)
    raw = min(cap, base * (2 ** max(attempt - 1, 0)))
    return raw * (0.5 + 0.5 * (rng or random).random())
