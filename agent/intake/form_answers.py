"""How ``POST /leads`` answers a browser: CORS for ``fetch()``, HTML pages for a plain form.

JSON clients keep the JSON contract exactly. A form post whose ``Accept`` prefers HTML (what a
browser sends when a ``<form>`` is submitted) gets a ``303`` to the thank-you page, or a small
HTML page with the same status as the JSON answer would have had.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from agent.core.validation import FieldError
from agent.intake.form_pages import error_page, pick_language, thanks_page

ALLOW_HEADERS = "Content-Type, Authorization, X-Leadbox-Timestamp, X-Leadbox-Signature"
PREFLIGHT_MAX_AGE = "600"


def allowed_origin(request: web.Request, origins: list[str]) -> str | None:
    """The request's ``Origin`` when it is one of ``http.cors_origins`` (exact match)."""
    origin = request.headers.get("Origin")
    return origin if origin and origin in origins else None


def cors_headers(origin: str | None) -> dict[str, str]:
    """The headers a POST answer carries for a listed origin (none for any other)."""
    if origin is None:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def preflight(request: web.Request, origins: list[str]) -> web.Response:
    """``OPTIONS /leads``: 204 with the CORS headers for a listed origin; 403 otherwise."""
    origin = allowed_origin(request, origins)
    if origin is None:
        return web.json_response(
            {"errors": [{"field": "Origin", "message": "this origin may not post here (http.cors_origins)"}]},
            status=403, headers={"Vary": "Origin"})
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        "Vary": "Origin",
    })


def wants_html(request: web.Request, is_form: bool) -> bool:
    """A form post from a browser: ``text/html`` ranks above JSON in ``Accept``."""
    if not is_form:
        return False
    accept = request.headers.get("Accept", "")
    html, js = _quality(accept, "text/html"), _quality(accept, "application/json")
    return html > 0 and html >= js


def _quality(accept: str, media: str) -> float:
    for part in accept.split(","):
        kind, _, params = part.strip().partition(";")
        if kind.strip().lower() == media:
            q = 1.0
            for p in params.split(";"):
                k, _, v = p.strip().partition("=")
                if k == "q":
                    try:
                        q = float(v)
                    except ValueError:
                        q = 0.0
            return q
    return 0.0


def public_base(request: web.Request, public_url: str) -> str:
    """``http.public_url``, or the scheme and host the request came in on."""
    return public_url or f"{request.scheme}://{request.host}"


def html_success(request: web.Request, thank_you_url: str, public_url: str, lang: str | None,
                 headers: dict[str, str]) -> web.Response:
    lang = pick_language(request.headers.get("Accept-Language"), lang)
    target = thank_you_url or f"{public_base(request, public_url)}/forms/thanks?{urlencode({'lang': lang})}"
    return web.Response(status=303, headers={"Location": target, **headers})


def html_failure(request: web.Request, status: int, errors: list[FieldError] | None,
                 headers: dict[str, str] | None = None) -> web.Response:
    lang = pick_language(request.headers.get("Accept-Language"))
    back = request.headers.get("Referer")
    if back and not back.startswith(("http://", "https://")):
        back = None
    return web.Response(status=status, text=error_page(status, lang, errors, back), content_type="text/html",
                        charset="utf-8", headers=headers)


async def thanks(request: web.Request) -> web.Response:
    """``GET /forms/thanks?lang=es``: the built-in thank-you page."""
    lang = pick_language(request.headers.get("Accept-Language"), request.query.get("lang"))
    return web.Response(text=thanks_page(lang), content_type="text/html", charset="utf-8")
