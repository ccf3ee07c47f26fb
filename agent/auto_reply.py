"""Compose the automatic reply for a lead: template by category and language.

Replies follow RFC 3834 (Auto-Submitted: auto-replied; In-Reply-To/References for
email leads). User text never reaches a header raw: display names go through
``email.headerregistry.Address`` (which quotes and RFC 2047-encodes them) after
control characters are removed, and subjects are flattened to one line.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from agent.errors import ConfigError
from agent.models import Category, Lead

_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_LINKS = re.compile(r"(https?://\S+|www\.\S+|<[^>]*>|\[[^\]]*\]\([^)]*\))", re.I)
LANGUAGES_FALLBACK = ("es", "en", "pt")


def one_line(text: str, limit: int = 200) -> str:
    """Flatten to one header-safe line (no CR/LF or controls)."""
    return _CTRL.sub(" ", text).strip()[:limit]


def strip_links(text: str) -> str:
    """LLM text may only reach a reply as plain words: no links, markup or markdown."""
    return re.sub(r"\s+", " ", _LINKS.sub("", text)).strip()


@dataclass(frozen=True)
class Template:
    subject: str
    body: string.Template


class Templates:
    """``config/templates/{category}.{lang}.txt``: first line ``Subject: ...``, a blank line, the body.

    Placeholders use ``$name`` syntax (string.Template): safe_substitute never
    evaluates attributes, so a template cannot reach into objects.
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


def compose_reply(
    lead: Lead, templates: Templates, *, from_address: str, from_name: str, domain: str,
    category_label: str, include_summary: bool,
) -> EmailMessage:
    assert lead.category is not None
    tpl = templates.get(lead.category, lead.language)
    first_name = one_line(lead.name, 100).split(" ")[0] if lead.name else ""
    summary = strip_links(lead.summary or "") if include_summary else ""
    body = tpl.body.safe_substitute(
        name=one_line(lead.name, 200), first_name=first_name, category=category_label,
        summary=summary, lead_id=lead.id,
    )
    msg = EmailMessage()
    msg["From"] = Address(display_name=one_line(from_name, 100), addr_spec=from_address)
    msg["To"] = Address(display_name=one_line(lead.name, 200), addr_spec=lead.email)
    subject = tpl.subject
    if lead.intake == "email" and lead.subject:
        original = one_line(lead.subject, 150)
        subject = original if original.lower().startswith("re:") else f"Re: {original}"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(lead.created_at if lead.replied_at is None else lead.replied_at)
    msg["Message-ID"] = reply_message_id(lead, domain)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Leadbox-Lead"] = lead.id
    if lead.intake == "email" and lead.message_id:
        mid = one_line(lead.message_id, 500)
        msg["In-Reply-To"] = mid
        refs = one_line(lead.references or "", 2000)
        msg["References"] = f"{refs} {mid}".strip()
    msg.set_content(body)
    return msg
