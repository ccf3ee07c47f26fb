"""Folders the daemon must write (the SQLite file's, the outbox) and what it says when it cannot.

Issue 12, items 13 and 14: a root-owned volume at /app/data/outbox made every reply fail while
/readyz said the transport was fine, and a root-owned bind mount at /app/data crashed start-up
with a 34-line traceback. Here the same situations are made on the host: the daemon runs as a
non-root user (setpriv, like the image's uid 10001) against root-owned folders, and, as root,
with a file standing where a folder should be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import ROOT, base_env, free_port, post_lead, wait_for

UID = 10001  # the image's user; any non-root uid does
CONFIG = str(ROOT / "config" / "agent.toml")


def as_user() -> list[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the daemon as another user")
    return ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="leadbox-perm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def leadbox(tmp: Path, env: dict[str, str], *args: str, prefix: list[str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **base_env(tmp), "LEADBOX_LOGGING__FORMAT": "json", **env}
    return subprocess.run([*(prefix or []), sys.executable, "-m", "agent.cli", *args],
                          cwd=tmp, env=full, capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("leadbox: cannot open the SQLite store ")
    return lines[0]


@pytest.mark.parametrize("mode", [0o755, 0o700], ids=["mkdir-by-root", "private-to-root"])
def test_root_owned_data_folder_is_one_line_naming_path_uid_and_fix(shared_tmp: Path, mode: int) -> None:
    data = shared_tmp / "data"
    data.mkdir()  # root-owned, like a host folder bind-mounted at /app/data
    data.chmod(mode)
    env = {"LEADBOX_STORE__URL": f"sqlite:///{data}/leadbox.db",
           "LEADBOX_REPLY__OUTBOX_DIR": str(data / "outbox")}
    line = one_line_error(leadbox(shared_tmp, env, "run", "--config", CONFIG, prefix=as_user()))
    assert f"{data} is not writable by uid {UID}" in line
    assert f"chown -R {UID}:{UID}" in line and "named volume" in line
    assert not (data / "leadbox.db").exists()


@pytest.mark.slow  # three `leadbox` processes
def test_store_path_that_is_a_folder_or_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "adir.db").mkdir()
    line = one_line_error(leadbox(tmp_path, {"LEADBOX_STORE__URL": f"sqlite:///{tmp_path}/adir.db"},
                                  "run", "--config", CONFIG))
    assert f"{tmp_path}/adir.db is a folder" in line
    (tmp_path / "afile").write_text("not a folder")
    line = one_line_error(leadbox(tmp_path, {"LEADBOX_STORE__URL": f"sqlite:///{tmp_path}/afile/x.db"},
                                  "leads", "list", "--config", CONFIG))
    assert f"{tmp_path}/afile is not a folder" in line
    (tmp_path / "junk.db").write_bytes(b"this is not an SQLite database, just some bytes" * 20)
    line = one_line_error(leadbox(tmp_path, {"LEADBOX_STORE__URL": f"sqlite:///{tmp_path}/junk.db"},
                                  "run", "--config", CONFIG))
    assert "file is not a database" in line


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_root_owned_outbox_makes_readyz_503_with_the_reason(shared_tmp: Path) -> None:
    """The compose postgres profile's bug: the data folder is the app user's, the outbox is root's."""
    data = shared_tmp / "data"
    data.mkdir()
    os.chown(data, UID, UID)
    (data / "outbox").mkdir(mode=0o755)  # root-owned: what an unprepared volume mount gives
    port = free_port()
    env = {**os.environ, **base_env(shared_tmp), "LEADBOX_STORE__URL": f"sqlite:///{data}/leadbox.db",
           "LEADBOX_REPLY__OUTBOX_DIR": str(data / "outbox"), "LEADBOX_HTTP__PORT": str(port),
           "LEADBOX_LOGGING__FORMAT": "json"}
    log = shared_tmp / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*as_user(), sys.executable, "-m", "agent.cli", "run", "--config", CONFIG],
                                cwd=shared_tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        import asyncio

        async def up() -> bool:
            try:
                return get_json(f"http://127.0.0.1:{port}/healthz")[0] == 200
            except OSError:
                return proc.poll() is not None

        asyncio.run(wait_for(up, 30, what="the daemon to answer"))
        assert proc.poll() is None, log.read_text()
        status, body = get_json(f"http://127.0.0.1:{port}/readyz")
        assert status == 503, body
        reply = body["checks"]["reply"]
        assert reply["state"] == "down"
        assert f"{data}/outbox is not writable by uid {UID}" in reply["reason"]
        assert body["checks"]["store"]["state"] == "ok"
        started = log.read_text()
        assert "reply transport cannot send replies" in started and "Traceback" not in started
        # Fixing the ownership is enough: readiness follows without a restart.
        os.chown(data / "outbox", UID, UID)
        status, body = get_json(f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


@pytest.mark.slow
async def test_outbox_blocked_then_freed_readiness_and_reply_follow(make_daemon: Any, tmp_path: Path) -> None:
    """As root (no permission to deny): a file where the outbox folder should be."""
    blocker = tmp_path / "blocked"
    blocker.write_text("a file, not a folder")
    outbox = blocker / "outbox"
    d, c = await make_daemon({"LEADBOX_REPLY__OUTBOX_DIR": str(outbox)})
    r = await c.get("/readyz")
    body = await r.json()
    assert r.status == 503 and body["checks"]["reply"]["state"] == "down"
    assert f"cannot create {outbox}" in body["checks"]["reply"]["reason"]
    _, lead_id = await post_lead(c, "buyer@example.com", "Quisiera una cotización para 20 licencias")

    async def reply_failed_once() -> bool:
        lead = await d.store.get(lead_id)
        return lead is not None and lead.attempts >= 1 and lead.state.value != "replied"

    await wait_for(reply_failed_once, 15, what="the reply to fail on the blocked outbox")
    blocker.unlink()

    async def replied() -> bool:
        return outbox.is_dir() and any(outbox.glob("*.eml")) and (await c.get("/readyz")).status == 200

    await wait_for(replied, 20, what="the reply written once the outbox can be made")
