"""Inbox intake benchmark on a private Dovecot (the test fixture's server, run here directly).

    .venv/bin/python bench/bench_inbox.py [--mails 10000] [--idle 50]

1. MULTIAPPEND ``--mails`` messages (~2 KB, distinct senders) into one mailbox.
2. Baseline: plain imapclient over TLS, UID FETCH BODY.PEEK[] in batches of 200,
   each message parsed with ``policy.default`` (+ get_body, From addresses).
3. The InboxPoller on a real SQLite store (worker off) ingests the same mails:
   messages/s from the first fetch to the last durable intake record (one
   ``intake_emails`` transaction per fetched batch of 200). Run twice: the
   poller's default parse mode on this machine (worker processes with 3 or more
   cores, else a thread), then the other one. RSS of this process before and after.
4. The whole daemon with IDLE on (poll interval 1 h): per mail, the time from
   APPEND to the reply .eml written, over ``--idle`` mails; the median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.app.daemon import Daemon  # noqa: E402
from agent.app.metrics import Metrics  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.intake.inbox import InboxPoller  # noqa: E402
from agent.intake.parse_pool import PARSE_RESERVED_CORES  # noqa: E402
from agent.stores.sqlite import SqliteStore  # noqa: E402
from tests.fixtures.daemon import base_env  # noqa: E402
from tests.fixtures.mailservers import DovecotServer, make_tls_cert  # noqa: E402

BODY = ("Hola, somos una empresa de logística y necesitamos una cotización para 40 licencias "
        "de su plataforma, con soporte en español. ¿Podrían enviarnos precios y plazos? ") * 6


def make_mail(i: int, tag: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Cliente {i} <cliente{i}.{tag}@empresa{i % 500}.example>"
    msg["To"] = "leads@ourco.example"
    msg["Subject"] = f"Cotización {i}"
    msg["Message-ID"] = f"<{tag}-{i}@empresa{i % 500}.example>"
    msg["Date"] = "Tue, 3 Jun 2025 10:00:00 +0000"
    msg.set_content(f"{BODY}\nReferencia {i}.\n\nSaludos,\nCliente {i}\n")
    return msg.as_bytes()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill(dovecot: DovecotServer, user: str, n: int, tag: str) -> float:
    c = dovecot.client(user, tls=False, timeout=60)
    t0 = time.perf_counter()
    raws = [make_mail(i, tag) for i in range(n)]
    for i in range(0, n, 500):
        c.multiappend("INBOX", raws[i:i + 500])
    dt = time.perf_counter() - t0
    c.logout()
    return n / dt


def baseline(dovecot: DovecotServer, user: str) -> tuple[int, float]:
    c = dovecot.client(user, tls=True, timeout=60)
    c.select_folder("INBOX", readonly=True)
    t0 = time.perf_counter()
    uids = sorted(c.search("ALL"))
    n = 0
    for i in range(0, len(uids), 200):
        data = c.fetch(uids[i:i + 200], ["BODY.PEEK[]"])
        for item in data.values():
            msg = BytesParser(policy=policy.default).parsebytes(item[b"BODY[]"])
            body = msg.get_body(("plain", "html"))
            _ = body.get_content() if body is not None else ""
            _ = msg["from"].addresses
            n += 1
    dt = time.perf_counter() - t0
    c.logout()
    return n, n / dt


def env_for(dovecot: DovecotServer, user: str, tmp: Path, **over: str) -> dict[str, str]:
    env = base_env(tmp)
    env.update({
        "LEADBOX_INBOX__ENABLED": "true", "LEADBOX_INBOX__START": "all", "LEADBOX_INBOX__HOST": "127.0.0.1",
        "LEADBOX_INBOX__PORT": str(dovecot.port_tls), "LEADBOX_INBOX__CA_FILE": dovecot.ca_file,
        "LEADBOX_INBOX__BATCH_SIZE": "200", "EMAIL_USER": user, "EMAIL_PASS": dovecot.users[user],
        "LEADBOX_LOGGING__LEVEL": "WARNING",
    })
    env.update(over)
    return env


async def ingest(dovecot: DovecotServer, user: str, tmp: Path, workers: int | None) -> tuple[int, float, float, float]:
    """The poller's default parse mode (``workers`` None), or that many worker processes (1: a thread)."""
    config = load_config(str(ROOT / "config" / "agent.toml"), env=env_for(dovecot, user, tmp))
    store = SqliteStore(config.store_url)
    await store.open()
    poller = InboxPoller(config, store, Metrics())
    if workers is not None:
        poller.parser.workers = workers  # the bench compares the modes
    await poller._call(poller._mb.connect)  # noqa: SLF001 - login is not part of the rate
    rss0 = rss_mb()
    t0 = time.perf_counter()
    summary = await poller.poll()
    dt = time.perf_counter() - t0
    rss1 = rss_mb()
    await poller.stop()
    await store.close()
    assert summary is not None
    return summary.leads, summary.leads / dt, rss0, rss1


async def idle_latency(dovecot: DovecotServer, user: str, tmp: Path, n: int) -> list[float]:
    config = load_config(str(ROOT / "config" / "agent.toml"), env=env_for(
        dovecot, user, tmp, LEADBOX_INBOX__IDLE="true", LEADBOX_INBOX__POLL_INTERVAL="3600"))
    d = Daemon(config)
    await d.start()
    out = tmp / "outbox"
    try:
        while d.inbox.state().get("idle") != "ok" or d.inbox.state()["state"] != "ok":
            await asyncio.sleep(0.05)  # state lives in another thread; polling it is the simple way
        await asyncio.sleep(0.3)
        delays = []
        for i in range(n):
            before = len(list(out.glob("*.eml"))) if out.exists() else 0
            raw = make_mail(i, f"idle{i}")
            t0 = time.perf_counter()
            await asyncio.to_thread(dovecot.append, user, "INBOX", raw)
            while (len(list(out.glob("*.eml"))) if out.exists() else 0) <= before:
                await asyncio.sleep(0.01)
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"no reply for mail {i} within 30 s")
            delays.append(time.perf_counter() - t0)
        return delays
    finally:
        await d.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mails", type=int, default=10_000)
    ap.add_argument("--idle", type=int, default=50)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-inbox-"))
    certdir = tmp / "tls"
    certdir.mkdir()
    os.chmod(tmp, 0o755)
    os.chmod(certdir, 0o755)
    dovecot = DovecotServer(make_tls_cert(certdir))
    dovecot.start()
    try:
        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"load average {load()}")
        u1, u2, u3 = dovecot.add_user(), dovecot.add_user(), dovecot.add_user()
        rate = fill(dovecot, u1, args.mails, "a")
        fill(dovecot, u2, args.mails, "b")
        print(f"MULTIAPPEND: {args.mails} mails x2, {rate:.0f} msg/s")
        n, base = baseline(dovecot, u1)
        print(f"baseline imapclient fetch + policy.default parse: {n} mails, {base:.0f} msg/s")
        # The default mode, then the other one: a thread when the default uses processes, else 2 processes.
        for user, workers, sub in ((u1, None, "d"), (u2, 1 if default_workers() > 1 else 2, "o")):
            (tmp / sub).mkdir()
            leads, r, rss0, rss1 = await ingest(dovecot, user, tmp / sub, workers)
            n = default_workers() if workers is None else workers
            mode = ("default, " if workers is None else "") + (
                f"parse in {n} worker processes" if n > 1 else "parse in one thread")
            print(f"poller ({mode}): {leads} leads durable, {r:.0f} msg/s = {100 * r / base:.0f}% of baseline; "
                  f"RSS {rss0:.0f} -> {rss1:.0f} MB")
        if args.idle:
            (tmp / "idle").mkdir()
            delays = await idle_latency(dovecot, u3, tmp / "idle", args.idle)
            q = statistics.quantiles(delays, n=20)
            print(f"IDLE: APPEND -> reply file over {len(delays)} mails: median {statistics.median(delays):.3f} s, "
                  f"p95 {q[18]:.3f} s, max {max(delays):.3f} s")
        print(f"load average at the end: {load()} (other work on the box lowers every figure)")
    finally:
        dovecot.cleanup()


def default_workers() -> int:
    """The poller's parse pool size on this machine (1: it parses in a thread)."""
    return max(1, len(os.sched_getaffinity(0)) - PARSE_RESERVED_CORES)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    asyncio.run(main())
