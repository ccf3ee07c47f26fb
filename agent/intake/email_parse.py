"""Turn one raw email into the lead it would become, or the reason it must not.

The inbox loop must never die on a message, so ``parse_email`` never raises:
whatever the bytes are, it returns a ``ParsedEmail``. A message we cannot make
sense of comes back with ``skip_reason = "unparseable: ..."`` and
``quarantine = True`` so the inbox moves it aside for a human instead of
retrying it forever. Automatic mail (bounces, auto-replies, lists, our own
replies) comes back with the loop-guard reason and ``quarantine = False``: it
is an outcome, not a failure.

Parsing uses the stdlib ``email`` package with ``policy.default`` (RFC 2047
headers decoded, address objects), but with ``policy.default`` a malformed
header raises when it is *accessed*, so every header read is guarded and
falls back to the raw value.

Speed: ``policy.default`` builds a new header object (a new class and a full
parse) on every header access, and a message is asked for its Content-Type
several times per part (by the parser itself, then by the body walk, charset,
filename and disposition look-ups). ``_Message`` remembers each parsed header
per part, and the loop-guard and threading headers are read through one
``HeaderView`` (one pass over the raw headers). The results are the ones
``policy.default`` gives; only the repeated work is gone.
"""

from __future__ import annotations

import codecs
import email.utils
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

from agent.core.loop_guard import HeaderView, collect_auto_headers, inbound_skip_reason
from agent.core.models import LeadIn
from agent.core.text import classifier_text, html_to_text, normalize_text
from agent.intake.addresses import is_valid_email
from agent.intake.form_mail import NO_MESSAGE, FormNotification, notification_guard, read_notification

__all__ = [
    "ParsedEmail",
    "is_valid_email",
    "main_parse_email",
    "parse_email",
    "to_lead_in",
]

# Same limits as the webhook intake, so an email lead fits wherever a webhook lead does.
NAME_MAX = 200
MESSAGE_MAX = 20_000
HEADER_MAX = 2_000
_MAX_MIME_DEPTH = 40
_MAX_PARTS = 500
# A run of RFC 2047 encoded words (separated by whitespace only).
_ENCODED_RUN = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=(?:\s+=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)*")


@dataclass(slots=True)
class ParsedEmail:
    """What a raw email becomes: the lead fields, or why it is not a lead."""

    name: str = ""
    email: str = ""
    message: str = ""  # subject + "\n\n" + body text (the full text, kept on the lead)
    clean_text: str = ""  # quotes and signature stripped, for the classifier
    subject: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    skip_reason: str | None = None  # None: this mail should become a lead
    quarantine: bool = False  # True: keep the raw mail aside for a human
    auto_headers: dict[str, str] = field(default_factory=dict)
    # A website form notification (form_mail): the visitor's other fields, and the form.
    phone: str | None = None
    company: str | None = None
    form: dict[str, str] | None = None  # sender, subject, tool, name, page_url, site_url
    form_fields: dict[str, str] = field(default_factory=dict)


class _HeaderClasses(HeaderRegistry):
    """policy.default's header registry, minus a new class per header read.

    ``HeaderRegistry.__getitem__`` builds a fresh class (``type(...)``) every
    time a header is read, and that class depends only on the registered class
    for the name. Here it is built once per registered class: a bounded set,
    whatever header names a mail invents. The header objects are the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        registered = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(registered)
        if made is None:
            made = self._made[registered] = super().__getitem__(name)
        return made


# policy.default in every respect but the header class cache above.
_POLICY = policy.default.clone(header_factory=_HeaderClasses())


class _Message(EmailMessage):
    """An EmailMessage whose ``get`` parses each header once.

    ``Message.get`` scans every header and builds a fresh header object on each
    call. Here the first call indexes the raw headers by lower-cased name (the
    first occurrence, as ``get`` returns) and each parsed object is kept. The
    memo is dropped whenever the header list changes: a new list, a different
    length, or ``replace_header`` (the one in-place rewrite). A header that
    raises when parsed is not remembered, so it raises again, as before.
    """

    def __init__(self, policy: Any = _POLICY) -> None:
        super().__init__(policy=policy)
        self._memo_src: list[tuple[str, Any]] | None = None
        self._memo_len = 0
        self._memo_raw: dict[str, tuple[str, Any]] = {}
        self._memo: dict[str, Any] = {}

    def get(self, name: str, failobj: Any = None) -> Any:
        headers: list[tuple[str, Any]] = self._headers  # type: ignore[attr-defined]  # Message's own list
        if self._memo_src is not headers or self._memo_len != len(headers):
            index: dict[str, tuple[str, Any]] = {}
            for item in headers:
                index.setdefault(item[0].lower(), item)
            self._memo_src, self._memo_len = headers, len(headers)
            self._memo_raw, self._memo = index, {}
        key = name.lower()
        memo = self._memo
        if key in memo:
            return memo[key]
        found = self._memo_raw.get(key)
        if found is None:
            return failobj
        value = self.policy.header_fetch_parse(*found)
        memo[key] = value
        return value

    def replace_header(self, _name: str, _value: Any) -> None:
        self._memo_src = None
        super().replace_header(_name, _value)
        self._memo_src = None


# ------------------------------------------------------------------ addresses


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words in a raw header value (never raises)."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - bogus charset or broken encoded word
        return value


def _quoted_words(match: re.Match[str]) -> str:
    """Encoded words as one quoted string of their text (RFC 2047: never part of an addr-spec).

    The fallback address parser reads raw text: unquoted, the ``,``/``:``/``@`` inside
    an encoded display name would be taken for addresses.
    """
    text = _clean_line(_decode_words(match.group(0)), NAME_MAX)
    return '"' + text.replace("\\", "").replace('"', "") + '"'


def _raw_header(msg: Message, name: str) -> str | None:
    try:
        for key, value in msg.raw_items():
            if key.lower() == name:
                return str(value)
    except Exception:  # noqa: BLE001
        return None
    return None


def _addresses(msg: Message, name: str, headers: HeaderView) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs of an address header, tolerating broken ones."""
    simple = headers.mailbox(name)
    if simple is not None:
        return [simple]  # one plain mailbox: what the header object would say, without it
    try:
        header = msg.get(name)
        if header is None:
            return []
        groups = getattr(header, "addresses", None)
        if groups is not None:
            pairs = [(a.display_name or "", a.addr_spec or "") for a in groups]
            if any(addr for _, addr in pairs):
                return pairs
    except Exception:  # noqa: BLE001 - policy.default raises on some malformed headers
        pass
    raw = _raw_header(msg, name)
    if raw is None:
        return []
    try:
        raw = _ENCODED_RUN.sub(_quoted_words, raw)
        return [(_decode_words(n), a) for n, a in email.utils.getaddresses([raw]) if a]
    except Exception:  # noqa: BLE001
        return []


def _fix_surrogates(value: str) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes: decode them as text instead."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    try:
        return _decode_bytes(value.encode("utf-8", "surrogateescape"), None)
    except UnicodeEncodeError:
        return value  # other lone surrogates: normalize_text replaces them


def _clean_line(value: str, limit: int) -> str:
    value = normalize_text(_fix_surrogates(value)).replace("\n", " ").replace("\t", " ")
    return " ".join(value.split())[:limit]


def _header(headers: HeaderView, name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    if "=?" in value:
        value = _decode_words(value)
    value = _clean_line(value, HEADER_MAX)
    return value or None


# ----------------------------------------------------------------------- body


def _decode_bytes(payload: bytes, charset: str | None) -> str:
    """Text from bytes under a declared charset that may be wrong, unknown or bogus.

    Order: the declared charset (strict), UTF-8 (strict), UTF-8 with
    replacement when the text is mostly UTF-8, else Windows-1252 and finally
    Latin-1 (which never fails and keeps every byte visible).
    """
    if charset:
        try:
            if codecs.lookup(charset).name not in ("base64", "hex", "zlib", "bz2", "uu", "quopri"):
                return payload.decode(charset)
        except Exception:  # noqa: BLE001 - unknown charset, not a text codec, or bad bytes
            pass
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Mostly-valid UTF-8 with a few broken bytes (real multi-byte characters
    # present) stays UTF-8; otherwise it is legacy 8-bit text, most often
    # Windows-1252 or Latin-1 mislabelled or unlabelled.
    lenient = payload.decode("utf-8", errors="replace")
    if any(ord(ch) > 127 and ch != "\ufffd" for ch in lenient):
        return lenient
    try:
        return payload.decode("cp1252")
    except UnicodeDecodeError:
        return payload.decode("latin-1")


def _part_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if isinstance(payload, bytes):
        try:
            charset = part.get_content_charset()
        except Exception:  # noqa: BLE001
            charset = None
        return _decode_bytes(payload, charset)
    try:
        raw = part.get_payload()
    except Exception:  # noqa: BLE001
        return ""
    return raw if isinstance(raw, str) else ""


def _part_size(part: Message) -> int:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        return 0
    if isinstance(payload, bytes):
        return len(payload)
    try:
        return len(part.as_bytes())
    except Exception:  # noqa: BLE001
        return 0


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001
        name = _raw_header(part, "content-disposition")
        return "(unreadable name)" if name else None
    return _clean_line(_decode_words(name), 255) if name else None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:  # noqa: BLE001
        return None


def _walk_leaves(msg: Message) -> list[Message]:
    """Leaf parts, depth- and count-limited (no recursion: hostile nesting is cheap to send).

    A message/rfc822 part is a leaf: a forwarded mail is an attachment of
    this lead, not its body.
    """
    leaves: list[Message] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack and len(leaves) < _MAX_PARTS:
        part, depth = stack.pop()
        try:
            multipart = part.is_multipart() and _content_type(part).startswith("multipart/")
            children = part.get_payload() if multipart else None
        except Exception:  # noqa: BLE001
            multipart, children = False, None
        if multipart and isinstance(children, list) and depth < _MAX_MIME_DEPTH:
            stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
        elif not multipart:
            leaves.append(part)
    return leaves


def _body_and_attachments(msg: Message) -> tuple[str, list[dict[str, Any]], list[str]]:
    """The body text, the attachments, and the HTML parts as they came (for form tables)."""
    plain: list[str] = []
    html: list[str] = []
    attachments: list[dict[str, Any]] = []
    for part in _walk_leaves(msg):
        ctype = _content_type(part)
        disposition = _disposition(part)
        filename = _filename(part)
        is_text = ctype in ("text/plain", "text/html")
        if disposition == "attachment" or (filename and not is_text) or not is_text:
            if part is msg and ctype.startswith("text/"):
                # A single-part text/* mail other than plain/html (e.g. text/enriched).
                plain.append(_part_text(part))
                continue
            attachments.append(
                {"filename": filename, "content_type": ctype, "size": _part_size(part)}
            )
            continue
        text = _part_text(part)
        if ctype == "text/plain":
            plain.append(text)
        else:
            html.append(text)
    if any(t.strip() for t in plain):
        body = "\n\n".join(t.strip("\n") for t in plain if t.strip())
    else:
        body = "\n\n".join(html_to_text(h) for h in html if h.strip())
    return normalize_text(body).strip(), attachments, html


# ----------------------------------------------------------------------- main


def _unparseable(reason: str, **known: Any) -> ParsedEmail:
    return ParsedEmail(skip_reason=f"unparseable: {reason}"[:300], quarantine=True, **known)


def parse_email(
    raw: bytes,
    *,
    own_addresses: frozenset[str] = frozenset(),
    own_domains: frozenset[str] = frozenset(),
    max_bytes: int = 10_000_000,
    form_senders: frozenset[str] = frozenset(),
) -> ParsedEmail:
    """Parse ``raw`` into a ``ParsedEmail``. Never raises, for any input.

    ``form_senders``: addresses (``a@site.com``) and domains (``@site.com``) whose
    mail is always a website form notification (``inbox.form_senders``).
    """
    try:
        return _parse(raw, own_addresses, own_domains, max_bytes, form_senders)
    except RecursionError:
        return _unparseable("structure nested too deeply")
    except Exception as exc:  # noqa: BLE001 - the inbox loop must never die on a mail
        return _unparseable(f"{type(exc).__name__}: {exc}")


def _parse(
    raw: bytes,
    own_addresses: frozenset[str],
    own_domains: frozenset[str],
    max_bytes: int,
    form_senders: frozenset[str] = frozenset(),
) -> ParsedEmail:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if not isinstance(raw, bytes | bytearray | memoryview):
        return _unparseable(f"expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if not raw.strip():
        return _unparseable("empty message")
    too_large = len(raw) > max_bytes
    if too_large:
        # Headers only: enough to say who sent it, without building a huge tree.
        msg: Message = BytesHeaderParser(_Message, policy=_POLICY).parsebytes(raw)
    else:
        msg = BytesParser(_Message, policy=_POLICY).parsebytes(raw)

    headers = HeaderView(msg)
    from_pairs, reply_to = _sender_pairs(msg, headers)
    sender_name, sender = _pick_sender(from_pairs, reply_to)
    subject = _header(headers, "subject") or ""
    known: dict[str, Any] = {
        "name": sender_name,
        "email": sender,
        "subject": subject,
        "message_id": _header(headers, "message-id"),
        "in_reply_to": _header(headers, "in-reply-to"),
        "references": _header(headers, "references"),
        "auto_headers": collect_auto_headers(msg, headers=headers),
    }
    if too_large:
        return ParsedEmail(
            **known,
            skip_reason=f"too-large: {len(raw)} bytes (limit {max_bytes})",
            quarantine=True,
        )
    body, attachments, html = ("", [], []) if not sender and not msg.keys() else _body_and_attachments(msg)
    if body or html:
        try:
            form = read_notification(
                from_pairs=from_pairs, reply_to=reply_to, subject=subject, header=headers.get, body=body,
                html_parts=html, own_addresses=own_addresses, own_domains=own_domains, form_senders=form_senders,
            )
        except Exception:  # noqa: BLE001 - a reader bug must not quarantine a mail that reads as a normal one
            form = None
        if form is not None:
            return _form_parsed(msg, headers, form, known, attachments, own_addresses, own_domains)
    if not sender:
        if not msg.keys() and not msg.defects:
            return _unparseable("no headers", **known)
        return _unparseable("no valid sender address (From/Reply-To)", **known)
    message = f"{subject}\n\n{body}" if subject and body else (subject or body)
    clean_text = classifier_text(body, subject)
    parsed = ParsedEmail(
        **known,
        message=message[:MESSAGE_MAX],
        clean_text=clean_text[:MESSAGE_MAX],
        attachments=attachments,
    )
    parsed.skip_reason = inbound_skip_reason(
        msg, sender=sender, own_addresses=own_addresses, own_domains=own_domains, headers=headers
    )
    if parsed.skip_reason is None and not message.strip():
        parsed.skip_reason = "empty-message"
    return parsed


def _sender_pairs(msg: Message, headers: HeaderView) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(display name, address) pairs of From and of Reply-To."""
    # Raw UTF-8 addresses (RFC 6532) arrive as surrogate escapes: decode them as text.
    from_pairs = [(n, _fix_surrogates(a)) for n, a in _addresses(msg, "from", headers)]
    reply_to = [(n, _fix_surrogates(a).strip()) for n, a in _addresses(msg, "reply-to", headers)]
    return from_pairs, reply_to


def _pick_sender(from_pairs: list[tuple[str, str]], reply_to: list[tuple[str, str]]) -> tuple[str, str]:
    """(name, address): Reply-To when it is one valid address, else the first From."""
    chosen: tuple[str, str] | None = None
    if len(reply_to) == 1 and is_valid_email(reply_to[0][1]):
        chosen = reply_to[0]
    else:
        for pair in from_pairs:
            if is_valid_email(pair[1].strip()):
                chosen = (pair[0], pair[1].strip())
                break
    if chosen is None:
        return "", ""
    display, address = chosen
    if not display:
        # Reply-To often has no display name while From has one for the same
        # person: same address, or at least the same domain (not a form relay).
        domain = address.rpartition("@")[2].lower()
        display = next(
            (n for n, a in from_pairs if a.strip().lower().rpartition("@")[2] == domain), ""
        )
    name = _clean_line(display.strip().strip('"').strip("'"), NAME_MAX)
    return (name or address.split("@", 1)[0][:NAME_MAX]), address


def _form_parsed(
    msg: Message, headers: HeaderView, form: FormNotification, known: dict[str, Any],
    attachments: list[dict[str, Any]], own_addresses: frozenset[str], own_domains: frozenset[str],
) -> ParsedEmail:
    """A recognised form notification: the visitor is the lead, the message is their text only.

    The notification's own subject and threading headers are the form tool's, not the
    visitor's: they go to ``form`` (subject) or nowhere, so a reply starts a new thread.
    """
    visitor = form.email
    name = _clean_line(form.name, NAME_MAX) if visitor else ""
    subject = _clean_line(form.subject or "", HEADER_MAX)
    message = form.message or (subject or NO_MESSAGE if visitor else "")
    clean_text = f"{subject}\n\n{message}" if subject and form.message else message
    known.update(name=name or visitor.split("@", 1)[0][:NAME_MAX], email=visitor, subject=subject,
                 in_reply_to=None, references=None)
    parsed = ParsedEmail(**known, message=message[:MESSAGE_MAX], clean_text=clean_text[:MESSAGE_MAX],
                         attachments=attachments, phone=form.phone, company=form.company,
                         form=form.form, form_fields=form.fields)
    parsed.skip_reason, parsed.quarantine = notification_guard(
        msg, headers, form, parsed.auto_headers, own_addresses, own_domains)
    return parsed


def to_lead_in(parsed: ParsedEmail) -> LeadIn:
    """The ``LeadIn`` for the pipeline (email trimmed; dedupe key trimmed and lower-cased)."""
    email_addr = parsed.email.strip()
    if not email_addr:
        raise ValueError("this email has no valid sender address; it cannot become a lead")
    metadata: dict[str, Any] = {}
    if parsed.attachments:
        metadata["attachments"] = parsed.attachments
    if parsed.form is not None:
        metadata["form"] = dict(parsed.form)
        if parsed.form_fields:
            metadata["form_fields"] = dict(parsed.form_fields)
    return LeadIn(
        name=parsed.name or email_addr.split("@", 1)[0],
        email=email_addr,
        email_norm=email_addr.lower(),
        message=parsed.message,
        intake="email",
        phone=parsed.phone,
        company=parsed.company,
        metadata=metadata,
        subject=parsed.subject or None,
        message_id=parsed.message_id,
        in_reply_to=parsed.in_reply_to,
        references=parsed.references,
        clean_text=parsed.clean_text or None,
        auto_headers=dict(parsed.auto_headers),
    )


def main_parse_email(
    path: str,
    *,
    own_addresses: frozenset[str] = frozenset(),
    own_domains: frozenset[str] = frozenset(),
    form_senders: frozenset[str] = frozenset(),
) -> int:
    """``leadbox parse-email FILE``: print the lead a mail would become, as JSON.

    Exit 0 whenever the file was read (parsed or skipped: the JSON says which
    and why); 2 when the file cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        print(f"parse-email: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    parsed = parse_email(raw, own_addresses=own_addresses, own_domains=own_domains, form_senders=form_senders)
    data = asdict(parsed)
    keys = ("name", "email", "phone", "company", "message", "subject", "message_id", "skip_reason",
            "attachments", "quarantine", "form", "form_fields")
    out = {key: data[key] for key in keys}
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0
