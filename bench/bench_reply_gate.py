"""What the reply caps cost per reply: the store's reply gate with and without caps (SQLite).

    .venv/bin/python bench/bench_reply_gate.py               # ~5 seconds
    .venv/bin/python bench/bench_reply_gate.py --window 1900 --gates 500
    .venv/bin/python bench/bench_reply_gate.py --baseline    # without the replies_counted index

A throw-away SQLite store gets ``--window`` replies gated two hours ago (inside the day,
outside the hour), then ``--gates`` more leads pass the gate under each cap setting. A cap query
reads at most ``cap`` rows of the replies_counted index (newest first), so a cap the window
has not filled costs the most: that is the "under" row. Times are the mean per gate call,
which runs inline on the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from agent.core.models import LeadIn
from agent.stores.sqlite import SqliteStore

SETTINGS = [
    ("no caps", 0, 0),
    ("max_per_hour 500 (the default)", 500, 0),
    ("Gmail personal: 100 / day 400 (day full)", 100, 400),
    ("Workspace: 300 / day 1800 (day full)", 300, 1800),
    ("300 / day 5000 (day not full: reads the whole window)", 300, 5000),
]

async def run(window: int, gates: int, baseline: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = SqliteStore(f"sqlite:///{Path(d) / 'bench.db'}")
        await store.open()
        if baseline:  # as before migration 2: the cap queries read the table for each row
            store.db.execute("DROP INDEX replies_counted")
        n = window + gates
        items = [LeadIn(name="A", email=f"g{i}@bench.example", email_norm=f"g{i}@bench.example", message="m")
                 for i in range(n)]
        ids = [r.lead_id for r in await store.intake_many(items)]
        now = time.time()
        for i in range(window):
            await store.reply_gate(ids[i], f"g{i}@bench.example", f"<r{i}@b>", window_since=None,
                                   cap_since=now - 3600, cap=0)
        store.db.execute("UPDATE replies SET created_at = created_at - 7200")
        print(f"{window} replies in the window; {gates} gate calls per setting"
              + (" (baseline: no replies_counted index)" if baseline else ""))
        for label, hour, day in SETTINGS:
            t0 = time.perf_counter()
            for i in range(window, n):
                await store.reply_gate(ids[i], f"g{i}@bench.example", f"<r{i}@b>", window_since=now - 86400,
                                       cap_since=now - 3600, cap=hour, day_since=now - 86400, day_cap=day)
            per = (time.perf_counter() - t0) / gates * 1000
            store.db.execute(  # the next setting starts from the same window
                f"DELETE FROM replies WHERE lead_id IN ({','.join('?' * gates)})", ids[window:n])
            print(f"  {label:<56} {per:6.3f} ms per gate")
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=1900, help="replies already in the window")
    ap.add_argument("--gates", type=int, default=500, help="gate calls per setting")
    ap.add_argument("--baseline", action="store_true", help="drop the replies_counted index first")
    args = ap.parse_args()
    asyncio.run(run(args.window, args.gates, args.baseline))


if __name__ == "__main__":
    main()
