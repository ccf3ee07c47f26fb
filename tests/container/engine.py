"""Small helpers around the real `docker` and compose commands, for tests/container."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "leadbox:test"
ADMIN_TOKEN = "container-test-admin-token"


def run(*argv: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run("docker", *args, check=check, timeout=timeout)


def inspect(container: str, template: str) -> str:
    return docker("inspect", "-f", template, container).stdout.strip()


def host_port(container: str, port: int = 8000) -> int:
    """The host port a published container port landed on (``-p 127.0.0.1::8000``)."""
    out = docker("port", container, str(port)).stdout.split()
    return int(out[0].rsplit(":", 1)[1])


def wait(what: str, probe: Any, timeout: float = 90, interval: float = 0.5) -> Any:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def http(method: str, url: str, body: dict[str, Any] | None = None,
         token: str | None = None) -> tuple[int, Any]:
    """(status, JSON body); (0, reason) when nothing answers yet."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")
    except OSError as e:
        return 0, str(e)


def lead_state(base: str, lead_id: str) -> str | None:
    status, body = http("GET", f"{base}/leads/{lead_id}", token=ADMIN_TOKEN)
    return body.get("state") if status == 200 and isinstance(body, dict) else None


def compose_commands() -> list[list[str]]:
    """Every compose implementation at hand, one per version: docker-compose on PATH (Debian 12's
    1.29), the `docker compose` plugin, and the binary named by LEADBOX_COMPOSE_V2."""
    candidates = [["docker-compose"], ["docker", "compose"]]
    extra = os.environ.get("LEADBOX_COMPOSE_V2", "")
    if extra:
        candidates.append([extra])
    found: dict[str, list[str]] = {}
    for cmd in candidates:
        if shutil.which(cmd[0]) is None:
            continue
        version = compose_version(cmd)
        if version != "unknown":
            found.setdefault(version, cmd)
    return list(found.values())


def compose_version(cmd: list[str]) -> str:
    return run(*cmd, "version", "--short", check=False).stdout.strip() or "unknown"
