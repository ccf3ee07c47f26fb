"""Turning raw config input into settings: environment values, merging, validation messages."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from agent.errors import ConfigError

__all__ = ["coerce_env_value", "format_validation", "merge"]


def coerce_env_value(raw: str) -> Any:
    """Env values are strings; JSON lists/objects/numbers are accepted as such."""
    s = raw.strip()
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            return raw
    return raw


def merge(base: dict[str, Any], over: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, fields in over.items():
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: must be a table")
        target.update(fields)
    return merged


def format_validation(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `leadbox check-config --explain` lists every key)"
        got = err.get("input")
        shown = "" if err["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{key}: {msg}{shown}")
    return "; ".join(lines)
