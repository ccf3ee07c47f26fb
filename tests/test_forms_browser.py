"""A real browser posts a website's contact form to leadbox on another origin.

Debian's Chromium driven by Playwright (no browser download). The page is served from
``http://localhost:PAGE`` and the daemon runs as ``leadbox run`` on ``http://127.0.0.1:PORT``:
two origins, so CORS is the browser's own. What was stored and answered is read back through
the admin API and the outbox folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fixtures.browser import needs_chromium
from tests.fixtures.daemon import DaemonProcess

pytestmark = [needs_chromium]
TOKEN = "browser-admin"


class Pages:
    """A tiny static site on its own port: the 'customer website' whose form posts to leadbox."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                body = pages.get(self.path.split("?")[0], "not found").encode()
                self.send_response(200 if self.path.split("?")[0] in pages else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Pages, Pages]]:
    allowed, other = Pages(), Pages()
    yield allowed, other
    allowed.close()
    other.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, site: tuple[Pages, Pages]) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("browser-daemon")
    p = DaemonProcess(tmp, {
        "LEADBOX_ADMIN_TOKEN": TOKEN,
        "LEADBOX_HTTP__CORS_ORIGINS": json.dumps([site[0].origin]),
        "LEADBOX_LOGGING__LEVEL": "WARNING",
    })
    p.start()
    yield p
    p.kill()


def api(daemon: DaemonProcess, path: str) -> Any:
    req = urllib.request.Request(daemon.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def leads_for(daemon: DaemonProcess, email: str, *, final: bool = True, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Every stored lead with this address, once all of them reached a final state."""
    deadline = time.monotonic() + timeout
    while True:
        found = [x for x in api(daemon, "/leads?limit=500")["leads"] if x["email"] == email]
        if found and (not final or all(x["state"] in ("replied", "skipped", "failed") for x in found)):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def replies_to(daemon: DaemonProcess, email: str) -> int:
    folder = daemon.tmp / "outbox"
    if not folder.exists():
        return 0
    return sum(1 for f in folder.glob("*.eml")
               if any(line.startswith("To:") and f"<{email}>" in line or line == f"To: {email}"
                      for line in f.read_text(errors="replace").splitlines()))


FETCH_PAGE = """<!doctype html><meta charset="utf-8"><body><p id="out">waiting</p><script>
fetch("{url}/leads", {{method: "POST", headers: {{"Content-Type": "application/json"}},
  body: JSON.stringify({{nombre: "Clara Web", correo: "{email}", mensaje: "Hola, ¿tenéis stock de 40 unidades?",
                        utm_source: "newsletter", website: ""}})}})
  .then(r => r.json().then(j => document.getElementById("out").textContent = r.status + " " + j.status))
  .catch(e => document.getElementById("out").textContent = "blocked " + e.name);
</script>"""


@pytest.mark.slow
def test_fetch_json_from_an_allowed_origin_and_a_refused_one(
        daemon: DaemonProcess, site: tuple[Pages, Pages], page: Any) -> None:
    allowed, other = site
    allowed.pages["/fetch"] = FETCH_PAGE.format(url=daemon.url, email="clara@example.es")
    page.goto(f"{allowed.origin}/fetch")
    page.wait_for_function("document.getElementById('out').textContent !== 'waiting'")
    assert page.text_content("#out") == "202 received"
    (lead,) = leads_for(daemon, "clara@example.es")
    assert (lead["name"], lead["metadata"], lead["state"]) == ("Clara Web", {"utm_source": "newsletter"}, "replied")
    assert replies_to(daemon, "clara@example.es") == 1

    other.pages["/fetch"] = FETCH_PAGE.format(url=daemon.url, email="mallory@example.es")
    page.goto(f"http://localhost:{other.port}/fetch")
    page.wait_for_function("document.getElementById('out').textContent !== 'waiting'")
    assert page.text_content("#out") == "blocked TypeError"  # the preflight was refused
    assert leads_for(daemon, "mallory@example.es", final=False, timeout=0.5) == []


FORM_PAGE = """<!doctype html><meta charset="utf-8"><title>Contacto</title>
<form method="post" action="{url}/leads"{enctype}>
  <input name="nombre" value=""><input name="correo" type="email"><input name="telefono">
  <textarea name="mensaje"></textarea>
  <div style="position:absolute;left:-5000px" aria-hidden="true">
    <input name="website" tabindex="-1" autocomplete="off"></div>
  <button type="submit">Enviar</button>
</form>"""


def fill_and_send(page: Any, name: str, email: str, message: str) -> None:
    page.fill("input[name=nombre]", name)
    page.fill("input[name=correo]", email)
    page.fill("input[name=telefono]", "+34 600 111 222")
    page.fill("textarea[name=mensaje]", message)
    with page.expect_navigation():
        page.click("button[type=submit]")


def test_plain_form_with_spanish_names_ends_on_the_thank_you_page(
        daemon: DaemonProcess, site: tuple[Pages, Pages], page: Any) -> None:
    site[0].pages["/contacto"] = FORM_PAGE.format(url=daemon.url, enctype="")
    page.goto(f"{site[0].origin}/contacto")
    fill_and_send(page, "Diego <b>Ruiz</b>", "diego@example.es", "Quiero un presupuesto para una reforma.")
    assert page.url.startswith(f"{daemon.url}/forms/thanks")
    assert page.text_content("h1") == "¡Gracias!"
    (lead,) = leads_for(daemon, "diego@example.es")
    assert (lead["name"], lead["phone"], lead["state"]) == ("Diego <b>Ruiz</b>", "+34 600 111 222", "replied")
    assert replies_to(daemon, "diego@example.es") == 1


def test_invalid_plain_form_shows_the_field_errors(
        daemon: DaemonProcess, site: tuple[Pages, Pages], page: Any) -> None:
    site[0].pages["/contacto-mal"] = FORM_PAGE.format(url=daemon.url, enctype="")
    page.goto(f"{site[0].origin}/contacto-mal")
    page.fill("input[name=nombre]", "Sin Correo")
    page.evaluate("document.querySelector('input[name=correo]').type = 'text'")
    page.fill("input[name=correo]", "no-es-un-correo")
    with page.expect_navigation():
        page.click("button[type=submit]")
    body = page.text_content("main") or ""
    assert "Correo electrónico no es una dirección de correo válida" in body
    assert "Mensaje es obligatorio" in body
    page.click("text=Volver al formulario")
    # Chromium sends only the origin as Referer across origins, so "back" is the site itself.
    assert page.url.startswith(site[0].origin)


@pytest.mark.slow
def test_multipart_form(daemon: DaemonProcess, site: tuple[Pages, Pages], page: Any) -> None:
    site[0].pages["/multi"] = FORM_PAGE.format(url=daemon.url, enctype=' enctype="multipart/form-data"')
    page.goto(f"{site[0].origin}/multi")
    fill_and_send(page, "Marta Gil", "marta@example.es", "¿Hacéis envíos a Portugal?")
    assert page.text_content("h1") == "¡Gracias!"
    (lead,) = leads_for(daemon, "marta@example.es")
    assert (lead["name"], lead["message"]) == ("Marta Gil", "¿Hacéis envíos a Portugal?")


@pytest.mark.slow
def test_a_bot_fills_the_honeypot_then_the_person_posts(
        daemon: DaemonProcess, site: tuple[Pages, Pages], page: Any) -> None:
    site[0].pages["/hp"] = FORM_PAGE.format(url=daemon.url, enctype="")
    page.goto(f"{site[0].origin}/hp")
    page.evaluate("document.querySelector('input[name=website]').value = 'http://cheap.example'")
    fill_and_send(page, "Bot", "laura@example.es", "Buy cheap followers")
    assert page.text_content("h1") == "¡Gracias!"  # the bot sees a success
    page.goto(f"{site[0].origin}/hp")
    fill_and_send(page, "Laura Sanz", "laura@example.es", "Me interesa el plan anual, ¿precio?")
    found = leads_for(daemon, "laura@example.es")
    assert sorted((x["state"], x["skip_reason"] or "") for x in found) == [("replied", ""), ("skipped", "honeypot")]
    assert replies_to(daemon, "laura@example.es") == 1


def snippet(daemon: DaemonProcess, origin: str) -> str:
    env = {**daemon.env, "LEADBOX_HTTP__PUBLIC_URL": daemon.url}
    out = subprocess.run([sys.executable, "-m", "agent.cli", "form-snippet", "--origin", origin],
                         env=env, cwd=daemon.tmp, capture_output=True, text=True, timeout=30, check=True)
    assert f"{origin} is listed" in out.stdout
    return out.stdout


@pytest.mark.slow
def test_the_printed_snippet_works_in_the_browser(
        daemon: DaemonProcess, site: tuple[Pages, Pages], page: Any) -> None:
    code = snippet(daemon, site[0].origin)
    plain = code.split("<!-- The same form sent with fetch()")[0]
    site[0].pages["/snippet-plain"] = f"<!doctype html><meta charset=utf-8><body>{plain}</body>"
    site[0].pages["/snippet-fetch"] = f"<!doctype html><meta charset=utf-8><body>{code}</body>"
    page.goto(f"{site[0].origin}/snippet-plain")
    for name, value in (("name", "Pablo Snippet"), ("email", "pablo@example.es"), ("message", "Hola, ¿precio?")):
        page.fill(f"[name={name}]", value)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.text_content("h1") == "¡Gracias!"
    page.goto(f"{site[0].origin}/snippet-fetch")
    for name, value in (("name", "Rosa Fetch"), ("email", "rosa@example.es"), ("message", "¿Abrís los sábados?")):
        page.fill(f"[name={name}]", value)
    page.click("button[type=submit]")
    page.wait_for_function("document.body.textContent.includes('¡Gracias!')")
    assert page.url == f"{site[0].origin}/snippet-fetch"  # fetch() kept the visitor on the page
    for email in ("pablo@example.es", "rosa@example.es"):
        (lead,) = leads_for(daemon, email)
        assert lead["state"] == "replied"
