"""Website forms: decode a form body and map its field names onto a lead.

A plain ``<form method=post>`` sends ``application/x-www-form-urlencoded`` or
``multipart/form-data``; every site names its fields its own way (``nombre``, ``your-email``,
``mensaje``…). This module turns either encoding into the same dict the JSON path validates,
so one validator, one dedupe and one set of limits serve all three. Pure functions, no I/O:
the body was already read (and size-limited) by the webhook.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import unquote_to_bytes

from agent.config_forms import DEFAULT_FORM_FIELDS as DEFAULT_FIELDS
from agent.config_forms import DEFAULT_KEEP_FIELDS
from agent.core.validation import FieldError

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

CANONICAL = frozenset({"name", "email", "message", "phone", "company", "source", "metadata", "subject"})


_GUESS_ORDER = ("email", "phone", "company", "subject", "message", "name")
_WORD = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class FormError(ValueError):
    """A form body that cannot be read; ``errors`` are the field-level reasons."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class FieldMap:
    """Which incoming names feed which lead field, plus the extra fields kept in metadata."""

    fields: Mapping[str, Sequence[str]] = field(default_factory=lambda: DEFAULT_FIELDS)
    keep_fields: Sequence[str] = field(default_factory=lambda: DEFAULT_KEEP_FIELDS)
    honeypot: str = "website"

    def __post_init__(self) -> None:
        lookup: dict[str, str] = {}
        for target, names in self.fields.items():
            for n in [target, *names]:
                lookup.setdefault(n.strip().lower(), target)
        object.__setattr__(self, "_lookup", lookup)
        object.__setattr__(self, "_keep", {k.strip().lower(): k for k in self.keep_fields})

    def target(self, name: str) -> str | None:
        lookup: dict[str, str] = self._lookup  # type: ignore[attr-defined]
        return lookup.get(name.strip().lower())

    def guess(self, label: str) -> str | None:
        """A question's label (``Nombre completo``, ``What's your email?``) to a lead field.

        For presets, whose answers carry human labels: a field matches when one of its
        names is a word of the label (accents ignored). ``Company name`` is a company, not
        a name, so the more specific fields are tried first.
        """
        words = set(_WORD.findall(_fold(label)))
        phrase = " ".join(_WORD.findall(_fold(label)))
        for target in _GUESS_ORDER:
            for n in [target, *self.fields.get(target, ())]:
                key = _fold(n)
                if key in words or (" " in key and key in phrase):
                    return target
        return None

    def kept(self, name: str) -> str | None:
        keep: dict[str, str] = self._keep  # type: ignore[attr-defined]
        return keep.get(name.strip().lower())


@dataclass
class MappedForm:
    """A form mapped onto lead fields. ``data`` is what ``validate_lead`` takes."""

    data: dict[str, Any]
    honeypot_filled: bool = False


def decode_urlencoded(body: bytes) -> list[tuple[str, str]]:
    """``a=1&b=2`` as pairs, strictly UTF-8 (percent-escapes included).

    Written out rather than ``urllib.parse.parse_qsl`` (a third slower): forms share the
    webhook's hot path. Raw bytes above 0x7f are refused, as a urlencoded body is ASCII.
    """
    parts = body.split(b"&")
    if len(parts) > 1000:
        raise FormError([FieldError("body", "has too many fields (at most 1000)")])
    out: list[tuple[str, str]] = []
    try:
        for part in parts:
            if part:
                k, _, v = part.partition(b"=")
                out.append((_unquote(k), _unquote(v)))
    except UnicodeDecodeError as e:
        raise FormError([FieldError("body", "is not valid UTF-8 form data")]) from e
    return out


def _unquote(raw: bytes) -> str:
    if b"%" in raw or b"+" in raw:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    return raw.decode("ascii")


def decode_multipart(body: bytes, content_type_header: str) -> list[tuple[str, str]]:
    """The text parts of a ``multipart/form-data`` body; a file part is refused.

    Parsed with the standard library's MIME parser from the bytes the webhook already read
    (the body limit applies before this), so a file is never stored or read further.
    """
    head = f"Content-Type: {content_type_header}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    msg = BytesParser(policy=HTTP).parsebytes(head + body)
    if not msg.is_multipart() or not msg.get_param("boundary"):
        raise FormError([FieldError("body", "is not valid multipart/form-data (no boundary)")])
    if msg.defects and not msg.get_payload():
        raise FormError([FieldError("body", "is not valid multipart/form-data")])
    pairs: list[tuple[str, str]] = []
    for part in msg.iter_parts():
        pairs.append(_multipart_field(part))
        if len(pairs) > 1000:
            raise FormError([FieldError("body", "has too many fields (at most 1000)")])
    return pairs


def _multipart_field(part: Message) -> tuple[str, str]:
    name = part.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        raise FormError([FieldError("body", "a multipart part has no field name")])
    if part.get_param("filename", header="content-disposition") is not None:
        raise FormError([FieldError(name, "file uploads are not accepted")])
    ctype = part.get_content_type()
    if part.get("content-type") and ctype != "text/plain":
        raise FormError([FieldError(name, f"must be text, not {ctype}")])
    raw = part.get_payload(decode=True)
    data = raw if isinstance(raw, bytes) else b""
    charset = (part.get_content_charset() or "utf-8").lower()
    if charset not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise FormError([FieldError(name, f"must be sent as UTF-8, not {charset}")])
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormError([FieldError(name, "is not valid UTF-8")]) from e


def map_fields(pairs: Iterable[tuple[str, Any]], fmap: FieldMap, *, guess: bool = False) -> MappedForm:
    """Map incoming names onto lead fields; a repeated lead field is an error.

    Names that match no lead field are ignored (as for JSON), except ``keep_fields``, which go
    into ``metadata``. When a site sends two aliases of one field (``name`` and ``nombre``), the
    first non-empty value wins.
    """
    data: dict[str, Any] = {}
    seen: dict[str, str] = {}
    metadata: dict[str, Any] = {}
    errors: list[FieldError] = []
    honeypot = False
    hp = fmap.honeypot.strip().lower()
    for name, value in pairs:
        lname = name.strip().lower()
        if hp and lname == hp:
            honeypot = honeypot or bool(str(value).strip())
            continue
        target = fmap.target(name)
        if target is None and guess:
            target = fmap.guess(name)
            if target in seen.values():
                target = None  # a second "name"-like question (e.g. "Nombre de la empresa")
        if target is not None:
            if lname in seen:
                errors.append(FieldError(name, "appears more than once"))
                continue
            seen[lname] = target
            if target not in data or (isinstance(data[target], str) and not data[target].strip()):
                data[target] = value
            continue
        kept = fmap.kept(name)
        if kept is not None:
            if kept in metadata:
                errors.append(FieldError(name, "appears more than once"))
            elif isinstance(value, str) and value.strip():
                metadata[kept] = value.strip()[:500]
    if errors:
        raise FormError(errors)
    if metadata:
        data["metadata"] = metadata
    return MappedForm(data=data, honeypot_filled=honeypot)


def map_json_object(obj: Any, fmap: FieldMap) -> MappedForm:
    """A JSON body from a site's ``fetch()``: its own names are mapped like a form's.

    The canonical names (``name``, ``email``…) and an explicit ``metadata`` object keep their
    meaning, so the JSON contract of servers that already post to leadbox is unchanged.
    """
    if not isinstance(obj, dict) or obj.keys() <= CANONICAL:
        return MappedForm(data=obj)  # a server's JSON in our own names: nothing to map
    data = {k: v for k, v in obj.items() if k in CANONICAL}
    metadata: dict[str, Any] = {}
    honeypot = False
    hp = fmap.honeypot.strip().lower()
    for key, value in obj.items():
        if key in CANONICAL:
            continue
        if hp and key.strip().lower() == hp:
            honeypot = honeypot or (isinstance(value, str) and bool(value.strip()))
        elif (target := fmap.target(key)) is not None:
            data.setdefault(target, value)
        elif (kept := fmap.kept(key)) is not None and isinstance(value, str) and value.strip():
            metadata[kept] = value.strip()[:500]
    if metadata:
        explicit = data.get("metadata")
        if explicit is None:
            data["metadata"] = metadata
        elif isinstance(explicit, dict):
            data["metadata"] = {**metadata, **explicit}
    return MappedForm(data=data, honeypot_filled=honeypot)
