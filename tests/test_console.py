"""The lead console over HTTP against the real daemon: sign-in, pages, actions, CSRF, headers.

The browser's view (dialogs, clicks, screenshots) is in test_console_browser.py.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.console.session import COOKIE, Signer
from tests.fixtures.daemon import ROOT, base_env, settle

TOKEN = "console-admin-token"
ENV = {"LEADBOX_ADMIN_TOKEN": TOKEN, "LEADBOX_SECRET_KEY": "k" * 32}
API = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_MSG = "<script>alert('x')</script> quiero precio de 20 licencias"


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert m, "no CSRF token on the page"
    return m.group(1)


async def sign_in(c: Any, user: str = "", password: str = TOKEN) -> Any:
    r = await c.post("/console/login", data={"user": user, "password": password}, allow_redirects=False)
    return r


async def post(c: Any, payload: dict[str, Any]) -> str:
    r = await c.post("/leads", json=payload)
    assert r.status == 202, await r.text()
    return str((await r.json())["id"])


async def test_nothing_visible_before_sign_in_and_the_cookie_is_strict(make_daemon: Any) -> None:
    d, c = await make_daemon(ENV)
    lead_id = await post(c, {"name": "Secreta", "email": "s@example.com", "message": "dato privado"})
    await settle(d, 1)
    for path in ("/console", "/console/leads", f"/console/leads/{lead_id}", "/console/leads?q=Secreta"):
        r = await c.get(path)
        text = await r.text()
        assert r.status == 200 and 'name="password"' in text, path
        assert "Secreta" not in text and "s@example.com" not in text and "dato privado" not in text
    r = await sign_in(c, password="wrong")
    assert r.status == 401
    r = await sign_in(c)
    assert r.status == 303 and r.headers["Location"] == "/console"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; https public_url makes it Secure (below)
    page = await c.get("/console")
    assert page.status == 200 and "Resumen" in await page.text() or "Overview" in await page.text()


async def test_secure_cookie_behind_https_public_url(make_daemon: Any) -> None:
    _, c = await make_daemon({**ENV, "LEADBOX_HTTP__PUBLIC_URL": "https://leads.example.com"})
    r = await sign_in(c)
    assert "Secure" in r.headers["Set-Cookie"]


async def test_console_says_how_to_enable_it(make_daemon: Any) -> None:
    _, c = await make_daemon({"LEADBOX_SECRET_KEY": "k" * 32})
    text = await (await c.get("/console", headers={"Accept-Language": "en"})).text()
    assert "LEADBOX_ADMIN_TOKEN" in text and "leadbox users add" in text
    assert (await sign_in(c, password="anything")).status == 403


async def test_list_filters_search_and_hostile_text(make_daemon: Any) -> None:
    d, c = await make_daemon(ENV)
    await post(c, {"name": HOSTILE_NAME, "email": "h@example.com", "message": HOSTILE_MSG})
    await post(c, {"name": "Ana López", "email": "ana@example.com", "company": "Acme",
                   "message": "El acceso no funciona, error al entrar desde ayer"})
    await post(c, {"name": "Bob", "email": "bob@example.org", "message": "Win a free iPhone!!! click now $$$"})
    await settle(d, 3)
    await sign_in(c)
    r = await c.get("/console/leads", headers={"Accept-Language": "es"})
    page = await r.text()
    assert r.status == 200
    for h, v in {"Content-Security-Policy": "script-src", "Referrer-Policy": "same-origin",
                 "Cache-Control": "no-store"}.items():
        assert h in r.headers and (v in r.headers[h] or v == r.headers[h] or h == "Content-Security-Policy")
    assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("/console/leads/") >= 3
    lopez = await (await c.get("/console/leads?q=lopez")).text()  # accents folded
    assert "Ana López" in lopez and "Bob" not in lopez
    assert "Ana López" in await (await c.get("/console/leads?q=acme")).text()
    by_mail = await (await c.get("/console/leads?q=bob%40example.org")).text()
    assert "bob@example.org" in by_mail and "Ana López" not in by_mail
    cats = {x["name"]: x["category"] for x in (await (await c.get("/leads", headers=API)).json())["leads"]}
    if cats["Bob"] != cats["Ana López"]:  # the filter is checked whatever the classifier decided
        only = await (await c.get(f"/console/leads?category={cats['Bob']}")).text()
        assert "Bob" in only and "Ana López" not in only
    bad = await c.get("/console/leads?state=bogus&since=notadate")
    assert bad.status == 200 and "ignored: state, since" in await bad.text()
    overview = await (await c.get("/console")).text()
    for shown in (page, lopez, overview):  # no template printed a Python object instead of a word
        assert "built-in method" not in shown and "object at 0x" not in shown


async def test_searches_and_lead_text_stay_out_of_the_logs(make_daemon: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    d, c = await make_daemon(ENV)
    await post(c, {"name": "Zacarías Privado", "email": "zacarias@example.com", "message": "mi secreto"})
    await settle(d, 1)
    await sign_in(c)
    await c.get("/console/leads?q=zacarias+privado")
    lead_id = (await (await c.get("/leads", headers=API)).json())["leads"][0]["id"]
    await c.get(f"/console/leads/{lead_id}")
    # aiohttp.access is the test client's own server; `leadbox run` serves with access_log=None.
    logged = "\n".join(r.getMessage() + " " + str(vars(r)) for r in caplog.records if r.name != "aiohttp.access")
    for secret in ("zacarias", "Zacarías", "secreto", TOKEN):
        assert secret not in logged


async def test_correction_needs_csrf_and_shows_in_the_api(make_daemon: Any) -> None:
    d, c = await make_daemon(ENV)
    lead_id = await post(c, {"name": "Carla", "email": "carla@example.com",
                             "message": "Hola, ¿cuál es vuestro horario de atención?"})
    await settle(d, 1)
    await sign_in(c)
    page = await (await c.get(f"/console/leads/{lead_id}")).text()
    token = csrf_of(page)
    before = await (await c.get(f"/leads/{lead_id}", headers=API)).json()
    r = await c.post(f"/console/leads/{lead_id}/correct", data={"category": "sales", "priority": "high"},
                     allow_redirects=False)
    assert r.status == 403
    r = await c.post(f"/console/leads/{lead_id}/correct",
                     data={"category": "sales", "priority": "high", "csrf_token": "0" * 64}, allow_redirects=False)
    assert r.status == 403
    assert (await (await c.get(f"/leads/{lead_id}", headers=API)).json())["category"] == before["category"]
    r = await c.post(f"/console/leads/{lead_id}/correct",
                     data={"category": "sales", "priority": "high", "csrf_token": token}, allow_redirects=False)
    assert r.status == 303
    after = await (await c.get(f"/leads/{lead_id}", headers=API)).json()
    assert (after["category"], after["priority"]) == ("sales", "high")
    corr = after["correction"]
    assert (corr["category"], corr["priority"], corr["by"]) == ("sales", "high", "admin")
    assert corr["previous"] == {"category": before["category"], "priority": before["priority"]}
    page = await (await c.get(f"/console/leads/{lead_id}", headers={"Accept-Language": "en"})).text()
    assert "Corrected by admin" in page
    r = await c.post(f"/console/leads/{lead_id}/correct",
                     data={"category": "nonsense", "priority": "high", "csrf_token": token}, allow_redirects=False)
    assert r.status == 409


async def test_spam_rescued_gets_one_reply(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon(ENV)
    lead_id = await post(c, {"name": "Dana", "email": "dana@example.com",
                             "message": "WIN money now!!! free prize click here casino bitcoin"})
    await settle(d, 1)
    lead = await (await c.get(f"/leads/{lead_id}", headers=API)).json()
    assert lead["state"] == "skipped"
    await sign_in(c)
    token = csrf_of(await (await c.get(f"/console/leads/{lead_id}")).text())
    assert (await c.post(f"/console/leads/{lead_id}/correct", data={
        "category": "sales", "priority": "medium", "csrf_token": token}, allow_redirects=False)).status == 303
    assert (await c.post(f"/console/leads/{lead_id}/send-reply", data={"csrf_token": token},
                         allow_redirects=False)).status == 303
    await settle(d, 1)
    assert (await (await c.get(f"/leads/{lead_id}", headers=API)).json())["state"] == "replied"
    again = await c.post(f"/console/leads/{lead_id}/send-reply", data={"csrf_token": token}, allow_redirects=False)
    assert again.status == 409  # replied leads are not offered a second reply
    mails = [p for p in (tmp_path / "outbox").glob("*.eml") if "dana@example.com" in p.read_text(errors="replace")]
    assert len(mails) == 1


async def test_handled_assigned_and_timeline(make_daemon: Any) -> None:
    d, c = await make_daemon(ENV)
    lead_id = await post(c, {"name": "Eva", "email": "eva@example.com", "message": "Necesito soporte urgente"})
    await settle(d, 1)
    await sign_in(c)
    token = csrf_of(await (await c.get(f"/console/leads/{lead_id}")).text())
    assert (await c.post(f"/console/leads/{lead_id}/assign", data={"user": "nobody-such", "csrf_token": token},
                         allow_redirects=False)).status == 409
    assert (await c.post(f"/console/leads/{lead_id}/assign", data={"user": "admin", "csrf_token": token},
                         allow_redirects=False)).status == 303
    assert (await c.post(f"/console/leads/{lead_id}/handled", data={"csrf_token": token},
                         allow_redirects=False)).status == 303
    page = await (await c.get(f"/console/leads/{lead_id}", headers={"Accept-Language": "en"})).text()
    assert "Assigned to admin" in page and "Handled by admin" in page and "Received" in page
    r = await c.post("/console/leads/nope/handled", data={"csrf_token": token}, allow_redirects=False)
    assert r.status == 404


async def test_idle_sessions_expire_and_sign_out(make_daemon: Any) -> None:
    _, c = await make_daemon({**ENV, "LEADBOX_CONSOLE__SESSION_HOURS": "1"})
    signer = Signer(ENV["LEADBOX_SECRET_KEY"].encode(), 3600)
    _, idle = signer.issue("admin", now=time.time() - 7200)  # last request two hours ago
    assert 'name="password"' in await (await c.get("/console", cookies={COOKIE: idle})).text()
    _, fresh = signer.issue("admin")
    assert 'name="password"' not in await (await c.get("/console", cookies={COOKIE: fresh})).text()
    forged = fresh.rsplit("|", 1)[0] + "|" + "0" * 64
    assert 'name="password"' in await (await c.get("/console", cookies={COOKIE: forged})).text()
    other_key = Signer(b"another key", 3600).issue("admin")[1]
    assert 'name="password"' in await (await c.get("/console", cookies={COOKIE: other_key})).text()
    await sign_in(c)
    page = await (await c.get("/console")).text()
    assert 'name="password"' not in page
    r = await c.post("/console/logout", data={"csrf_token": csrf_of(page)}, allow_redirects=False)
    assert r.status == 303 and f"{COOKIE}=" in r.headers["Set-Cookie"]
    assert 'name="password"' in await (await c.get("/console")).text()


async def test_failed_sign_ins_are_throttled(make_daemon: Any) -> None:
    _, c = await make_daemon(ENV)
    for _ in range(5):
        assert (await sign_in(c, "admin", "wrong")).status == 401
    r = await sign_in(c, "admin", TOKEN)
    assert r.status == 429  # even the right token waits once the limit is hit


def cli(tmp: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**base_env(tmp), "LEADBOX_DOTENV": "0", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args, "--config", str(ROOT / "config/agent.toml")],
                          input=stdin, env=env, cwd=tmp, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
async def test_users_cli_and_sign_in_as_a_user(make_daemon: Any, tmp_path: Path) -> None:
    r = cli(tmp_path, "users", "add", "maria", "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and "at least 10 characters" in r.stderr
    r = cli(tmp_path, "users", "add", "maria", "--password-stdin", stdin="correct horse battery\n")
    assert r.returncode == 0, r.stderr
    assert cli(tmp_path, "users", "add", "maria", "--password-stdin", stdin="another long one\n").returncode == 1
    assert cli(tmp_path, "users", "list").stdout.split() == ["maria"]
    assert "correct horse" not in (tmp_path / "leadbox.db").read_bytes().decode("latin-1")
    _, c = await make_daemon({"LEADBOX_SECRET_KEY": "k" * 32})
    assert (await sign_in(c, "maria", "wrong password")).status == 401
    assert (await sign_in(c, "maria", "correct horse battery")).status == 303
    assert "maria" in await (await c.get("/console")).text()
    assert cli(tmp_path, "users", "passwd", "maria", "--password-stdin", stdin="a new long secret\n").returncode == 0
    assert cli(tmp_path, "users", "remove", "maria").returncode == 0
    assert cli(tmp_path, "users", "remove", "maria").returncode == 1


@pytest.mark.slow
async def test_corrections_export_is_eval_data(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon(ENV)
    lead_id = await post(c, {"name": "Fede", "email": "fede@example.com", "message": "¿Tenéis descuento por volumen?"})
    await settle(d, 1)
    await sign_in(c)
    token = csrf_of(await (await c.get(f"/console/leads/{lead_id}")).text())
    await c.post(f"/console/leads/{lead_id}/correct", data={"category": "sales", "priority": "high",
                                                            "csrf_token": token})
    await d.stop()
    out = tmp_path / "corr.jsonl"
    r = cli(tmp_path, "corrections", "export", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows == [{"name": "Fede", "email": "fede@example.com", "message": "¿Tenéis descuento por volumen?",
                     "subject": None, "category": "sales", "language": rows[0]["language"], "priority": "high"}]
    r = cli(tmp_path, "eval", str(out), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["n"] == 1
