"""The image on a real engine (issue 12 items 13, 14, 16): healthy, non-root, a lead answered,
data kept across a restart, exit 0 on SIGTERM, and one clear line for a root-owned bind mount."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.engine import ADMIN_TOKEN, docker, host_port, http, inspect, lead_state, wait

UID = "10001"


@pytest.fixture
def container(image: str) -> Iterator[str]:
    name = f"leadbox-test-{uuid.uuid4().hex[:8]}"
    yield name
    docker("rm", "-f", "-v", name, check=False)
    docker("volume", "rm", "-f", f"{name}-data", check=False)


def health(name: str) -> str:
    return inspect(name, "{{.State.Health.Status}}")


def start_and_wait_healthy(name: str) -> str:
    docker("start", name)
    wait(f"{name} healthy", lambda: health(name) == "healthy" or health(name) == "unhealthy", 90)
    assert health(name) == "healthy", docker("logs", name).stdout[-3000:]
    return f"http://127.0.0.1:{host_port(name)}"


def test_healthy_non_root_answers_a_lead_keeps_it_across_restart_and_exits_0(
        container: str, image: str) -> None:
    name = container
    # The image's own HEALTHCHECK command, probed every second instead of every 30 s.
    docker("create", "--name", name, "--init", "--stop-timeout", "15",
           "--health-interval", "1s", "--health-start-period", "1s",
           "-p", "127.0.0.1::8000", "-v", f"{name}-data:/app/data",
           "-e", f"LEADBOX_ADMIN_TOKEN={ADMIN_TOKEN}", image)
    base = start_and_wait_healthy(name)

    # Every process in the container runs as the image's user, not root.
    uids = {line.split()[1] for line in docker("top", name, "-eo", "pid,uid,comm").stdout.splitlines()[1:]}
    assert uids == {UID}, docker("top", name).stdout
    assert docker("exec", name, "id", "-u").stdout.strip() == UID

    status, ready = http("GET", f"{base}/readyz")
    assert status == 200, ready
    assert ready["checks"]["reply"]["state"] == "ok"

    status, body = http("POST", f"{base}/leads", {
        "name": "Ana", "email": "ana@example.com",
        "message": "Hola, quiero una cotización para 30 licencias de su software."})
    assert status == 202, body
    lead_id = body["id"]
    wait("the lead to be answered", lambda: lead_state(base, lead_id) == "replied", 60)
    outbox = docker("exec", name, "ls", "/app/data/outbox").stdout.split()
    assert len([f for f in outbox if f.endswith(".eml")]) == 1, outbox

    # docker stop sends SIGTERM (the image's STOPSIGNAL): the drain ends with exit code 0.
    docker("stop", name, timeout=60)
    assert inspect(name, "{{.State.ExitCode}}") == "0", docker("logs", name).stdout[-3000:]
    assert inspect(name, "{{.State.OOMKilled}}") == "false"

    # The same container, started again: the lead and its reply are still there, not redone.
    base = start_and_wait_healthy(name)
    assert lead_state(base, lead_id) == "replied"
    status, listing = http("GET", f"{base}/leads", token=ADMIN_TOKEN)
    assert status == 200 and [x["id"] for x in listing["leads"]] == [lead_id]
    status, again = http("POST", f"{base}/leads", {
        "name": "Ana", "email": "ana@example.com", "message": "¿Me pueden llamar mañana?"})
    assert status in (200, 202) and again["id"] == lead_id, again  # a known contact, not a new lead
    assert len(docker("exec", name, "ls", "/app/data/outbox").stdout.split()) == 1

    # An explicit SIGTERM (what orchestrators send) also ends in exit 0.
    docker("kill", "--signal", "SIGTERM", name)
    assert docker("wait", name, timeout=60).stdout.strip() == "0", docker("logs", name).stdout[-3000:]


@pytest.mark.parametrize("mode", [0o755, 0o700], ids=["mkdir-by-root", "private-to-root"])
def test_root_owned_bind_mount_is_one_clear_line(image: str, mode: int) -> None:
    host = Path(tempfile.mkdtemp(prefix="leadbox-bind-"))
    host.chmod(mode)
    name = f"leadbox-bind-{uuid.uuid4().hex[:8]}"
    try:
        docker("run", "-d", "--name", name, "-v", f"{host}:/app/data", image)
        code = docker("wait", name, timeout=60).stdout.strip()
        logs = docker("logs", name)
    finally:
        docker("rm", "-f", name, check=False)
        shutil.rmtree(host, ignore_errors=True)
    output = (logs.stdout + logs.stderr).strip()
    assert code == "1", output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    line = lines[0]
    assert line.startswith("leadbox: cannot open the SQLite store /app/data/leadbox.db: ")
    assert "/app/data is not writable by uid 10001" in line
    assert "chown -R 10001:10001" in line and "named volume" in line
