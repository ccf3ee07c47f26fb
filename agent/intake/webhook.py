"""HTTP API (aiohttp). Handlers are thin: turn a request into an intake or a query.

Status codes are the contract in README.md's HTTP API table: 202 new, 200 duplicate, 422 invalid
(field-level errors), 413 too large, 415 not JSON, 401 bad webhook credentials,
403 admin routes without a configured token, 429 rate limited, 503 stopping or
store unavailable. Unexpected errors become a JSON 500 with a logged reason,
never a traceback to the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from agent.app.metrics import Metrics
from agent.config import Config
from agent.core.ids import id_time
from agent.core.models import Category, Lead, LeadIn, Priority, State
from agent.core.ports import Store
from agent.core.states import ReplyStatus
from agent.core.validation import FieldError, validate_lead
from agent.core.worker import Worker
from agent.intake import form_answers as cors
from agent.intake import lead_body, presets
from agent.intake.access import RateLimiter, SignatureChecker, bearer_ok
from agent.intake.batching import IntakeBatcher
from agent.intake.forms import FieldMap
from agent.intake.http_errors import ERROR_PAGE, add_catch_all
from agent.intake.openapi import OPENAPI

log = logging.getLogger("leadbox.http")


class WebhookHost(Protocol):
    """What the HTTP handlers need from the process that serves them (the daemon).

    A Protocol rather than the daemon class itself, so that intake never imports the app layer.
    """

    config: Config
    store: Store
    intake: IntakeBatcher
    metrics: Metrics
    rate_limiter: RateLimiter
    signatures: SignatureChecker
    worker: Worker
    stopping: bool
    field_map: FieldMap

    @property
    def inbox_enabled(self) -> bool: ...

    def trigger_poll(self) -> None: ...

    async def readiness(self) -> dict[str, Any]: ...

    async def refresh_gauges(self) -> None: ...

    async def forget_person(self, email: str, *, mailbox: bool = False) -> dict[str, Any]:
        """Erase the person with this address everywhere (personal-data request); what went, per place.
        ``mailbox``: their original mails in the IMAP mailbox too."""
        ...

    async def export_person(self, email: str) -> dict[str, Any]:
        """Everything held about the person with this address, as one JSON document."""
        ...

    async def on_corrected(self, lead_id: str) -> None:
        """A person corrected the lead's category or priority (the console): update copies of it."""
        ...


DAEMON: web.AppKey[WebhookHost] = web.AppKey("daemon")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _errors(status: int, errors: list[FieldError], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"errors": [e.as_dict() for e in errors]}, status=status, headers=headers)


def _error(status: int, field: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _errors(status, [FieldError(field, message)], headers)


def client_ip(request: web.Request, trust_proxy: bool) -> str:
    if trust_proxy:
        fwd = request.headers.get("X-Forwarded-For")
        if fwd:
            return fwd.split(",")[0].strip()
    return request.remote or "unknown"


def guarded(handler: Handler) -> Handler:
    """Per-route error guard (cheaper than an aiohttp middleware on the hot path)."""

    async def run(request: web.Request) -> web.StreamResponse:
        return await error_middleware(request, handler)

    run.__name__ = getattr(handler, "__name__", "handler")
    return run


async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "body", "request body too large")
    except web.HTTPException as e:
        if e.status >= 400 and e.content_type != "application/json":
            return _error(e.status, "request", e.reason)
        raise
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.exception("unexpected error", extra={"reason": type(e).__name__, "event": request.path})
        return _error(500, "server", "internal error; the request was not processed, please retry")


async def post_lead(request: web.Request) -> web.Response:
    d = request.app[DAEMON]
    d.intake.request_started()
    try:
        return await _post_lead(request, d, None)
    finally:
        d.intake.request_finished()


async def post_preset(request: web.Request) -> web.Response:
    """``POST /leads/{preset}``: a form service's own payload (Tally, Typeform, Webflow, config)."""
    d = request.app[DAEMON]
    forms = d.config.settings.forms
    name = request.match_info["preset"]
    reader = presets.resolve(name, forms.presets)
    if reader is None:
        known = sorted({*presets.BUILT_IN, *forms.presets})
        return _error(404, "preset", f"no preset named {name!r}; known: {', '.join(known)}")
    d.intake.request_started()
    try:
        return await _post_lead(request, d, reader)
    finally:
        d.intake.request_finished()


async def preflight_leads(request: web.Request) -> web.Response:
    return cors.preflight(request, request.app[DAEMON].config.settings.http.cors_origins)


def _refuse(request: web.Request, html: bool, status: int, errors: list[FieldError],
            headers: dict[str, str]) -> web.Response:
    if html:
        return cors.html_failure(request, status, errors, headers)
    return _errors(status, errors, headers)


async def _post_lead(request: web.Request, d: WebhookHost,
                     preset: Callable[[Any], presets.Pairs] | None) -> web.Response:
    s = d.config.settings.http
    forms = d.config.settings.forms
    origin = cors.allowed_origin(request, s.cors_origins) if s.cors_origins else None
    headers = cors.cors_headers(origin) if origin else _NO_HEADERS
    ctype = request.content_type
    html = ctype in FORM_TYPES and cors.wants_html(request, True)
    if d.stopping:
        return _refuse(request, html, 503, [FieldError("server", "shutting down; retry shortly")],
                       {"Retry-After": "5", **headers})
    wait = d.rate_limiter.allow(client_ip(request, s.trust_proxy)) if s.rate_limit_per_minute else 0.0
    if wait:
        d.metrics.http_request("post_lead", 429)
        return _refuse(request, html, 429, [FieldError("client", "too many requests")],
                       {"Retry-After": str(max(1, int(wait + 0.999))), **headers})
    if forms.require_origin and origin is None and preset is None:
        return _refuse(request, html, 403, [FieldError("Origin", "missing or not in http.cors_origins")], headers)
    cl = request.content_length
    if cl is not None and cl > s.max_body_bytes:
        too_large = FieldError("body", f"request body too large (limit {s.max_body_bytes} bytes)")
        return _refuse(request, html, 413, [too_large], headers)
    try:
        if request.content.is_eof():  # the usual case: a small body arrived with the headers
            body = await request.read()
        else:
            async with asyncio.timeout(s.read_timeout):
                body = await request.read()
    except TimeoutError:
        return _error(408, "body", "request body not received in time")
    except web.RequestPayloadError:  # broken chunked framing, undecodable Content-Encoding, cut short
        return _error(400, "body", "the request body could not be read (framing or Content-Encoding)")
    if s.webhook_auth == "bearer":
        if not bearer_ok(request.headers.get("Authorization"), d.config.secrets.webhook_secret):
            return _error(401, "Authorization", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
    elif s.webhook_auth == "hmac":
        problem = d.signatures.check(
            request.headers.get("X-Leadbox-Timestamp"), request.headers.get("X-Leadbox-Signature"), body)
        if problem:
            return _error(401, "X-Leadbox-Signature", problem)
    decoded = lead_body.decode_lead_body(
        ctype, request.headers.get("Content-Type", ""), body, d.field_map, preset=preset,
        from_browser="Origin" in request.headers)
    if decoded.errors:
        if decoded.status == 422:
            d.metrics.http_request("post_lead", 422)
        return _refuse(request, html, decoded.status, decoded.errors, headers)
    result = validate_lead(decoded.data, fold_gmail=d.config.settings.dedupe.fold_gmail)
    if isinstance(result, list):
        d.metrics.http_request("post_lead", 422)
        return _refuse(request, html, 422, result, headers)
    if decoded.honeypot:
        result = honeypot_lead(result)
    try:
        res = await d.intake.submit(result)
    except Exception as e:  # noqa: BLE001 - whatever the store raised: 503, nothing stored
        log.error("intake not stored", extra={"reason": f"{type(e).__name__}: {e}"})
        unavailable = FieldError("server", "storage unavailable; nothing was stored, please retry")
        return _refuse(request, html, 503, [unavailable], {"Retry-After": "10", **headers})
    if html:
        resp = cors.html_success(request, forms.thank_you_url, s.public_url, None, headers)
    # Ids are [a-z0-9]: the answer is formatted directly (the hot path skips json.dumps).
    else:
        resp = web.Response(status=200 if res.duplicate else 202, content_type="application/json",
                            headers=headers or None, text=f'{{"id": "{res.lead_id}", "status": "{res.status}"}}')
    if decoded.honeypot:
        d.metrics.lead_received("honeypot")
    elif res.duplicate:
        d.metrics.duplicate("webhook")
    else:
        d.metrics.lead_received("webhook")
        d.worker.kick()
    return resp


FORM_TYPES = frozenset((lead_body.URLENCODED, lead_body.MULTIPART))
_NO_HEADERS: dict[str, str] = {}


def honeypot_lead(lead: LeadIn) -> LeadIn:
    """A bot's post, kept for the record as skipped, under a key of its own.

    It must not take the address's dedupe key: browsers' autofill sometimes fills hidden
    fields, and a later clean post from the same person has to become a normal lead.
    """
    return replace(lead, email_norm=f"honeypot:{secrets.token_hex(12)}", skip_reason="honeypot")


def require_admin(request: web.Request) -> web.Response | None:
    token = request.app[DAEMON].config.secrets.admin_token
    if not token:
        return _error(403, "Authorization",
                      "admin API disabled: set LEADBOX_ADMIN_TOKEN and send 'Authorization: Bearer <token>'")
    if not bearer_ok(request.headers.get("Authorization"), token):
        return _error(401, "Authorization", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
    return None


def _correction_json(c: dict[str, Any] | None) -> dict[str, Any] | None:
    """``{"category", "priority", "by", "at", "previous": {"category", "priority"}}``, ``at`` in ISO 8601."""
    if not c:
        return None
    at = c.get("at")
    when = datetime.fromtimestamp(at, UTC).isoformat() if isinstance(at, int | float) else at
    return {"category": c.get("category"), "priority": c.get("priority"), "by": c.get("by"), "at": when,
            "previous": c.get("previous")}


def lead_json(lead: Lead, labels: Any) -> dict[str, Any]:
    cat = lead.category.value if lead.category else None
    pri = lead.priority.value if lead.priority else None
    return {
        "id": lead.id, "state": lead.state.value, "category": cat,
        "category_label": labels.categories.get(cat) if cat else None,
        "priority": pri, "priority_label": labels.priorities.get(pri) if pri else None,
        "priority_rule": lead.priority_rule, "summary": lead.summary, "language": lead.language,
        "confidence": lead.confidence, "classifier": lead.classifier,
        "needs_reclassify": lead.needs_reclassify,
        "name": lead.name, "email": lead.email, "phone": lead.phone, "company": lead.company,
        "source": lead.source, "metadata": lead.metadata, "intake": lead.intake,
        "subject": lead.subject, "message": lead.message,
        "created_at": lead.created_at.isoformat(), "updated_at": lead.updated_at.isoformat(),
        "attempts": lead.attempts, "last_error": lead.last_error, "skip_reason": lead.skip_reason,
        "mirror_status": lead.mirror_status, "mailbox": lead.mailbox,
        "assigned_to": lead.assigned_to, "handled_by": lead.handled_by,
        "correction": _correction_json(lead.correction),
        "reply": {
            "status": lead.reply_status, "reason": lead.reply_reason,
            "message_id": lead.reply_message_id,
            "replied_at": lead.replied_at.isoformat() if lead.replied_at else None,
            # A waiting reply (over a cap, or the mail server's limits): when it is tried next.
            "waiting_until": lead.next_attempt_at.isoformat()
            if lead.reply_status is ReplyStatus.WAITING and lead.next_attempt_at else None,
        },
        "interactions": [
            {"intake": i.intake, "message": i.message, "subject": i.subject,
             "received_at": i.received_at.isoformat()} for i in lead.interactions
        ],
    }


async def get_lead(request: web.Request) -> web.Response:
    if (denied := require_admin(request)) is not None:
        return denied
    d = request.app[DAEMON]
    lead = await d.store.get(request.match_info["id"])
    if lead is None:
        return _error(404, "id", "no lead with this id")
    body = lead_json(lead, d.config.settings.labels)
    body["alerts"] = [a.as_json() for a in await d.store.alerts_of(lead.id)]  # each channel and its status
    return web.json_response(body)


# Query filters and the enums that say their allowed values.
_FILTERS: dict[str, type[State] | type[Category] | type[Priority] | type[ReplyStatus]] = {
    "status": State, "category": Category, "priority": Priority, "reply": ReplyStatus,
}


async def list_leads(request: web.Request) -> web.Response:
    if (denied := require_admin(request)) is not None:
        return denied
    d = request.app[DAEMON]
    q = request.query
    errors = [FieldError(k, f"must be one of {sorted(m.value for m in enum)}") for k, enum in _FILTERS.items()
              if q.get(k) and q[k] not in {m.value for m in enum}]
    limit = 50
    if "limit" in q:
        try:
            limit = int(q["limit"])
            if not 1 <= limit <= 500:
                raise ValueError
        except ValueError:
            errors.append(FieldError("limit", "must be a whole number from 1 to 500"))
    cursor = q.get("cursor") or None
    if cursor and id_time(cursor) is None:
        errors.append(FieldError("cursor", "is not a cursor returned by this API"))
    if errors:
        return _errors(422, errors)
    state, category, priority, reply = q.get("status"), q.get("category"), q.get("priority"), q.get("reply")
    leads, nxt = await d.store.list(
        state=State(state) if state else None, category=Category(category) if category else None,
        priority=Priority(priority) if priority else None, limit=limit, cursor=cursor,
        reply_status=ReplyStatus(reply) if reply else None, mailbox=(q.get("mailbox") or "").strip()[:100] or None)
    labels = d.config.settings.labels
    return web.json_response({"leads": [lead_json(x, labels) for x in leads], "next_cursor": nxt})


async def retry_lead(request: web.Request) -> web.Response:
    if (denied := require_admin(request)) is not None:
        return denied
    d = request.app[DAEMON]
    lead_id = request.match_info["id"]
    if not await d.store.retry(lead_id):
        lead = await d.store.get(lead_id)
        if lead is None:
            return _error(404, "id", "no lead with this id")
        return _error(409, "id", f"the lead is {lead.state.value!r}, not 'failed': only failed leads can be retried")
    d.worker.kick()
    return web.json_response({"id": request.match_info["id"], "status": "queued"}, status=202)


async def poll_inbox(request: web.Request) -> web.Response:
    if (denied := require_admin(request)) is not None:
        return denied
    d = request.app[DAEMON]
    if not d.inbox_enabled:
        return _error(409, "inbox", "the inbox is not enabled (inbox.enabled = true)")
    d.trigger_poll()
    return web.json_response({"status": "poll scheduled"}, status=202)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    d = request.app[DAEMON]
    report = await d.readiness()
    return web.json_response(report, status=200 if report["status"] == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    d = request.app[DAEMON]
    await d.refresh_gauges()
    payload, ctype = d.metrics.render()
    resp = web.Response(body=payload)
    resp.headers["Content-Type"] = ctype
    return resp


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(OPENAPI), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/leads", guarded(post_lead))
    app.router.add_route("OPTIONS", "/leads", guarded(preflight_leads))
    app.router.add_post("/leads/{preset}", guarded(post_preset))
    app.router.add_route("OPTIONS", "/leads/{preset}", guarded(preflight_leads))
    app.router.add_get("/forms/thanks", guarded(cors.thanks))
    app.router.add_get("/leads", guarded(list_leads))
    app.router.add_get("/leads/{id}", guarded(get_lead))
    app.router.add_post("/leads/{id}/retry", guarded(retry_lead))
    app.router.add_post("/inbox/poll", guarded(poll_inbox))
    app.router.add_get("/healthz", guarded(healthz))
    app.router.add_get("/readyz", guarded(readyz))
    app.router.add_get("/metrics", guarded(metrics))
    app.router.add_get("/openapi.json", guarded(openapi))
    add_catch_all(app)  # last: JSON 404/405 for everything else
    app[ERROR_PAGE] = _form_error_page


def _form_error_page(request: web.Request, status: int, errors: list[FieldError],
                     headers: dict[str, str]) -> web.StreamResponse | None:
    """A browser's form post to a wrong address or with a wrong method gets an HTML page, as
    ``POST /leads`` answers one; every other client gets JSON."""
    if cors.wants_html(request, request.content_type in (lead_body.URLENCODED, lead_body.MULTIPART)):
        return cors.html_failure(request, status, errors, headers)
    return None
