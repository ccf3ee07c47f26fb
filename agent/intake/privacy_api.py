"""Admin routes for personal-data requests: ``DELETE /leads/{id}`` and ``GET /leads/export?email=``.

``DELETE /leads/{id}`` erases the whole person of that lead (every lead with that address), as
``leadbox forget`` does (``?mailbox=1``: with ``--mailbox``, the report's ``mailbox`` says what
was not reached); ``GET /leads/export`` returns one JSON document with everything held.
"""

from __future__ import annotations

from aiohttp import web

from agent.core.validation import FieldError, email_problem
from agent.errors import TransientError
from agent.intake.http_errors import error_response
from agent.intake.webhook import DAEMON, guarded, require_admin


async def delete_lead(request: web.Request) -> web.StreamResponse:
    if (denied := require_admin(request)) is not None:
        return denied
    d = request.app[DAEMON]
    lead = await d.store.get(request.match_info["id"])
    if lead is None:
        return error_response(request, 404, [FieldError("id", "no lead with this id")])
    try:
        report = await d.forget_person(lead.email, mailbox=request.query.get("mailbox", "") in ("1", "true", "yes"))
    except TransientError as e:
        return error_response(request, 503, [FieldError("id", str(e))], {"Retry-After": "30"})
    return web.json_response({"id": lead.id, "erased": report})


async def export_person(request: web.Request) -> web.StreamResponse:
    if (denied := require_admin(request)) is not None:
        return denied
    email = request.query.get("email", "").strip()
    problem = email_problem(email) if email else "is required"
    if problem:
        return error_response(request, 422, [FieldError("email", problem)])
    return web.json_response(await request.app[DAEMON].export_person(email))


def add_privacy_routes(app: web.Application) -> None:
    """Before the API's own routes: ``/leads/export`` must win over ``/leads/{id}``."""
    app.router.add_get("/leads/export", guarded(export_person))
    app.router.add_delete("/leads/{id}", guarded(delete_lead))
