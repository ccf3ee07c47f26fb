"""Look replies up by Message-ID over IMAP, in the mailbox they went out from (agent.core.settle).

Two sound ways to know that the SMTP server took a message whose answer was lost:

- ``sent-folder``: the server files every accepted message in the \\Sent special-use folder
  (RFC 6154) atomically with accepting it. Gmail does; most servers do not (a client's own
  APPEND after the 250 proves nothing: a crash inside DATA leaves Sent empty even when the
  mail went out).
- ``self-copy``: every reply carries our own address as an extra envelope recipient (never in a
  header). The server takes both copies or neither, so our copy in INBOX (or in the folder the
  inbox poller moved it to) proves the customer's was taken.

``auto`` is sent-folder when the server offers Gmail's ``X-GM-EXT-1``, else self-copy. Until the
first session has told which, replies carry the self-copy (sound for both). Each ``find_sent`` is
one IMAP session of its own (never the inbox poller's connection), with a timeout on every step
and the ids searched in one SEARCH per folder at most ``BATCH`` at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

from imapclient.imapclient import SENT

from agent.core.ports import TokenSource
from agent.core.settle import SentSearch
from agent.errors import LeadboxError, NeedsCredentials
from agent.intake.imap import ImapMailbox

log = logging.getLogger("leadbox.settle")

Mode = Literal["auto", "sent-folder", "self-copy", "off"]
GMAIL_CAPABILITY = "X-GM-EXT-1"
BATCH = 50  # Message-IDs per SEARCH command (an OR chain), so a command line stays short


class MailboxSentLookup:
    """``SentLookup`` over IMAP for one account; also says whether replies carry a self-copy."""

    def __init__(
        self, mode: Mode, *, host: str, port: int, security: Literal["tls", "starttls"], username: str,
        password: str | None = None, oauth2_token: TokenSource | None = None, ca_file: str = "",
        timeout: float = 30.0, sent_folder: str = "", self_copy_folder: str = "Leads/Sent",
        self_copy_address: str = "",
    ) -> None:
        self.mode: Mode = mode
        self.resolved: Mode | None = None if mode == "auto" else mode
        self._mailbox = dict(host=host, port=port, security=security, username=username, password=password,
                             oauth2_token=oauth2_token, ca_file=ca_file or None, timeout=timeout)
        self._tokens = oauth2_token
        self.sent_folder = sent_folder
        self.self_copy_folder = self_copy_folder
        self._self_copy = self_copy_address or username
        self.sessions = 0  # IMAP sessions opened (tests check one per check)

    @property
    def self_copy_address(self) -> str | None:
        """Our own address to add as an envelope recipient of every reply, or None."""
        if self.resolved in ("self-copy", None) and "@" in self._self_copy:
            return self._self_copy
        return None

    async def find_sent(self, message_ids: Sequence[str]) -> SentSearch:
        if self.mode == "off":
            return SentSearch(error="reply.settle = off")
        return await asyncio.to_thread(self._find, list(message_ids))

    async def resolve(self) -> SentSearch:
        """One session that only learns the mode (``auto``): the first check does it anyway."""
        return await self.find_sent([])

    # ------------------------------------------------------------- in a thread

    def _find(self, ids: list[str]) -> SentSearch:
        box = ImapMailbox(folder="INBOX", **self._mailbox)  # type: ignore[arg-type]
        self.sessions += 1
        try:
            box.connect()
            client = box.client
            if self.resolved is None:
                self.resolved = "sent-folder" if client.has_capability(GMAIL_CAPABILITY) else "self-copy"
                log.info("settle: mode chosen", extra={"reason": f"auto -> {self.resolved}"})
            mode = self.resolved
            folders = self._folders(box, mode)
            found: dict[str, str] = {}
            for folder in folders:
                wanted = [i for i in ids if i not in found]
                if not wanted:
                    break
                client.select_folder(folder, readonly=True)
                for start in range(0, len(wanted), BATCH):
                    chunk = wanted[start:start + BATCH]
                    uids = client.search(_criteria(chunk))
                    if uids:
                        found.update({mid: folder for mid in _which(box, [int(u) for u in uids], chunk)})
            return SentSearch(found=found, folders=tuple(folders), mode=mode)
        except NeedsCredentials as e:
            if self._tokens is not None:  # a refused XOAUTH2 token: the next session refreshes it
                self._tokens.invalidate()
            return SentSearch(error=f"imap: {e}")
        except (LeadboxError, OSError) as e:
            return SentSearch(error=f"imap: {e}")
        except Exception as e:  # noqa: BLE001 - a NO/BAD answer or a protocol surprise: unknown, try later
            return SentSearch(error=f"imap: {type(e).__name__}: {e}")
        finally:
            box.close()

    def _folders(self, box: ImapMailbox, mode: Mode) -> list[str]:
        client = box.client
        names = {n for flags, _d, n in client.list_folders() if b"\\Noselect" not in flags
                 and b"\\NonExistent" not in flags}
        if mode == "sent-folder":
            folder = self.sent_folder or next(
                (n for flags, _d, n in client.list_folders() if SENT in flags), "")
            if not folder:
                raise LookupFolderMissing("no folder flagged \\Sent; set reply.sent_folder")
            if folder not in names:
                raise LookupFolderMissing(f"sent folder {folder!r} does not exist")
            return [folder]
        extra = [self.self_copy_folder] if self.self_copy_folder and self.self_copy_folder in names else []
        return ["INBOX", *extra]


class LookupFolderMissing(LeadboxError):
    """The folder to search is not in the mailbox: nothing can be concluded."""


def _criteria(ids: list[str]) -> list[str]:
    """``HEADER Message-ID <id>`` for each id, OR-ed (IMAP's OR takes two keys, so it nests)."""
    keys: list[list[str]] = [["HEADER", "Message-ID", i] for i in ids]
    out = keys[-1]
    for key in reversed(keys[:-1]):
        out = ["OR", *key, *out]
    return out


def _which(box: ImapMailbox, uids: list[int], ids: list[str]) -> list[str]:
    """The asked-for ids among the Message-IDs of ``uids`` (HEADER search matches substrings)."""
    have = set(box.header_message_ids(uids).values())
    return [i for i in ids if i in have]
