"""Every error of the API is JSON: ``{"errors": [{"field", "message"}]}``, including aiohttp's own.

Three sources of errors besides the handlers (which answer JSON themselves):

- a path no route has (404) or a method the path does not take (405): a catch-all route,
  registered last, answers them. It costs nothing on the hot path (no middleware).
- a request aiohttp cannot parse (bad request line, oversized or broken headers: 400 and
  friends): aiohttp answers those before any route runs, so the listening site uses a
  protocol whose ``handle_error`` answers JSON (``JsonErrorSite``).
- anything a handler raises: the per-route guard in ``webhook`` turns it into a JSON 500.

The hook for HTML: an application may register ``ERROR_PAGE``, a function that returns an HTML
page for a request that asks for one (a browser's form post, a console page) or None for JSON.
``error_response`` is the one place route-level errors are rendered and asks it first.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from agent.core.validation import FieldError

log = logging.getLogger("leadbox.http")

ErrorPage = Callable[[web.Request, int, list[FieldError], dict[str, str]], web.StreamResponse | None]
ERROR_PAGE: web.AppKey[ErrorPage] = web.AppKey("error_page")


def error_response(request: web.Request, status: int, errors: list[FieldError],
                   headers: dict[str, str] | None = None) -> web.StreamResponse:
    """JSON ``{"errors": [...]}``, unless the app's ``ERROR_PAGE`` renders a page for this request."""
    page = request.app.get(ERROR_PAGE)
    if page is not None:
        html = page(request, status, errors, headers or {})
        if html is not None:
            return html
    return web.json_response({"errors": [e.as_dict() for e in errors]}, status=status, headers=headers)


async def _not_routed(request: web.Request) -> web.StreamResponse:
    """The catch-all route: 405 with ``Allow`` when another route has this path, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        allow = ", ".join(sorted(allowed))
        return error_response(request, 405, [FieldError("method", f"{request.method} is not allowed here; "
                                                                    f"use {allow}")], {"Allow": allow})
    return error_response(request, 404, [FieldError("path", f"no such route: {request.path} "
                                                            "(see /openapi.json)")])


def add_catch_all(app: web.Application) -> None:
    """Register last: every request no other route takes gets a JSON 404 or 405."""
    app.router.add_route("*", "/{tail:.*}", _not_routed)


_MESSAGES = {
    400: "the request is not valid HTTP",
    413: "request too large",
    431: "request headers too large",
    500: "internal error; the request was not processed, please retry",
    504: "the request took too long; please retry",
}


class _JsonErrorProtocol(RequestHandler):
    """aiohttp's connection handler, answering its own errors (before any route runs) in JSON."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # One line with the reason, not aiohttp's traceback: a client sending garbage is routine, and
        # aiohttp's message quotes the offending request line or header (it may carry a token).
        reason = f"{status} {type(exc).__name__ if exc is not None else HTTPStatus(status).phrase}"
        if status >= 500:
            log.error("http: request failed before reaching a route", extra={"reason": reason},
                      exc_info=exc if exc is not None and status == 500 else None)
        else:
            log.info("http: request refused before routing", extra={"reason": reason})
        if request.writer.output_size > 0:  # as aiohttp does: a response began, the connection is broken
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        text = _MESSAGES.get(status) or HTTPStatus(status).phrase
        resp = web.json_response({"errors": [{"field": "request", "message": text}]}, status=status)
        resp.force_close()
        return resp


class JsonErrorSite(web.SockSite):
    """A ``SockSite`` whose connections use ``_JsonErrorProtocol``.

    ``handler_kwargs`` are the connection settings also given to the ``AppRunner``
    (``keepalive_timeout``, ``access_log``...), since this site builds the handlers itself.
    """

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, *, backlog: int = 128,
                 handler_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(runner, sock, backlog=backlog)
        self.handler_kwargs = dict(handler_kwargs or {})

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registration checks; SockSite.start would use the stock protocol
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        kwargs = self.handler_kwargs

        def protocol() -> RequestHandler:
            return _JsonErrorProtocol(server, loop=loop, **kwargs)

        self._server = await loop.create_server(protocol, sock=self._sock, backlog=self._backlog)
