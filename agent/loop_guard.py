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
from email.message import EmailMessage, Message

__all__ = [
    "LOOP_HEADERS",
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


def collect_auto_headers(msg: Message) -> dict[str, str]:
    """The loop-relevant headers of ``msg`` (lower-cased names), for storing on a lead."""
    out: dict[str, str] = {}
    for name in LOOP_HEADERS:
        if name == "content-type":
            try:
                ctype = msg.get_content_type()
            except Exception:  # noqa: BLE001
                continue
            if ctype in _REPORT_TYPES:
                out[name] = ctype
            continue
        value = header_str(msg, name)
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
) -> str | None:
    """Why an inbound mail must not become a lead, or None when it may.

    ``sender`` is the address a reply would go to (Reply-To or From). Only that
    address is compared with our own: a web form that sends from our mailbox
    with the visitor in Reply-To is a real lead.
    """
    own = _normalized(own_addresses)
    domains = frozenset(d.strip().lower().lstrip("@").rstrip(".") for d in own_domains if d)
    if sender and sender.strip().lower() in own:
        return "own-address"
    message_id = header_str(msg, "message-id")
    if message_id and domains:
        _, mid_domain = _addr_parts(message_id)
        if mid_domain in domains:
            return "own-message-id"

    def get(name: str) -> str | None:
        if name == "content-type":
            try:
                return msg.get_content_type()
            except Exception:  # noqa: BLE001
                return None
        return header_str(msg, name)

    reason = _header_reason(get)
    if reason is not None:
        return reason
    from_header = header_str(msg, "from") or ""
    for address in (sender, from_header):
        if address and _sender_reason(_bare_address(address)):
            return _sender_reason(_bare_address(address))
    return _subject_reason(header_str(msg, "subject"))


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
