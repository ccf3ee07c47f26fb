"""Validate a webhook body into a LeadIn, or field-level errors. Pure logic, no I/O.

Hand-written rather than a pydantic model: the webhook is the hot path, and the
error messages are part of the API contract (field + a sentence a form author
can show to a person).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from agent.core.models import LeadIn

NAME_MAX = 200
MESSAGE_MAX = 20_000
SHORT_MAX = 200  # phone, company, source
METADATA_MAX_BYTES = 8 * 1024
KNOWN_FIELDS = frozenset({"name", "email", "message", "phone", "company", "source", "metadata", "subject"})

# C0/C1 controls, DEL; in a message \n, \r and \t are allowed.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LOCAL_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_SPACE = re.compile(r"\s")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(k)
        out[k] = v
    return out


def parse_json_body(body: bytes) -> Any:
    """Decode strict UTF-8 JSON, refusing duplicate keys (ambiguous input)."""
    text = body.decode("utf-8")  # UnicodeDecodeError -> caller answers 415
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); kept, they would be echoed back as invalid JSON."""
    raise ValueError(f"{name} is not valid JSON")


def normalize_email(email: str, *, fold_gmail: bool = False) -> str:
    """The dedupe key: trimmed and lower-cased; optional Gmail dot/+tag folding."""
    e = email.strip().lower()
    local, at, domain = e.rpartition("@")
    if at and not domain.isascii():
        # IDNA mapping: a soft hyphen, a zero-width space or fullwidth letters name the same
        # mailbox as the plain domain; one key per mailbox keeps dedupe and the reply window honest.
        try:
            e = f"{local}@{domain.encode('idna').decode('idna').lower()}"
        except UnicodeError:
            pass
    if fold_gmail and "@" in e:
        local, _, domain = e.rpartition("@")
        if domain in ("gmail.com", "googlemail.com"):
            local = local.split("+", 1)[0].replace(".", "")
            domain = "gmail.com"
        e = f"{local}@{domain}"
    return e


def mailbox_key(email_norm: str) -> str:
    """The mailbox a reply really lands in, for the one-reply-per-window rule.

    Unlike the dedupe key (which only folds Gmail when ``dedupe.fold_gmail`` is on),
    this always drops +tags (sub-addressing, honoured by most providers) and Gmail's
    dots, so address variants cannot buy extra auto-replies to one inbox.
    """
    local, _, domain = email_norm.rpartition("@")
    if not local:
        return email_norm
    local = local.split("+", 1)[0] or local
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", "") or local, "gmail.com"
    return f"{local}@{domain}"


def email_problem(email: str) -> str | None:
    """Why an address is not valid, or None. IDN domains are accepted."""
    if len(email) > 254:
        return "must be at most 254 characters"
    if _CONTROL.search(email) or _SPACE.search(email):
        return "must not contain spaces or control characters"
    if email.count("@") != 1:
        return "must be an address like name@example.com"
    local, domain = email.split("@")
    if not local or len(local) > 64:
        return "the part before @ must be 1 to 64 characters"
    if not local.isascii():
        # SMTPUTF8 local parts: accept letters/digits and the usual punctuation.
        if not all(c.isalnum() or c in ".!#$%&'*+/=?^_`{|}~-" for c in local):
            return "the part before @ has characters that are not allowed"
    elif not _LOCAL_ATOM.match(local):
        return "the part before @ has characters that are not allowed"
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower() if not domain.isascii() else domain.lower()
    except UnicodeError:
        return "the domain is not a valid internationalized domain name"
    labels = ascii_domain.rstrip(".").split(".")
    if len(labels) < 2:
        return "the domain must have a dot, like example.com"
    if not all(_LABEL.match(label) for label in labels):
        return "the domain is not valid"
    if labels[-1].isdigit():
        return "the domain must not be an IP address"
    return None


def _text(
    data: dict[str, Any], key: str, errors: list[FieldError], *, required: bool,
    max_len: int, multiline: bool = False,
) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            errors.append(FieldError(key, "is required"))
        return None
    if not isinstance(value, str):
        errors.append(FieldError(key, f"must be a string, not {_json_type(value)}"))
        return None
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        if required:
            errors.append(FieldError(key, "must not be empty"))
        return None
    pattern = _CONTROL_IN_TEXT if multiline else _CONTROL
    if pattern.search(value):
        what = "control characters" if multiline else "line breaks or control characters"
        errors.append(FieldError(key, f"must not contain {what}"))
        return None
    if "\ud800" <= max(value) and any("\ud800" <= c <= "\udfff" for c in value):
        errors.append(FieldError(key, "must not contain unpaired surrogates"))
        return None
    if len(value) > max_len:
        errors.append(FieldError(key, f"must be at most {max_len} characters (got {len(value)})"))
        return None
    return value


def _json_type(v: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "an array",
            dict: "an object", str: "a string"}.get(type(v), "null")


def validate_lead(data: Any, *, fold_gmail: bool = False) -> LeadIn | list[FieldError]:
    """Turn a decoded JSON body into a LeadIn, or return every problem found."""
    if not isinstance(data, dict):
        return [FieldError("body", f"must be a JSON object, not {_json_type(data)}")]
    errors: list[FieldError] = []
    name = _text(data, "name", errors, required=True, max_len=NAME_MAX)
    email = _text(data, "email", errors, required=True, max_len=254)
    if email is not None:
        problem = email_problem(email)
        if problem:
            errors.append(FieldError("email", problem))
            email = None
    message = _text(data, "message", errors, required=True, max_len=MESSAGE_MAX, multiline=True)
    phone = _text(data, "phone", errors, required=False, max_len=SHORT_MAX)
    company = _text(data, "company", errors, required=False, max_len=SHORT_MAX)
    source = _text(data, "source", errors, required=False, max_len=SHORT_MAX)
    subject = _text(data, "subject", errors, required=False, max_len=SHORT_MAX)
    metadata: dict[str, Any] = {}
    raw_meta = data.get("metadata")
    if raw_meta is not None:
        if not isinstance(raw_meta, dict):
            errors.append(FieldError("metadata", f"must be a JSON object, not {_json_type(raw_meta)}"))
        else:
            size = len(json.dumps(raw_meta, ensure_ascii=False).encode("utf-8", "surrogatepass"))
            if size > METADATA_MAX_BYTES:
                errors.append(FieldError("metadata", f"must be at most 8 KiB as JSON (got {size} bytes)"))
            elif _has_surrogates(raw_meta):
                errors.append(FieldError("metadata", "must not contain unpaired surrogates"))
            else:
                metadata = raw_meta
    if errors or name is None or email is None or message is None:
        return errors or [FieldError("body", "is incomplete")]
    return LeadIn(
        name=name, email=email, email_norm=normalize_email(email, fold_gmail=fold_gmail),
        message=message, intake="webhook", phone=phone, company=company, source=source,
        metadata=metadata, subject=subject,
    )


def _has_surrogates(obj: Any) -> bool:
    """Iterative, so a deeply nested metadata object cannot exhaust the stack."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
