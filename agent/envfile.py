"""The ``.env`` file: every ``leadbox`` command reads it from the working directory.

Variables already set in the environment win over the file; an empty value counts as unset
(compose's ``${VAR:-}`` produces empty values). The format is compose's: ``NAME=value`` lines,
``#`` comments, an optional ``export``, values optionally in single quotes (literal) or double
quotes (``\\n``, ``\\"`` and ``\\\\`` escapes). No ``${...}`` interpolation. ``LEADBOX_DOTENV=0``
skips the file (the test suite sets it).
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from pathlib import Path

from agent.errors import ConfigError

DEFAULT_PATH = ".env"
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(raw: str, where: str) -> str:
    if raw[:1] == "'":
        if len(raw) < 2 or not raw.endswith("'"):
            raise ConfigError(f"{where}: unterminated single quote")
        return raw[1:-1]
    if raw[:1] == '"':
        if len(raw) < 2 or not raw.endswith('"') or raw.endswith('\\"') and not raw.endswith('\\\\"'):
            raise ConfigError(f"{where}: unterminated double quote")
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), raw[1:-1])
    # Unquoted: a " #" starts a comment.
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def parse(text: str, name: str = DEFAULT_PATH) -> dict[str, str]:
    """NAME -> value. A malformed line is a ConfigError naming the file and line, never its text
    (the line may hold a secret)."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise ConfigError(f"{name}, line {n}: expected NAME=value")
        out[m.group(1)] = _unquote(m.group(2), f"{name}, line {n}")
    return out


def load(environ: MutableMapping[str, str], path: str | Path = DEFAULT_PATH) -> list[str]:
    """Fill unset (or empty) variables of ``environ`` from the file at ``path`` when it exists.

    Returns the names taken from the file.
    """
    if environ.get("LEADBOX_DOTENV", "").strip().lower() in ("0", "false"):
        return []
    p = Path(path)
    if not p.is_file():
        return []
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {e.__class__.__name__}") from None
    taken = []
    for key, value in parse(text, str(p)).items():
        if value and not environ.get(key):
            environ[key] = value
            taken.append(key)
    return taken
