"""Crash safety with sending limits: SIGKILL the daemon while a daily quota pauses replies.

The pause lives in the process: a restarted daemon learns of the quota again from its first
refused send. Whatever the kills hit, every lead is answered exactly once after the quota
lifts (or, killed inside DATA, is 'uncertain' and never re-sent), and none fails.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.test_crash import lead_of, post_all, states
from tests.test_sending_limits import QUOTA
from tests.test_smtp_replies import smtp_env


@pytest.mark.slow
async def test_sigkill_during_a_quota_pause_loses_nothing_and_never_answers_twice(
    daemon_process: Any, smtp_server: Any, tmp_path: Path
) -> None:
    lock, accepted, flipped = threading.Lock(), [0], [False]

    def refuse(stage: str) -> str | None:
        if stage != "mail":
            return None
        with lock:
            if flipped[0]:
                return None
            if accepted[0] >= 15:
                return QUOTA
            accepted[0] += 1
            return None

    smtp_server.sink.refuse = refuse
    env = {**smtp_env(smtp_server, "tls"), "LEADBOX_WORKER__CONCURRENCY": "4", "LEADBOX_WORKER__BATCH_SIZE": "20",
           "LEADBOX_REPLY__QUOTA_PROBE_MINUTES": "0.005"}
    d = daemon_process(env)
    d.start()
    ids = await post_all(d.url, 60)
    deadline = time.monotonic() + 30
    while not smtp_server.sink.refusals and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert smtp_server.sink.refusals, "the quota was never hit"
    rng = random.Random(int(os.environ.get("LEADBOX_CRASH_SEED", "7")))
    kills = 0
    for _ in range(3):  # kill while paused: leads wait in their states, the pause is forgotten
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        d.kill()
        kills += 1
        d.start()
    with lock:
        flipped[0] = True
    await asyncio.sleep(rng.uniform(0.05, 0.3))
    d.kill()  # and once more while the waiting replies go out
    kills += 1
    d.start()
    db = tmp_path / "leadbox.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = states(db)
        if sum(st.values()) == 60 and set(st) <= {"replied", "skipped", "failed"}:
            break
        await asyncio.sleep(0.1)
    assert d.terminate() == 0
    st = states(db)
    per_lead = Counter(lead_of(m) for m in smtp_server.messages)
    print(f"\ncrash+pause test: {kills} kills, {len(smtp_server.sink.refusals)} quota refusals, "
          f"states {dict(st)}, {len(smtp_server.messages)} SMTP messages")
    assert len(set(ids)) == 60 and sum(st.values()) == 60
    assert [k for k, v in per_lead.items() if v > 1] == []
    with sqlite3.connect(db) as con:
        uncertain = con.execute("SELECT count(*) FROM leads WHERE reply_status = 'uncertain'").fetchone()[0]
        failed_other = con.execute(
            "SELECT count(*) FROM leads WHERE state = 'failed' AND reply_status != 'uncertain'").fetchone()[0]
        replied = {r[0] for r in con.execute("SELECT id FROM leads WHERE state = 'replied'")}
    assert failed_other == 0  # the quota failed no lead
    assert st["replied"] + uncertain == 60 and uncertain <= kills * 4
    assert set(per_lead) >= replied
