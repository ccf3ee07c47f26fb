"""Logging for a daemon that runs for months in a container.

Operators read the logs with machines (``jq``, Loki, CloudWatch), so each record is
one JSON object on one line of stdout. A person at a terminal gets a readable line
instead. Whatever the format, two things never reach the output:

* secrets: the values of the credentials leadbox is configured with, plus anything
  that looks like ``Bearer <token>``, ``password=<value>`` or a password inside a
  URL, are replaced with ``***`` in the message, its arguments, the extras and the
  exception text. Redaction runs in a filter on our handler, so it covers records
  from every library that logs through the root logger (aiohttp, APScheduler, ...).
* message bodies: what a contact wrote is personal data. Callers log
  ``describe_text(body)`` (its length) and the lead id, never the text. The JSON
  formatter only emits a fixed set of context fields, so a stray ``extra={"body": ...}``
  is dropped rather than written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote, unquote, urlsplit

from agent.errors import ConfigError

__all__ = [
    "CONTEXT_FIELDS",
    "REDACTED",
    "SECRET_ENV_VARS",
    "configure_logging",
    "describe_text",
    "redact",
    "secret_values_from_env",
]

REDACTED = "***"

# Context a record may carry via ``extra={...}``; these, and only these, are written.
CONTEXT_FIELDS: tuple[str, ...] = (
    "lead_id",
    "intake",
    "state",
    "duration_ms",
    "category",
    "reason",
    "mailbox",
    "error",
    "step",
    "attempt",
)

# Environment variables whose whole value is a secret.
SECRET_ENV_VARS: tuple[str, ...] = (
    "OPENAI_API_KEY",
    "EMAIL_PASS",
    "GOOGLE_CREDENTIALS_JSON",
    "LEADBOX_ADMIN_TOKEN",
    "LEADBOX_WEBHOOK_SECRET",
    "LEADBOX_ALERTS_SECRET",
    "GOOGLE_OAUTH_CLIENT_SECRET",
    "GOOGLE_OAUTH_REFRESH_TOKEN",
    "INBOX_OAUTH_TOKEN",
)

# Keys inside a Google credentials JSON (service account or authorized user) that are secret.
_GOOGLE_JSON_SECRET_KEYS = ("private_key", "private_key_id", "client_secret", "refresh_token")

# Shorter values are ignored: redacting "ab" everywhere would garble every line while
# protecting nothing a real credential could be.
_MIN_SECRET_LEN = 4

# Lines of a multi-line secret (a PEM key) longer than this are redacted on their own,
# so a traceback that prints a fragment of the key still shows none of it.
_MIN_SECRET_LINE_LEN = 16

_MAY_MATCH = re.compile(r"[=:]|(?i:bearer)")
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer <token>
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 " + REDACTED),
    # password=..., passwd: ..., "password": "..."; also api_key / secret / token keys.
    (
        re.compile(
            r"""(?ix)
            \b((?:password|passwd|pwd|api[_-]?key|client[_-]?secret|secret|token)
            ["']?\s*[=:]\s*["']?)
            [^\s"'&,;}]+
            """
        ),
        r"\1" + REDACTED,
    ),
    # scheme://user:password@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+(@)"), r"\1" + REDACTED + r"\2"),
)

_HANDLER_MARK = "_leadbox_handler"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RESERVED = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "", None, None))) | {
    "message",
    "asctime",
}


def describe_text(s: str | None) -> str:
    """What to log instead of a message body: its length, never its content."""
    return f"len={len(s) if s else 0}"


def secret_values_from_env(environ: Mapping[str, str]) -> list[str]:
    """The secret values configured in ``environ``, for the redaction filter.

    Besides the variables in ``SECRET_ENV_VARS`` this digs out the private key of
    ``GOOGLE_CREDENTIALS_JSON`` (a traceback may print it with its ``\\n`` decoded)
    and the password in ``DATABASE_URL`` (drivers echo DSNs in connection errors).
    ``EMAIL_USER`` is deliberately not included: an address is not a secret and
    redacting it would hide which mailbox a log line is about.
    """
    found: list[str] = []
    for name in SECRET_ENV_VARS:
        value = environ.get(name, "")
        if value.strip():
            found.append(value)
            if value.strip() != value:
                found.append(value.strip())
    creds = environ.get("GOOGLE_CREDENTIALS_JSON", "").strip()
    if creds.startswith("{"):
        try:
            data = json.loads(creds)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in _GOOGLE_JSON_SECRET_KEYS:
                inner = data.get(key)
                if isinstance(inner, str) and inner:
                    found.append(inner)
    dsn = environ.get("DATABASE_URL", "").strip()
    if dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            found.append(password)
            found.append(unquote(password))
    return list(dict.fromkeys(found))


class _Redactor:
    """Replaces secret values and secret-looking patterns in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if not isinstance(secret, str):
                continue
            for form in _forms_of(secret):
                if len(form) >= _MIN_SECRET_LEN:
                    variants.add(form)
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(variants, key=len, reverse=True)
        self._values = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(REDACTED, text)
        # Every pattern needs "=", ":" or "bearer": most log values (ids, states) have
        # none, and skip three substitutions (the per-lead log line is on the hot path).
        if _MAY_MATCH.search(text):
            for pattern, replacement in _PATTERNS:
                text = pattern.sub(replacement, text)
        return text


def _forms_of(secret: str) -> Iterable[str]:
    """The ways a secret can show up in a log line: as is, escaped, URL-quoted, per line."""
    yield secret
    yield secret.strip()
    yield json.dumps(secret)[1:-1]  # newlines as \n, quotes escaped
    yield repr(secret)[1:-1]
    yield quote(secret, safe="")
    if "\n" in secret.strip():
        for line in secret.splitlines():
            line = line.strip()
            if len(line) >= _MIN_SECRET_LINE_LEN and not line.startswith("-----"):
                yield line


class RedactingFilter(logging.Filter):
    """Rewrites each record in place so no handler after it can see a secret.

    The message is rendered with its args first (a secret may sit in an argument),
    then redacted; the exception and stack text are rendered and redacted into
    ``exc_text`` / ``stack_info``, which formatters use instead of re-rendering.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = _Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep the template, drop the args
            message = str(record.msg)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RESERVED:
                setattr(record, key, self._redact_value(value))
        return True

    def _redact_value(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, BaseException):
            return self.redact(f"{type(value).__name__}: {value}")
        # Enums, dates, anything else: keep what the JSON line would show, redacted.
        return self.redact(str(value))


def _iso_utc(created: float) -> str:
    stamp = datetime.fromtimestamp(created, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _context(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in CONTEXT_FIELDS:
        value = getattr(record, key, None)
        if value is not None:
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(_context(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        # default=str: a Decimal or datetime in an extra must not break the log line.
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: event key=value ...`` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _iso_utc(record.created),
            f"{record.levelname:<7}",
            f"{record.name}:",
            record.getMessage(),
        ]
        parts += [f"{k}={v}" for k, v in _context(record).items()]
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(str(level).strip().upper())
    if not isinstance(number, int):
        raise ConfigError(
            f"logging.level: {level!r} is not a log level; use DEBUG, INFO, WARNING or ERROR"
        )
    return number


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


# Protocol libraries log whole messages and request bodies at DEBUG (imaplib prints every fetched
# mail, aiosmtpd every DATA, httpx and urllib3 every URL): lead data that must never reach a log.
# They stay at WARNING whatever ``logging.level`` says; leadbox's own DEBUG lines carry ids only.
QUIET_LIBRARIES = ("imapclient", "imaplib", "mail.log", "aiosmtplib", "httpx", "httpcore", "urllib3",
                   "openai", "google", "gspread", "aiohttp.access", "aiohttp.server", "psycopg", "apscheduler")


def configure_logging(
    level: str | int = "INFO",
    json_format: bool | None = None,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """Send every log record to ``stream`` (stdout by default), redacted, as JSON or text.

    ``json_format`` None means JSON unless the stream is a terminal (the container
    case is JSON; a developer running ``leadbox run`` by hand reads text). Calling
    this again replaces the handler it installed before instead of adding a second
    one, so the CLI can configure early and again once the config and secrets are
    known. Returns the handler (tests and the CLI may want to flush it).
    """
    number = _level_number(level)  # before touching handlers: a bad level changes nothing
    stream = sys.stdout if stream is None else stream
    if json_format is None:
        json_format = not _is_tty(stream)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root.addHandler(handler)
    root.setLevel(number)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(number, logging.WARNING))
    return handler


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Redact ``text`` the way log records are; for error strings shown elsewhere (/readyz)."""
    return _Redactor(secrets)(text)
