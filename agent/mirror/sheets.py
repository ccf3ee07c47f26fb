"""Mirror each lead as one row of a Google Sheets worksheet (gspread + a service account).

Why it is shaped this way:

- gspread and google-auth are synchronous (requests underneath). Every call,
  including opening the spreadsheet, runs on one dedicated worker thread, so
  the event loop that serves the webhook never waits on Google. One thread
  (not a pool) also serialises our use of the gspread objects, which are not
  meant to be shared between threads.
- Sheets has tight write quotas, so rows are batched: ``mirror()`` enqueues a
  row and waits for the flush that carries it; a flush is ONE ``values.append``
  of up to ``batch_size`` rows, sent when the batch is full or ``flush_seconds``
  after its first row, whichever comes first.
- No duplicate rows after retries, crashes or restarts. The lead-id column is
  read once at start (a cache of ids already in the sheet); a lead in the cache
  is done at once. When an append's outcome is unknown (the connection dropped
  after the request left, a timeout, a 5xx), the id column is re-read once
  before sending again, and rows already present are dropped from the batch.
- Values go in with ``valueInputOption=RAW``: a name like ``=IMPORTXML(...)``
  stays text and never becomes a formula evaluated in the user's sheet.
- Failures are bounded: 429/5xx/timeouts are retried inside the flush with
  backoff (honouring Retry-After) at most ``max_retries`` times, then every
  waiter gets ``TransientError`` and the worker retries that lead later; for a
  short cooldown after that, ``mirror()`` fails fast so a Sheets outage costs
  the pipeline nothing. 403 and 404 are ``PermanentError`` with a message that
  says what to fix, and ``state()`` shows them for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import functools
import json
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import gspread
import requests
import urllib3.exceptions
from google.auth import exceptions as gauth_exceptions
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from gspread.http_client import HTTPClient
from gspread.utils import ValueInputOption

from agent.core.models import Lead
from agent.errors import ConfigError, LeadboxError, NeedsCredentials, PermanentError, TransientError

__all__ = [
    "DEFAULT_COLUMNS",
    "SheetMirror",
    "check",
    "disabled_state",
    "load_credentials",
]

log = logging.getLogger("leadbox.sheets")

GOOGLE_SHEETS_ROOT = "https://sheets.googleapis.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# We always open by key or URL, so the Drive scope is never needed.
SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
# Google's limit on the characters in one cell.
CELL_LIMIT = 50_000

DEFAULT_COLUMNS = ["received_at", "name", "email", "category", "priority", "summary", "source", "id"]
DEFAULT_CATEGORY_LABELS = {"sales": "Ventas", "support": "Soporte", "info": "Información", "spam": "Spam"}
DEFAULT_PRIORITY_LABELS = {"high": "Alta", "medium": "Media", "low": "Baja"}
# Columns a row can carry: when the lead was received, plus the Lead's own fields.
_LEAD_FIELDS = {f.name for f in fields(Lead)} - {"interactions"}
KNOWN_COLUMNS = frozenset(_LEAD_FIELDS | {"received_at"})

T = TypeVar("T")


# --------------------------------------------------------------------------- credentials


def load_credentials(json_text: str | None, path: str | None) -> dict[str, Any]:
    """Service-account info from ``GOOGLE_CREDENTIALS_JSON`` (wins) or ``sheets.credentials_file``.

    Errors name the setting to fix and never echo the key material: a start-up
    log line is not a safe place for a private key.
    """
    if json_text is not None and json_text.strip():
        source = "GOOGLE_CREDENTIALS_JSON"
        text = json_text
    elif path:
        source = f"sheets.credentials_file ({path})"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such file; point it at the service account's JSON key file") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot be read ({exc.strerror}); check the path and its permissions") from None
    else:
        raise ConfigError(
            "sheets: no credentials; set GOOGLE_CREDENTIALS_JSON to the service account's JSON key, "
            "or sheets.credentials_file to the key file's path (or set sheets.enabled = false)"
        )
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg/lineno/colno describe the position only, never the content.
        raise ConfigError(
            f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "use the key file Google Cloud gave you for the service account, unchanged"
        ) from None
    _validate_info(info, source)
    return info


def _validate_info(info: Any, source: str) -> None:
    """Fail early, with the setting's name, on a key google-auth would reject later."""
    if not isinstance(info, dict):
        raise ConfigError(f"{source}: expected a JSON object (a service account key file)")
    if info.get("type") != "service_account":
        raise ConfigError(
            f"{source}: \"type\" is {info.get('type')!r}, expected \"service_account\"; "
            "create a key for a service account (not an OAuth client secret)"
        )
    missing = [k for k in ("client_email", "private_key") if not info.get(k)]
    if missing:
        raise ConfigError(f"{source}: missing {', '.join(missing)}; download a fresh key for the service account")
    try:
        service_account.Credentials.from_service_account_info(
            {"token_uri": GOOGLE_TOKEN_URI, **info}, scopes=list(SCOPES)
        )
    except (ValueError, TypeError):
        raise ConfigError(f"{source}: private_key could not be loaded; download a fresh key for the service account") from None


def disabled_state(reason: str) -> dict[str, Any]:
    """What ``/readyz`` shows for an optional mirror that could not be built (e.g. no credentials)."""
    return {"state": "disabled", "reason": reason, "pending": 0}


# --------------------------------------------------------------------------- HTTP


def _http_client_for(endpoint: str) -> type[HTTPClient]:
    """An HTTPClient class that sends gspread's Google URLs to ``endpoint`` instead.

    gspread takes a class (not an instance) and builds its URLs from constants
    bound at import time, so rewriting the prefix per request is the one clean seam.
    """
    root = endpoint.rstrip("/")

    class _EndpointHTTPClient(HTTPClient):
        def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> requests.Response:
            if root != GOOGLE_SHEETS_ROOT and endpoint.startswith(GOOGLE_SHEETS_ROOT):
                endpoint = root + endpoint[len(GOOGLE_SHEETS_ROOT):]
            return super().request(method, endpoint, *args, **kwargs)

    return _EndpointHTTPClient


class _Kind(enum.Enum):
    TRANSIENT = "transient"
    PERMISSION = "permission_denied"
    NOT_FOUND = "not_found"
    PERMANENT = "permanent"


@dataclass
class _Failure:
    """One failed call, classified: what to tell callers and whether to retry."""

    kind: _Kind
    message: str
    retry_after: float | None = None
    # True when the request may have been applied although we saw no answer.
    uncertain: bool = False
    # The error already raised for this failure (kept so its type is preserved).
    raised: LeadboxError | None = None

    def error(self) -> LeadboxError:
        if self.raised is not None:
            return self.raised
        if self.kind is _Kind.TRANSIENT:
            return TransientError(self.message, retry_after=self.retry_after)
        if self.kind is _Kind.PERMISSION and self.message.startswith("sheets: credentials"):
            return NeedsCredentials(self.message)
        return PermanentError(self.message)


def _retry_after(resp: requests.Response | None) -> float | None:
    value = resp.headers.get("Retry-After") if resp is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _response_of(exc: BaseException) -> requests.Response | None:
    """The HTTP response behind a gspread error (also when wrapped, as open_by_key does)."""
    seen: BaseException | None = exc
    while seen is not None:
        resp = getattr(seen, "response", None)
        if isinstance(resp, requests.Response):
            return resp
        seen = seen.__cause__
    return None


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach the server (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError)


def _classify(exc: BaseException, *, client_email: str, spreadsheet: str) -> _Failure | None:
    """Map an exception from gspread/google-auth/requests to a _Failure, or None if it is a bug."""
    resp = _response_of(exc)
    if resp is not None:
        status = resp.status_code
        if status == 403:
            return _Failure(
                _Kind.PERMISSION,
                f"sheets: permission denied — share the spreadsheet with {client_email} (Editor)",
            )
        if status == 404:
            return _Failure(
                _Kind.NOT_FOUND,
                f"sheets: spreadsheet not found — check sheets.spreadsheet ({spreadsheet!r} is no spreadsheet this account can see)",
            )
        if status == 401:
            return _Failure(
                _Kind.PERMISSION,
                "sheets: credentials rejected (401) — check GOOGLE_CREDENTIALS_JSON / sheets.credentials_file",
            )
        if status == 429 or status == 408 or status >= 500:
            # A 429 was refused before doing anything; a 5xx or 408 may have been applied.
            return _Failure(
                _Kind.TRANSIENT,
                f"sheets: HTTP {status} from the Sheets API",
                retry_after=_retry_after(resp),
                uncertain=status != 429,
            )
        return _Failure(_Kind.PERMANENT, f"sheets: request rejected (HTTP {status}): {_api_message(resp)}")
    if isinstance(exc, gauth_exceptions.RefreshError):
        if getattr(exc, "retryable", False):
            return _Failure(_Kind.TRANSIENT, "sheets: token endpoint temporarily unavailable")
        return _Failure(
            _Kind.PERMISSION,
            "sheets: credentials refused by the token endpoint — check GOOGLE_CREDENTIALS_JSON / "
            "sheets.credentials_file (key revoked or service account deleted?)",
        )
    if isinstance(exc, gauth_exceptions.TransportError):
        return _Failure(_Kind.TRANSIENT, f"sheets: token endpoint unreachable ({type(exc).__name__})")
    if isinstance(exc, requests.RequestException):
        return _Failure(
            _Kind.TRANSIENT,
            f"sheets: {type(exc).__name__} talking to the Sheets API",
            uncertain=not _never_sent(exc),
        )
    return None


def _api_message(resp: requests.Response) -> str:
    try:
        return str(resp.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return resp.reason or ""


# --------------------------------------------------------------------------- the mirror


@dataclass
class _Pending:
    lead_id: str
    row: list[str]
    future: asyncio.Future[None]
    enqueued_at: float = field(default=0.0)


class SheetMirror:
    """The Mirror port over Google Sheets: one row per lead, appended in batches."""

    name = "sheets"

    def __init__(
        self,
        *,
        credentials_info: dict[str, Any],
        spreadsheet: str,
        worksheet: str = "Leads",
        endpoint: str = GOOGLE_SHEETS_ROOT,
        columns: list[str] | None = None,
        batch_size: int = 50,
        flush_seconds: float = 2.0,
        category_labels: dict[str, str] | None = None,
        priority_labels: dict[str, str] | None = None,
        timeout: float = 20.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        cooldown_seconds: float = 5.0,
        close_timeout: float = 10.0,
    ) -> None:
        self._columns = list(columns) if columns is not None else list(DEFAULT_COLUMNS)
        unknown = [c for c in self._columns if c not in KNOWN_COLUMNS]
        if unknown:
            raise ConfigError(
                f"sheets.columns: unknown column(s) {unknown}; choose from {sorted(KNOWN_COLUMNS)}"
            )
        if "id" not in self._columns:
            raise ConfigError("sheets.columns must include \"id\": it is how the mirror avoids duplicate rows")
        if batch_size < 1:
            raise ConfigError("sheets.batch_size must be at least 1")
        if flush_seconds < 0:
            raise ConfigError("sheets.flush_seconds must not be negative")
        self._key = self._spreadsheet_key(spreadsheet)
        self._worksheet_name = worksheet
        self._endpoint = endpoint.rstrip("/")
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._category_labels = dict(DEFAULT_CATEGORY_LABELS if category_labels is None else category_labels)
        self._priority_labels = dict(DEFAULT_PRIORITY_LABELS if priority_labels is None else priority_labels)
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._cooldown_seconds = cooldown_seconds
        self._close_timeout = close_timeout

        _validate_info(credentials_info, "sheets credentials")
        info = {"token_uri": GOOGLE_TOKEN_URI, **credentials_info}
        self._client_email = str(info["client_email"])
        self._credentials = service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))

        self._executor: ThreadPoolExecutor | None = None
        self._session: AuthorizedSession | None = None
        self._spreadsheet_obj: gspread.Spreadsheet | None = None
        self._ws: gspread.Worksheet | None = None
        self._header: list[str] = []
        self._title: str | None = None
        self._ids: set[str] = set()
        self._open_lock: asyncio.Lock | None = None
        self._prepared = False  # header ensured and id cache read

        self._pending: list[_Pending] = []
        self._by_id: dict[str, _Pending] = {}
        self._inflight: list[_Pending] = []
        self._has_work: asyncio.Event | None = None
        self._batch_full: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._cooldown_until = 0.0
        self._closing = False
        self._closed = False

        self._state = "disabled"
        self._reason: str | None = "not started"

    # ----- configuration helpers ---------------------------------------
    @staticmethod
    def _spreadsheet_key(spreadsheet: str) -> str:
        """Accept a key or a full URL, as users copy whichever they have."""
        value = spreadsheet.strip()
        if not value:
            raise ConfigError("sheets.spreadsheet is empty; set the spreadsheet's key or URL")
        if "/" in value or "key=" in value:
            try:
                return gspread.utils.extract_id_from_url(value)
            except gspread.exceptions.NoValidUrlKeyFound:
                raise ConfigError(
                    f"sheets.spreadsheet: no spreadsheet key in URL {value!r}; "
                    "use a URL like https://docs.google.com/spreadsheets/d/<key>/edit"
                ) from None
        return value

    @property
    def client_email(self) -> str:
        """The service account's address: the one the spreadsheet must be shared with."""
        return self._client_email

    # ----- threading ----------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking gspread call on the mirror's own thread."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sheet-mirror")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _loop_objects(self) -> None:
        """Create the asyncio primitives on first use, inside the running loop."""
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
            self._has_work = asyncio.Event()
            self._batch_full = asyncio.Event()

    # ----- the blocking side (runs on the mirror thread only) -----------
    def _open_sync(self, prepare: bool) -> None:
        """Open spreadsheet and worksheet, create what is missing, read header and ids."""
        if self._session is None:
            self._session = AuthorizedSession(self._credentials, refresh_timeout=self._timeout)
        gc = gspread.Client(auth=None, session=self._session, http_client=_http_client_for(self._endpoint))  # type: ignore[arg-type]
        gc.set_timeout(self._timeout)
        sh = gc.open_by_key(self._key)
        try:
            ws = sh.worksheet(self._worksheet_name)
        except gspread.WorksheetNotFound:
            if not prepare:
                raise
            try:
                ws = sh.add_worksheet(self._worksheet_name, rows=1000, cols=max(len(self._columns), 1))
            except gspread.exceptions.APIError as exc:
                # Another replica created it between our two calls.
                if exc.response.status_code != 400:
                    raise
                ws = sh.worksheet(self._worksheet_name)
        header = ws.row_values(1)
        if not header and prepare:
            # An update at A1, not an append: two replicas starting on an empty
            # sheet both write the same cells, never two header rows.
            ws.update([self._columns], "A1", value_input_option=ValueInputOption.raw)
            header = list(self._columns)
        self._spreadsheet_obj, self._ws, self._title, self._header = sh, ws, sh.title, header
        if prepare:
            self._ids = self._read_ids_sync()

    def _column_position(self, name: str) -> int | None:
        """1-based column of ``name``: where the sheet's header has it, else where we write it."""
        lowered = [h.strip().lower() for h in self._header]
        if name in lowered:
            return lowered.index(name) + 1
        if name in self._columns:
            return self._columns.index(name) + 1
        return None

    def _read_column_sync(self, name: str) -> list[str]:
        assert self._ws is not None
        pos = self._column_position(name)
        if pos is None:
            return []
        values = ["" if v is None else str(v) for v in self._ws.col_values(pos)]
        return values[1:] if self._header else values

    def _read_ids_sync(self) -> set[str]:
        return {v.strip() for v in self._read_column_sync("id") if v.strip()}

    def _append_sync(self, rows: list[list[str]]) -> None:
        assert self._ws is not None
        self._ws.append_rows(rows, value_input_option=ValueInputOption.raw)

    # ----- state --------------------------------------------------------
    def _set_state(self, state: str, reason: str | None) -> None:
        if (state, reason) != (self._state, self._reason):
            level = logging.INFO if state == "ok" else logging.WARNING
            log.log(level, "sheets mirror state %s%s", state, f": {reason}" if reason else "")
        self._state, self._reason = state, reason

    def _note_failure(self, failure: _Failure) -> None:
        state = {
            _Kind.TRANSIENT: "degraded",
            _Kind.PERMISSION: "permission_denied",
            _Kind.NOT_FOUND: "not_found",
            _Kind.PERMANENT: "degraded",
        }[failure.kind]
        self._set_state(state, failure.message)

    def state(self) -> dict[str, Any]:
        """For /readyz: ok | degraded | permission_denied | not_found | disabled, why, and rows waiting."""
        return {
            "state": self._state,
            "reason": self._reason,
            "pending": len(self._pending) + len(self._inflight),
        }

    # ----- opening ------------------------------------------------------
    async def _ensure_open(self, prepare: bool = True) -> None:
        """Open once; on failure classify, record the state and raise a leadbox error."""
        if self._ws is not None and (prepare is False or self._prepared):
            return
        self._loop_objects()
        assert self._open_lock is not None
        async with self._open_lock:
            if self._ws is not None and (prepare is False or self._prepared):
                return
            try:
                await self._call(self._open_sync, prepare)
            except Exception as exc:
                failure = self._failure(exc)
                self._note_failure(failure)
                raise failure.error() from exc
            self._prepared = self._prepared or prepare
            self._set_state("ok", None)

    def _failure(self, exc: BaseException) -> _Failure:
        """Classify; anything unexpected counts as transient with an unknown outcome.

        The flush task must never die on a surprise (a waiter would hang for
        ever), and "unknown outcome" makes the next attempt check the ids first.
        """
        failure = _classify(exc, client_email=self._client_email, spreadsheet=self._key)
        if failure is not None:
            return failure
        if isinstance(exc, gspread.WorksheetNotFound):
            return _Failure(_Kind.NOT_FOUND, f"sheets: worksheet {self._worksheet_name!r} not found")
        log.error("sheets: unexpected error", extra={"error": type(exc).__name__}, exc_info=exc)
        return _Failure(_Kind.TRANSIENT, f"sheets: unexpected {type(exc).__name__}", uncertain=True)

    async def start(self) -> None:
        """Open the sheet, create the worksheet and header if missing, read the ids present.

        Raises PermanentError (403/404) or TransientError (unreachable); the
        mirror stays usable either way and retries opening on the next flush.
        """
        self._closing = self._closed = False
        await self._ensure_open(prepare=True)
        self._ensure_flusher()

    # ----- mirroring ----------------------------------------------------
    def _row(self, lead: Lead) -> list[str]:
        return [self._cell(lead, c)[:CELL_LIMIT] for c in self._columns]

    def _cell(self, lead: Lead, column: str) -> str:
        if column == "received_at":
            return _iso_utc(lead.created_at)
        if column == "category":
            return self._category_labels.get(str(lead.category), str(lead.category)) if lead.category else ""
        if column == "priority":
            return self._priority_labels.get(str(lead.priority), str(lead.priority)) if lead.priority else ""
        value = getattr(lead, column, None)
        if value is None:
            return ""
        if isinstance(value, datetime):
            return _iso_utc(value)
        if isinstance(value, enum.Enum):
            return str(value.value)
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False, default=str)
        return str(value)

    def _ensure_flusher(self) -> None:
        self._loop_objects()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="sheet-mirror-flush")

    async def mirror(self, lead: Lead) -> None:
        """Return once the lead's row is in the sheet; at once if it already is."""
        if lead.id in self._ids:
            return
        if self._closing or self._closed:
            raise TransientError("sheets: mirror is shutting down; retry after restart")
        loop = asyncio.get_running_loop()
        if loop.time() < self._cooldown_until:
            left = self._cooldown_until - loop.time()
            raise TransientError(f"sheets: unavailable ({self._reason}); retrying in {left:.1f}s", retry_after=left)
        self._ensure_flusher()
        assert self._has_work is not None and self._batch_full is not None
        item = self._by_id.get(lead.id)
        if item is None:
            item = _Pending(lead.id, self._row(lead), loop.create_future(), loop.time())
            self._by_id[lead.id] = item
            self._pending.append(item)
            self._has_work.set()
            if len(self._pending) >= self._batch_size:
                self._batch_full.set()
        await asyncio.shield(item.future)

    async def _flush_loop(self) -> None:
        """Take batches off the queue (full, due, or on close) and write each with one append."""
        assert self._has_work is not None and self._batch_full is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._has_work.clear()
                await self._has_work.wait()
                continue
            due = self._pending[0].enqueued_at + self._flush_seconds
            while len(self._pending) < self._batch_size and not self._closing:
                left = due - loop.time()
                if left <= 0:
                    break
                self._batch_full.clear()
                try:
                    await asyncio.wait_for(self._batch_full.wait(), left)
                except TimeoutError:
                    break
            batch = self._pending[: self._batch_size]
            del self._pending[: self._batch_size]
            self._inflight = batch
            try:
                await self._write_batch(batch)
            finally:
                self._inflight = []
                for item in batch:
                    self._by_id.pop(item.lead_id, None)

    async def _write_batch(self, batch: list[_Pending]) -> None:
        """Write one batch with ONE append, retrying transient failures a bounded number of times."""
        loop = asyncio.get_running_loop()
        attempt = 0
        verify = False  # an earlier attempt may have been applied: check ids before re-sending
        while True:
            try:
                if self._ws is None or not self._prepared:
                    await self._ensure_open(prepare=True)
                elif verify:
                    present = await self._call(self._read_ids_sync)
                    self._ids |= present
                    verify = False
                todo = [p for p in batch if p.lead_id not in self._ids]
                for item in batch:
                    if item.lead_id in self._ids:
                        _resolve(item)
                batch = todo
                if not batch:
                    return
                await self._call(self._append_sync, [p.row for p in batch])
            except LeadboxError as exc:  # from _ensure_open: already classified and recorded
                failure = _failure_from_error(exc)
            except Exception as exc:
                failure = self._failure(exc)
                self._note_failure(failure)
            else:
                self._ids.update(p.lead_id for p in batch)
                for item in batch:
                    _resolve(item)
                self._set_state("ok", None)
                return
            verify = verify or failure.uncertain
            attempt += 1
            delay = failure.retry_after
            if delay is None:
                delay = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
                delay *= 1 + random.random() / 4  # spread replicas apart
            if failure.kind is not _Kind.TRANSIENT or attempt > self._max_retries or delay > self._backoff_max or self._closing:
                if failure.kind is _Kind.TRANSIENT:
                    # Fail fast for a while: what is queued behind would only wait to fail too.
                    cool = max(self._cooldown_seconds, failure.retry_after or 0.0)
                    self._cooldown_until = loop.time() + cool
                    failure.retry_after = cool
                    rest, self._pending = self._pending, []
                    for item in rest:
                        self._by_id.pop(item.lead_id, None)
                    batch = batch + rest
                error = failure.error()
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                        item.future.exception()  # retrieved: no "never retrieved" noise if a waiter left
                return
            log.info("sheets: will retry", extra={"reason": failure.message, "attempt": attempt,
                                                 "duration_ms": int(delay * 1000)})
            await asyncio.sleep(delay)

    # ----- other port methods -------------------------------------------
    async def known_emails(self) -> set[str]:
        """Normalized (trimmed, lower-cased) addresses in the sheet's email column, read once."""
        await self._ensure_open(prepare=True)
        if self._column_position("email") is None:
            raise ConfigError("sheets.import_existing needs an \"email\" column in the sheet or in sheets.columns")
        try:
            values = await self._call(self._read_column_sync, "email")
        except Exception as exc:
            failure = self._failure(exc)
            self._note_failure(failure)
            raise failure.error() from exc
        return {v.strip().lower() for v in values if "@" in v}

    async def close(self) -> None:
        """Flush what is queued (bounded by close_timeout), then stop the thread."""
        if self._closed:
            return
        self._closing = True
        if self._has_work is not None and self._batch_full is not None:
            self._has_work.set()
            self._batch_full.set()
        if self._flusher is not None and not self._flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), self._close_timeout)
            except TimeoutError:
                self._flusher.cancel()
                try:
                    await self._flusher
                except asyncio.CancelledError:
                    pass
        leftover = self._inflight + self._pending
        self._inflight, self._pending = [], []
        self._by_id.clear()
        for item in leftover:
            if not item.future.done():
                item.future.set_exception(TransientError("sheets: shut down before the row was written"))
                item.future.exception()
        if self._executor is not None:
            if self._session is not None:
                self._executor.submit(self._session.close)
            # A request in flight cannot be interrupted; it ends at its timeout.
            self._executor.shutdown(wait=False, cancel_futures=False)
            self._executor = None
        self._session = None
        self._ws = None
        self._prepared = False
        self._flusher = None
        self._closed = True
        self._set_state("disabled", "closed")

    # ----- used by `leadbox sheets check` -------------------------------
    async def describe(self) -> dict[str, Any]:
        """Open read-only (nothing written) and report title, worksheet and header."""
        await self._ensure_open(prepare=False)
        assert self._ws is not None
        try:
            header = await self._call(self._ws.row_values, 1)
        except Exception as exc:
            failure = self._failure(exc)
            self._note_failure(failure)
            raise failure.error() from exc
        return {
            "spreadsheet": self._key,
            "title": self._title,
            "worksheet": self._worksheet_name,
            "header": header,
            "columns": list(self._columns),
            "header_matches": header[: len(self._columns)] == self._columns,
            "client_email": self._client_email,
            "endpoint": self._endpoint,
        }


def _resolve(item: _Pending) -> None:
    if not item.future.done():
        item.future.set_result(None)


def _failure_from_error(exc: LeadboxError) -> _Failure:
    if isinstance(exc, TransientError):
        return _Failure(_Kind.TRANSIENT, str(exc), retry_after=exc.retry_after)
    return _Failure(_Kind.PERMANENT, str(exc), raised=exc)


def _iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a Z; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def check(mirror: SheetMirror) -> dict[str, Any]:
    """For `leadbox sheets check`: verify access and return title, worksheet and header.

    Read-only: a missing worksheet is reported as not found rather than created.
    Raises PermanentError / TransientError with the message to print.
    """
    try:
        return await mirror.describe()
    finally:
        await mirror.close()
