"""Leads done per second with every real backend on (issue 17); figures go to bench/README.md.

    .venv/bin/python bench/bench_all_backends.py                     # sheet 0 / 10,000 rows x LLM 0 / 500 ms
    .venv/bin/python bench/bench_all_backends.py --rows 0 --latency 0.5 --leads 3000
    .venv/bin/python bench/bench_all_backends.py --env LEADBOX_CLASSIFIER__CONCURRENCY=32   # try a setting
    .venv/bin/python bench/bench_all_backends.py --tree /tmp/leadbox-old   # another checkout's daemon

leadbox runs as users run it (`leadbox run`, a separate process, SQLite) with
``classifier.backend = openai``, the Sheets mirror and SMTP replies on, against local stand-ins
started in this process (the ones the tests use, from tests/fixtures/): an OpenAI-compatible
chat server driven by the official SDK (answering at once or after ``--latency`` seconds), the
Sheets v4 API with its OAuth token endpoint (empty, or holding ``--rows`` rows already), and
an aiosmtpd SMTPS server with AUTH. ``reply.max_per_hour = 0`` and
``http.rate_limit_per_minute = 0``: one load-test client is not abuse.

``--leads`` new leads (one in ten is spam) are posted as fast as the daemon takes them (32
connections); a lead is done when its sheet row and its reply (none for spam) have arrived.
The figure is leads / (last lead done - first POST). The run then checks the fakes' counts:
every lead exactly one row, exactly one reply per non-spam lead, none for spam.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.mailservers import SmtpServer, make_tls_cert  # noqa: E402
from tests.fixtures.openai_fake import FakeOpenAIServer  # noqa: E402
from tests.fixtures.sheets_fake import DEFAULT_KEY, SheetsFake, make_service_account  # noqa: E402

HEADER = ["received_at", "name", "email", "category", "priority", "summary", "source", "id"]
SPAM = "Win a lottery prize today, click here to claim it"
MESSAGES = [
    "Hello, could you send me a quote for an online shop with about 200 products?",
    "Our dashboard shows an error since this morning and nobody can log in.",
    "What are your opening hours, and do you take interns over the summer?",
    "We would like a demo of your automation service and its price for a team of ten.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Fakes:
    def __init__(self, tmp: Path) -> None:
        self.openai = FakeOpenAIServer(record=False)
        self.openai.start()
        self.sheets = SheetsFake()
        self.sheets.start_thread()
        self.account = make_service_account(self.sheets)
        self.cert = make_tls_cert(tmp)
        self.smtp = SmtpServer(self.cert)
        self.smtp.start()

    def prepare(self, rows: int, latency: float) -> None:
        self.openai.reset()
        self.openai.latency = latency
        self.sheets.reset()
        if rows:
            old = [["2026-01-01T00:00:00Z", f"Old {i}", f"old{i}@example.com", "Ventas", "Media", "", "", f"old-{i}"]
                   for i in range(rows)]
            self.sheets.add_worksheet(DEFAULT_KEY, "Leads", [HEADER, *old])
        self.smtp.clear()

    def stop(self) -> None:
        self.smtp.stop()
        self.sheets.shutdown()
        self.openai.stop()


def daemon_env(fakes: Fakes, tmp: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    smtp = fakes.smtp
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOX_")}
    env.update({
        "LEADBOX_HTTP__PORT": str(port), "LEADBOX_HTTP__RATE_LIMIT_PER_MINUTE": "0",
        "LEADBOX_LOGGING__LEVEL": "WARNING", "LEADBOX_STORE__URL": f"sqlite:///{tmp}/leadbox.db",
        "LEADBOX_REPLY__TEMPLATES_DIR": str(ROOT / "config/templates"),
        "LEADBOX_CLASSIFIER__BACKEND": "openai", "LEADBOX_CLASSIFIER__BASE_URL": fakes.openai.base_url,
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "LEADBOX_SHEETS__ENABLED": "true", "LEADBOX_SHEETS__SPREADSHEET": DEFAULT_KEY,
        "LEADBOX_SHEETS__ENDPOINT": fakes.sheets.endpoint, "GOOGLE_CREDENTIALS_JSON": json.dumps(fakes.account),
        "LEADBOX_REPLY__TRANSPORT": "smtp", "LEADBOX_REPLY__SMTP_HOST": smtp.host,
        "LEADBOX_REPLY__SMTP_PORT": str(smtp.port_tls), "LEADBOX_REPLY__SMTP_SECURITY": "tls",
        "LEADBOX_REPLY__CA_FILE": smtp.ca_file, "EMAIL_USER": smtp.username, "EMAIL_PASS": smtp.password,
        "LEADBOX_REPLY__FROM_ADDRESS": smtp.username, "LEADBOX_REPLY__MAX_PER_HOUR": "0",
        "LEADBOX_REPLY__SETTLE": "off",  # no IMAP account here (settling: tests/test_settle.py)
    })
    env.update(extra)
    return env


def start_daemon(tmp: Path, env: dict[str, str], port: int, tree: Path) -> subprocess.Popen[bytes]:
    if tree != ROOT:  # that checkout's code, settings and templates (same interpreter and packages)
        env = {**env, "PYTHONPATH": str(tree), "LEADBOX_REPLY__TEMPLATES_DIR": str(tree / "config/templates")}
    with open(tmp / "daemon.log", "wb") as log:  # the child keeps its own copy of the descriptor
        p = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(tree / "config/agent.toml")],
                             cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"daemon exited: {(tmp / 'daemon.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise SystemExit("daemon did not open its port")


async def post_leads(port: int, n: int, tag: str) -> dict[str, tuple[str, bool]]:
    """POST n leads over 32 connections; returns lead id -> (email, spam)."""
    out: dict[str, tuple[str, bool]] = {}
    queue = list(range(n))
    url = f"http://127.0.0.1:{port}/leads"

    async def client(s: aiohttp.ClientSession) -> None:
        while queue:
            i = queue.pop()
            spam = i % 10 == 0
            email = f"{tag}-{i}@client{i % 97}.example"
            body = {"name": f"Client {i}", "email": email, "message": SPAM if spam else MESSAGES[i % len(MESSAGES)]}
            async with s.post(url, json=body) as r:
                if r.status != 202:
                    raise SystemExit(f"POST /leads answered {r.status}: {await r.text()}")
                out[(await r.json())["id"]] = (email, spam)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as s:
        await asyncio.gather(*(client(s) for _ in range(32)))
    return out


def run_one(fakes: Fakes, rows: int, latency: float, n: int, extra: dict[str, str],
            tree: Path = ROOT) -> dict[str, Any]:
    fakes.prepare(rows, latency)
    tmp = Path(tempfile.mkdtemp(prefix="leadbox-allbackends-"))
    port = free_port()
    p = start_daemon(tmp, daemon_env(fakes, tmp, port, extra), port, tree)
    try:
        print(f"daemon pid {p.pid} (sheet {rows} rows, LLM latency {latency}s)", file=sys.stderr, flush=True)
        time.sleep(1.0)  # let start-up (sheet open, id column read) finish before the clock starts
        cpu0, own0 = cpu_seconds(p.pid), time.process_time()
        t0 = time.monotonic()
        leads = asyncio.run(post_leads(port, n, f"r{rows}l{int(latency * 1000)}"))
        t_intake = time.monotonic()
        want_rows = rows + 1 + n
        want_replies = sum(1 for _, spam in leads.values() if not spam)
        deadline = t0 + 60 + n / 20
        got_rows = got_replies = 0
        in_flight: list[int] = []
        while time.monotonic() < deadline:
            in_flight.append(fakes.openai.in_flight)
            got_rows = fakes.sheets.row_count(DEFAULT_KEY, "Leads")
            got_replies = len(fakes.smtp.messages)
            if got_rows >= want_rows and got_replies >= want_replies:
                break
            time.sleep(0.05)
        t_done = time.monotonic()
        cpu, own = cpu_seconds(p.pid) - cpu0, time.process_time() - own0
        time.sleep(1.0)  # anything sent twice would arrive now
    finally:
        p.terminate()
        p.wait(30)
    sheet = fakes.sheets.rows(DEFAULT_KEY, "Leads")[rows + 1:]
    row_ids = Counter(r[-1] for r in sheet)
    replies = Counter(m["rcpt_tos"][0] for m in fakes.smtp.messages)
    expected_replies = {email for email, spam in leads.values() if not spam}
    problems = []
    if set(row_ids) != set(leads) or (row_ids and max(row_ids.values()) > 1):
        problems.append(f"rows: {len(sheet)} for {len(leads)} leads, {len(set(row_ids) ^ set(leads))} differ")
    if set(replies) != expected_replies or (replies and max(replies.values()) > 1):
        problems.append(f"replies: {sum(replies.values())} for {len(expected_replies)} non-spam leads")
    elapsed = t_done - t0
    result = {
        "sheet_rows": rows, "llm_latency_ms": int(latency * 1000), "leads": len(leads),
        "done_per_s": round(len(leads) / elapsed, 1), "seconds": round(elapsed, 2),
        "intake_s": round(t_intake - t0, 2), "daemon_cpu_ms_per_lead": round(1000 * cpu / len(leads), 2),
        "fakes_and_client_cpu_ms_per_lead": round(1000 * own / len(leads), 2),
        "llm_calls": fakes.openai.calls, "llm_in_flight_avg": round(sum(in_flight) / max(1, len(in_flight)), 1),
        "llm_in_flight_max": fakes.openai.max_in_flight, "appends": fakes.sheets.calls["values_append"],
        "smtp_messages": sum(replies.values()), "rows_seen": got_rows - rows - 1, "ok": not problems,
        "problems": problems,
    }
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=3000)
    ap.add_argument("--rows", type=int, action="append", help="rows already in the sheet (repeatable)")
    ap.add_argument("--latency", type=float, action="append", help="LLM answer delay in seconds (repeatable)")
    ap.add_argument("--env", action="append", default=[], help="extra daemon setting, KEY=VALUE")
    ap.add_argument("--tree", type=Path, default=ROOT, help="run the daemon from another checkout (a baseline)")
    args = ap.parse_args()
    extra = dict(e.split("=", 1) for e in args.env)
    tmp = Path(tempfile.mkdtemp(prefix="leadbox-fakes-"))
    fakes = Fakes(tmp)
    failed = False
    try:
        for latency in args.latency or [0.0, 0.5]:
            for rows in args.rows or [0, 10_000]:
                r = run_one(fakes, rows, latency, args.leads, extra, args.tree.resolve())
                failed = failed or not r["ok"]
                print(json.dumps(r), flush=True)
    finally:
        fakes.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        raise SystemExit("count check failed (see problems above)")


if __name__ == "__main__":
    main()
