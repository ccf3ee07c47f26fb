"""Personal data (issue 21): forget, export and retention against the real daemon, stores and servers.

The erasure test greps the SQLite files and the outbox folder for the person's address and text;
the inbox test runs a real Dovecot; the sheet tests use the Sheets fake through gspread.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.core.models import EmailIntake, LeadIn
from tests.fixtures.daemon import ROOT, DaemonProcess, base_env, settle, wait_for
from tests.fixtures.mailservers import DovecotServer
from tests.fixtures.sheets_fake import SheetsFake
from tests.test_inbox import inbox_env, mail
from tests.test_sheets_daemon import data_rows, mirror_settled, sheets_env
from tests.test_store_contract import open_store, store  # noqa: F401 - fixtures (SQLite and PostgreSQL)

TOKEN = "privacy-token"
API = {"Authorization": f"Bearer {TOKEN}"}
SECRET_TEXT = "Mi hija Carlota necesita ortodoncia urgente"


def cli(tmp: Path, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    full = {**base_env(tmp), "LEADBOX_DOTENV": "0", "PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args, "--config", str(ROOT / "config/agent.toml")],
                          input=stdin, env=full, cwd=tmp, capture_output=True, text=True, timeout=60)


def hits(folder: Path, *needles: str) -> list[str]:
    """Files under ``folder`` whose bytes contain any needle (as UTF-8, case-insensitive for ASCII)."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            if any(n.lower().encode() in data for n in needles):
                found.append(str(path.relative_to(folder)))
    return found


async def test_forget_leaves_nothing_in_the_files_and_is_idempotent(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon({"LEADBOX_ADMIN_TOKEN": TOKEN, "LEADBOX_SECRET_KEY": "k" * 32})
    person = {"name": "Rosalía Quintanilla", "email": "rosalia.q@example.com", "message": SECRET_TEXT}
    other = {"name": "Otro Cliente", "email": "otro@example.com", "message": "Quiero información de precios"}
    r = await c.post("/leads", json=person)
    lead_id = (await r.json())["id"]
    await c.post("/leads", json=other)
    await c.post("/leads", json={**person, "message": "¿Me respondéis? " + SECRET_TEXT})  # an interaction
    await settle(d, 2)
    await c.get("/console/leads?q=rosalia")  # the search index holds her words too
    assert hits(tmp_path, "rosalia.q@example.com"), "the test must see the address before the erasure"
    r = await c.delete(f"/leads/{lead_id}", headers=API)
    assert r.status == 200
    report = (await r.json())["erased"]
    assert report["leads"] == 1 and report["interactions"] == 1 and report["replies"] == 1
    assert report["outbox_files"] == 1 and report["sheet"] == "not configured"
    assert (await c.get(f"/leads/{lead_id}", headers=API)).status == 404
    assert (await (await c.get("/leads/export?email=rosalia.q@example.com", headers=API)).json())["leads"] == []
    again = await (await c.delete(f"/leads/{lead_id}", headers=API)).json()
    assert again["errors"][0]["field"] == "id"  # the lead is gone: nothing left to erase
    await d.stop()
    assert hits(tmp_path, "rosalia.q@example.com", "Quintanilla", "ortodoncia", "Carlota") == []
    assert hits(tmp_path, "otro@example.com"), "someone else's data stays"
    r2 = cli(tmp_path, "forget", "rosalia.q@example.com")
    assert r2.returncode == 0, r2.stderr
    assert "leads: 0" in r2.stdout and "outbox_files: 0" in r2.stdout  # idempotent, and no prompt without a tty


async def test_a_new_contact_after_forget_is_a_new_lead(make_daemon: Any) -> None:
    d, c = await make_daemon({"LEADBOX_ADMIN_TOKEN": TOKEN})
    first = (await (await c.post("/leads", json={"name": "Ana", "email": "ana@example.com",
                                                 "message": "hola"})).json())["id"]
    await settle(d, 1)
    assert (await c.delete(f"/leads/{first}", headers=API)).status == 200
    r = await c.post("/leads", json={"name": "Ana", "email": "ana@example.com", "message": "hola otra vez"})
    assert r.status == 202 and (await r.json())["id"] != first
    await settle(d, 1)
    lead = await (await c.get(f"/leads/{(await r.json())['id']}", headers=API)).json()
    assert lead["state"] == "replied" and lead["interactions"] == []


async def test_export_holds_everything_about_the_person(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon({"LEADBOX_ADMIN_TOKEN": TOKEN})
    await c.post("/leads", json={"name": "Bea", "email": "bea@example.com", "message": "precio de 10 sillas"})
    await c.post("/leads", json={"name": "Bea", "email": "bea@example.com", "message": "y de 20 mesas"})
    await settle(d, 1)
    r = await c.get("/leads/export?email=BEA@example.com", headers=API)
    doc = await r.json()
    assert r.status == 200 and doc["normalized"] == "bea@example.com"
    (lead,) = doc["leads"]
    assert lead["message"] == "precio de 10 sillas" and lead["interactions"][0]["message"] == "y de 20 mesas"
    assert "Bea" in (lead["reply"]["text"] or "") and doc["replies"][0]["status"] == "sent"
    assert (await c.get("/leads/export?email=not-an-address", headers=API)).status == 422
    assert (await c.get("/leads/export?email=bea@example.com")).status in (401, 403)
    await d.stop()
    out = cli(tmp_path, "export", "bea@example.com")
    assert out.returncode == 0 and json.loads(out.stdout)["leads"][0]["id"] == lead["id"]


async def test_forget_matches_as_dedupe_does(make_daemon: Any, tmp_path: Path) -> None:
    env = {"LEADBOX_ADMIN_TOKEN": TOKEN, "LEADBOX_DEDUPE__FOLD_GMAIL": "true"}
    d, c = await make_daemon(env)
    await c.post("/leads", json={"name": "Ana", "email": "ana.lopez@gmail.com", "message": "hola"})
    await settle(d, 1)
    await d.stop()
    out = cli(tmp_path, "forget", "Ana.Lopez+x@Gmail.com", "--yes", env=env)
    assert out.returncode == 0 and "leads: 1" in out.stdout, out.stdout + out.stderr
    assert cli(tmp_path, "forget", "no-at-sign", "--yes").returncode == 2


async def test_erased_mail_is_never_taken_back_by_the_inbox(store: Any) -> None:  # noqa: F811 - the fixture
    """Even when the same message comes again (a backfill, a UIDVALIDITY reset)."""
    item = LeadIn(name="Eva", email="eva@example.com", email_norm="eva@example.com", message="hola", intake="email")
    first = EmailIntake(item, "INBOX", 1, 10, "mid:<m1@example.com>")
    assert (await store.intake_emails([first]))[0] is not None
    report = await store.erase_person("eva@example.com", "eva@example.com")
    assert report["leads"] == 1 and report["inbox_records"] == 1
    again = EmailIntake(item, "INBOX", 2, 1, "mid:<m1@example.com>")  # new UIDVALIDITY, same mail
    assert (await store.intake_emails([again]))[0] is None
    assert await store.get_by_email("eva@example.com") is None
    fresh = EmailIntake(item, "INBOX", 2, 2, "mid:<m2@example.com>")  # a new mail from her: a new lead
    assert (await store.intake_emails([fresh]))[0] is not None


async def test_the_inbox_does_not_retake_erased_mail_through_dovecot(
        dovecot: DovecotServer, tmp_path: Path, make_daemon: Any) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(1))
    env = inbox_env(dovecot, user, tmp_path, LEADBOX_INBOX__POLL_INTERVAL="3600", LEADBOX_ADMIN_TOKEN=TOKEN)
    d, c = await make_daemon(env)
    await settle(d, 1)
    lead = await d.store.get_by_email("cliente1@empresa1.example")
    assert (await c.delete(f"/leads/{lead.id}", headers=API)).status == 200
    await d.stop()
    out = cli(tmp_path, "backfill", "--since", "2000-01-01", env=env)
    assert out.returncode == 0, out.stderr
    assert cli(tmp_path, "export", "cliente1@empresa1.example", env=env).returncode == 1  # nothing held


async def test_the_sheet_row_goes_and_an_unreachable_sheet_is_retried(
        make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path) -> None:
    env = {**sheets_env(fresh_sheets, service_account_info), "LEADBOX_ADMIN_TOKEN": TOKEN}
    d, c = await make_daemon(env)
    ids = []
    for n in ("uno", "dos", "tres"):
        r = await c.post("/leads", json={"name": n, "email": f"{n}@example.com", "message": "hola"})
        ids.append((await r.json())["id"])
    await settle(d, 3)
    await mirror_settled(d, ids)
    r = await (await c.delete(f"/leads/{ids[1]}", headers=API)).json()
    assert r["erased"]["sheet"] == 1
    assert [row[-1] for row in data_rows(fresh_sheets)] == [ids[0], ids[2]]
    with fresh_sheets.down():  # Google unreachable: the erasure waits for the job
        r = await (await c.delete(f"/leads/{ids[2]}", headers=API)).json()
    assert str(r["erased"]["sheet"]).startswith("pending")
    assert ids[2] in [row[-1] for row in data_rows(fresh_sheets)]

    async def gone() -> bool:
        await d.erasures_job()
        return ids[2] not in [row[-1] for row in data_rows(fresh_sheets)]

    await wait_for(gone, 15, what="the pending sheet erasure")
    assert await d.store.pending_erasures() == []


async def test_retention_delete_and_anonymize(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon({"LEADBOX_ADMIN_TOKEN": TOKEN})
    for n in ("vieja", "nueva"):
        await c.post("/leads", json={"name": f"Persona {n}", "email": f"{n}@example.com",
                                     "message": f"mensaje de {n} con datos"})
    await settle(d, 2)
    old = await d.store.get_by_email("vieja@example.com")
    await d.stop()
    import sqlite3
    db = sqlite3.connect(tmp_path / "leadbox.db")
    db.execute("UPDATE leads SET created_at = created_at - 40 * 86400 WHERE id = ?", (old.id,))
    db.commit()
    db.close()
    keep = {"LEADBOX_STORE__RETENTION_DAYS": "30", "LEADBOX_STORE__RETENTION_ACTION": "anonymize"}
    dry = cli(tmp_path, "retention", "--dry-run", env=keep)
    assert dry.returncode == 0 and json.loads(dry.stdout)["people"] == 1
    assert cli(tmp_path, "export", "vieja@example.com").returncode == 0  # a dry run changed nothing
    done = cli(tmp_path, "retention", env=keep)
    assert done.returncode == 0 and json.loads(done.stdout)["leads"] == 1, done.stdout + done.stderr
    d2, c2 = await make_daemon({"LEADBOX_ADMIN_TOKEN": TOKEN})
    kept = await (await c2.get(f"/leads/{old.id}", headers=API)).json()
    assert (kept["category"], kept["language"], kept["created_at"]) == (
        old.category.value, old.language, (old.created_at - timedelta(days=40)).isoformat())
    assert (kept["name"], kept["email"], kept["message"], kept["summary"]) == ("", "", "", None)
    assert hits(tmp_path / "outbox", "vieja@example.com") == []
    assert (await c2.get("/leads/export?email=nueva@example.com", headers=API)).status == 200
    await d2.stop()
    assert hits(tmp_path, "vieja@example.com", "mensaje de vieja") == []


def test_logs_carry_no_lead_data_across_a_full_run(dovecot: DovecotServer, tmp_path: Path) -> None:
    """Webhook JSON, a browser form and an email through Dovecot: the log has ids, never the person."""
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(7, sender="Mercedes Valdivieso <mercedes.v@correo.example>",
                                       body="Necesito presupuesto confidencial para mi clínica"))
    env = inbox_env(dovecot, user, tmp_path, LEADBOX_INBOX__POLL_INTERVAL="1", LEADBOX_ADMIN_TOKEN=TOKEN,
                    LEADBOX_LOGGING__LEVEL="DEBUG")
    p = DaemonProcess(tmp_path, env)
    p.start()
    try:
        import urllib.request
        for body, ctype in (
            (json.dumps({"name": "Teodoro Saavedra", "email": "teodoro.s@example.com",
                         "message": "Hola, quiero saber precios de la finca"}), "application/json"),
            ("nombre=Leocadia+Ibarra&correo=leocadia.i%40example.com&mensaje=Cita+para+mi+perro+Toby",
             "application/x-www-form-urlencoded"),
        ):
            req = urllib.request.Request(p.url + "/leads", data=body.encode(), headers={"Content-Type": ctype})
            urllib.request.urlopen(req, timeout=5).read()
        deadline = time.monotonic() + 30
        while True:
            req = urllib.request.Request(p.url + "/leads?limit=50", headers=API)
            leads = json.loads(urllib.request.urlopen(req, timeout=5).read())["leads"]
            if len(leads) >= 3 and all(x["state"] in ("replied", "skipped") for x in leads):
                break
            assert time.monotonic() < deadline, leads
            time.sleep(0.2)
    finally:
        p.terminate()
    log = p.log.read_text(errors="replace")
    assert re.search(r'"lead_id"', log), "the log should name leads by id"
    for secret in ("teodoro", "Saavedra", "finca", "leocadia", "Ibarra", "Toby", "mercedes", "Valdivieso",
                   "clínica", "confidencial"):
        assert secret.lower() not in log.lower(), f"{secret!r} is in the log"


async def test_the_console_erases_a_person_after_typing_their_address(make_daemon: Any) -> None:
    d, c = await make_daemon({"LEADBOX_ADMIN_TOKEN": TOKEN, "LEADBOX_SECRET_KEY": "k" * 32})
    lead_id = (await (await c.post("/leads", json={"name": "Gil", "email": "gil@example.com",
                                                   "message": "hola"})).json())["id"]
    await settle(d, 1)
    await c.post("/console/login", data={"user": "", "password": TOKEN})
    page = await (await c.get(f"/console/leads/{lead_id}")).text()
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    assert (await c.post(f"/console/leads/{lead_id}/forget", data={"csrf_token": token, "confirm": "x@y.z"},
                         allow_redirects=False)).status == 409
    assert (await c.post(f"/console/leads/{lead_id}/forget", data={"confirm": "gil@example.com"},
                         allow_redirects=False)).status == 403  # no CSRF token
    r = await c.post(f"/console/leads/{lead_id}/forget", data={"csrf_token": token, "confirm": "gil@example.com"},
                     allow_redirects=False)
    assert r.status == 303 and (await c.get(f"/leads/{lead_id}", headers=API)).status == 404
