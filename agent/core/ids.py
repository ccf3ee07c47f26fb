"""Lead ids: unique, and carrying their arrival time."""

from __future__ import annotations

import base64
import binascii
import os
import time

__all__ = ["id_time", "new_id"]


def new_id(now: float | None = None) -> str:
    """A unique id that carries its arrival time (48-bit ms clock + 80 random bits, base32).

    Its *text* does not sort by time: RFC 4648's alphabet puts the digits 2-7 after the letters
    in value but before them in ASCII. Lists therefore order by ``created_at`` and use the id only
    to break ties (``list_query``); ``id_time`` reads the clock back out.
    """
    ms = int((time.time() if now is None else now) * 1000)
    raw = ms.to_bytes(6, "big") + os.urandom(10)
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def id_time(lead_id: str) -> float | None:
    """The arrival time (seconds, to the millisecond) a ``new_id`` carries; None for text that is
    not one (a cursor made up by hand)."""
    if len(lead_id) != 26:
        return None
    try:
        raw = base64.b32decode(lead_id.upper() + "======")
    except (ValueError, binascii.Error):
        return None
    return int.from_bytes(raw[:6], "big") / 1000
