"""docker-compose.yml on a real engine, with every compose implementation on the machine (Debian 12's
docker-compose 1.29 at least): the default profile answers a lead; the postgres profile runs two
replicas that both answer through the one shared outbox volume (issue 12 items 13, 15, 16)."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.container.engine import (
    ADMIN_TOKEN,
    ROOT,
    compose_commands,
    compose_version,
    http,
    lead_state,
    run,
    wait,
)

COMPOSES = compose_commands()
Compose = Callable[..., str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=COMPOSES or [None], ids=lambda c: " ".join(c) if c else "none")
def compose(request: pytest.FixtureRequest, image: str) -> Iterator[tuple[Compose, dict[str, int]]]:
    """One compose project of the repository's docker-compose.yml, removed with its volumes after.

    An empty --env-file keeps a developer's .env out; the variables below stand in for it.
    """
    if request.param is None:
        pytest.fail("no compose on this machine: tools/container-engine.sh installs docker-compose")
    cmd: list[str] = request.param
    print(f"\ncompose: {' '.join(cmd)} {compose_version(cmd)}")
    ports = {"LEADBOX_PORT": free_port(), "LEADBOX_A_PORT": free_port(), "LEADBOX_B_PORT": free_port()}
    env_file = Path(tempfile.mkstemp(prefix="leadbox-env-")[1])
    # DOCKER_BUILDKIT=0: both compose versions build with the engine's classic builder, whose layer
    # cache the image fixture has just filled, so the compose file's build section is exercised
    # without a second cold build (Compose v2 with BuildKit builds the same file as well).
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "LEADBOX_ADMIN_TOKEN": ADMIN_TOKEN,
           "DOCKER_BUILDKIT": "0"}
    base = [*cmd, "-p", f"leadboxtest{uuid.uuid4().hex[:6]}", "-f", str(ROOT / "docker-compose.yml"),
            "--env-file", str(env_file)]

    def call(*args: str, check: bool = True, timeout: float = 300) -> str:
        return run(*base, *args, check=check, timeout=timeout, env=env, cwd=ROOT).stdout

    # The compose file's own build section (context ., network host); cached from the image fixture.
    call("build", "leadbox", timeout=900)
    yield call, ports
    call("--profile", "postgres", "down", "-v", "--remove-orphans", check=False, timeout=120)
    env_file.unlink()


def post(base: str, email: str, message: str) -> str:
    status, body = http("POST", f"{base}/leads", {"name": "Cliente", "email": email, "message": message})
    assert status == 202, body
    return str(body["id"])


def outbox_files(call: Compose, service: str) -> list[str]:
    return [f for f in call("exec", "-T", service, "ls", "/app/data/outbox").split() if f.endswith(".eml")]


def test_default_profile_answers_a_lead(compose: tuple[Compose, dict[str, int]]) -> None:
    call, ports = compose
    call("up", "-d", "--no-build", "leadbox")
    base = f"http://127.0.0.1:{ports['LEADBOX_PORT']}"
    wait("leadbox ready", lambda: http("GET", f"{base}/readyz")[0] == 200, 90)
    lead = post(base, "bruno@example.com", "Buenas, necesito precios para 10 usuarios, gracias.")
    wait("the lead to be answered", lambda: lead_state(base, lead) == "replied", 60)
    assert len(outbox_files(call, "leadbox")) == 1
    uid = call("exec", "-T", "leadbox", "id", "-u").strip()
    assert uid == "10001"


def test_postgres_profile_two_replicas_answer_through_the_shared_outbox(
        compose: tuple[Compose, dict[str, int]]) -> None:
    call, ports = compose
    call("--profile", "postgres", "up", "-d", "--no-build", "postgres", "leadbox-a", "leadbox-b")
    a = f"http://127.0.0.1:{ports['LEADBOX_A_PORT']}"
    b = f"http://127.0.0.1:{ports['LEADBOX_B_PORT']}"
    for base in (a, b):
        # /readyz checks that the shared outbox volume is writable by the app user (it was root's).
        wait(f"{base} ready", lambda base=base: http("GET", f"{base}/readyz")[0] == 200, 120)
        status, body = http("GET", f"{base}/readyz")
        assert body["checks"]["reply"]["state"] == "ok", body

    # Replica a answers what it receives.
    first = [post(a, f"a{i}@example.com", f"Quiero una cotización para {i + 2} licencias.") for i in range(3)]
    wait("replica a's leads answered", lambda: all(lead_state(a, x) == "replied" for x in first), 60)
    # With a stopped, replica b answers the next ones, into the same outbox.
    call("--profile", "postgres", "stop", "leadbox-a", timeout=120)
    second = [post(b, f"b{i}@example.com", f"Necesito soporte con mi factura número {i}.") for i in range(3)]
    wait("replica b's leads answered", lambda: all(lead_state(b, x) == "replied" for x in second), 60)
    assert len(outbox_files(call, "leadbox-b")) == 6
    # Back up, replica a sees every lead in PostgreSQL and every reply in the shared outbox.
    call("--profile", "postgres", "start", "leadbox-a", timeout=120)
    wait("replica a ready again", lambda: http("GET", f"{a}/readyz")[0] == 200, 90)
    assert all(lead_state(a, x) == "replied" for x in first + second)
    assert sorted(outbox_files(call, "leadbox-a")) == sorted(outbox_files(call, "leadbox-b"))
    assert len(outbox_files(call, "leadbox-a")) == 6  # each reply written once
