"""`leadbox sheets check`: verify access to the configured sheet without writing anything."""

from __future__ import annotations

from typing import Any

from agent.mirror.sheets import SheetMirror

__all__ = ["check"]


async def check(mirror: SheetMirror) -> dict[str, Any]:
    """Verify access and return title, worksheet and header.

    Read-only: a missing worksheet is reported as not found rather than created.
    Raises PermanentError / TransientError with the message to print.
    """
    try:
        return await mirror.describe()
    finally:
        await mirror.close()
