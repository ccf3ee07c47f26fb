"""Compose the automatic reply for a lead: template by category and language.

Replies follow RFC 3834 (Auto-Submitted: auto-replied; In-Reply-To/References for
email leads). User text never reaches a header raw: every value is flattened to
one line (no CR/LF or controls), display names are quoted or RFC 2047-encoded
(always encoded when they contain "=?", so text cannot pose as an encoded-word),
and message-ids must look like ``<...>`` to be echoed.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formataddr
from pathlib import Path

from agent.core.models import Category, Lead, OutgoingMail
from agent.errors import ConfigError

_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_TLD2 = ("(?:io|co|ai|me|ly|to|tv|cc|ws|gg|so|sh|gl|tk|ml|ga|cf|gq|es|mx|ar|br|pt|cl|pe|uy|ec|ve"
         "|bo|py|cr|gt|sv|hn|ni|pa|do|cu|pr|us|uk|eu|de|fr|it|nl|be|ch|at|pl|ru|cn|jp|in|au|ca)")
_LINKS = re.compile(
    r"\[[^\]]*\]\([^)]*\)"  # markdown link or image: [text](url)
    r"|\[[^\]]*\]:\s*\S+"  # markdown reference: [ref]: url
    r"|<[^<>]*>"  # tags and <http://...>
    r"|\b(?:https?|ftps?|sftp|file|wss?|mailto|javascript|vbscript|data|tel|sms|irc|news):\S+"
    r"|(?<!\S)//\S+"  # protocol-relative
    r"|\bwww\.\S+"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # addresses: mail clients make them mailto links
    # Bare domains, as mail clients link them: with a path, or with a TLD of 3+ letters or a
    # common 2-letter one (so "EE.UU." or "p.ej." stay words).
    r"|\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24}[/?#]\S*"
    rf"|\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:[a-z]{{3,24}}|{_TLD2})\b",
    re.I,
)
LANGUAGES_FALLBACK = ("es", "en", "pt")


def one_line(text: str, limit: int = 200) -> str:
    """Flatten to one header-safe line: no CR/LF or controls, whitespace runs collapsed."""
    return _SPACES.sub(" ", _CTRL.sub(" ", text)).strip()[:limit].rstrip()


def strip_links(text: str) -> str:
    """LLM text may only reach a reply as plain words: no links, markup or markdown."""
    # Fullwidth letters and zero-width characters must not hide a link from the patterns.
    text = "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf")
    text = _LINKS.sub("", text).replace("<", "").replace(">", "")  # and unclosed tags
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class Template:
    subject: str
    body: string.Template


class Templates:
    """``config/templates/{category}.{lang}.txt``: first line ``Subject: ...``, a blank line, the body.

    Lines starting with ``#`` before the Subject line are comments. Placeholders use ``$name``
    syntax (string.Template): safe_substitute never evaluates attributes, so a template cannot
    reach into objects. ``$company_name`` (ours) may also appear in the subject.
    """

    def __init__(self, directory: str | Path, default_language: str) -> None:
        self.dir = Path(directory)
        self.default_language = default_language
        self._cache: dict[tuple[str, str], Template] = {}
        if not self.dir.is_dir():
            raise ConfigError(f"reply.templates_dir: {self.dir} is not a directory")
        for path in sorted(self.dir.glob("*.txt")):
            cat, _, lang = path.stem.partition(".")
            if cat not in {c.value for c in Category} or not lang:
                continue
            self._cache[(cat, lang)] = self._load(path)
        for cat in (Category.SALES, Category.SUPPORT, Category.INFO):
            if not any(k[0] == cat.value for k in self._cache):
                raise ConfigError(f"reply.templates_dir: no template for category '{cat.value}' in {self.dir}")

    @staticmethod
    def _load(path: Path) -> Template:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"reply template {path}: cannot read: {e}") from None
        while text.startswith("#"):  # comment lines before the Subject line (who the text is for)
            text = text.partition("\n")[2]
        first, _, rest = text.partition("\n")
        if not first.lower().startswith("subject:"):
            raise ConfigError(f"reply template {path}: the first line must be 'Subject: ...'")
        return Template(one_line(first.split(":", 1)[1]), string.Template(rest.lstrip("\n")))

    def get(self, category: Category, language: str | None) -> Template:
        for lang in (language, self.default_language, *LANGUAGES_FALLBACK):
            if lang and (category.value, lang) in self._cache:
                return self._cache[(category.value, lang)]
        return next(t for (c, _), t in self._cache.items() if c == category.value)


def reply_message_id(lead: Lead, domain: str) -> str:
    """Deterministic per lead, so a retry after a crash carries the same Message-ID."""
    return f"<reply-{lead.id}@{domain}>"


def is_reply_message_id(message_id: str | None, domain: str) -> bool:
    """Is this the Message-ID of one of our replies (our self-copy in the inbox, reply.settle)?"""
    mid = (message_id or "").strip().lower()
    return mid.startswith("<reply-") and mid.endswith(f"@{domain.lower()}>")


_MSG_ID = re.compile(r"^<[^<>\s]{1,250}>$")


def _ascii_address(addr: str) -> str:
    """Internationalized domains go out as punycode; the local part is kept as given."""
    local, _, domain = addr.rpartition("@")
    if domain.isascii():
        return addr
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return addr


_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


def _encoded_words(value: str) -> str:
    """RFC 2047 base64 encoded-words of at most 45 bytes each, cut on UTF-8 boundaries."""
    raw = value.encode("utf-8")
    words, start = [], 0
    while start < len(raw):
        end = min(start + 45, len(raw))
        while end < len(raw) and (raw[end] & 0xC0) == 0x80:  # never split a character
            end -= 1
        words.append("=?utf-8?b?" + base64.b64encode(raw[start:end]).decode("ascii") + "?=")
        start = end
    return "\r\n ".join(words)


def _encode_header(value: str) -> str:
    """Plain ASCII text stays as is; anything else (or anything that looks encoded) is encoded."""
    if value.isascii() and "=?" not in value and len(value) < 900:
        return value
    return _encoded_words(value)


def _address(name: str, addr: str) -> str:
    name = one_line(name, 200)
    if not name:
        return addr
    if not name.isascii() or "=?" in name:
        if len(name.encode("utf-8")) > 45:  # several encoded-words: stdlib folds them as readers expect
            return formataddr((name, addr), charset="utf-8").replace("\n ", "\r\n ")
        return f"{_encoded_words(name)} <{addr}>"
    if _SPECIALS.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>"


def _fold_ids(ids: list[str]) -> str:
    """References can be long: one message-id per folded line keeps every line under 998."""
    return "\r\n ".join(ids)


def compose_reply(
    lead: Lead, templates: Templates, *, from_address: str, from_name: str, domain: str,
    category_label: str, include_summary: bool, company_name: str = "", now: datetime | None = None,
) -> OutgoingMail:
    """Render the reply straight to bytes.

    We write every header ourselves (the email library's header objects cost ~1 ms a
    message): values are flattened to one line, names quoted or RFC 2047-encoded by
    ``formataddr``, and the body is quoted-printable UTF-8.
    """
    assert lead.category is not None
    tpl = templates.get(lead.category, lead.language)
    first_name = one_line(lead.name, 100).split(" ")[0] if lead.name else ""
    summary = strip_links(lead.summary or "") if include_summary else ""
    ours = one_line(company_name, 100)
    body = tpl.body.safe_substitute(
        name=one_line(lead.name, 200), first_name=first_name, category=category_label,
        summary=summary, lead_id=lead.id, company=one_line(lead.company or "", 200), company_name=ours,
    )
    subject = one_line(string.Template(tpl.subject).safe_substitute(company_name=ours))
    # A lead from a website form notification is answered as a new message: the visitor
    # never saw the notification, so neither its subject nor its Message-ID belongs here.
    threaded = lead.intake == "email" and "form" not in (lead.metadata or {})
    if threaded and lead.subject:
        original = one_line(lead.subject, 150)
        subject = original if original.lower().startswith("re:") else f"Re: {original}"
    to_addr = _ascii_address(lead.email)
    mid = reply_message_id(lead, domain)
    headers = [
        ("From", _address(from_name, from_address)),
        ("To", _address(lead.name, to_addr)),
        ("Subject", _encode_header(subject)),
        ("Date", format_datetime(now or datetime.now(UTC))),
        ("Message-ID", mid),
        ("Auto-Submitted", "auto-replied"),
        ("X-Auto-Response-Suppress", "All"),
        ("X-Leadbox-Lead", lead.id),
    ]
    if threaded and lead.message_id and _MSG_ID.match(lead.message_id.strip()):
        parent = lead.message_id.strip()
        refs = [r for r in (lead.references or "").split() if _MSG_ID.match(r)][-20:]
        headers.append(("In-Reply-To", parent))
        headers.append(("References", _fold_ids([*[r for r in refs if r != parent], parent])))
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "quoted-printable"),
    ]
    head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8")
    text = body.replace("\r\n", "\n").rstrip("\n") + "\n"
    qp = binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    return OutgoingMail(message_id=mid, from_addr=from_address, to_addr=to_addr, data=head + b"\r\n" + qp)
