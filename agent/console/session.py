"""The console's session cookie, CSRF tokens and sign-in throttling.

The cookie is ``user|issued|last_seen|nonce|signature``: an HMAC-SHA256 over the rest with the
server's key (``LEADBOX_SECRET_KEY``, or a random key per process). Nothing is stored server-side,
so replicas that share the key share sessions. The idle expiry is enforced from ``last_seen``,
which each request refreshes. The CSRF token is an HMAC of the session's nonce: a form carries it,
and a request without it (or with another session's) is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

COOKIE = "leadbox_console"


@dataclass(frozen=True)
class Session:
    user: str
    issued: int
    last_seen: int
    nonce: str


class Signer:
    def __init__(self, key: bytes, idle_seconds: float) -> None:
        self.key = key
        self.idle = idle_seconds

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def issue(self, user: str, now: float | None = None) -> tuple[Session, str]:
        t = int(time.time() if now is None else now)
        s = Session(user=user, issued=t, last_seen=t, nonce=secrets.token_hex(16))
        return s, self.dump(s)

    def dump(self, s: Session) -> str:
        body = f"{s.user}|{s.issued}|{s.last_seen}|{s.nonce}"
        return f"{body}|{self._mac(body)}"

    def load(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in the cookie, or None when it is missing, forged or idle too long."""
        if not cookie or cookie.count("|") != 4 or len(cookie) > 512:
            return None
        body, _, mac = cookie.rpartition("|")
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        user, issued, last_seen, nonce = body.split("|")
        try:
            s = Session(user, int(issued), int(last_seen), nonce)
        except ValueError:
            return None
        t = time.time() if now is None else now
        if t - s.last_seen > self.idle or s.last_seen > t + 60:
            return None
        return s

    def touch(self, s: Session, now: float | None = None) -> tuple[Session, str]:
        t = int(time.time() if now is None else now)
        fresh = Session(s.user, s.issued, t, s.nonce)
        return fresh, self.dump(fresh)

    def csrf(self, s: Session) -> str:
        return self._mac(f"csrf|{s.user}|{s.nonce}")

    def csrf_ok(self, s: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf(s))


class Throttle:
    """At most ``limit`` failed sign-ins per key (an IP, a user name) in ``window`` seconds."""

    def __init__(self, limit: int = 5, window: float = 300.0, max_keys: int = 10_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            if len(self._fails) >= self.max_keys:
                self._fails.clear()  # bounded memory under a spray of names; limits restart
            q = self._fails[key] = deque()
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def blocked(self, *keys: str, now: float | None = None) -> float:
        """Seconds until a sign-in may be tried again for any of ``keys`` (0 = now)."""
        t = time.monotonic() if now is None else now
        wait = 0.0
        for k in keys:
            q = self._recent(k, t)
            if len(q) >= self.limit:
                wait = max(wait, self.window - (t - q[0]))
        return wait

    def failed(self, *keys: str, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        for k in keys:
            self._recent(k, t).append(t)

    def succeeded(self, user_key: str) -> None:
        self._fails.pop(user_key, None)
