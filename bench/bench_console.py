"""Console speed with 100,000 leads in the store: server time of the list, a filter and a search.

    .venv/bin/python bench/bench_console.py                       # SQLite, 100,000 leads
    .venv/bin/python bench/bench_console.py --store postgresql://127.0.0.1/test -n 100000

Fills a fresh store through the store's own intake (so the FTS triggers or GIN index do their
real work), spreads states, categories and dates over 30 days, then runs ``leadbox run`` on it
and times each page with ``X-Response-Time``-free wall clock on loopback (client cost < 1 ms).
Targets (issue 14): list p95 <= 100 ms, search p95 <= 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.core.models import LeadIn  # noqa: E402 - after the path tweak
from agent.stores import open_store  # noqa: E402

WORDS = ("presupuesto tienda online envío factura acceso error cuenta precio licencias soporte horario "
         "reforma cocina seguro coche clínica dental abogado contable diseño web marketing urgente").split()
NAMES = ("Ana López, Bruno Díaz, Carla Ruiz, Diego Pérez, Elena Gil, Fede Sanz, Gloria Martín, Hugo "
         "Vidal, Irene Castro, Jorge Blanco, Lucía Romero, Marta Navarro").split(", ")


def lead(i: int, rng: random.Random) -> LeadIn:
    name = f"{rng.choice(NAMES)} {i}"
    email = f"cliente{i}@example{i % 97}.com"
    msg = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
    return LeadIn(name=name, email=email, email_norm=email, message=msg, company=f"Empresa {i % 500}")


async def fill(url: str, n: int) -> None:
    store = open_store(url)
    await store.open()
    rng = random.Random(7)
    t0 = time.monotonic()
    for start in range(0, n, 1000):
        await store.intake_many([lead(i, rng) for i in range(start, min(n, start + 1000))])
    await store.close()
    print(f"filled {n} leads in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    spread = ("UPDATE leads SET state = (CASE WHEN abs(random()) % 20 = 0 THEN 'failed' "
              "WHEN abs(random()) % 3 = 0 THEN 'skipped' ELSE 'replied' END), "
              "category = (CASE abs(random()) % 4 WHEN 0 THEN 'sales' WHEN 1 THEN 'support' "
              "WHEN 2 THEN 'info' ELSE 'spam' END), priority = 'medium', "
              # arrival spread evenly over the last 30 days, in rowid order as in real use
              f"created_at = created_at - 2592000 + rowid * (2592000.0 / {n})")
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            pg = (spread.replace("abs(random()) % 20", "floor(random() * 20)")
                  .replace("abs(random()) % 3", "floor(random() * 3)")
                  .replace("abs(random()) % 4", "floor(random() * 4)::int")
                  .replace("rowid", "r.rn") + " FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS rn "
                  "FROM leads) r WHERE leads.id = r.id")
            conn.execute(pg)
            conn.execute("VACUUM ANALYZE leads")
    else:
        import sqlite3

        db = sqlite3.connect(url[len("sqlite:///"):])
        db.execute(spread)
        db.commit()
        db.execute("ANALYZE")
        db.close()


def timed(url: str, cookie: str, runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        req = urllib.request.Request(url, headers={"Cookie": cookie})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200 and b'name="password"' not in body
    first = times[0]
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
            "first_ms": round(first, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=100_000)
    p.add_argument("--store", default="", help="a postgresql:// URL (a fresh schema is used); default SQLite")
    p.add_argument("--runs", type=int, default=40)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="leadbox-console-bench-"))
    url = args.store or f"sqlite:///{tmp}/leadbox.db"
    if url.startswith("postgres"):
        import psycopg

        schema = f"bench_{os.getpid()}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url += ("&" if "?" in url else "?") + "options=" + urllib.parse.quote(f"-csearch_path={schema}")
    asyncio.run(fill(url, args.n))
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "LEADBOX_STORE__URL": url, "LEADBOX_HTTP__PORT": str(port), "LEADBOX_DOTENV": "0",
           "LEADBOX_ADMIN_TOKEN": "bench", "LEADBOX_SECRET_KEY": "b" * 32, "LEADBOX_LOGGING__LEVEL": "WARNING",
           "LEADBOX_REPLY__OUTBOX_DIR": str(tmp / "outbox"),
           "LEADBOX_REPLY__TEMPLATES_DIR": str(ROOT / "config/templates")}
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(ROOT / "config/agent.toml")],
                            cwd=tmp, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a: object, **k: object) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(base + "/console/login", data=b"user=admin&password=bench", timeout=10)
            raise SystemExit("sign-in did not redirect")
        except urllib.error.HTTPError as e:
            set_cookie = e.headers["Set-Cookie"]
        cookie = re.match(r"([^;]+)", set_cookie).group(1)  # type: ignore[union-attr]
        some_id = json.loads(urllib.request.urlopen(urllib.request.Request(
            base + "/leads?limit=1", headers={"Authorization": "Bearer bench"})).read())["leads"][0]["id"]
        pages = {
            "list (newest 50)": "/console/leads",
            "list, filter state=failed": "/console/leads?state=failed",
            "list, category + date range": "/console/leads?category=sales&since={week_ago}&until={day_ago}",
            "search, common word (presupuesto)": "/console/leads?q=presupuesto",
            "search, name (lopez)": "/console/leads?q=lopez",
            "search, rare (cliente4242)": "/console/leads?q=cliente4242",
            "search + filter (reforma, failed)": "/console/leads?q=reforma&state=failed",
            "lead page": f"/console/leads/{some_id}",
            "overview (30 days)": "/console",
        }
        timed(base + "/console/leads/" + some_id, cookie, 3)  # warm the connection, not the page caches
        today = datetime.now(UTC).date()
        dates = {"week_ago": (today - timedelta(days=14)).isoformat(),
                 "day_ago": (today - timedelta(days=7)).isoformat()}
        out = {name: timed(base + path.format(**dates), cookie, args.runs) for name, path in pages.items()}
        print(json.dumps({"store": "postgresql" if url.startswith("postgres") else "sqlite", "leads": args.n,
                          "runs": args.runs, "pages": out}, indent=2, ensure_ascii=False))
    finally:
        proc.terminate()
        proc.wait(20)
        if url.startswith("postgres"):
            import psycopg

            with psycopg.connect(args.store, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
