"""The `leadbox` command as users run it: a subprocess against a real SQLite store.

The store is filled by the real daemon (in-process) first: three leads answered, one of
them then marked failed. Every command is checked for its exit code and its one-line
message: no traceback, ever.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.core.models import State
from tests.fixtures.daemon import ROOT, base_env, post_lead, settle

LEADBOX = Path(sys.executable).with_name("leadbox")
COMMAND = [str(LEADBOX)] if LEADBOX.exists() else [sys.executable, "-m", "agent.cli"]


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Only what the command needs: a developer's LEADBOX_* or DATABASE_URL must not leak in."""
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "SYSTEMROOT") if k in os.environ}
    return {**keep, **base_env(tmp), "LEADBOX_LOGGING__FORMAT": "json", "LEADBOX_DOTENV": "0", **extra}


def leadbox(tmp: Path, *args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args, "--config", str(ROOT / "config" / "agent.toml")],
                          cwd=tmp, env=env or clean_env(tmp), capture_output=True, text=True, timeout=60, **kw)


def no_traceback(res: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr


def message(res: subprocess.CompletedProcess[str]) -> str:
    """The stderr lines meant for the user (log lines are JSON objects)."""
    return "\n".join(x for x in res.stderr.splitlines() if not x.startswith("{"))


@pytest.fixture
async def leads(make_daemon: Any, tmp_path: Path) -> dict[str, str]:
    """A store with a support (high), a sales and an info lead, all replied; then the info one failed."""
    d, c = await make_daemon()
    ids = {}
    for key, email, text in [
        ("support", "sofia@example.com", "Mi cuenta no funciona desde ayer, no puedo acceder al panel."),
        ("sales", "ana@example.com", "Hola, ¿me enviáis un presupuesto para una tienda online?"),
        ("info", "luis@example.com", "¿Cuál es vuestro horario de atención y dónde estáis?"),
    ]:
        ids[key] = (await post_lead(c, email, text))[1]
    await settle(d, 3)
    lead = await d.store.get(ids["info"])
    assert lead is not None and lead.category is not None and lead.category.value == "info"
    lead.state, lead.last_error = State.FAILED, "smtp: 554 refused"
    await d.store.update(lead, release=True)
    await d.stop()
    return ids


@pytest.mark.slow
def test_leads_list_hint_is_a_working_command(leads: dict[str, str], tmp_path: Path) -> None:
    seen: list[str] = []
    args = ["leads", "list", "--limit", "1"]
    for _ in range(5):
        res = leadbox(tmp_path, *args)
        assert res.returncode == 0, res.stderr
        no_traceback(res)
        seen += [line.split()[0] for line in res.stdout.splitlines()]
        hint = [x for x in message(res).splitlines() if x.startswith("more: ")]
        if not hint:
            break
        argv = shlex.split(hint[0].removeprefix("more: "))
        assert argv[:3] == ["leadbox", "leads", "list"] and "--limit" in argv
        args = argv[1:]
    assert sorted(seen) == sorted(leads.values()), seen  # every lead once, in three pages


@pytest.mark.slow
def test_leads_list_json_pages_carry_the_cursor(leads: dict[str, str], tmp_path: Path) -> None:
    res = leadbox(tmp_path, "leads", "list", "--limit", "2", "--json")
    assert res.returncode == 0, res.stderr
    page = json.loads(res.stdout)
    assert len(page["leads"]) == 2 and page["next_cursor"]
    res = leadbox(tmp_path, "leads", "list", "--limit", "2", "--json", "--cursor", page["next_cursor"])
    last = json.loads(res.stdout)
    assert last["next_cursor"] is None
    assert {x["id"] for x in page["leads"] + last["leads"]} == set(leads.values())


@pytest.mark.slow  # nine runs of the command
def test_leads_list_filters_are_validated_and_labels_are_aliases(leads: dict[str, str], tmp_path: Path) -> None:
    res = leadbox(tmp_path, "leads", "list", "--status", "bogus")
    assert res.returncode == 2 and res.stdout == ""
    no_traceback(res)
    assert "--status" in message(res) and "received" in message(res) and "failed" in message(res)

    res = leadbox(tmp_path, "leads", "list", "--priority", "urgent")
    assert res.returncode == 2
    assert "high, medium, low" in message(res) and "Alta" in message(res)

    res = leadbox(tmp_path, "leads", "list", "--priority", "Alta")  # the label of 'high'
    assert res.returncode == 0, res.stderr
    assert [line.split()[0] for line in res.stdout.splitlines()] == [leads["support"]]

    res = leadbox(tmp_path, "leads", "list", "--category", "ventas")  # a label, any case
    assert res.returncode == 0, res.stderr
    assert [line.split()[0] for line in res.stdout.splitlines()] == [leads["sales"]]

    res = leadbox(tmp_path, "leads", "list", "--status", "failed")
    assert [line.split()[0] for line in res.stdout.splitlines()] == [leads["info"]]

    res = leadbox(tmp_path, "leads", "list", "--reply", "sent")
    assert sorted(line.split()[0] for line in res.stdout.splitlines()) == sorted(leads.values())
    res = leadbox(tmp_path, "leads", "list", "--reply", "waiting")
    assert res.returncode == 0 and res.stdout == ""

    for bad in (["--limit", "0"], ["--cursor", "not a cursor"], ["--reply", "later"]):
        res = leadbox(tmp_path, "leads", "list", *bad)
        assert res.returncode == 2 and bad[0] in message(res), (bad, res.stderr)


@pytest.mark.slow
def test_leads_retry_says_why_it_did_nothing(leads: dict[str, str], tmp_path: Path) -> None:
    res = leadbox(tmp_path, "leads", "retry", "nosuchlead")
    assert res.returncode == 1 and "no lead with id 'nosuchlead'" in message(res), res.stderr
    assert "queued" not in res.stdout

    res = leadbox(tmp_path, "leads", "retry", leads["sales"])
    assert res.returncode == 1 and "'replied', not 'failed'" in message(res), res.stderr

    res = leadbox(tmp_path, "leads", "retry")
    assert res.returncode == 2 and "lead id or --failed" in message(res)

    res = leadbox(tmp_path, "leads", "retry", leads["info"])
    assert res.returncode == 0 and "queued again" in res.stdout, res.stderr
    res = leadbox(tmp_path, "leads", "list", "--status", "failed")
    assert res.returncode == 0 and res.stdout == ""  # it left the failed state


@pytest.mark.slow
def test_leads_show_without_id_or_unknown(leads: dict[str, str], tmp_path: Path) -> None:
    res = leadbox(tmp_path, "leads", "show")
    assert res.returncode == 2 and "needs a lead id" in message(res) and "None" not in res.stderr
    res = leadbox(tmp_path, "leads", "show", "nosuchlead")
    assert res.returncode == 1 and "no lead with id 'nosuchlead'" in message(res)
    no_traceback(res)


@pytest.mark.slow
def test_output_into_a_closed_pipe_is_no_traceback(leads: dict[str, str], tmp_path: Path) -> None:
    """`leadbox leads show ID | head`: the reader is gone. A pipe whose read end is closed makes every
    write fail with EPIPE, as when `head` has exited: deterministic, no race with the reader."""
    for args in (["leads", "show", leads["sales"]], ["leads", "list"], ["check-config"]):
        r, w = os.pipe()
        os.close(r)
        try:
            res = subprocess.run([*COMMAND, *args, "--config", str(ROOT / "config" / "agent.toml")],
                                 cwd=tmp_path, env=clean_env(tmp_path), stdout=w, stderr=subprocess.PIPE,
                                 text=True, timeout=60)
        finally:
            os.close(w)
        assert res.returncode == 141, (args, res.returncode, res.stderr)  # 128 + SIGPIPE, as `yes | head`
        assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr


@pytest.mark.slow
def test_poll_once_and_backfill_with_the_inbox_disabled(tmp_path: Path) -> None:
    for args in (["poll-once"], ["backfill", "--since", "2024-01-01"]):
        res = leadbox(tmp_path, *args)
        assert res.returncode == 1, res.stderr
        assert "inbox is not enabled" in message(res) and "inbox.enabled" in message(res)
        assert "imap.gmail.com" not in res.stderr and "connect" not in res.stderr, res.stderr
        no_traceback(res)


@pytest.mark.slow
def test_run_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = leadbox(tmp_path, "run", env=clean_env(tmp_path, LEADBOX_HTTP__PORT=str(port)))
    assert res.returncode == 1, res.stdout + res.stderr
    no_traceback(res)
    assert res.stderr.strip().count("\n") == 0, res.stderr  # one line
    assert f"127.0.0.1:{port}" in res.stderr and "already in use" in res.stderr
    # It stopped before touching the store (a second daemon must not void the first one's leases).
    assert not (tmp_path / "leadbox.db").exists()


def test_every_option_of_every_command_has_help() -> None:
    from agent.cli import build_parser

    parser = build_parser()
    actions = parser._actions  # noqa: SLF001 - argparse lists options only here
    sub = next(a for a in actions if a.dest == "command")
    missing = []
    for name, sp in sub.choices.items():  # type: ignore[union-attr]
        for action in sp._actions:  # noqa: SLF001 - argparse lists options only here
            if action.dest != "help" and not (action.help or "").strip():
                missing.append(f"{name} {action.option_strings or action.dest}")
    assert not missing, f"options without help: {missing}"
