"""Turn email bodies into the text a classifier should read.

Leads arrive as replies with quoted history, with signatures and disclaimers,
or as HTML only. The classifier should judge what the sender wrote *now*, so
these helpers strip the rest. They are deliberately conservative: they never
return an empty string for non-empty input, because a lead whose text we
"cleaned" away is worse than one with a little noise in it. The full text is
always kept separately on the lead.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

__all__ = ["classifier_text", "html_to_text", "normalize_text", "strip_quotes_and_signature"]

# Control characters except \t and \n (\r is handled by newline normalization).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def normalize_text(s: str) -> str:
    """Remove NULs and control characters (keeping \\n and \\t) and normalize newlines.

    Mail text reaches logs, the database and a spreadsheet; stray control
    characters break some of those and mean nothing to a reader.
    """
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = s.replace("\u2028", "\n").replace("\u2029", "\n")
    s = _CONTROL_RE.sub("", s)
    # Lone surrogates (from surrogate-escaped bytes) cannot be encoded as UTF-8
    # and would break JSON output and the database later on.
    return _SURROGATE_RE.sub("\ufffd", s)


# ----------------------------------------------------------------- quotes

# "On Tue, 3 Jun 2025, Ana <ana@x.com> wrote:" and its Spanish/Portuguese forms.
# Mail clients wrap this header, so it may span two lines (joined before matching).
_ATTRIBUTION_RE = re.compile(
    r"^\s*(On|El|Em|Le|Am)\b.{0,300}\b(wrote|escribió|escribio|escreveu|a écrit|schrieb)\s*:\s*$",
    re.IGNORECASE,
)
_ORIGINAL_MESSAGE_RE = re.compile(
    r"^\s*-{2,}\s*(Original Message|Mensaje original|Mensagem original|"
    r"Forwarded message|Mensaje reenviado|Mensagem encaminhada)\s*-{2,}\s*$",
    re.IGNORECASE,
)
# Outlook's header block: "From: X" followed within a few lines by "Sent: ..."
_OUTLOOK_FROM_RE = re.compile(r"^\s*\**\s*(From|De)\s*:\**\s", re.IGNORECASE)
_OUTLOOK_SENT_RE = re.compile(r"^\s*\**\s*(Sent|Enviado|Date|Fecha|Data)\s*:", re.IGNORECASE)
_UNDERSCORE_RULE_RE = re.compile(r"^\s*_{10,}\s*$")

# --------------------------------------------------------------- signatures

_SIG_DASHES_RE = re.compile(r"^-- ?$")
_SIGNOFF_RE = re.compile(
    r"^\s*(best regards|kind regards|warm regards|regards|best|cheers|thanks|thank you|"
    r"many thanks|sincerely|yours truly|"
    r"saludos cordiales|un saludo|saludos|atentamente|cordialmente|gracias|muchas gracias|"
    r"abraços|abraço|atenciosamente|obrigado|obrigada|cumprimentos|att\.?)\s*[,.!]?\s*$",
    re.IGNORECASE,
)
_SENT_FROM_RE = re.compile(
    r"^\s*(Sent from my|Enviado desde mi|Enviado do meu|Get Outlook for)\b", re.IGNORECASE
)
# A sign-off only starts a signature when what follows looks like one: a few short lines.
_SIG_MAX_LINES = 6
_SIG_MAX_LINE_LEN = 60


def _quote_start(lines: list[str]) -> int | None:
    """Index of the first line that begins quoted history, or None."""
    for i, line in enumerate(lines):
        if _ORIGINAL_MESSAGE_RE.match(line) or _UNDERSCORE_RULE_RE.match(line):
            return i
        if _ATTRIBUTION_RE.match(line):
            return i
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if re.match(r"^\s*(On|El|Em)\b", line, re.IGNORECASE) and _ATTRIBUTION_RE.match(
            f"{line.rstrip()} {nxt.strip()}"
        ):
            return i
        if _OUTLOOK_FROM_RE.match(line) and any(
            _OUTLOOK_SENT_RE.match(following) for following in lines[i + 1 : i + 5]
        ):
            return i
    return None


def _signature_start(lines: list[str]) -> int | None:
    """Index where the signature begins, or None when there is none we trust."""
    for i, line in enumerate(lines):
        if _SIG_DASHES_RE.match(line) or _SENT_FROM_RE.match(line):
            return i
    # Sign-offs: take the last one that is followed only by a few short lines.
    for i in range(len(lines) - 1, -1, -1):
        if not _SIGNOFF_RE.match(lines[i]):
            continue
        tail = [t for t in lines[i + 1 :] if t.strip()]
        if len(tail) <= _SIG_MAX_LINES and all(len(t.strip()) <= _SIG_MAX_LINE_LEN for t in tail):
            return i
        return None
    return None


def strip_quotes_and_signature(text: str) -> str:
    """The newly written part of a message: quoted replies and the signature removed.

    Removes '>'-quoted lines, everything from an attribution line ("On ...
    wrote:", "El ... escribió:", "Em ... escreveu:") or an Outlook header block
    ("-----Original Message-----", "From:/De: ... Sent:/Enviado:") onward, and
    a trailing signature (after a "-- " line, or after a sign-off such as
    "Regards" or "Saludos" when only a few short lines follow it). Returns the
    original text when stripping would leave nothing.
    """
    original = text
    lines = normalize_text(text).split("\n")
    cut = _quote_start(lines)
    if cut is not None:
        lines = lines[:cut]
    lines = [ln for ln in lines if not ln.lstrip().startswith(">")]
    sig = _signature_start(lines)
    if sig is not None:
        lines = lines[:sig]
    result = "\n".join(lines).strip()
    result = re.sub(r"\n{3,}", "\n\n", result)
    return result if result else original


# ------------------------------------------------------------------- HTML

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
        "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template", "svg"})


class _TextExtractor(HTMLParser):
    """Collects visible text; block elements become line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "li" and not self._skip_depth:
            self.parts.append("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def html_to_text(html_text: str) -> str:
    """Readable plain text from an HTML body (stdlib only; never raises on bad HTML).

    Drops script/style, turns block elements into newlines, unescapes entities
    and collapses runs of whitespace, so an HTML-only mail classifies like a
    plain one.
    """
    parser = _TextExtractor()
    try:
        parser.feed(html_text)
        parser.close()
        raw = "".join(parser.parts)
    except Exception:  # noqa: BLE001 - HTMLParser can choke on pathological input
        raw = html.unescape(re.sub(r"<[^>]*>", " ", html_text))
    raw = normalize_text(raw).replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in raw.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def classifier_text(body: str, subject: str = "") -> str:
    """What the classifier reads: the subject, then the newly written part of the body.

    The one place where quotes and signatures are stripped for classification: the email
    parser calls it with a mail's subject and body, the pipeline's classify step with a
    webhook lead's message.
    """
    cleaned = strip_quotes_and_signature(body) if body else ""
    return f"{subject}\n\n{cleaned}" if subject and cleaned else subject or cleaned
