"""``leadbox forget EMAIL --mailbox``: a person's original mails leave the IMAP mailbox.

Synchronous (imapclient blocks): call ``erase_person_mail`` in a worker thread. One IMAP session
per account. The folders searched are the ones leadbox reads or files mail into (``inbox.folder``,
``inbox.move_to``, ``inbox.quarantine_folder``, ``reply.self_copy_folder``) and the folder flagged
``\\All`` (Gmail's "All Mail", where archived mail lives); a folder that does not exist is skipped.

A mail is the person's when an address of its From or Reply-To (form notifications carry the
visitor there) is theirs; in the self-copy folder, also its To (our own replies' copies). IMAP
SEARCH matches substrings (``ana@x.com`` finds ``juana@x.com``), so every hit is checked against
its parsed headers with the dedupe normalization before anything moves.

The mails go to the folder flagged ``\\Trash`` (RFC 6154; Gmail's ``[Gmail]/Trash``). With no such
folder they are flagged ``\\Deleted`` and expunged (``UID EXPUNGE`` when the server has UIDPLUS, so
mail the user flagged themselves stays). Running it again finds nothing: Trash is not searched.
"""

from __future__ import annotations

import email
import email.policy
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import getaddresses

from imapclient.imapclient import ALL, TRASH

from agent.core.validation import normalize_email
from agent.errors import LeadboxError
from agent.intake.imap import ImapMailbox

__all__ = ["MailboxErasure", "erase_person_mail"]

log = logging.getLogger("leadbox.privacy")

FETCH_BATCH = 500  # UIDs per header FETCH


@dataclass
class MailboxErasure:
    """What happened in one account: mails that went, per folder, and what was not reached."""

    account: str
    action: str = ""  # "moved to <Trash folder>" | "flagged \\Deleted and expunged"
    folders: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # folder (or "connect") -> reason

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, object]:
        return {"account": self.account, "action": self.action, "folders": dict(self.folders),
                "errors": dict(self.errors)}


@dataclass(frozen=True)
class Person:
    """Who is erased: the dedupe key and every spelling of the address leadbox saw."""

    norm: str
    addresses: frozenset[str]
    fold_gmail: bool = False

    def owns(self, address: str) -> bool:
        a = address.strip().lower()
        if not a or "@" not in a:
            return False
        return a in self.addresses or normalize_email(a, fold_gmail=self.fold_gmail) == self.norm


def erase_person_mail(box: ImapMailbox, folders: Iterable[str], person: Person,
                      *, own_copy_folder: str = "") -> MailboxErasure:
    """Move the person's mails out of ``folders`` (and the \\All folder) to Trash, or expunge them."""
    out = MailboxErasure(account=f"{box.username}@{box.host}")
    try:
        box.connect()
        with box.guard("list folders"):
            listing = box.client.list_folders()
    except LeadboxError as e:
        out.errors["connect"] = _reason(e)
        box.close()
        return out
    try:
        names = {_text(n): flags for flags, _d, n in listing
                 if b"\\Noselect" not in flags and b"\\NonExistent" not in flags}
        trash = next((n for n, flags in names.items() if TRASH in flags), None)
        out.action = f"moved to {trash}" if trash else "flagged \\Deleted and expunged"
        wanted = list(dict.fromkeys(f for f in folders if f))
        wanted += [n for n, flags in names.items() if ALL in flags and n not in wanted]
        for folder in wanted:
            if folder == trash or folder not in names:
                continue
            if not box.connected:
                out.errors[folder] = "not reached: the connection was lost"
                continue
            try:
                out.folders[folder] = _erase_in(box, folder, person, trash, with_to=folder == own_copy_folder)
            except LeadboxError as e:
                out.errors[folder] = _reason(e)
        log.info("personal data: mailbox searched", extra={
            "event": "forget_mailbox", "mailbox": out.account,
            "reason": f"{sum(out.folders.values())} mail(s) {out.action}; {len(out.errors)} folder(s) not reached"})
        return out
    finally:
        box.close()


def _erase_in(box: ImapMailbox, folder: str, person: Person, trash: str | None, *, with_to: bool) -> int:
    client = box.client
    with box.guard(f"select {folder}"):
        client.select_folder(folder)
    criteria = _criteria(sorted(person.addresses | {person.norm}), with_to=with_to)
    charset = None if all(a.isascii() for a in person.addresses | {person.norm}) else "UTF-8"
    with box.guard(f"search {folder}"):
        hits = sorted(int(u) for u in client.search(criteria, charset))
    if not hits:
        return 0
    mine = _theirs(box, hits, person, with_to=with_to)
    if not mine:
        return 0
    with box.guard(f"erase in {folder}"):
        if trash is not None and client.has_capability("MOVE"):
            client.move(mine, trash)
        else:
            if trash is not None:
                client.copy(mine, trash)
            client.delete_messages(mine, silent=True)
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(mine)
            else:
                client.expunge()
    return len(mine)


def _criteria(addresses: list[str], *, with_to: bool) -> list[object]:
    """``FROM a``, ``HEADER Reply-To a`` (and ``TO a``) for each address, OR-ed (OR takes two keys)."""
    keys: list[list[object]] = []
    for a in addresses:
        keys += [["FROM", a], ["HEADER", "Reply-To", a]]
        if with_to:
            keys.append(["TO", a])
    out: list[object] = keys[-1]
    for key in reversed(keys[:-1]):
        out = ["OR", *key, *out]
    return out


def _theirs(box: ImapMailbox, uids: list[int], person: Person, *, with_to: bool) -> list[int]:
    """The UIDs whose parsed From / Reply-To (/ To) really carry the person's address."""
    names = "FROM REPLY-TO TO" if with_to else "FROM REPLY-TO"
    key = f"BODY[HEADER.FIELDS ({names})]".encode()
    mine = []
    for start in range(0, len(uids), FETCH_BATCH):
        chunk = uids[start:start + FETCH_BATCH]
        with box.guard("fetch headers"):
            data = box.client.fetch(chunk, [f"BODY.PEEK[HEADER.FIELDS ({names})]"])
        for uid, item in data.items():
            raw = item.get(key)
            if isinstance(raw, bytes) and _carries(raw, person, with_to=with_to):
                mine.append(int(uid))
    return sorted(mine)


def _carries(raw: bytes, person: Person, *, with_to: bool) -> bool:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    fields = ["From", "Reply-To", *(["To"] if with_to else [])]
    values = [str(v) for f in fields for v in (msg.get_all(f) or [])]
    return any(person.owns(addr) for _name, addr in getaddresses(values))


def _reason(e: Exception) -> str:
    """The adapter's message, without the poller's "will reconnect" (this is a one-off command)."""
    return str(e).removesuffix("; will reconnect")


def _text(name: str | bytes) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name
