"""Where a mailbox gets its XOAUTH2 access token, for its IMAP login and its SMTP login.

Gmail and Microsoft 365 access tokens live about an hour, and a daemon runs for
months, so a fixed token cannot work there. ``GoogleTokenSource`` holds
google-auth user credentials built from the refresh token and hands out an
access token that is refreshed shortly *before* it expires, and again after the
server refused one (``invalidate``), because a token can be revoked early.

``StaticTokenSource`` serves ``INBOX_OAUTH_TOKEN`` as is (tests, or a token
managed by something else). Both are called from the inbox's IMAP threads
(poll and IDLE) and, through a thread, by the SMTP transport, so refreshing is
guarded by a lock. The ``TokenSource`` Protocol they meet lives in
``agent.core.ports``: the reply transport (agent.mail) takes one without
importing this package.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.core.ports import TokenSource
from agent.errors import NeedsCredentials, TransientError

if TYPE_CHECKING:
    from agent.config_mailboxes import Mailbox

__all__ = ["GoogleTokenSource", "StaticTokenSource", "TokenSource", "mailbox_token_source", "make_token_source"]

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# Refresh this long before the expiry Google announced, so a login never races it.
REFRESH_MARGIN = timedelta(minutes=5)


class StaticTokenSource:
    """A token from the environment, used as given."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self) -> str:
        return self._token

    def invalidate(self) -> None:
        """Nothing to refresh: a refused static token needs a human (needs_credentials)."""


class _TimeoutRequest:
    """google-auth's requests transport with our timeout on every call (its default is 120 s)."""

    def __init__(self, timeout: float) -> None:
        from google.auth.transport.requests import Request

        self._request = Request()
        self._timeout = timeout

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> Any:
        return self._request(url, method=method, body=body, headers=headers,
                             timeout=timeout or self._timeout, **kwargs)


class GoogleTokenSource:
    """Access tokens from a Google OAuth refresh token (google-auth user credentials)."""

    def __init__(self, client_id: str, client_secret: str, refresh_token: str, *,
                 token_uri: str = GOOGLE_TOKEN_URI, timeout: float = 30.0) -> None:
        from google.oauth2.credentials import Credentials

        self._creds = Credentials(
            token=None, refresh_token=refresh_token, client_id=client_id,
            client_secret=client_secret, token_uri=token_uri,
        )
        self._timeout = timeout
        self._lock = threading.Lock()

    def _fresh_enough(self) -> bool:
        creds = self._creds
        if not creds.token:
            return False
        if creds.expiry is None:
            return True
        # google-auth keeps expiry as a naive UTC datetime.
        expiry = creds.expiry.replace(tzinfo=UTC)
        return expiry - datetime.now(UTC) > REFRESH_MARGIN

    def __call__(self) -> str:
        from google.auth.exceptions import RefreshError, TransportError

        with self._lock:
            if not self._fresh_enough():
                try:
                    self._creds.refresh(_TimeoutRequest(self._timeout))
                except RefreshError as e:
                    # invalid_grant and friends: the refresh token or client is wrong or revoked.
                    raise NeedsCredentials(
                        f"google oauth: refreshing the access token was refused ({e}); check "
                        "GOOGLE_OAUTH_CLIENT_ID, GOOGLE_OAUTH_CLIENT_SECRET and GOOGLE_OAUTH_REFRESH_TOKEN"
                    ) from None
                except (TransportError, OSError) as e:
                    raise TransientError(f"google oauth: token endpoint unreachable ({e}); will retry") from e
            return str(self._creds.token)

    def invalidate(self) -> None:
        """The server refused the token: the next call refreshes, whatever the expiry said."""
        with self._lock:
            self._creds.token = None


def make_token_source(config: Config) -> TokenSource:
    """The refresh-token flow when its three secrets are set, else the static token."""
    s = config.secrets
    if s.google_oauth_refresh_token:
        return GoogleTokenSource(
            s.google_oauth_client_id, s.google_oauth_client_secret, s.google_oauth_refresh_token,
            timeout=config.settings.inbox.timeout,
        )
    return StaticTokenSource(s.inbox_oauth_token)


def mailbox_token_source(config: Config, box: Mailbox) -> TokenSource:
    """The token source of one mailbox of ``inbox.mailboxes``: its own refresh token
    (``refresh_token_env``) with the shared client id and secret, else the shared one."""
    s = config.secrets
    if box.refresh_token:
        return GoogleTokenSource(s.google_oauth_client_id, s.google_oauth_client_secret, box.refresh_token,
                                 timeout=box.inbox.timeout)
    return make_token_source(config)
