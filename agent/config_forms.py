"""Settings of the website-form intake: ``[forms]`` (field names, honeypot, presets).

Kept apart from ``agent.config`` only for size; it is one of its sections.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from agent.config_base import Section

#: Default accepted names per lead field, matched case-insensitively. Spanish, Portuguese,
#: English and the names WordPress Contact Form 7 uses out of the box.
DEFAULT_FORM_FIELDS: dict[str, list[str]] = {
    "name": ["name", "nombre", "nome", "your-name", "full_name", "fullname", "full-name"],
    "email": ["email", "correo", "e-mail", "your-email", "mail", "correo_electronico"],
    "message": ["message", "mensaje", "mensagem", "your-message", "comments", "comentarios",
                "comment", "consulta"],
    "phone": ["phone", "telefono", "teléfono", "telefone", "your-phone", "tel", "celular"],
    "company": ["company", "empresa", "organization", "organisation"],
    "subject": ["subject", "asunto", "assunto", "your-subject"],
    "source": ["source"],
}
DEFAULT_KEEP_FIELDS = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "page"]


class FormsConfig(Section):
    """Website forms posting to POST /leads: field names, honeypot, thank-you page, presets."""

    fields: dict[str, list[str]] = Field(default_factory=dict, description=(
        "More form field names per lead field (name, email, message, phone, company, subject, "
        "source), added to the built-in Spanish, English, Portuguese and Contact Form 7 names; "
        "matched case-insensitively. Example: { email = [\"mail_cliente\"] }."))
    keep_fields: list[str] = Field(default_factory=lambda: list(DEFAULT_KEEP_FIELDS), description=(
        "Other form fields kept in the lead's metadata; every other field is ignored."))
    honeypot_field: str = Field("website", description=(
        "A field the page hides and people leave empty; a post that fills it is stored as "
        "skipped (honeypot) and never answered. Empty = off."))
    thank_you_url: str = Field("", description=(
        "Where a plain HTML form goes after a successful post (303); empty = the built-in /forms/thanks page."))
    require_origin: bool = Field(False, description=(
        "Refuse (403) any POST /leads whose Origin header is missing or not in http.cors_origins."))
    presets: dict[str, dict[str, str]] = Field(default_factory=dict, description=(
        "Your own form-service presets for POST /leads/NAME: lead field = dotted path in the payload."))

    @field_validator("fields")
    @classmethod
    def _lead_fields(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(v) - set(DEFAULT_FORM_FIELDS))
        if unknown:
            raise ValueError(f"unknown lead fields {unknown}; known: {sorted(DEFAULT_FORM_FIELDS)}")
        return v

    def all_fields(self) -> dict[str, list[str]]:
        """The built-in names of each lead field followed by the configured ones."""
        return {k: [*names, *self.fields.get(k, [])] for k, names in DEFAULT_FORM_FIELDS.items()}

    @field_validator("presets")
    @classmethod
    def _preset_fields(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, paths in v.items():
            unknown = sorted(set(paths) - set(DEFAULT_FORM_FIELDS))
            if unknown:
                raise ValueError(f"preset {name!r}: unknown lead fields {unknown}")
            if "email" not in paths:
                raise ValueError(f"preset {name!r}: needs an email path")
        return v
