"""Who may call what: admin bearer token, webhook bearer/HMAC, per-IP rate limit.

Comparisons are constant-time. Signed webhooks carry ``X-Leadbox-Timestamp``
(unix seconds) and ``X-Leadbox-Signature: sha256=<hex of HMAC-SHA256(secret,
timestamp + "." + body)>``; a timestamp outside the window or a signature seen
before inside it is refused, so a captured request cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict


def bearer_ok(header: str | None, token: str) -> bool:
    if not header or not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class SignatureChecker:
    def __init__(self, secret: str, tolerance: int = 300, max_seen: int = 100_000) -> None:
        self.secret, self.tolerance, self.max_seen = secret, tolerance, max_seen
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None) -> str | None:
        """None when valid, else the reason (for the 401 body)."""
        now = time.time() if now is None else now
        if not timestamp or not signature:
            return "missing X-Leadbox-Timestamp or X-Leadbox-Signature"
        try:
            ts = int(timestamp)
        except ValueError:
            return "X-Leadbox-Timestamp must be unix seconds"
        if abs(now - ts) > self.tolerance:
            return "timestamp outside the allowed window (check the sender's clock)"
        expected = sign(self.secret, timestamp, body)
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            return "signature does not match"
        while self._seen and next(iter(self._seen.values())) < now - self.tolerance:
            self._seen.popitem(last=False)
        if signature in self._seen:
            return "replayed request"
        self._seen[signature] = now
        if len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)
        return None


class RateLimiter:
    """Token bucket per client IP; bounded memory (least recently seen IPs are forgotten)."""

    def __init__(self, per_minute: int, max_clients: int = 50_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1.0, per_minute / 6.0)  # 10 s worth of requests
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str, now: float | None = None) -> float:
        """0 when allowed, else seconds to wait (for Retry-After)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait
