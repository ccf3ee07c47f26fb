"""Webhook intake and end-to-end benchmark; figures go to bench/README.md.

    .venv/bin/python bench/bench_webhook.py intake      # req/s, p50/p99 at 32 connections, vs bare aiohttp,
                                                        # then form-encoded posts against the same daemon
    .venv/bin/python bench/bench_webhook.py e2e -n 100000              # burst, then drain
    .venv/bin/python bench/bench_webhook.py e2e -n 30000 --rate 1100   # steady offered load
    .venv/bin/python bench/bench_webhook.py e2e -n 30000 --rate 1100 \
        --messages agent/classifiers/data/training.jsonl                 # ... of distinct messages

Needs `wrk` (Debian package). The daemon runs as users run it (`leadbox run`, worker on,
SQLite + outbox + local classifier) in a temporary directory; rate limiting is off.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
THREADS = int(os.environ.get("WRK_THREADS", "1"))  # one wrk thread leaves the 2nd core to the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def start_daemon(tmp: Path, port: int, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LEADBOX_HTTP__PORT": str(port), "LEADBOX_HTTP__RATE_LIMIT_PER_MINUTE": "0",
           "LEADBOX_LOGGING__LEVEL": "WARNING", "LEADBOX_REPLY__TEMPLATES_DIR": str(ROOT / "config/templates"),
           **(extra or {})}
    p = subprocess.Popen([PY, "-m", "agent.cli", "run", "--config", str(ROOT / "config/agent.toml")],
                         cwd=tmp, env=env, stdout=open(tmp / "daemon.log", "wb"),  # noqa: SIM115 - handed to the child
                         stderr=subprocess.STDOUT)
    wait_port(port)
    return p


def wrk(port: int, seconds: int, conns: int, tag: str, body: str = "json") -> dict[str, float]:
    out = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(ROOT / "bench/unique_leads.lua"),
         f"http://127.0.0.1:{port}/leads", "--", tag, body], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("JSON "))
    d = json.loads(line[5:])
    return {"rps": d["requests"] / (d["duration_us"] / 1e6), "p50_ms": d["p50_us"] / 1000,
            "p99_ms": d["p99_us"] / 1000, "requests": d["requests"], "errors": d["errors"], "non2xx": d["non2xx"]}


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def intake(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="leadbox-bench-"))
    port = free_port()
    bare = subprocess.Popen([PY, str(ROOT / "bench/bare_server.py"), str(port)])
    wait_port(port)
    wrk(port, 2, args.connections, "warm")
    ceiling = wrk(port, args.seconds, args.connections, "bare")
    bare.terminate()
    bare.wait()
    def run(body: str, tag: str) -> dict[str, float]:
        """A fresh daemon and store per run, so no run drains another's backlog."""
        sub = Path(tempfile.mkdtemp(prefix=f"leadbox-bench-{tag}-", dir=tmp))
        port = free_port()
        daemon = start_daemon(sub, port)
        wrk(port, 2, args.connections, f"warm-{tag}", body=body)
        out = wrk(port, args.seconds, args.connections, tag, body=body)
        daemon.terminate()
        daemon.wait()
        return out

    # JSON and a plain HTML form's body (urlencoded, Spanish field names), alternated so that a
    # change in the machine's load hits both alike; the ratio is of the two sums.
    runs = {"json": [], "form": []}  # type: dict[str, list[dict[str, float]]]
    for i in range(2):
        runs["json"].append(run("json", f"json{i}"))
        runs["form"].append(run("form", f"form{i}"))
    ours, form = runs["json"][-1], runs["form"][-1]
    total = {k: sum(r["rps"] for r in v) for k, v in runs.items()}
    result = {"connections": args.connections, "seconds": args.seconds, "bare": ceiling, "leadbox": ours,
              "ratio": ours["rps"] / ceiling["rps"], "leadbox_form": form,
              "json_runs_rps": [round(r["rps"]) for r in runs["json"]],
              "form_runs_rps": [round(r["rps"]) for r in runs["form"]],
              "form_to_json": total["form"] / total["json"]}
    print(json.dumps(result, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


def e2e(args: argparse.Namespace) -> None:
    """Offer n unique leads at a steady rate and time each one from POST to replied.

    Reports the overall rate, the rate of the first and last 10,000 replies (the store
    grows by n rows meanwhile), how far replies lagged behind intake, and peak RSS.
    The reply window and hourly cap are off (every lead is a new address).
    """
    tmp = Path(tempfile.mkdtemp(prefix="leadbox-e2e-"))
    port = free_port()
    daemon = start_daemon(tmp, port, {"LEADBOX_REPLY__WINDOW_HOURS": "0", "LEADBOX_REPLY__MAX_PER_HOUR": "0"})
    t0 = time.time()
    if args.rate > 0:
        texts = [args.messages] if args.messages else []
        client = subprocess.run([PY, str(ROOT / "bench/steady_client.py"), f"http://127.0.0.1:{port}",
                                 str(args.n), str(args.rate), f"r{int(t0)}", *texts],
                                capture_output=True, text=True, check=True)
        offered = json.loads(client.stdout.strip().splitlines()[-1])
    else:  # burst: as fast as intake takes them (wrk, 32 connections), in 2-second slices
        sent = 0
        while sent < args.n:
            sent += int(wrk(port, 2, 32, f"b{sent}")["requests"])
        offered = {"sent": sent, "mode": "burst", "seconds": round(time.time() - t0, 2)}
    t_intake_end = time.time()
    db = tmp / "data" / "leadbox.db"
    con = sqlite3.connect(db)
    peak = rss_mb(daemon.pid)
    while True:
        left = con.execute(
            "SELECT count(*) FROM leads WHERE state NOT IN ('replied','skipped','failed')").fetchone()[0]
        peak = max(peak, rss_mb(daemon.pid))
        if left == 0:
            break
        time.sleep(0.5)
    t1 = time.time()
    total = con.execute("SELECT count(*) FROM leads").fetchone()[0]
    rows = con.execute("SELECT replied_at, replied_at - created_at FROM leads WHERE replied_at IS NOT NULL "
                       "ORDER BY replied_at").fetchall()
    times = [r[0] for r in rows]
    lags = sorted(r[1] for r in rows)
    after = [t for t in times if t >= t_intake_end]  # replies once intake had stopped

    def rate(xs: list[float]) -> float:
        return (len(xs) - 1) / (xs[-1] - xs[0]) if len(xs) > 1 and xs[-1] > xs[0] else 0.0

    daemon.terminate()
    daemon.wait()
    files = sum(1 for _ in (tmp / "data" / "outbox").glob("*.eml"))
    print(json.dumps({
        "offered": offered, "leads": total, "replied": len(times), "eml_files": files,
        "wall_s": round(t1 - t0, 1), "overall_leads_per_s": round(total / (t1 - t0)),
        "replied_rate_first_10k": round(rate(times[:10000])), "replied_rate_last_10k": round(rate(times[-10000:])),
        "replied_during_intake": len(times) - len(after),
        "drain_rate_first_10k": round(rate(after[:10000])), "drain_rate_last_10k": round(rate(after[-10000:])),
        "drain_rate": round(rate(after)),
        "lag_p50_s": round(lags[len(lags) // 2], 3) if lags else None,
        "lag_p99_s": round(lags[int(len(lags) * 0.99)], 3) if lags else None,
        "peak_rss_mb": round(peak, 1),
    }, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench_webhook: needs wrk (Debian: apt-get install wrk)")
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("intake")
    a.add_argument("--seconds", type=int, default=10)
    a.add_argument("--connections", type=int, default=32)
    b = sub.add_parser("e2e")
    b.add_argument("-n", type=int, default=100_000)
    b.add_argument("--rate", type=float, default=0.0,
                   help="steady offered leads per second (0: burst, as fast as intake takes them)")
    b.add_argument("--messages", help="with --rate: JSONL whose messages the leads carry in turn (distinct texts)")
    args = p.parse_args()
    if getattr(args, "messages", None) and not args.rate:
        p.error("--messages needs --rate (the burst mode posts one body with wrk)")
    intake(args) if args.cmd == "intake" else e2e(args)


if __name__ == "__main__":
    main()
