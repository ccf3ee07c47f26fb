"""Mirror each lead as one row of a Google Sheets worksheet (gspread + a service account).

Why it is shaped this way:

- gspread and google-auth are synchronous (requests underneath). Every call,
  including opening the spreadsheet, runs on one dedicated worker thread, so
  the event loop that serves the webhook never waits on Google. One thread
  (not a pool) also serialises our use of the gspread objects, which are not
  meant to be shared between threads.
- Sheets has tight write quotas, so rows are batched (``batcher.py``): a flush
  is ONE ``values.append`` of up to ``batch_size`` rows. Nobody waits for the
  batch timer: ``submit()`` queues the row and returns a future; the pipeline
  moves on to the reply and records the row's outcome when the future settles.
  The store's ``mirror_status`` is the mirror's ledger: a lead stays ``pending``
  until its row is confirmed, and the catch-up job writes whatever is still
  pending after an outage or a crash.
- No duplicate rows after retries, crashes or restarts. The lead-id column is
  read once at start (a cache of ids already in the sheet); a lead in the cache
  is done at once. When an append's outcome is unknown (the connection dropped
  after the request left, a timeout, a 5xx), the id column is re-read once
  before sending again, and rows already present are dropped from the batch.
- Values go in with ``valueInputOption=RAW``: a name like ``=IMPORTXML(...)``
  stays text and never becomes a formula evaluated in the user's sheet.
- Failures are bounded: 429/5xx/timeouts are retried inside the flush with
  backoff (honouring Retry-After) at most ``max_retries`` times, then every
  queued row gets ``TransientError`` (the catch-up job tries again later); for a
  short cooldown after that, ``submit()`` fails fast so a Sheets outage costs
  the pipeline nothing. 403 and 404 are ``PermanentError`` with a message that
  says what to fix (``errors.py``), and ``state()`` shows them for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import gspread
from google.auth.transport.requests import AuthorizedSession
from gspread.utils import ValueInputOption

from agent.core.models import Health, Lead
from agent.core.states import HealthState
from agent.errors import ConfigError, LeadboxError, PermanentError, TransientError
from agent.mirror.batcher import Pending, RowBatcher, reject, resolve
from agent.mirror.credentials import make_credentials, validate_info
from agent.mirror.endpoint import GOOGLE_SHEETS_ROOT, http_client_for
from agent.mirror.errors import STATE_OF, Failure, Kind, classify, failure_from_error
from agent.mirror.rows import RowFormat

__all__ = ["SheetMirror"]

log = logging.getLogger("leadbox.sheets")

T = TypeVar("T")
# A burst of rows is written this long after its last row (see batcher.py).
QUIET_SECONDS = 0.2


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
        quiet_seconds: float = QUIET_SECONDS,
        category_labels: dict[str, str] | None = None,
        priority_labels: dict[str, str] | None = None,
        timeout: float = 20.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        cooldown_seconds: float = 5.0,
        close_timeout: float = 10.0,
    ) -> None:
        self._format = RowFormat(columns, category_labels, priority_labels)
        self._columns = self._format.columns
        if batch_size < 1:
            raise ConfigError("sheets.batch_size must be at least 1")
        if flush_seconds < 0:
            raise ConfigError("sheets.flush_seconds must not be negative")
        self._key = self._spreadsheet_key(spreadsheet)
        self._worksheet_name = worksheet
        self._endpoint = endpoint.rstrip("/")
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._cooldown_seconds = cooldown_seconds
        self._close_timeout = close_timeout

        validate_info(credentials_info, "sheets credentials")
        self._client_email = str(credentials_info["client_email"])
        self._credentials = make_credentials(credentials_info)

        self._executor: ThreadPoolExecutor | None = None
        self._session: AuthorizedSession | None = None
        self._ws: gspread.Worksheet | None = None
        self._header: list[str] = []
        self._title: str | None = None
        self._ids: set[str] = set()
        self._open_lock: asyncio.Lock | None = None
        self._prepared = False  # header ensured and id cache read

        # Set by the daemon: which of these lead ids still exist (a row is never written for an erased one).
        self.exists: Callable[[list[str]], Awaitable[set[str]]] | None = None
        self._batcher = RowBatcher(self._write_batch, batch_size=batch_size, flush_seconds=flush_seconds,
                                   quiet_seconds=quiet_seconds)
        self._cooldown_until = 0.0
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

    # ----- the blocking side (runs on the mirror thread only) -----------
    def _open_sync(self, prepare: bool) -> None:
        """Open spreadsheet and worksheet, create what is missing, read header and ids."""
        if self._session is None:
            self._session = AuthorizedSession(self._credentials, refresh_timeout=self._timeout)
        gc = gspread.Client(auth=None, session=self._session, http_client=http_client_for(self._endpoint))  # type: ignore[arg-type]
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
        self._ws, self._title, self._header = ws, sh.title, header
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

    def _update_sync(self, lead: Lead) -> bool:
        """Rewrite the lead's row where the id column has its id; False when it has no row yet."""
        assert self._ws is not None
        ids = [v.strip() for v in self._read_column_sync("id")]
        if lead.id not in ids:
            return False
        row = ids.index(lead.id) + (2 if self._header else 1)
        self._ws.update([self._format.row(lead)], f"A{row}", value_input_option=ValueInputOption.raw)
        return True

    def _erase_sync(self, lead_ids: set[str], email_norm: str) -> int:
        """Delete the rows of these leads (bottom first, so indexes stay right); blank them when
        the sheet refuses row deletion. Found by the id column, else by the email column."""
        assert self._ws is not None
        if self._column_position("id") is not None and "id" in [h.strip().lower() for h in self._header]:
            values, wanted = [v.strip() for v in self._read_column_sync("id")], lead_ids
        elif "email" in [h.strip().lower() for h in self._header]:
            values, wanted = [v.strip().lower() for v in self._read_column_sync("email")], {email_norm}
        else:
            raise PermanentError("sheets: the sheet has neither an id nor an email column: "
                                 "the person's row cannot be found; remove it by hand")
        first = 2 if self._header else 1
        rows = [i + first for i, v in enumerate(values) if v in wanted]
        for row in sorted(rows, reverse=True):
            try:
                self._ws.delete_rows(row)
            except gspread.exceptions.APIError as exc:
                if exc.response.status_code not in (400, 403):
                    raise
                self._ws.update([[""] * max(len(self._header), 1)], f"A{row}", value_input_option=ValueInputOption.raw)
        self._ids -= lead_ids
        return len(rows)

    def _append_sync(self, rows: list[list[str]]) -> None:
        assert self._ws is not None
        self._ws.append_rows(rows, value_input_option=ValueInputOption.raw)

    # ----- state --------------------------------------------------------
    def _set_state(self, state: str, reason: str | None) -> None:
        if (state, reason) != (self._state, self._reason):
            level = logging.INFO if state == "ok" else logging.WARNING
            log.log(level, "sheets mirror state %s%s", state, f": {reason}" if reason else "")
        self._state, self._reason = state, reason

    def _note_failure(self, failure: Failure) -> None:
        self._set_state(STATE_OF[failure.kind], failure.message)

    def health(self) -> Health:
        """For /readyz: ok | degraded | permission_denied | not_found | disabled, why, and rows waiting."""
        return Health(HealthState(self._state), self._reason, {"pending": self._batcher.waiting})

    # ----- opening ------------------------------------------------------
    async def _ensure_open(self, prepare: bool = True) -> None:
        """Open once; on failure classify, record the state and raise a leadbox error."""
        if self._ws is not None and (prepare is False or self._prepared):
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
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

    def _failure(self, exc: BaseException) -> Failure:
        """Classify; anything unexpected counts as transient with an unknown outcome.

        The flush task must never die on a surprise (a waiter would hang for
        ever), and "unknown outcome" makes the next attempt check the ids first.
        """
        failure = classify(exc, client_email=self._client_email, spreadsheet=self._key)
        if failure is not None:
            return failure
        if isinstance(exc, gspread.WorksheetNotFound):
            return Failure(Kind.NOT_FOUND, f"sheets: worksheet {self._worksheet_name!r} not found")
        log.error("sheets: unexpected error", extra={"error": type(exc).__name__}, exc_info=exc)
        return Failure(Kind.TRANSIENT, f"sheets: unexpected {type(exc).__name__}", uncertain=True)

    async def start(self) -> None:
        """Open the sheet, create the worksheet and header if missing, read the ids present.

        Raises PermanentError (403/404) or TransientError (unreachable); the
        mirror stays usable either way and retries opening on the next flush.
        """
        self._closed = False
        self._batcher.reopen()
        await self._ensure_open(prepare=True)

    # ----- mirroring ----------------------------------------------------
    def submit(self, lead: Lead) -> asyncio.Future[None]:
        """Queue the lead's row and return at once; the future settles when the row is in.

        Raises TransientError at once while shutting down or cooling down after an outage.
        """
        if lead.id in self._ids:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        if self._batcher.closing or self._closed:
            raise TransientError("sheets: mirror is shutting down; retry after restart")
        loop = asyncio.get_running_loop()
        if loop.time() < self._cooldown_until:
            left = self._cooldown_until - loop.time()
            raise TransientError(f"sheets: unavailable ({self._reason}); retrying in {left:.1f}s", retry_after=left)
        return self._batcher.add(lead.id, self._format.row(lead))

    async def mirror(self, lead: Lead) -> None:
        """Return once the lead's row is in the sheet; at once if it already is."""
        await asyncio.shield(self.submit(lead))

    async def _write_batch(self, batch: list[Pending]) -> None:
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
                for item in batch:
                    if item.lead_id in self._ids:
                        resolve(item)
                batch = [p for p in batch if p.lead_id not in self._ids]
                if batch and self.exists is not None:
                    # A person erased meanwhile (perhaps by `leadbox forget` in another process):
                    # their row is not written back.
                    alive = await self.exists([p.lead_id for p in batch])
                    for item in batch:
                        if item.lead_id not in alive:
                            resolve(item)
                    batch = [p for p in batch if p.lead_id in alive]
                if not batch:
                    return
                await self._call(self._append_sync, [p.row for p in batch])
            except LeadboxError as exc:  # from _ensure_open: already classified and recorded
                failure = failure_from_error(exc)
            except Exception as exc:  # noqa: BLE001 - _failure() classifies every other error
                failure = self._failure(exc)
                self._note_failure(failure)
            else:
                self._ids.update(p.lead_id for p in batch)
                for item in batch:
                    resolve(item)
                self._set_state("ok", None)
                return
            verify = verify or failure.uncertain
            attempt += 1
            delay = failure.retry_after
            if delay is None:
                delay = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
                delay *= 1 + random.random() / 4  # spread replicas apart
            # Closing does not end the retries: close() bounds them with its own timeout, and rows
            # still unwritten then stay pending in the store for the catch-up job after a restart.
            if failure.kind is not Kind.TRANSIENT or attempt > self._max_retries or delay > self._backoff_max:
                if failure.kind is Kind.TRANSIENT:
                    # Fail fast for a while: what is queued behind would only wait to fail too.
                    cool = max(self._cooldown_seconds, failure.retry_after or 0.0)
                    self._cooldown_until = loop.time() + cool
                    failure.retry_after = cool
                    batch = batch + self._batcher.take_queued()
                error = failure.error()
                for item in batch:
                    reject(item, error)
                return
            log.info("sheets: will retry", extra={"reason": failure.message, "attempt": attempt,
                                                 "duration_ms": int(delay * 1000)})
            await asyncio.sleep(delay)

    # ----- other port methods -------------------------------------------
    async def update_row(self, lead: Lead) -> bool:
        """Rewrite the lead's row in place (a correction from the console).

        False when the row is not in the sheet yet: the append still to come writes the
        lead as it is then. Raises TransientError or PermanentError like a flush.
        """
        await self._ensure_open(prepare=False)
        try:
            return await self._call(self._update_sync, lead)
        except Exception as exc:
            failure = self._failure(exc)
            self._note_failure(failure)
            raise failure.error() from exc

    async def erase_rows(self, lead_ids: list[str], email_norm: str) -> int:
        """Delete the person's rows (personal-data erasure); raises like a flush when Google is not there."""
        self.forget(lead_ids)
        await self._ensure_open(prepare=False)
        try:
            return await self._call(self._erase_sync, set(lead_ids), email_norm.lower())
        except LeadboxError:
            raise
        except Exception as exc:
            failure = self._failure(exc)
            self._note_failure(failure)
            raise failure.error() from exc

    def forget(self, lead_ids: list[str]) -> None:
        """Rows of these leads still waiting in memory are never written."""
        self._batcher.drop(set(lead_ids))

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
        await self._batcher.close(self._close_timeout)
        if self._executor is not None:
            if self._session is not None:
                self._executor.submit(self._session.close)
            # A request in flight cannot be interrupted; it ends at its timeout.
            self._executor.shutdown(wait=False, cancel_futures=False)
            self._executor = None
        self._session = None
        self._ws = None
        self._prepared = False
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
