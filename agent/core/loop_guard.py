"""Loop protection: decide whether a message must never become a lead or get an answer.

Auto-replying to automatic mail is how mail loops and backscatter start
(RFC 3834 section 2). These are pure decisions, apart from every action: each
function returns a named reason (a stable string that is stored as the lead's
skip reason and shown by ``leadbox parse-email``) or None. They never raise,
because a broken header must not crash the inbox loop: an unreadable header is
treated as absent.

Reasons, in the order they are checked:
``own-address``, ``own-message-id``, ``auto-submitted``, ``precedence-bulk``,
``mailing-list``, ``auto-reply-header``, ``null-return-path``,
``delivery-report``, ``no-reply-sender``, ``out-of-office``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from email.headerregistry import (
    AddressHeader,
    BaseHeader,
    HeaderRegistry,
    MessageIDHeader,
    UniqueAddressHeader,
    UniqueUnstructuredHeader,
    UnstructuredHeader,
)
from email.message import EmailMessage, Message

__all__ = [
    "LOOP_HEADERS",
    "HeaderView",
    "collect_auto_headers",
    "header_str",
    "inbound_skip_reason",
    "is_no_reply_address",
    "reply_block_reason",
]

# Headers whose values decide loop protection; email_parse stores them (lower-cased
# names) on the lead so the reply step can decide again without the raw message.
LOOP_HEADERS: tuple[str, ...] = (
    "auto-submitted",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "return-path",
    "content-type",
    "subject",
)

_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply", "auto-reply"})
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress")
_REPORT_TYPES = frozenset({"multipart/report", "message/delivery-status"})
_DAEMON_LOCALS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})

_SEP = r"[-_.]?"
_NO_REPLY_RE = re.compile(
    rf"^(?:no{_SEP}reply|do{_SEP}not{_SEP}reply|dont{_SEP}reply|no{_SEP}responder|"
    rf"nao{_SEP}responda|bounces?)(?:[-_.+].*)?$"
    r"|^.+[-_.+]bounces?(?:[-_.+].*)?$",
    re.IGNORECASE,
)

# Out-of-office subjects (en/es/pt), anchored at the start after any Re:/Fwd:/[tag]
# prefixes so a lead that merely mentions "ausente" in its subject is kept.
_OOO_RE = re.compile(
    r"^\W*(?:(?:re|aw|fw|fwd|rv|res|enc)\s*:\s*)*\[?\s*(?:"
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|"
    r"away from (?:the )?office|on vacation|vacation reply|"
    r"respuesta autom[aá]tica|fuera de (?:la )?oficina|ausente|ausencia|de vacaciones|"
    r"resposta autom[aá]tica|fora do escrit[oó]rio|aus[eê]ncia|em f[eé]rias|"
    r"abwesenheitsnotiz|r[eé]ponse automatique|absence"
    r")\b",
    re.IGNORECASE,
)


def header_str(msg: Message, name: str) -> str | None:
    """A header value as a plain string, or None when absent or unreadable.

    With ``policy.default`` some malformed headers raise on access; for loop
    protection an unreadable header is the same as a missing one.
    """
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - malformed header: treat as absent
        try:
            raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
        except Exception:  # noqa: BLE001
            return None
        value = raw[0] if raw else None
    if value is None:
        return None
    try:
        text = str(value)
    except Exception:  # noqa: BLE001
        return None
    return " ".join(text.split())


_UNSTRUCTURED_CLASSES = (UnstructuredHeader, UniqueUnstructuredHeader)
_ADDRESS_CLASSES = (AddressHeader, UniqueAddressHeader)

# One mailbox in its simplest form: "Display Name <local@domain>" (a phrase of plain
# atoms, single spaces) or a bare "local@domain", both dot-atoms. No quotes, comments,
# groups, lists, encoded words or odd spacing: for these the policy.default address
# parser cannot find anything but the obvious display name and addr-spec.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_SIMPLE_MSG_ID = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>")
_SIMPLE_MAILBOX = re.compile(rf"({_ATEXT}(?: {_ATEXT})*) <({_DOT_ATOM}@{_DOT_ATOM})>|({_DOT_ATOM}@{_DOT_ATOM})")


def _registered(factory: object, name: str) -> type | None:
    """The class a policy's header_factory parses ``name`` with, when it is a stock HeaderRegistry."""
    if not isinstance(factory, HeaderRegistry) or factory.base_class is not BaseHeader:
        return None
    cls: type = factory.registry.get(name, factory.default_class)
    return cls


def _raw_ascii(value: object) -> str | None:
    """A raw header value as policy.default hands it to the header class, if plain ASCII
    without encoded words; None when the value needs the real header object (a header
    object set by code, 8-bit bytes as surrogate escapes, an encoded word)."""
    if type(value) is not str or not value.isascii():
        return None
    if "\r" in value or "\n" in value:
        # policy.default drops CR and LF from a value before parsing it.
        value = value.replace("\r", "").replace("\n", "")
    return None if "=?" in value else value


def _simple_mailbox(value: str) -> tuple[str, str] | None:
    """(display name, addr-spec) of a value matching _SIMPLE_MAILBOX, else None."""
    m = _SIMPLE_MAILBOX.fullmatch(value)
    if m is None:
        return None
    return (m[1], m[2]) if m[2] else ("", m[3])


class HeaderView:
    """The header values of one message as ``header_str`` returns them, each read once.

    One pass over ``msg.raw_items()`` finds which headers are present (absent
    ones cost a dict lookup, not a scan), unstructured ASCII values are taken as
    they are, and every other value goes through ``header_str`` (the header
    object) once and is remembered. The results are the same as calling
    ``header_str`` for each name; only the repeated parsing is gone.
    """

    __slots__ = ("_content_type", "_done", "_factory", "_msg", "_raw")

    def __init__(self, msg: Message) -> None:
        self._msg = msg
        self._done: dict[str, str | None] = {}
        self._content_type: str | None | bool = False  # False: not read yet
        raw: dict[str, object] = {}
        try:
            for key, value in msg.raw_items():
                raw.setdefault(key.lower(), value)
        except Exception:  # noqa: BLE001 - an odd Message subclass: ask header_str for all
            self._raw: dict[str, object] | None = None
        else:
            self._raw = raw
        self._factory = getattr(getattr(msg, "policy", None), "header_factory", None)

    def get(self, name: str) -> str | None:
        name = name.lower()
        try:
            return self._done[name]
        except KeyError:
            pass
        raw = self._raw
        value: str | None = None
        if raw is None or name in raw:
            cls = _registered(self._factory, name) if raw is not None else None
            if cls in _UNSTRUCTURED_CLASSES:
                text = _raw_ascii(raw[name]) if raw is not None else None
                if text is not None:
                    value = " ".join(text.split())  # the header object's text is the value
            elif cls in _ADDRESS_CLASSES:
                pair = self.mailbox(name)
                if pair is not None:
                    value = f"{pair[0]} <{pair[1]}>" if pair[0] else pair[1]
            elif cls is MessageIDHeader:
                text = _raw_ascii(raw[name]) if raw is not None else None
                if text is not None and _SIMPLE_MSG_ID.fullmatch(text):
                    value = text  # a plain <id@domain>: the parsed header reads the same
            if value is None:
                value = header_str(self._msg, name)
        self._done[name] = value
        return value

    def mailbox(self, name: str) -> tuple[str, str] | None:
        """(display name, addr-spec) of an address header holding one plain mailbox.

        What policy.default's address parser gives for ``Name <a@b.example>`` or
        ``a@b.example`` in their simplest form (see _SIMPLE_MAILBOX), without
        running it; None for anything else (absent, several addresses, quotes,
        comments, encoded words...): the caller then parses the header object.
        """
        name = name.lower()
        raw = self._raw
        if raw is None or name not in raw or _registered(self._factory, name) not in _ADDRESS_CLASSES:
            return None
        text = _raw_ascii(raw[name])
        return _simple_mailbox(text) if text is not None else None

    def content_type(self) -> str | None:
        """``msg.get_content_type()``, or None when it raises."""
        if self._content_type is False:
            try:
                self._content_type = self._msg.get_content_type()
            except Exception:  # noqa: BLE001
                self._content_type = None
        return self._content_type if isinstance(self._content_type, str) else None


def collect_auto_headers(msg: Message, *, headers: HeaderView | None = None) -> dict[str, str]:
    """The loop-relevant headers of ``msg`` (lower-cased names), for storing on a lead.

    ``headers`` lets a caller that already holds a HeaderView of ``msg`` share it.
    """
    view = headers if headers is not None else HeaderView(msg)
    out: dict[str, str] = {}
    for name in LOOP_HEADERS:
        if name == "content-type":
            ctype = view.content_type()
            if ctype is not None and ctype in _REPORT_TYPES:
                out[name] = ctype
            continue
        value = view.get(name)
        if value is not None:
            out[name] = value[:500]
    return out


def _addr_parts(address: str) -> tuple[str, str]:
    address = address.strip().strip("<>").strip()
    local, _, domain = address.rpartition("@")
    return local.lower(), domain.lower().rstrip(".")


def is_no_reply_address(address: str) -> bool:
    """True for noreply@, no-reply@, donotreply@, do-not-reply@, bounce...@ and similar."""
    local, _ = _addr_parts(address)
    return bool(local) and bool(_NO_REPLY_RE.match(local))


def _is_daemon_address(address: str) -> bool:
    local, _ = _addr_parts(address)
    return local in _DAEMON_LOCALS


def _normalized(addresses: Iterable[str]) -> frozenset[str]:
    return frozenset(a.strip().lower() for a in addresses if a and a.strip())


def _header_reason(get: Callable[[str], str | None]) -> str | None:
    """Checks shared by the inbound and the outbound side, on header values only."""
    auto_submitted = get("auto-submitted")
    if auto_submitted is not None:
        token = auto_submitted.split(";", 1)[0].strip().lower()
        if token and token != "no":
            return "auto-submitted"
    precedence = get("precedence")
    if precedence is not None and precedence.strip().lower() in _BULK_PRECEDENCE:
        return "precedence-bulk"
    if get("list-id") is not None or get("list-unsubscribe") is not None:
        return "mailing-list"
    if any(get(h) is not None for h in _AUTO_REPLY_HEADERS):
        return "auto-reply-header"
    return_path = get("return-path")
    if return_path is not None and return_path.replace(" ", "") == "<>":
        return "null-return-path"
    ctype = get("content-type")
    if ctype is not None and ctype.split(";", 1)[0].strip().lower() in _REPORT_TYPES:
        return "delivery-report"
    return None


def _subject_reason(subject: str | None) -> str | None:
    if subject and _OOO_RE.match(subject):
        return "out-of-office"
    return None


def _sender_reason(sender: str) -> str | None:
    if _is_daemon_address(sender):
        return "delivery-report"
    if is_no_reply_address(sender):
        return "no-reply-sender"
    return None


def inbound_skip_reason(
    msg: EmailMessage | Message,
    *,
    sender: str,
    own_addresses: Iterable[str] = (),
    own_domains: Iterable[str] = (),
    headers: HeaderView | None = None,
    notification: bool = False,
) -> str | None:
    """Why an inbound mail must not become a lead, or None when it may.

    ``sender`` is the address a reply would go to (Reply-To or From). Only that
    address is compared with our own: a web form that sends from our mailbox
    with the visitor in Reply-To is a real lead. ``headers`` lets a caller that
    already holds a HeaderView of ``msg`` share it.

    ``notification``: the mail is a recognised website form notification and
    ``sender`` is the visitor. A website on our own domain sends these, so the
    own-Message-ID check and the no-reply check of the From header are off; the
    header checks (bulk, list, automatic, bounce) and the checks of the
    visitor's address stay.
    """
    own = _normalized(own_addresses)
    domains = frozenset(d.strip().lower().lstrip("@").rstrip(".") for d in own_domains if d)
    if sender and sender.strip().lower() in own:
        return "own-address"
    view = headers if headers is not None else HeaderView(msg)
    message_id = None if notification else view.get("message-id")
    if message_id and domains:
        _, mid_domain = _addr_parts(message_id)
        if mid_domain in domains:
            return "own-message-id"

    def get(name: str) -> str | None:
        if name == "content-type":
            return view.content_type()
        return view.get(name)

    reason = _header_reason(get)
    if reason is not None:
        return reason
    from_header = "" if notification else view.get("from") or ""
    for address in (sender, from_header):
        if address and _sender_reason(_bare_address(address)):
            return _sender_reason(_bare_address(address))
    return _subject_reason(view.get("subject"))


def _bare_address(value: str) -> str:
    """The addr-spec inside a header value like 'Name <a@b>' (best effort, never raises)."""
    match = re.search(r"<([^<>]*)>", value)
    return (match.group(1) if match else value).strip()


def reply_block_reason(
    email_norm: str,
    auto_headers: dict[str, str],
    *,
    own_addresses: Iterable[str] = (),
) -> str | None:
    """Why we must not send an auto-reply to ``email_norm``, or None when we may.

    Works from the headers stored on the lead (``collect_auto_headers``), so
    the reply step re-checks loop protection without the raw message.
    """
    own = _normalized(own_addresses)
    if email_norm.strip().lower() in own:
        return "own-address"
    headers = {k.lower(): v for k, v in (auto_headers or {}).items()}
    reason = _header_reason(headers.get)
    if reason is not None:
        return reason
    reason = _sender_reason(email_norm)
    if reason is not None:
        return reason
    return _subject_reason(headers.get("subject"))
