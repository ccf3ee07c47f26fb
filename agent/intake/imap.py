"""Synchronous IMAP mailbox adapter around imapclient (run it in a worker thread).

imapclient blocks, so the async poller calls these methods through
``asyncio.to_thread``. This class only speaks IMAP: it decides nothing about
leads. Its job is to turn the many ways IMAP can fail into the two that the
poller acts on: ``NeedsCredentials`` (login refused: retry slowly, tell a
human) and ``TransientError`` (network, TLS, server gone: reconnect with
backoff). Every network step has a timeout.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Literal

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from agent.errors import ConfigError, NeedsCredentials, TransientError

__all__ = ["FetchedMessage", "ImapMailbox"]

log = logging.getLogger("leadbox.inbox")

# Errors that mean "the connection or the server is not usable right now".
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes socket.timeout, ssl.SSLError, ConnectionError
    imaplib.IMAP4.abort,
    EOFError,
)


@dataclass(slots=True)
class FetchedMessage:
    """One message as fetched: its raw bytes, or only its size (and Message-ID) when too large."""

    uid: int
    size: int
    raw: bytes | None = None
    message_id: str | None = None  # for a too-large message (header fetched alone)


class ImapMailbox:
    """One IMAP connection to one folder of one mailbox.

    ``password`` or ``oauth2_token`` (a callable returning a fresh access
    token, called at each login so a refreshed token is picked up) must be
    given. ``ca_file`` adds a trusted CA (a private or test server);
    certificate and hostname checks are always on.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Literal["tls", "starttls"] = "tls",
        username: str,
        password: str | None = None,
        oauth2_token: Callable[[], str] | None = None,
        folder: str = "INBOX",
        ca_file: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if security not in ("tls", "starttls"):
            raise ConfigError(f"inbox.security: expected 'tls' or 'starttls', got {security!r}")
        if password is None and oauth2_token is None:
            raise ConfigError("inbox: set EMAIL_PASS, or inbox.auth = 'xoauth2' with a token")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self._oauth2_token = oauth2_token
        self.folder = folder
        self.ca_file = ca_file
        self.timeout = timeout
        self._client: IMAPClient | None = None
        self._idling = False

    # ----------------------------------------------------------- connection

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.ca_file:
            try:
                ctx.load_verify_locations(cafile=self.ca_file)
            except OSError as exc:
                raise ConfigError(f"inbox.ca_file: cannot read {self.ca_file}: {exc}") from None
        return ctx

    @property
    def name(self) -> str:
        """``user@host/folder``: how logs and metrics name this mailbox."""
        return f"{self.username}@{self.host}/{self.folder}"

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise TransientError("imap: not connected (call connect() first)")
        return self._client

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Map network and protocol failures to TransientError, dropping a dead connection."""
        try:
            yield
        except (NeedsCredentials, ConfigError, TransientError):
            raise
        except _NETWORK_ERRORS as exc:
            self._drop()
            raise TransientError(
                f"imap {self.host}:{self.port}: {what} failed ({type(exc).__name__}: {exc}); "
                "will reconnect"
            ) from exc
        except IMAPClientError as exc:
            # A NO/BAD answer: the connection still works, but the step failed.
            raise TransientError(f"imap {what}: server refused: {exc}") from exc

    def guard(self, what: str) -> AbstractContextManager[None]:
        """The same failure mapping for an IMAP step done outside this class (forget --mailbox)."""
        return self._guard(what)

    def connect(self) -> None:
        """Open the connection, log in and select the folder.

        A refused login raises NeedsCredentials; anything on the network or
        TLS side raises TransientError.
        """
        self.close()
        ctx = self._ssl_context()
        with self._guard("connect"):
            if self.security == "tls":
                client = IMAPClient(
                    self.host, port=self.port, ssl=True, ssl_context=ctx, timeout=self.timeout
                )
            else:
                client = IMAPClient(self.host, port=self.port, ssl=False, timeout=self.timeout)
                try:
                    client.starttls(ctx)
                except BaseException:
                    _shutdown(client)
                    raise
            self._client = client
        with self._guard("login"):
            try:
                if self._oauth2_token is not None:
                    self.client.oauth2_login(self.username, self._oauth2_token())
                else:
                    self.client.login(self.username, self._password or "")
            except LoginError as exc:
                self._drop()
                raise NeedsCredentials(
                    f"imap {self.host}: login refused for {self.username} ({exc}); "
                    "check EMAIL_USER / EMAIL_PASS (an app password for Gmail) or the OAuth token"
                ) from None
        self.select()

    def select(self) -> tuple[int, int]:
        """Select the folder read-write; return (UIDVALIDITY, UIDNEXT)."""
        with self._guard(f"select {self.folder}"):
            info = self.client.select_folder(self.folder)
        uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        uidnext = int(info.get(b"UIDNEXT", 0))
        return uidvalidity, uidnext

    # ------------------------------------------------------------- messages

    def new_uids(self, after_uid: int) -> list[int]:
        """UIDs greater than ``after_uid``, ascending.

        ``UID n:*`` always includes the highest UID even when it is below n
        (recipe gotcha 9), so the filter is done here as well.
        """
        with self._guard("search"):
            uids = self.client.search(["UID", f"{after_uid + 1}:*"])
        return sorted(int(u) for u in uids if int(u) > after_uid)

    def sizes(self, uids: Iterable[int]) -> dict[int, int]:
        """RFC822.SIZE per UID, to skip oversized mail before downloading it."""
        wanted = [int(u) for u in uids]
        if not wanted:
            return {}
        with self._guard("fetch sizes"):
            data = self.client.fetch(wanted, ["RFC822.SIZE"])
        return {int(uid): int(d.get(b"RFC822.SIZE", 0)) for uid, d in data.items()}

    def fetch(self, uids: Iterable[int], *, max_bytes: int | None = None) -> dict[int, bytes]:
        """Raw bytes per UID, fetched with BODY.PEEK[] so \\Seen is not set.

        With ``max_bytes``, messages larger than that are left out (not
        downloaded); call ``sizes`` to learn which ones and record them.
        Only int UIDs are passed to imapclient (gotcha 7).
        """
        wanted = [int(u) for u in uids]
        if max_bytes is not None:
            sizes = self.sizes(wanted)
            wanted = [u for u in wanted if sizes.get(u, 0) <= max_bytes]
        if not wanted:
            return {}
        with self._guard("fetch"):
            data = self.client.fetch(wanted, ["BODY.PEEK[]"])
        out: dict[int, bytes] = {}
        for uid, item in data.items():
            body = item.get(b"BODY[]")
            if isinstance(body, bytes):
                out[int(uid)] = body
        return out

    def mark_seen(self, uids: Iterable[int]) -> None:
        wanted = [int(u) for u in uids]
        if wanted:
            with self._guard("mark seen"):
                self.client.add_flags(wanted, [b"\\Seen"], silent=True)

    def _ensure_folder(self, folder: str) -> None:
        with self._guard(f"create {folder}"):
            if not self.client.folder_exists(folder):
                self.client.create_folder(folder)
                try:
                    self.client.subscribe_folder(folder)
                except IMAPClientError:
                    pass  # subscribing is cosmetic

    def move(self, uids: Iterable[int], folder: str) -> None:
        """Move messages to ``folder`` (created when missing); MOVE, else COPY + delete."""
        wanted = [int(u) for u in uids]
        if not wanted:
            return
        self._ensure_folder(folder)
        with self._guard(f"move to {folder}"):
            if self.client.has_capability("MOVE"):
                self.client.move(wanted, folder)
                return
            self.client.copy(wanted, folder)
            self.client.delete_messages(wanted)
            if self.client.has_capability("UIDPLUS"):
                self.client.uid_expunge(wanted)
            else:
                self.client.expunge()

    def add_label(self, uids: Iterable[int], label: str) -> str:
        """Label messages: Gmail X-GM-LABELS when offered, else an IMAP keyword.

        Returns "gmail-label" or "keyword" so the caller can log which one
        was used (a keyword is invisible in most clients, but loses nothing).
        """
        wanted = [int(u) for u in uids]
        if not wanted:
            return "none"
        if self.client.has_capability("X-GM-EXT-1"):
            with self._guard(f"label {label}"):
                self.client.add_gmail_labels(wanted, [label], silent=True)
            return "gmail-label"
        keyword = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label) or "leadbox"
        log.info(
            "imap server has no Gmail labels; using IMAP keyword instead",
            extra={"reason": f"label {label!r} set as keyword {keyword!r}"},
        )
        with self._guard(f"keyword {keyword}"):
            self.client.add_flags(wanted, [keyword.encode("ascii", "replace")], silent=True)
        return "keyword"

    def search_since(self, since: date) -> list[int]:
        """UIDs of mail whose INTERNALDATE is on or after ``since``, ascending."""
        with self._guard("search since"):
            uids = self.client.search(["SINCE", since])
        return sorted(int(u) for u in uids)

    def header_message_ids(self, uids: Iterable[int]) -> dict[int, str]:
        """Message-IDs alone (for too-large mail, so its body is never downloaded)."""
        wanted = [int(u) for u in uids]
        if not wanted:
            return {}
        key = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"
        with self._guard("fetch message-id"):
            data = self.client.fetch(wanted, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        out = {}
        for uid, d in data.items():
            text = (d.get(key) or b"").decode("ascii", "replace")
            value = text.partition(":")[2].strip()
            if value:
                out[int(uid)] = " ".join(value.split())
        return out

    def fetch_batch(self, uids: Sequence[int], max_bytes: int) -> list[FetchedMessage]:
        """Sizes first, then the bytes of the messages up to ``max_bytes``; larger ones come
        with their size and Message-ID only. A UID missing from the answers was expunged
        meanwhile: there is nothing to take."""
        sizes = self.sizes(uids)
        small = [u for u in uids if u in sizes and sizes[u] <= max_bytes]
        big = [u for u in uids if u in sizes and sizes[u] > max_bytes]
        bodies = self.fetch(small) if small else {}
        ids = self.header_message_ids(big) if big else {}
        out = []
        for u in uids:
            if u in bodies:
                out.append(FetchedMessage(u, sizes[u], raw=bodies[u]))
            elif u in big:
                out.append(FetchedMessage(u, sizes[u], message_id=ids.get(u)))
        return out

    def after_actions(self, taken: list[int], quarantined: list[int], *, after: str, move_to: str,
                      label: str, quarantine_folder: str, own_copies: Sequence[int] = (),
                      own_copy_folder: str = "") -> None:
        """``inbox.after`` (seen | move | label) for leads, the quarantine folder for unparseable mail,
        ``reply.self_copy_folder`` for our own replies' copies.

        Best effort by design: the records are durable and the checkpoint is past these UIDs,
        so a failure here is logged and only leaves a mail looking unprocessed.
        """
        if not self.connected:
            return
        try:
            if taken:
                if after == "seen":
                    self.mark_seen(taken)
                elif after == "move":
                    self.move(taken, move_to)
                else:
                    self.add_label(taken, label)
        except Exception as e:  # noqa: BLE001
            log.warning("inbox: after-action failed; the mail stays where it is (nothing is lost)",
                        extra={"mailbox": self.name, "reason": f"{after}: {type(e).__name__}: {e}"})
        try:
            if quarantined:
                self.move(quarantined, quarantine_folder)
        except Exception as e:  # noqa: BLE001
            log.warning("inbox: could not move quarantined mail; its raw copy is in the store",
                        extra={"mailbox": self.name, "reason": f"{type(e).__name__}: {e}"})
        try:
            if own_copies and own_copy_folder:
                self.move(own_copies, own_copy_folder)
        except Exception as e:  # noqa: BLE001
            log.warning("inbox: could not move our replies' copies; they stay in the inbox (settling "
                        "finds them there too)", extra={"mailbox": self.name, "reason": f"{type(e).__name__}: {e}"})

    # ------------------------------------------------------------------ IDLE

    def idle_until(self, deadline: float, stop: threading.Event, on_new_mail: Callable[[], None],
                   tick: float = 1.0) -> None:
        """One IDLE command, held until ``deadline`` (time.monotonic) or ``stop``; ``on_new_mail``
        is called for each EXISTS. Looks up every ``tick`` seconds to see whether to stop."""
        client = self.client
        client.idle()
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                responses = client.idle_check(timeout=tick)
                if any(len(r) >= 2 and r[1] == b"EXISTS" for r in responses):
                    on_new_mail()
        finally:
            client.idle_done()

    def idle_wait(self, timeout: float) -> bool:
        """Wait in IDLE up to ``timeout`` seconds; True when new mail (EXISTS) arrived.

        Callers re-issue it well before the server's 29-minute IDLE limit.
        """
        with self._guard("idle"):
            self.client.idle()
            self._idling = True
            try:
                responses = self.client.idle_check(timeout=timeout)
            finally:
                self._idling = False
                self.client.idle_done()
        return any(len(r) >= 2 and r[1] == b"EXISTS" for r in responses)

    # ----------------------------------------------------------------- close

    def abort(self) -> None:
        """Cut the socket under a call stuck on the network (from another thread) so it returns."""
        client = self._client
        if client is not None:
            _shutdown(client)

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _shutdown(client)

    def close(self) -> None:
        """Log out politely when possible; always release the socket."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the connection may already be gone
            _shutdown(client)


def _shutdown(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except (OSError, imaplib.IMAP4.error):
        pass
