"""The console in Debian's Chromium (Playwright): what a team member does, with hostile lead text.

The daemon runs as ``leadbox run``; leads arrive through ``POST /leads``; what the console did
is read back through the admin API. Screenshots of the three main pages go to docs/img/ when
``LEADBOX_SCREENSHOTS=1`` (they are committed; the README shows them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.browser import needs_chromium
from tests.fixtures.daemon import ROOT, DaemonProcess

pytestmark = [needs_chromium]
TOKEN = "browser-console-token"
HOSTILE = "<img src=x onerror=alert(1)>"


def call(daemon: DaemonProcess, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(daemon.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def wait_final(daemon: DaemonProcess, n: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        leads = call(daemon, "GET", "/leads?limit=500")["leads"]
        if len(leads) >= n and all(x["state"] in ("replied", "skipped", "failed") for x in leads):
            return list(leads)
        assert time.monotonic() < deadline, f"leads not final: {[x['state'] for x in leads]}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("console")
    (tmp / "outbox").write_text("not a folder: replies fail until it is one")  # makes a failed lead
    p = DaemonProcess(tmp, {"LEADBOX_ADMIN_TOKEN": TOKEN, "LEADBOX_SECRET_KEY": "s" * 32,
                            "LEADBOX_WORKER__MAX_ATTEMPTS": "1", "LEADBOX_LOGGING__LEVEL": "WARNING"})
    p.start()
    call(p, "POST", "/leads", {"name": "Fallo Inicial", "email": "fallo@example.com",
                               "message": "Quiero contratar el plan anual para 30 personas"})
    wait_final(p, 1)
    (tmp / "outbox").unlink()
    (tmp / "outbox").mkdir()
    for lead in (
        {"name": HOSTILE, "email": "hostil@example.com", "message": "<script>alert('x')</script> ¿precio?"},
        {"name": "Ana López", "email": "ana@example.com", "company": "Acme",
         "message": "Hola, ¿cuál es vuestro horario de atención al público?"},
        {"name": "Bruno Díaz", "email": "bruno@example.org", "message": "No puedo entrar en mi cuenta, da error"},
        {"name": "Promo Bot", "email": "promo@spam.example", "message": "WIN a FREE iPhone!!! click here $$$ casino"},
    ):
        call(p, "POST", "/leads", lead)
    wait_final(p, 5)
    yield p
    p.kill()


def sign_in(page: Any, daemon: DaemonProcess, user: str = "", password: str = TOKEN) -> None:
    page.goto(f"{daemon.url}/console")
    if user:
        page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def shot(page: Any, name: str) -> None:
    if os.environ.get("LEADBOX_SCREENSHOTS") == "1":
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "img" / f"{name}.png"), full_page=True)


@pytest.mark.slow
def test_nothing_before_sign_in_then_token_sign_in_and_sign_out(daemon: DaemonProcess, page: Any) -> None:
    page.goto(f"{daemon.url}/console/leads")
    assert page.locator("input[name=password]").count() == 1
    assert "Ana" not in (page.text_content("body") or "")
    sign_in(page, daemon, password="wrong")
    assert "incorrectos" in (page.text_content(".error") or "")
    sign_in(page, daemon)
    assert page.text_content("h1") == "Resumen"
    assert page.locator("svg.chart rect").count() >= 4
    shot(page, "console-overview")
    page.click("header button[type=submit]")  # sign out
    page.goto(f"{daemon.url}/console/leads")
    assert page.locator("input[name=password]").count() == 1


def test_list_filter_search_and_hostile_text(daemon: DaemonProcess, page: Any) -> None:
    sign_in(page, daemon)
    page.goto(f"{daemon.url}/console/leads")
    rows = page.locator("table.leads tbody tr")
    assert rows.count() == 5
    assert page.locator("table.leads img").count() == 0  # the hostile name is text, not an element
    assert HOSTILE in (page.text_content("table.leads") or "")
    assert page.locator("tr.failed").count() == 1  # the failed lead stands out
    shot(page, "console-list")
    page.select_option("select[name=category]", "spam")
    page.click(".filters button[type=submit]")
    listed = page.text_content("table.leads") or ""
    assert "Promo Bot" in listed and "Ana López" not in listed and "Bruno" not in listed
    assert "category=spam" in page.url  # bookmarkable
    page.goto(f"{daemon.url}/console/leads")
    page.fill("input[name=q]", "lopez")
    page.click(".filters button[type=submit]")
    assert page.locator("table.leads tbody tr").count() == 1 and "Ana López" in (page.text_content("table.leads") or "")


def test_open_a_lead_correct_it_and_see_it_in_the_api(daemon: DaemonProcess, page: Any) -> None:
    sign_in(page, daemon)
    page.goto(f"{daemon.url}/console/leads?q=bruno")
    page.click("table.leads tbody tr >> a >> nth=0")
    lead_id = page.url.rsplit("/", 1)[-1]
    assert page.text_content("h1").startswith("Bruno Díaz")
    page.select_option("form[action$='/correct'] select[name=category]", "sales")
    page.select_option("form[action$='/correct'] select[name=priority]", "high")
    page.click("form[action$='/correct'] button")
    page.wait_for_load_state()
    shot(page, "console-lead")
    lead = call(daemon, "GET", f"/leads/{lead_id}")
    assert (lead["category"], lead["priority"], lead["correction"]["by"]) == ("sales", "high", "admin")
    assert "Corregido por admin" in (page.text_content("ol.timeline") or "")


def test_hostile_lead_page_runs_nothing(daemon: DaemonProcess, page: Any) -> None:
    sign_in(page, daemon)
    page.goto(f"{daemon.url}/console/leads?q=hostil")
    page.click("table.leads tbody tr >> a >> nth=0")
    assert HOSTILE in (page.text_content("h1") or "")
    assert "<script>alert('x')</script>" in (page.text_content("dd.message") or "")
    assert page.locator("main img, main script").count() == 0


def test_retry_a_failed_lead(daemon: DaemonProcess, page: Any) -> None:
    sign_in(page, daemon)
    page.goto(f"{daemon.url}/console/leads?state=failed")
    page.click("table.leads tbody tr >> a >> nth=0")
    lead_id = page.url.rsplit("/", 1)[-1]
    page.click("form[action$='/retry'] button")
    deadline = time.monotonic() + 15
    while call(daemon, "GET", f"/leads/{lead_id}")["state"] != "replied":
        assert time.monotonic() < deadline, "the retried lead was not answered"
        time.sleep(0.1)


def test_a_correction_without_its_csrf_token_is_refused(daemon: DaemonProcess, page: Any) -> None:
    sign_in(page, daemon)
    page.goto(f"{daemon.url}/console/leads?q=ana")
    page.click("table.leads tbody tr >> a >> nth=0")
    lead_id = page.url.rsplit("/", 1)[-1]
    before = call(daemon, "GET", f"/leads/{lead_id}")
    page.evaluate("document.querySelector(\"form[action$='/correct'] input[name=csrf_token]\").remove()")
    page.select_option("form[action$='/correct'] select[name=category]", "spam")
    with page.expect_response(lambda r: r.url.endswith("/correct")) as resp:
        page.click("form[action$='/correct'] button")
    assert resp.value.status == 403
    after = call(daemon, "GET", f"/leads/{lead_id}")
    assert (after["category"], after.get("correction")) == (before["category"], before.get("correction"))


@pytest.mark.slow
def test_sign_in_as_a_named_user_at_phone_width(daemon: DaemonProcess, new_page: Any) -> None:
    env = {**daemon.env, "LEADBOX_DOTENV": "0"}
    r = subprocess.run([sys.executable, "-m", "agent.cli", "users", "add", "lucia", "--password-stdin",
                        "--config", str(ROOT / "config/agent.toml")], input="una clave bien larga\n", env=env,
                       cwd=daemon.tmp, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    page = new_page(locale="en-US", viewport={"width": 390, "height": 844})
    sign_in(page, daemon, user="lucia", password="una clave bien larga")
    assert page.text_content("h1") == "Overview" and "lucia" in (page.text_content("header") or "")
    page.goto(f"{daemon.url}/console/leads")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the list overflows a phone screen ({width}px)"
