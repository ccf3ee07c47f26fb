"""``leadbox poll-once`` and ``leadbox backfill``: one inbox pass outside the daemon."""

from __future__ import annotations

import json
import sys
import time
from datetime import date

from agent.app.metrics import Metrics
from agent.app.wiring import make_store
from agent.config import Config
from agent.config_mailboxes import DEFAULT_NAME, Mailbox, resolve_mailboxes
from agent.core.ports import Store
from agent.errors import NeedsCredentials
from agent.intake.inbox import _POLL_ONCE_ERRORS, InboxPoller, PollSummary


async def _one_shot(config: Config, since: date | None) -> tuple[int, PollSummary | None, float]:
    """One pass over every mailbox in turn: the summaries added up, the worst exit code."""
    store = make_store(config)
    await store.open()
    t0 = time.monotonic()
    total, code, any_done = PollSummary(), 0, False
    try:
        for box in resolve_mailboxes(config):
            c, summary = await _one_box(config, store, box, since, t0)
            code = max(code, c)
            if summary is not None:
                total.add(summary)
                any_done = True
    finally:
        await store.close()
    return code, total if any_done else None, time.monotonic() - t0


async def _one_box(config: Config, store: Store, box: Mailbox, since: date | None,
                   t0: float) -> tuple[int, PollSummary | None]:
    poller = InboxPoller(config, store, Metrics(), mailbox=box)
    where = "inbox" if box.name == DEFAULT_NAME else f"inbox[{box.name}]"
    last_print = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last_print[0] < 1.0 and done < total:
            return
        last_print[0] = now
        elapsed = max(now - t0, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        print(f"backfill: {done}/{total} messages, {rate:.0f} msg/s, ETA {eta:.0f} s",
              file=sys.stderr, flush=True)

    try:
        summary = await poller.poll(since=since, progress=progress if since is not None else None)
        code = 0
    except NeedsCredentials as e:
        print(f"{where}: {e}", file=sys.stderr)
        summary, code = None, 2
    except _POLL_ONCE_ERRORS as e:
        print(f"{where}: {e}", file=sys.stderr)
        summary, code = None, 1
    finally:
        await poller.stop()
    if summary is None and code == 0:
        print(f"{where}: another replica holds this mailbox; nothing done", file=sys.stderr)
    return code, summary


def _inbox_disabled(config: Config, command: str) -> bool:
    """True (and says so) when the inbox is off: a one-shot pass would poll a mailbox nobody set up."""
    if config.settings.inbox.enabled:
        return False
    print(f"leadbox {command}: the inbox is not enabled: set inbox.enabled = true (or "
          "LEADBOX_INBOX__ENABLED=true) with inbox.host, EMAIL_USER and EMAIL_PASS", file=sys.stderr)
    return True


async def poll_once(config: Config) -> int:
    """``leadbox poll-once``: one poll, the summary as JSON on stdout."""
    if _inbox_disabled(config, "poll-once"):
        return 1
    code, summary, _ = await _one_shot(config, None)
    if summary is not None:
        print(json.dumps(summary.as_json()))
    return code


async def backfill(config: Config, since: str) -> int:
    """``leadbox backfill --since YYYY-MM-DD``: take older mail too (never twice, checkpoint kept)."""
    try:
        day = date.fromisoformat(since)
    except ValueError:
        print(f"backfill: --since: expected YYYY-MM-DD, got {since!r}", file=sys.stderr)
        return 2
    if _inbox_disabled(config, "backfill"):
        return 1
    code, summary, elapsed = await _one_shot(config, day)
    if summary is not None:
        out = summary.as_json()
        out["already_seen"] = summary.already_seen
        print(json.dumps(out))
        print(f"backfill: done, {summary.fetched} messages in {elapsed:.1f} s", file=sys.stderr)
    return code

