"""Form-service presets: a service's own webhook payload turned into lead fields.

``POST /leads/{preset}`` takes what Tally, Typeform or Webflow send when a form is submitted.
Their payloads are lists of answers, each with a label or a type, which plain dotted paths
cannot reach, so each built-in preset is a small function. Users add their own presets as
dotted paths in config (``[forms.presets.NAME] email = "data.contact.email"``).
Each returns the pairs that :func:`agent.intake.forms.map_fields` maps, so field aliases,
``keep_fields`` and the honeypot work the same for every source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Pairs = list[tuple[str, Any]]

#: The pair that carries the form's own name; the webhook puts it in ``metadata.form``.
FORM_NAME = "\x00form"


class PresetError(ValueError):
    """The payload is not what the preset expects (answered as 422)."""


def _text(value: Any) -> str | None:
    """A scalar answer as text; lists of choices joined; anything else skipped."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    return None


def tally(payload: Any) -> Pairs:
    """Tally: ``{"eventType": "FORM_RESPONSE", "data": {"formName", "fields": [{label, type, value}]}}``.

    An email question has type ``INPUT_EMAIL`` and a phone ``INPUT_PHONE_NUMBER``, whatever its
    label; other answers are matched by their label (``Nombre``, ``Message``…). Choice answers
    carry option ids in ``value`` and the texts in ``options``.
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    fields = data.get("fields") if isinstance(data, dict) else None
    if not isinstance(fields, list):
        raise PresetError("expected a Tally payload: data.fields must be a list")
    pairs: Pairs = []
    for f in fields:
        if not isinstance(f, dict):
            continue
        kind, label, value = f.get("type"), f.get("label"), f.get("value")
        options = f.get("options")
        if isinstance(value, list) and isinstance(options, list):
            names = {o.get("id"): o.get("text") for o in options if isinstance(o, dict)}
            value = [names.get(v, v) for v in value]
        text = _text(value)
        if text is None:
            continue
        typed = {"INPUT_EMAIL": "email", "INPUT_PHONE_NUMBER": "phone"}.get(str(kind))
        pairs.append((typed or (label if isinstance(label, str) else str(f.get("key", ""))), text))
    if isinstance(data, dict) and isinstance(data.get("formName"), str):
        pairs.append((FORM_NAME, data["formName"]))
    return pairs


def typeform(payload: Any) -> Pairs:
    """Typeform: ``{"form_response": {"definition": {"fields": [...]}, "answers": [...]}}``.

    Each answer names its field by id; the question's title comes from ``definition.fields``
    and the value from the key named by the answer's ``type`` (``text``, ``email``,
    ``phone_number``, ``choice.label``, ``choices.labels``…). A field's ``ref`` is used as its
    name when it is set to one of ours (``email``, ``nombre``…), else its title.
    """
    fr = payload.get("form_response") if isinstance(payload, dict) else None
    answers = fr.get("answers") if isinstance(fr, dict) else None
    if not isinstance(answers, list):
        raise PresetError("expected a Typeform payload: form_response.answers must be a list")
    definition = fr.get("definition") if isinstance(fr, dict) else None
    titles: dict[str, str] = {}
    if isinstance(definition, dict) and isinstance(definition.get("fields"), list):
        titles = {f["id"]: f.get("title", "") for f in definition["fields"]
                  if isinstance(f, dict) and isinstance(f.get("id"), str)}
    pairs: Pairs = []
    for a in answers:
        if not isinstance(a, dict):
            continue
        kind = a.get("type")
        fld: dict[str, Any] = a["field"] if isinstance(a.get("field"), dict) else {}
        value: Any = a.get(kind) if isinstance(kind, str) else None
        if kind == "choice" and isinstance(value, dict):
            value = value.get("label") or value.get("other")
        elif kind == "choices" and isinstance(value, dict):
            value = value.get("labels")
        text = _text(value)
        if text is None:
            continue
        if kind in ("email", "phone_number"):
            name = "email" if kind == "email" else "phone"
        else:
            ref, title = fld.get("ref"), titles.get(str(fld.get("id")), "")
            name = ref if isinstance(ref, str) and not _looks_generated(ref) else title
        pairs.append((name, text))
    if isinstance(definition, dict) and isinstance(definition.get("title"), str):
        pairs.append((FORM_NAME, definition["title"]))
    return pairs


def _looks_generated(ref: str) -> bool:
    """Typeform gives fields a random ref (a UUID or ``01H…``) unless the author names it."""
    return len(ref) >= 20 and any(c.isdigit() for c in ref)


def webflow(payload: Any) -> Pairs:
    """Webflow: ``{"triggerType": "form_submission", "payload": {"name", "data": {label: value}}}``.

    Older sites send the inner object alone (``{"name", "data": {...}}``); both are accepted.
    """
    inner = payload.get("payload", payload) if isinstance(payload, dict) else None
    data = inner.get("data") if isinstance(inner, dict) else None
    if not isinstance(data, dict):
        raise PresetError("expected a Webflow payload: payload.data must be an object")
    pairs: Pairs = [(k, t) for k, v in data.items() if (t := _text(v)) is not None]
    if isinstance(inner, dict) and isinstance(inner.get("name"), str):
        pairs.append((FORM_NAME, inner["name"]))
    return pairs


BUILT_IN: dict[str, Callable[[Any], Pairs]] = {"tally": tally, "typeform": typeform, "webflow": webflow}


def dotted(payload: Any, path: str) -> Any:
    """``data.contact.email`` or ``answers.0.text``: walk objects by key and lists by index."""
    cur = payload
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def from_paths(paths: Mapping[str, str]) -> Callable[[Any], Pairs]:
    """A user-defined preset: each lead field read from a dotted path of the payload."""

    def read(payload: Any) -> Pairs:
        if not isinstance(payload, dict | list):
            raise PresetError("expected a JSON object")
        return [(fld, t) for fld, path in paths.items() if (t := _text(dotted(payload, path))) is not None]

    return read


def resolve(name: str, custom: Mapping[str, Mapping[str, str]]) -> Callable[[Any], Pairs] | None:
    """The preset called ``name``: one from config first (it may override a built-in), else built-in."""
    if name in custom:
        return from_paths(custom[name])
    return BUILT_IN.get(name)
