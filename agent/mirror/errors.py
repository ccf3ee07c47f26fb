"""The Sheets mirror's error taxonomy: what a failed call means and what to do about it.

Every exception from gspread, google-auth or requests becomes a ``Failure``: its kind (transient,
permission, not found, permanent), the message users see (it says what to fix), a server-given
Retry-After, and whether the request may have been applied although no answer came back
(``uncertain``: the next attempt re-reads the id column before sending again).
"""

from __future__ import annotations

import email.utils
import enum
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
import urllib3.exceptions
from google.auth import exceptions as gauth_exceptions

from agent.errors import LeadboxError, NeedsCredentials, PermanentError, TransientError

__all__ = ["Failure", "Kind", "classify", "failure_from_error"]


class Kind(enum.Enum):
    TRANSIENT = "transient"
    PERMISSION = "permission_denied"
    NOT_FOUND = "not_found"
    PERMANENT = "permanent"


# The mirror's /readyz state for each kind of failure.
STATE_OF = {
    Kind.TRANSIENT: "degraded",
    Kind.PERMISSION: "permission_denied",
    Kind.NOT_FOUND: "not_found",
    Kind.PERMANENT: "degraded",
}


@dataclass
class Failure:
    """One failed call, classified: what to tell callers and whether to retry."""

    kind: Kind
    message: str
    retry_after: float | None = None
    # True when the request may have been applied although we saw no answer.
    uncertain: bool = False
    # The error already raised for this failure (kept so its type is preserved).
    raised: LeadboxError | None = None

    def error(self) -> LeadboxError:
        if self.raised is not None:
            return self.raised
        if self.kind is Kind.TRANSIENT:
            return TransientError(self.message, retry_after=self.retry_after)
        if self.kind is Kind.PERMISSION and self.message.startswith("sheets: credentials"):
            return NeedsCredentials(self.message)
        return PermanentError(self.message)


def failure_from_error(exc: LeadboxError) -> Failure:
    """A leadbox error raised earlier (when opening), as a Failure for the retry loop."""
    if isinstance(exc, TransientError):
        return Failure(Kind.TRANSIENT, str(exc), retry_after=exc.retry_after)
    return Failure(Kind.PERMANENT, str(exc), raised=exc)


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


def classify(exc: BaseException, *, client_email: str, spreadsheet: str) -> Failure | None:
    """Map an exception from gspread/google-auth/requests to a Failure, or None if it is a bug."""
    resp = _response_of(exc)
    if resp is not None:
        status = resp.status_code
        if status == 403:
            return Failure(
                Kind.PERMISSION,
                f"sheets: permission denied — share the spreadsheet with {client_email} (Editor)",
            )
        if status == 404:
            return Failure(
                Kind.NOT_FOUND,
                f"sheets: spreadsheet not found — check sheets.spreadsheet "
                f"({spreadsheet!r} is no spreadsheet this account can see)",
            )
        if status == 401:
            return Failure(
                Kind.PERMISSION,
                "sheets: credentials rejected (401) — check GOOGLE_CREDENTIALS_JSON / sheets.credentials_file",
            )
        if status == 429 or status == 408 or status >= 500:
            # A 429 was refused before doing anything; a 5xx or 408 may have been applied.
            return Failure(
                Kind.TRANSIENT,
                f"sheets: HTTP {status} from the Sheets API",
                retry_after=_retry_after(resp),
                uncertain=status != 429,
            )
        return Failure(Kind.PERMANENT, f"sheets: request rejected (HTTP {status}): {_api_message(resp)}")
    if isinstance(exc, gauth_exceptions.RefreshError):
        if getattr(exc, "retryable", False):
            return Failure(Kind.TRANSIENT, "sheets: token endpoint temporarily unavailable")
        return Failure(
            Kind.PERMISSION,
            "sheets: credentials refused by the token endpoint — check GOOGLE_CREDENTIALS_JSON / "
            "sheets.credentials_file (key revoked or service account deleted?)",
        )
    if isinstance(exc, gauth_exceptions.TransportError):
        return Failure(Kind.TRANSIENT, f"sheets: token endpoint unreachable ({type(exc).__name__})")
    if isinstance(exc, requests.RequestException):
        return Failure(
            Kind.TRANSIENT,
            f"sheets: {type(exc).__name__} talking to the Sheets API",
            uncertain=not _never_sent(exc),
        )
    return None


def _api_message(resp: requests.Response) -> str:
    try:
        return str(resp.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return resp.reason or ""
