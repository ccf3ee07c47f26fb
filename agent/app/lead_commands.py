"""``leadbox leads list|show|retry|settle``: read the store and queue failed leads again, from a shell.

The command answers like the API does: a filter outside the allowed values is a usage
error that names them (the API's 422), an unknown lead is "not found" (404) and retrying
a lead that is not failed says which state it is in (409) — each with a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from agent.config import Config
from agent.core.ids import id_time
from agent.core.models import Category, Priority, State
from agent.core.states import ReplyStatus

if TYPE_CHECKING:
    from agent.core.ports import Store

# Exit codes of the one-shot commands (README "Command line").
EXIT_FAILED = 1  # the command could not do what was asked (no such lead, not failed, ...)
EXIT_USAGE = 2  # a wrong argument or configuration: nothing was done

FILTERS: dict[str, tuple[str, ...]] = {
    "status": tuple(s.value for s in State),
    "category": tuple(c.value for c in Category),
    "priority": tuple(p.value for p in Priority),
    "reply": tuple(r.value for r in ReplyStatus),
}


class UsageError(Exception):
    """A wrong argument: the message names the option and what it accepts."""


def _labels(config: Config, option: str) -> Mapping[str, str]:
    labels = config.settings.labels
    return {"category": labels.categories, "priority": labels.priorities}.get(option, {})


def normalize_filter(config: Config, option: str, value: str | None) -> str | None:
    """The stored value for a ``--status/--category/--priority`` argument; labels are aliases.

    ``--priority Alta`` means ``high`` when ``labels.priorities.high = "Alta"`` (case-insensitive).
    """
    if value is None or value == "":
        return None
    allowed = FILTERS[option]
    v = value.strip().lower()
    if v in allowed:
        return v
    labels = _labels(config, option)
    for key, label in labels.items():
        if key in allowed and label.strip().lower() == v:
            return key
    named = ", ".join(allowed)
    aliases = ", ".join(labels[k] for k in allowed if k in labels)
    also = f" (or the labels {aliases})" if aliases else ""
    raise UsageError(f"--{option}: {value!r} is not one of {named}{also}")


def _next_page_command(args: argparse.Namespace, cursor: str, filters: Mapping[str, str | None]) -> str:
    """The command that prints the next page: the same filters, limit and format, plus --cursor."""
    argv = ["leadbox", "leads", "list"]
    if getattr(args, "config", None):
        argv += ["--config", args.config]
    for option, value in filters.items():
        if value:
            argv += [f"--{option}", value]
    if args.limit != 50:
        argv += ["--limit", str(args.limit)]
    if args.json:
        argv.append("--json")
    argv += ["--cursor", cursor]
    return shlex.join(argv)


async def leads_command(config: Config, args: argparse.Namespace) -> int:
    """Run one ``leadbox leads`` action; messages for the user go to stderr, results to stdout."""
    try:
        if args.action == "list":
            filters = {k: normalize_filter(config, k, getattr(args, k)) for k in FILTERS}
            if not 1 <= args.limit <= 500:
                raise UsageError(f"--limit: must be a whole number from 1 to 500 (got {args.limit})")
            if args.cursor is not None and id_time(args.cursor) is None:
                raise UsageError("--cursor: not a cursor printed by 'leadbox leads list'")
            if args.failed:
                raise UsageError("--failed: only with 'leads retry'")
            if args.id:
                raise UsageError(f"'leads list' takes no lead id (got {args.id!r}); use 'leadbox leads show ID'")
        elif args.action == "show" and not args.id:
            raise UsageError("'leads show' needs a lead id: leadbox leads show ID")
        elif args.action == "settle" and not args.id:
            raise UsageError("'leads settle' needs a lead id: leadbox leads settle ID")
        elif args.action == "retry" and bool(args.failed) == bool(args.id):
            raise UsageError("'leads retry' needs a lead id or --failed (not both): "
                             "leadbox leads retry ID | leadbox leads retry --failed")
    except UsageError as e:
        print(f"leadbox leads: {e}", file=sys.stderr)
        return EXIT_USAGE

    from agent.app.wiring import make_store  # after the checks: a wrong argument answers at once

    store = make_store(config)
    await store.open()
    try:
        if args.action == "show":
            return await _show(config, store, args.id)
        if args.action == "retry":
            return await _retry(store, args.id, args.failed)
        if args.action == "settle":
            return await _settle(config, store, args.id)
        return await _list(config, store, args, filters)
    finally:
        await store.close()


async def _show(config: Config, store: Store, lead_id: str) -> int:
    from agent.intake.webhook import lead_json

    lead = await store.get(lead_id)
    if lead is None:
        print(f"leadbox leads: no lead with id {lead_id!r}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(lead_json(lead, config.settings.labels), ensure_ascii=False, indent=2))
    return 0


async def _retry(store: Store, lead_id: str | None, all_failed: bool) -> int:
    if all_failed:
        n = await store.retry(None, all_failed=True)
        print(f"{n} failed lead(s) queued again")
        return 0
    assert lead_id is not None
    if await store.retry(lead_id):
        print(f"lead {lead_id} queued again")
        return 0
    lead = await store.get(lead_id)
    if lead is None:
        print(f"leadbox leads: no lead with id {lead_id!r}", file=sys.stderr)
    else:
        print(f"leadbox leads: lead {lead_id} is {lead.state.value!r}, not 'failed': only failed leads "
              "can be retried", file=sys.stderr)
    return EXIT_FAILED


async def _settle(config: Config, store: Store, lead_id: str) -> int:
    """Look one uncertain reply up in the mailbox now (reply.settle), as the daemon's job does."""
    import time

    from agent.app.wiring import make_box_lookups, make_sent_lookup
    from agent.core.settle import Outcome, settle_uncertain

    lookup = make_sent_lookup(config)
    if lookup is None:
        print("leadbox leads: settling needs reply.transport = 'smtp' and reply.settle other than 'off'",
              file=sys.stderr)
        return EXIT_USAGE
    r = config.settings.reply
    done = await settle_uncertain(store, lookup, now=time.time(), grace=r.settle_grace_seconds,
                                  max_age=r.uncertain_max_age, lead_id=lead_id, by_mailbox=make_box_lookups(config))
    if not done:
        lead = await store.get(lead_id)
        if lead is None:
            print(f"leadbox leads: no lead with id {lead_id!r}", file=sys.stderr)
        else:
            print(f"leadbox leads: lead {lead_id} has no uncertain reply (state {lead.state.value!r}, "
                  f"reply {lead.reply_status.value!r})", file=sys.stderr)
        return EXIT_FAILED
    x = done[0]
    say = {Outcome.REPLIED: "replied (its reply was found)",
           Outcome.RESENT: "queued for one more send (the running daemon sends it)",
           Outcome.WAITING: "still uncertain: not found yet, inside the grace period; try again later",
           Outcome.UNKNOWN: "still uncertain: the mailbox could not be read",
           Outcome.KEPT: "still uncertain, left for a human",
           Outcome.GONE: "settled meanwhile by the daemon"}[x.outcome]
    print(f"lead {lead_id}: {say}: {x.detail}")
    return 0 if x.outcome in (Outcome.REPLIED, Outcome.RESENT, Outcome.GONE) else EXIT_FAILED


async def _list(config: Config, store: Store, args: argparse.Namespace, filters: Mapping[str, str | None]) -> int:
    status, category, priority, reply = filters["status"], filters["category"], filters["priority"], filters["reply"]
    leads, nxt = await store.list(
        state=State(status) if status else None, category=Category(category) if category else None,
        priority=Priority(priority) if priority else None, limit=args.limit, cursor=args.cursor,
        reply_status=ReplyStatus(reply) if reply else None)
    if args.json:
        from agent.intake.webhook import lead_json

        labels = config.settings.labels
        print(json.dumps({"leads": [lead_json(x, labels) for x in leads], "next_cursor": nxt},
                         ensure_ascii=False, indent=2))
    else:
        for x in leads:
            waiting = ""
            if x.reply_status == "waiting" and x.next_attempt_at is not None:  # held by a cap or a pause
                waiting = f"  [reply waits until {x.next_attempt_at:%Y-%m-%d %H:%M}Z: {(x.reply_reason or '')[:60]}]"
            print(f"{x.id}  {x.state.value:<10} {(x.category or '-'):<8} {(x.priority or '-'):<6} "
                  f"{x.email:<32} {(x.summary or '')[:60]}{waiting}")
    if nxt:
        print(f"more: {_next_page_command(args, nxt, filters)}", file=sys.stderr)
    return 0
