"""Small HTML pages for people who post a plain form: thanks, and what went wrong.

A browser that submits ``<form method=post>`` shows whatever comes back, so a JSON error would
be a dead end. These pages are static strings with every dynamic value escaped; they load
nothing and run no script. Spanish, English and Portuguese, chosen from the lead's language
or the browser's ``Accept-Language``.
"""

from __future__ import annotations

from html import escape

from agent.core.validation import FieldError

LANGS = ("es", "en", "pt")

_WORDS: dict[str, dict[str, str]] = {
    "es": {
        "thanks_title": "¡Gracias!",
        "thanks_body": "Hemos recibido tu mensaje. Te responderemos pronto.",
        "error_title": "No pudimos enviar tu mensaje",
        "fix_below": "Revisa estos campos y vuelve a intentarlo:",
        "back": "Volver al formulario",
        "413": "El mensaje es demasiado largo. Acórtalo y vuelve a intentarlo.",
        "429": "Has enviado demasiados mensajes seguidos. Espera un minuto y vuelve a intentarlo.",
        "503": "El servicio no está disponible en este momento. Vuelve a intentarlo en unos minutos.",
        "403": "Este formulario no puede enviarse desde esta página.",
        "other": "La solicitud no es válida.",
    },
    "en": {
        "thanks_title": "Thank you!",
        "thanks_body": "We have received your message and will get back to you soon.",
        "error_title": "Your message could not be sent",
        "fix_below": "Please check these fields and try again:",
        "back": "Back to the form",
        "413": "The message is too long. Please shorten it and try again.",
        "429": "Too many messages in a row. Please wait a minute and try again.",
        "503": "The service is unavailable right now. Please try again in a few minutes.",
        "403": "This form cannot be sent from this page.",
        "other": "The request is not valid.",
    },
    "pt": {
        "thanks_title": "Obrigado!",
        "thanks_body": "Recebemos a sua mensagem. Responderemos em breve.",
        "error_title": "Não foi possível enviar a sua mensagem",
        "fix_below": "Verifique estes campos e tente novamente:",
        "back": "Voltar ao formulário",
        "413": "A mensagem é longa demais. Encurte-a e tente novamente.",
        "429": "Muitas mensagens seguidas. Aguarde um minuto e tente novamente.",
        "503": "O serviço não está disponível agora. Tente novamente em alguns minutos.",
        "403": "Este formulário não pode ser enviado a partir desta página.",
        "other": "O pedido não é válido.",
    },
}

# Field-level messages in plain words. The validator's own sentences are English and precise;
# a visitor gets these instead, keyed by field, with the precise one kept for English.
_FIELD_NAMES: dict[str, dict[str, str]] = {
    "es": {"name": "Nombre", "email": "Correo electrónico", "message": "Mensaje", "phone": "Teléfono",
           "company": "Empresa", "subject": "Asunto"},
    "en": {"name": "Name", "email": "Email", "message": "Message", "phone": "Phone",
           "company": "Company", "subject": "Subject"},
    "pt": {"name": "Nome", "email": "E-mail", "message": "Mensagem", "phone": "Telefone",
           "company": "Empresa", "subject": "Assunto"},
}
_PROBLEM: dict[str, dict[str, str]] = {
    "es": {"required": "es obligatorio", "email": "no es una dirección de correo válida",
           "long": "es demasiado largo", "other": "no es válido"},
    "en": {"required": "is required", "email": "is not a valid email address",
           "long": "is too long", "other": "is not valid"},
    "pt": {"required": "é obrigatório", "email": "não é um endereço de e-mail válido",
           "long": "é longo demais", "other": "não é válido"},
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1f2933}h1{font-size:1.5rem}li{margin:.3rem 0}a{color:#1d4ed8}"
)


def pick_language(accept_language: str | None, preferred: str | None = None) -> str:
    """``preferred`` when it is one of ours, else the first of ours the browser lists, else es."""
    if preferred in LANGS:
        return preferred  # type: ignore[return-value]
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return "es"


def _page(lang: str, title: str, body_html: str) -> str:
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body_html}</main></body></html>"
    )


def thanks_page(lang: str) -> str:
    w = _WORDS[pick_language(None, lang)]
    return _page(lang, w["thanks_title"], f"<p>{escape(w['thanks_body'])}</p>")


def _plain(error: FieldError, lang: str) -> str:
    label = _FIELD_NAMES[lang].get(error.field)
    if label is None:  # the body as a whole, or a field of the site's own
        return f"{error.field}: {error.message}"
    msg = error.message
    if "required" in msg or "must not be empty" in msg:
        key = "required"
    elif error.field == "email":
        key = "email"
    elif "at most" in msg:
        key = "long"
    else:
        key = "other"
    return f"{label} {_PROBLEM[lang][key]}"


def error_page(status: int, lang: str, errors: list[FieldError] | None = None,
               back_url: str | None = None) -> str:
    """The page for a refused form post: the field list for 422, one sentence otherwise."""
    lang = pick_language(None, lang)
    w = _WORDS[lang]
    if status == 422 and errors:
        items = "".join(f"<li>{escape(_plain(e, lang))}</li>" for e in errors)
        body = f"<p>{escape(w['fix_below'])}</p><ul>{items}</ul>"
    else:
        body = f"<p>{escape(w.get(str(status), w['other']))}</p>"
    if back_url:
        body += f'<p><a href="{escape(back_url, quote=True)}">{escape(w["back"])}</a></p>'
    return _page(lang, w["error_title"], body)
