"""Webhook intake and end-to-end rate with PostgreSQL (1 and 2 replicas) beside SQLite.

    .venv/bin/python bench/bench_postgres.py                    # everything, ~2 minutes
    .venv/bin/python bench/bench_postgres.py --seconds 10 --e2e 20000 --only pg2

Each configuration runs ``leadbox run`` as users run it (worker on, local
classifier, outbox replies, rate limit off, logging at WARNING) in a temporary
directory. Load comes from ``wrk`` (a separate process, 32 connections in total
over loopback, unique addresses from bench/unique_leads.lua); with two replicas
the connections are split 16 + 16, one wrk per replica, as a load balancer would.

- intake: requests per second accepted (202) while the worker drains behind it.
- e2e: POST n unique leads as fast as intake takes them, then wait until every
  lead is final; leads / (first POST .. last lead final) is the end-to-end rate.

PostgreSQL: a throw-away database on 127.0.0.1:5432 (user postgres), dropped at
the end; set BENCH_PG to use another server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
FINAL = "('replied','skipped','failed')"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh database for one configuration; yields its URL."""
    name = f"leadbox_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def replicas(n: int, store_url: str, tmp: Path) -> Iterator[list[int]]:
    """``n`` daemons on one store and one outbox; yields their ports; SIGTERM at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    base = {**os.environ, "LEADBOX_HTTP__RATE_LIMIT_PER_MINUTE": "0", "LEADBOX_LOGGING__LEVEL": "WARNING",
            "LEADBOX_REPLY__TEMPLATES_DIR": str(ROOT / "config/templates"),
            "LEADBOX_REPLY__OUTBOX_DIR": str(tmp / "outbox"), "LEADBOX_CLASSIFIER__BACKEND": "local",
            "LEADBOX_REPLY__WINDOW_HOURS": "0", "LEADBOX_REPLY__MAX_PER_HOUR": "0"}
    base.pop("DATABASE_URL", None)
    if store_url.startswith("postgresql://"):
        base["DATABASE_URL"] = store_url
    else:
        base["LEADBOX_STORE__URL"] = store_url
    try:
        for i in range(n):
            port = _port()
            log = open(tmp / f"daemon{i}.log", "wb")  # noqa: SIM115 - handed to the child
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(ROOT / "config/agent.toml")],
                cwd=tmp, env={**base, "LEADBOX_HTTP__PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT))
            ports.append(port)
        for i, port in enumerate(ports):
            if not _wait_port(port):
                raise SystemExit(f"replica {i} did not start:\n" + (tmp / f"daemon{i}.log").read_text()[-3000:])
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def _wait_port(port: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wrk_split(ports: list[int], seconds: float, connections: int, tag: str) -> dict[str, Any]:
    """One wrk per replica, connections split evenly, run at the same time; summed."""
    per = max(1, connections // len(ports))

    def one(i_port: tuple[int, int]) -> dict[str, Any]:
        i, port = i_port
        out = subprocess.run(
            ["wrk", "-t1", f"-c{per}", f"-d{max(1, round(seconds))}s", "--latency",
             "-s", str(ROOT / "bench/unique_leads.lua"),
             f"http://127.0.0.1:{port}/leads", "--", f"{tag}-{i}"],
            capture_output=True, text=True, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("JSON "))
        return dict(json.loads(line[5:]))

    with ThreadPoolExecutor(len(ports)) as ex:
        parts = list(ex.map(one, enumerate(ports)))
    reqs = sum(p["requests"] for p in parts)
    dur = max(p["duration_us"] for p in parts) / 1e6
    return {"requests": reqs, "rps": round(reqs / dur), "errors": sum(p["errors"] for p in parts),
            "non2xx": sum(p["non2xx"] for p in parts),
            "p50_ms": round(max(p["p50_us"] for p in parts) / 1000, 2),
            "p99_ms": round(max(p["p99_us"] for p in parts) / 1000, 2)}


def counter(store_url: str, tmp: Path) -> Callable[[], tuple[int, int]]:
    """(leads, leads not yet final) read straight from the store."""
    q = f"SELECT count(*), count(*) FILTER (WHERE state NOT IN {FINAL}) FROM leads"
    if store_url.startswith("postgresql://"):
        def pg() -> tuple[int, int]:
            with psycopg.connect(store_url) as c:
                row = c.execute(q).fetchone()
                assert row is not None
                return int(row[0]), int(row[1])
        return pg

    def lite() -> tuple[int, int]:
        with sqlite3.connect(tmp / "data" / "leadbox.db") as c:
            total, left = c.execute(q.replace("count(*) FILTER (WHERE", "sum(CASE WHEN")
                                    .replace(f"{FINAL})", f"{FINAL} THEN 1 ELSE 0 END)")).fetchone()
            return int(total), int(left or 0)
    return lite


def measure_intake(n_replicas: int, store_url: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="leadbox-bench-"))
    try:
        with replicas(n_replicas, store_url, tmp) as ports:
            wrk_split(ports, 2, args.connections, "warm")
            return wrk_split(ports, args.seconds, args.connections, "intake")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_e2e(n_replicas: int, store_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """On an empty store: from the first POST until every lead is final."""
    tmp = Path(tempfile.mkdtemp(prefix="leadbox-bench-"))
    count = counter(store_url, tmp)
    try:
        with replicas(n_replicas, store_url, tmp) as ports:
            t0 = time.monotonic()
            sent = 0
            while sent < args.e2e:
                sent += wrk_split(ports, 1, args.connections, f"e2e{sent}")["requests"]
            t_posted = time.monotonic()
            while True:
                total, left = count()
                if left == 0:
                    break
                time.sleep(0.2)
            t1 = time.monotonic()
        return {"leads": total, "post_s": round(t_posted - t0, 1), "wall_s": round(t1 - t0, 1),
                "leads_per_s": round(total / (t1 - t0)),
                "outbox_files": sum(1 for _ in (tmp / "outbox").glob("*.eml"))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def fresh_store(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        yield "sqlite:///data/leadbox.db"  # relative: a new temporary directory each time
    else:
        with pg_database() as url:
            yield url


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--e2e", type=int, default=20_000, help="leads posted for the end-to-end rate")
    p.add_argument("--only", choices=["sqlite", "pg1", "pg2"], action="append")
    args = p.parse_args()
    wanted = args.only or ["sqlite", "pg1", "pg2"]
    results: list[dict[str, Any]] = []
    info = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
                       f"Python {platform.python_version()}",
            "command": " ".join([Path(sys.executable).name, *sys.argv])}
    for name in wanted:
        n = 2 if name == "pg2" else 1
        kind = "sqlite" if name == "sqlite" else "pg"
        with fresh_store(kind) as url:
            intake = measure_intake(n, url, args)
        with fresh_store(kind) as url:
            e2e = measure_e2e(n, url, args)
        results.append({"config": name, "replicas": n, "intake": intake, "e2e": e2e})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({**info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
