"""The pipeline never waits for a timer (issue 17): a structural guard, not a timing.

With ``sheets.flush_seconds`` at an hour and 201 leads (not a multiple of the batch size), a
pipeline that held each lead until the sheet's batch flushed would never finish: at most
``worker.concurrency`` leads could wait in the mirror step, fewer than a batch. Every lead must
still reach ``replied`` or ``skipped``, get its one reply over SMTP (none for spam), and every
row must arrive in the sheet exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from tests.fixtures.daemon import all_final, wait_for
from tests.fixtures.sheets_fake import SheetsFake
from tests.test_sheets_daemon import data_rows, sheets_env
from tests.test_smtp_replies import smtp_env

N = 201


@pytest.mark.slow
async def test_201_leads_finish_and_all_rows_arrive_with_an_hour_long_flush_timer(
    make_daemon: Any, fresh_sheets: SheetsFake, service_account_info: dict[str, str], smtp_server: Any,
) -> None:
    env = {**sheets_env(fresh_sheets, service_account_info, flush_seconds="3600", batch_size="50"),
           **smtp_env(smtp_server, "tls"), "LEADBOX_REPLY__MAX_PER_HOUR": "0"}
    d, c = await make_daemon(env)
    assert d.config.settings.sheets.flush_seconds == 3600
    ids = []
    for i in range(N):
        message = ("Gana dinero rápido con bitcoin, haz click aquí" if i % 10 == 0
                   else f"Hola, ¿me pueden enviar un presupuesto para la tienda {i}?")
        r = await c.post("/leads", headers={"Content-Type": "application/json"},
                         data=json.dumps({"name": f"Cliente {i}", "email": f"c{i}@cliente.example",
                                          "message": message}))
        assert r.status == 202, await r.text()
        ids.append((await r.json())["id"])

    async def finished() -> bool:
        return await all_final(d, N)

    await wait_for(finished, 60, what=f"{N} leads in a final state")
    counts = await d.store.counts()
    assert set(counts) <= {"replied", "skipped"} and sum(counts.values()) == N, counts

    async def all_rows() -> bool:
        return len(data_rows(fresh_sheets)) >= N

    await wait_for(all_rows, 30, what=f"{N} sheet rows")
    rows = Counter(r[-1] for r in data_rows(fresh_sheets))
    assert set(rows) == set(ids) and max(rows.values()) == 1
    replies = Counter(m["rcpt_tos"][0] for m in smtp_server.messages)
    assert sum(replies.values()) == counts["replied"] and max(replies.values()) == 1
    assert counts.get("skipped", 0) >= 1  # the spam leads: no reply

    async def recorded() -> bool:
        leads = [await d.store.get(i) for i in ids]
        return all(x is not None and x.mirror_status == "done" for x in leads)

    await wait_for(recorded, 30, what="every row recorded as done in the store")
