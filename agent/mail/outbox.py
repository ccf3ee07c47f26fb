"""The default transport: each reply becomes one .eml file in a folder.

Files are written to a temporary name and renamed, so a crash never leaves half
a message, and the name comes from the reply's Message-ID, so a retry after a
crash can tell the reply was already written (exactly once, not at most once).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from agent.core.models import Health, OutgoingMail
from agent.core.states import HealthState
from agent.core.writable import folder_problem
from agent.errors import TransientError


def _file_name(message_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", message_id.strip("<>")) + ".eml"


class OutboxTransport:
    name = "outbox"
    # No separate commit step: a row left at 'sending' may have been written; was_sent() knows.
    commit_point = False

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.sent = 0
        # Made here when possible; when it cannot be (a root-owned volume), the daemon still
        # starts, /readyz says why replies cannot be written, and replies wait and retry.
        self._problem: str | None = None
        folder_problem(self.dir, create=True)

    def _write(self, msg: OutgoingMail) -> None:
        final = self.dir / _file_name(msg.message_id)
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(msg.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    async def send(
        self, msg: OutgoingMail, before_commit: Callable[[], Awaitable[None]] | None = None,
        after_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        try:
            # No before/after_commit: the rename is atomic and was_sent() can see its
            # result, so a retry after a crash knows exactly whether the reply exists.
            await asyncio.to_thread(self._write, msg)
        except OSError as e:
            self._problem = str(folder_problem(self.dir, create=True) or f"{self.dir}: {e.strerror}")
            raise TransientError(f"outbox: cannot write the reply: {self._problem}") from None
        self._problem = None
        self.sent += 1

    async def was_sent(self, message_id: str) -> bool | None:
        return (self.dir / _file_name(message_id)).exists()

    async def close(self) -> None:
        """Nothing held open between replies."""

    async def check(self) -> None:
        """Nothing to do: health() looks at the folder on every call."""

    def health(self) -> Health:
        """``down`` while the folder cannot take files (checked on every call, writing nothing);
        ``degraded`` when the folder looks fine but the last write failed (a full disk)."""
        info = {"transport": "outbox", "dir": str(self.dir)}
        problem = folder_problem(self.dir, create=True)
        if problem is not None:
            return Health(HealthState.DOWN, str(problem), info)
        if self._problem is not None:
            return Health(HealthState.DEGRADED, f"last write failed: {self._problem}", info)
        return Health(HealthState.OK, None, info)
