"""One decoder for every body ``POST /leads`` accepts: JSON, a plain form, or a service preset.

Whatever the encoding, the result is the dict :func:`agent.core.validation.validate_lead` takes,
so validation, dedupe and limits are one code path. Errors are field-level and never raise past
:func:`decode_lead_body`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.core.validation import DuplicateKeyError, FieldError, parse_json_body
from agent.intake.forms import (
    CANONICAL,
    FieldMap,
    FormError,
    decode_multipart,
    decode_urlencoded,
    map_fields,
    map_json_object,
)
from agent.intake.presets import FORM_NAME, Pairs, PresetError

JSON_TYPES = ("application/json",)
URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
ACCEPTED = "application/json, application/x-www-form-urlencoded or multipart/form-data"


@dataclass
class Decoded:
    """A body turned into lead fields; ``errors`` with a status when it could not be."""

    data: Any = None
    honeypot: bool = False
    is_form: bool = False
    status: int = 0
    errors: list[FieldError] | None = None


def _fail(status: int, field: str, message: str, *, is_form: bool = False) -> Decoded:
    return Decoded(status=status, errors=[FieldError(field, message)], is_form=is_form)


def is_json(ctype: str) -> bool:
    return ctype in JSON_TYPES or ctype.endswith("+json")


def decode_lead_body(
    ctype: str, ctype_header: str, body: bytes, fmap: FieldMap, *,
    preset: Callable[[Any], Pairs] | None = None, from_browser: bool = False,
) -> Decoded:
    """Decode ``body`` by its media type, map its field names, and report a filled honeypot.

    ``from_browser`` (the request carried an ``Origin``) turns the honeypot on for JSON too: a
    server posting JSON may well send a ``website`` field of its own.
    """
    if preset is None and ctype == "application/json":  # the hot path: a server's JSON in our own names
        try:
            data = parse_json_body(body)
        except DuplicateKeyError as e:
            return _fail(422, str(e), "appears more than once in the JSON object")
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _fail(415, "body", "not valid UTF-8 JSON")
        if type(data) is dict and data.keys() <= CANONICAL:
            return Decoded(data=data)
        mapped = map_json_object(data, fmap)
        return Decoded(data=mapped.data, honeypot=from_browser and mapped.honeypot_filled)
    is_form = ctype in (URLENCODED, MULTIPART)
    try:
        if is_form:
            pairs = decode_urlencoded(body) if ctype == URLENCODED else decode_multipart(body, ctype_header)
            if preset is not None:
                return _mapped(preset(dict(pairs)), fmap, is_form=True)
            mapped = map_fields(pairs, fmap)
            return Decoded(data=mapped.data, honeypot=mapped.honeypot_filled, is_form=True)
        if not is_json(ctype):
            return _fail(415, "Content-Type", f"send the lead as {ACCEPTED}")
        data = parse_json_body(body)
        if preset is not None:
            return _mapped(preset(data), fmap, is_form=False)
        if fmap.fields or fmap.keep_fields:
            mapped = map_json_object(data, fmap)
            return Decoded(data=mapped.data, honeypot=from_browser and mapped.honeypot_filled)
        return Decoded(data=data)
    except FormError as e:
        return Decoded(status=422, errors=e.errors, is_form=is_form)
    except PresetError as e:
        return _fail(422, "body", str(e), is_form=is_form)
    except DuplicateKeyError as e:
        return _fail(422, str(e), "appears more than once in the JSON object")
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _fail(415, "body", "not valid UTF-8 JSON")


def _mapped(pairs: Pairs, fmap: FieldMap, *, is_form: bool) -> Decoded:
    form_name = next((v for k, v in pairs if k == FORM_NAME), None)
    mapped = map_fields([(k, v) for k, v in pairs if k != FORM_NAME], fmap, guess=True)
    if form_name:
        meta = mapped.data.setdefault("metadata", {})
        meta["form"] = str(form_name)[:200]
    return Decoded(data=mapped.data, honeypot=mapped.honeypot_filled, is_form=is_form)
