"""The console's pages and actions, on the daemon's aiohttp app under ``/console``.

Every page needs a signed-in session; every action is a POST form carrying the session's CSRF
token (refused with 403 otherwise, nothing changed). Lead text reaches the pages only through
Jinja2's autoescaping, and the Content-Security-Policy allows no script at all, so a hostile
name or message is inert text. Pages are never cached.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from agent.console import views
from agent.console.i18n import WORDS, pick
from agent.console.passwords import verify_password
from agent.console.session import COOKIE, Session, Signer, Throttle
from agent.core.validation import FieldError
from agent.intake.access import bearer_ok
from agent.intake.webhook import DAEMON, WebhookHost, client_ip

log = logging.getLogger("leadbox.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX = "/console"
STATIC = Path(__file__).resolve().parent / "static"
SIGNER: web.AppKey[Signer] = web.AppKey("console_signer")
THROTTLE: web.AppKey[Throttle] = web.AppKey("console_throttle")
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
ACTIONS = ("retry", "correct", "send-reply", "handled", "assign", "forget")


def secret_key(configured: str) -> bytes:
    """``LEADBOX_SECRET_KEY``, or a random key for this process (sessions end at restart)."""
    if configured:
        return configured.encode("utf-8")
    log.warning("console: LEADBOX_SECRET_KEY is not set; sessions end at restart and do not cross replicas")
    return secrets.token_bytes(32)


def setup_console(app: web.Application, secret: str, session_hours: float) -> None:
    """Add the console's routes, templates and session signer to ``app``."""
    env = aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("agent.console", "templates"),
                               autoescape=jinja2.select_autoescape(default=True, default_for_string=True))
    env.undefined = jinja2.StrictUndefined
    app[SIGNER] = Signer(secret_key(secret), session_hours * 3600)
    app[THROTTLE] = Throttle()
    r = app.router
    r.add_get(PREFIX, guarded(overview))
    r.add_get(PREFIX + "/", guarded(overview))
    r.add_post(PREFIX + "/login", guarded(login))
    r.add_post(PREFIX + "/logout", guarded(logout))
    r.add_get(PREFIX + "/leads", guarded(lead_list))
    r.add_get(PREFIX + "/leads/{id}", guarded(lead_page))
    r.add_post(PREFIX + "/leads/{id}/{action}", guarded(lead_action))
    r.add_get(PREFIX + "/static/console.css", guarded(stylesheet))


def _secure(request: web.Request, public_url: str) -> bool:
    if public_url:
        return public_url.startswith("https://")
    return request.secure


def _render(request: web.Request, template: str, ctx: dict[str, Any], status: int = 200,
            session: Session | None = None) -> web.Response:
    lang = pick(request.headers.get("Accept-Language"))
    signer = request.app[SIGNER]
    base = {"lang": lang, "t": WORDS[lang], "prefix": PREFIX, "user": session.user if session else None,
            "csrf": signer.csrf(session) if session else "", "notice": None, "problem": None}
    resp = aiohttp_jinja2.render_template(template, request, {**base, **ctx}, status=status)
    resp.headers.update(SECURITY_HEADERS)
    resp.headers["Vary"] = "Accept-Language, Cookie"
    if session is not None:
        _, cookie = signer.touch(session)
        _set_cookie(request, resp, cookie)
    return resp


def _set_cookie(request: web.Request, resp: web.StreamResponse, value: str) -> None:
    d = request.app[DAEMON]
    resp.set_cookie(COOKIE, value, path=PREFIX, httponly=True, samesite="Strict",
                    secure=_secure(request, d.config.settings.http.public_url))


def _session(request: web.Request) -> Session | None:
    return request.app[SIGNER].load(request.cookies.get(COOKIE))


async def _enabled(d: WebhookHost) -> bool:
    return bool(d.config.secrets.admin_token) or bool(await d.store.user_names())


async def _login_page(request: web.Request, status: int = 200, problem: str | None = None,
                      name: str = "") -> web.Response:
    d = request.app[DAEMON]
    return _render(request, "login.html", {"enabled": await _enabled(d), "problem": problem, "name": name}, status)


def error_page(request: web.Request, status: int, errors: list[FieldError],
               headers: dict[str, str]) -> web.StreamResponse | None:
    """A plain page for an error under /console (a wrong link, a lead that is gone)."""
    if not request.path.startswith(PREFIX):
        return None
    text = "; ".join(e.message for e in errors) or str(status)
    resp = web.Response(status=status, text=f"{status}: {text}", content_type="text/plain", charset="utf-8",
                        headers=headers)
    resp.headers.update(SECURITY_HEADERS)
    return resp


def guarded(handler: Handler) -> Handler:
    """An unexpected error becomes a one-line log and a plain 500 page, never a traceback."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return error_page(request, e.status, [FieldError("console", e.text or e.reason)], {}) or e
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a page never answers with a traceback
            log.error("console: unexpected error", extra={"reason": type(e).__name__})
            return error_page(request, 500, [FieldError("console", "internal error; please retry")], {}) \
                or web.Response(status=500)

    return run


async def overview(request: web.Request) -> web.Response:
    s = _session(request)
    if s is None:
        return await _login_page(request)
    d = request.app[DAEMON]
    return _render(request, "overview.html", await views.overview(d, WORDS[pick(
        request.headers.get("Accept-Language"))]), session=s)


async def login(request: web.Request) -> web.Response:
    d = request.app[DAEMON]
    t = WORDS[pick(request.headers.get("Accept-Language"))]
    if not await _enabled(d):
        return await _login_page(request, 403)
    form = await request.post()
    name = str(form.get("user", "")).strip()[:100]
    password = str(form.get("password", ""))
    throttle = request.app[THROTTLE]
    ip = client_ip(request, d.config.settings.http.trust_proxy)
    keys = (f"ip:{ip}", f"user:{name.lower() or 'admin'}")
    if throttle.blocked(*keys):
        return await _login_page(request, 429, t["throttled"], name)
    user = await _check_credentials(d, name, password)
    if user is None:
        throttle.failed(*keys)
        log.info("console: sign-in refused", extra={"reason": "bad credentials"})
        return await _login_page(request, 401, t["bad_login"], name)
    throttle.succeeded(keys[1])
    _, cookie = request.app[SIGNER].issue(user)
    resp = web.HTTPSeeOther(PREFIX)
    _set_cookie(request, resp, cookie)
    raise resp


async def _check_credentials(d: WebhookHost, name: str, password: str) -> str | None:
    """The signed-in name: a named user with their password, or ``admin`` with the admin token."""
    if not password:
        return None
    token = d.config.secrets.admin_token
    if token and name in ("", "admin") and bearer_ok(f"Bearer {password}", token):
        return "admin"
    if name:
        stored = await d.store.user_hash(name)
        if stored is not None and verify_password(password, stored):
            return name
    return None


async def logout(request: web.Request) -> web.Response:
    s = _session(request)
    if s is not None and not request.app[SIGNER].csrf_ok(s, (await request.post()).get("csrf_token")):  # type: ignore[arg-type]
        return _forbidden(request)
    resp = web.HTTPSeeOther(PREFIX)
    resp.del_cookie(COOKIE, path=PREFIX)
    raise resp


def _forbidden(request: web.Request) -> web.Response:
    t = WORDS[pick(request.headers.get("Accept-Language"))]
    resp = web.Response(status=403, text=t["csrf"], content_type="text/plain", charset="utf-8")
    resp.headers.update(SECURITY_HEADERS)
    return resp


async def lead_list(request: web.Request) -> web.Response:
    s = _session(request)
    if s is None:
        return await _login_page(request)
    d = request.app[DAEMON]
    f, problem = views.parse_filters(request.query)
    cursor = request.query.get("cursor") or None
    if cursor is not None and (len(cursor) > 64 or not cursor.isalnum()):
        cursor, problem = None, "ignored: cursor"
    ctx = await views.lead_list(d, f, cursor)
    if ctx.pop("next_cursor", None) is not None and ctx["leads"]:
        ctx["next_url"] = f"{PREFIX}/leads?" + urlencode({**views.query_of(f), "cursor": ctx["leads"][-1]["id"]})
    else:
        ctx["next_url"] = None
    ctx["problem"] = problem
    return _render(request, "leads.html", ctx, session=s)


async def lead_page(request: web.Request) -> web.Response:
    s = _session(request)
    if s is None:
        return await _login_page(request)
    d = request.app[DAEMON]
    t = WORDS[pick(request.headers.get("Accept-Language"))]
    ctx = await views.lead_page(d, request.match_info["id"], t)
    if ctx is None:
        raise web.HTTPNotFound(text="no lead with this id")
    return _render(request, "lead.html", ctx, session=s)


async def lead_action(request: web.Request) -> web.Response:
    s = _session(request)
    if s is None:
        return await _login_page(request, 401)
    form = await request.post()
    if not request.app[SIGNER].csrf_ok(s, form.get("csrf_token")):  # type: ignore[arg-type]
        log.warning("console: action refused", extra={"reason": "missing or wrong CSRF token"})
        return _forbidden(request)
    d = request.app[DAEMON]
    lead_id, action = request.match_info["id"], request.match_info["action"]
    if action not in ACTIONS:
        raise web.HTTPNotFound(text="no such action")
    done = await views.act(d, lead_id, action, {k: str(v) for k, v in form.items()}, s.user)
    if done is None:
        raise web.HTTPNotFound(text="no lead with this id")
    if not done:
        raise web.HTTPConflict(text="this action does not apply to the lead in its current state")
    log.info("console: action", extra={"lead_id": lead_id, "event": action, "user": s.user})
    raise web.HTTPSeeOther(f"{PREFIX}/leads" if action == "forget" else f"{PREFIX}/leads/{lead_id}")


async def stylesheet(request: web.Request) -> web.FileResponse:
    resp = web.FileResponse(STATIC / "console.css", headers={"Cache-Control": "max-age=3600",
                                                             "X-Content-Type-Options": "nosniff"})
    return resp

