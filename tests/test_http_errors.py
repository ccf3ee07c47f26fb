"""Every error of the API is JSON ``{"errors": [{"field", "message"}]}``: routes, 404, 405 and aiohttp's own."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from aiohttp import web

from agent.core.models import State
from agent.core.validation import FieldError
from agent.intake.http_errors import ERROR_PAGE
from tests.fixtures.daemon import post_lead, settle

ADMIN = {"LEADBOX_ADMIN_TOKEN": "t0ken"}
AUTH = {"Authorization": "Bearer t0ken"}


async def errors_of(r: Any) -> list[dict[str, str]]:
    assert r.content_type == "application/json", (r.status, r.content_type, await r.text())
    body = await r.json()
    assert set(body) == {"errors"} and body["errors"], body
    for e in body["errors"]:
        assert set(e) == {"field", "message"} and e["message"], e
    return list(body["errors"])


async def test_unknown_route_404_and_wrong_method_405_are_json(make_daemon: Any) -> None:
    _, c = await make_daemon()
    for path in ("/nope", "/leads/abc/nothing", "/", "/%00"):
        r = await c.get(path)
        assert r.status == 404, path
        assert (await errors_of(r))[0]["field"] == "path"
    for method, path, allow in [("PUT", "/healthz", {"GET", "HEAD"}), ("PUT", "/leads/abc", {"GET", "DELETE"}),
                                ("GET", "/leads/abc/retry", {"POST"}), ("PATCH", "/leads", {"GET", "POST"})]:
        r = await c.request(method, path)
        assert r.status == 405, (method, path)
        assert allow <= set(r.headers["Allow"].split(", ")) and method not in r.headers["Allow"]
        assert method in (await errors_of(r))[0]["message"]
    # the routes themselves still answer
    assert (await c.get("/healthz")).status == 200


async def test_retry_unknown_lead_404_not_failed_409(make_daemon: Any) -> None:
    d, c = await make_daemon(ADMIN)
    r = await c.post("/leads/nosuchlead/retry", headers=AUTH)
    assert r.status == 404 and (await errors_of(r))[0]["field"] == "id"
    _, lead_id = await post_lead(c, "ana@example.com", "Hola, ¿me enviáis un presupuesto?")
    await settle(d, 1)
    r = await c.post(f"/leads/{lead_id}/retry", headers=AUTH)
    assert r.status == 409 and "'replied'" in (await errors_of(r))[0]["message"]
    lead = await d.store.get(lead_id)
    assert lead is not None
    lead.state = State.FAILED
    await d.store.update(lead, release=True)
    r = await c.post(f"/leads/{lead_id}/retry", headers=AUTH)
    assert r.status == 202, await r.text()


async def test_error_page_hook_can_answer_html(make_daemon: Any) -> None:
    """The hook for browser pages: an app-registered renderer answers HTML when asked, JSON otherwise."""
    d, _ = await make_daemon()

    def page(request: web.Request, status: int, errors: list[FieldError], headers: dict[str, str]) -> Any:
        if "text/html" not in request.headers.get("Accept", ""):
            return None
        return web.Response(status=status, text=f"<p>{errors[0].message}</p>", content_type="text/html",
                            headers=headers)

    from aiohttp.test_utils import TestClient, TestServer

    app = d.make_app()
    app[ERROR_PAGE] = page
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/nope", headers={"Accept": "text/html"})
        assert r.status == 404 and r.content_type == "text/html"
        r = await c.get("/nope")
        assert r.status == 404 and r.content_type == "application/json"


async def test_a_browser_form_post_to_a_wrong_address_gets_a_page(make_daemon: Any) -> None:
    _, c = await make_daemon()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await c.post("/contact", data="name=Ana", headers={**form, "Accept": "text/html,*/*;q=0.8"})
    assert r.status == 404 and r.content_type == "text/html"
    r = await c.post("/contact", data="name=Ana", headers=form)  # no Accept: a script, JSON
    assert r.status == 404 and r.content_type == "application/json"
    r = await c.post("/contact", json={"name": "Ana"}, headers={"Accept": "text/html"})
    assert r.status == 404 and r.content_type == "application/json"


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.slow
def test_aiohttp_own_errors_are_json_on_the_real_daemon(daemon_process: Any) -> None:
    """Requests aiohttp refuses before any route runs (unparseable request line, broken or oversized
    headers) answer the same JSON shape, from `leadbox run` as users run it; one log line, no traceback."""
    p = daemon_process()
    p.start()
    try:
        cases = [
            b"GARBAGE\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
            b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ]
        for raw in cases:
            head, _, body = raw_exchange(p.port, raw).partition(b"\r\n\r\n")
            status = int(head.split()[1])
            assert 400 <= status < 500, head
            assert b"application/json" in head.lower(), head
            errors = json.loads(body)["errors"]
            assert errors and set(errors[0]) == {"field", "message"}, body
    finally:
        assert p.terminate() == 0
    log = p.log.read_text()
    assert "Traceback" not in log and "Bad Header" not in log, log[-2000:]
    assert "request refused before routing" in log
