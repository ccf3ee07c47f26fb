"""``leadbox forget EMAIL``, ``leadbox export EMAIL`` and ``leadbox retention [--dry-run]``.

They work on the store, the outbox folder and the sheet directly, so they also work while the
daemon runs: a lead in flight is waited for, and the daemon never writes an erased person's
sheet row back (it checks the store before each append).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from agent.app.privacy import Privacy
from agent.app.wiring import make_mirror, make_store
from agent.config import Config
from agent.core.validation import email_problem
from agent.errors import LeadboxError


async def _with_privacy(config: Config, use_sheet: bool, fn: Callable[[Privacy], Awaitable[int]]) -> int:
    store = make_store(config)
    await store.open()
    mirror = None
    try:
        if use_sheet and config.settings.sheets.enabled:
            try:
                mirror, _ = make_mirror(config)
            except LeadboxError as e:
                print(f"sheet: not reachable ({e}); its rows are left to the daemon's job", file=sys.stderr)
        return await fn(Privacy(config, store, mirror))
    finally:
        if mirror is not None:
            await mirror.close()
        await store.close()


def _check(email: str) -> str | None:
    problem = email_problem(email.strip())
    return f"not an email address: {problem}" if problem else None


def _print_mailbox(what: object) -> bool:
    """One line per folder searched; what was not reached on stderr. True when all was reached."""
    if isinstance(what, str):
        print(f"forget: --mailbox: {what}; everything else was erased", file=sys.stderr)
        return False
    ok = True
    for account in what if isinstance(what, list) else []:
        name, action = account["account"], account["action"]
        for folder, count in account["folders"].items():
            print(f"mailbox {name} {folder}: {count} {action}")
        for where, reason in account["errors"].items():
            ok = False
            print(f"forget: mailbox {name} {where}: not reached ({reason}); everything else was erased",
                  file=sys.stderr)
    return ok


def forget(config: Config, email: str, yes: bool, mailbox: bool = False) -> int:
    if (problem := _check(email)) is not None:
        print(f"forget: {problem}", file=sys.stderr)
        return 2
    if not yes and sys.stdin.isatty():
        answer = input(f"Erase everything leadbox holds about {email.strip()}? This cannot be undone. [y/N] ")
        if answer.strip().lower() not in ("y", "yes", "s", "si", "sí"):
            print("forget: nothing erased", file=sys.stderr)
            return 1

    async def go(p: Privacy) -> int:
        report = await p.forget(email.strip(), mailbox=mailbox)
        mails = report.pop("mailbox", None)
        for place, what in report.items():
            print(f"{place}: {what}")
        if isinstance(report.get("sheet"), str) and str(report["sheet"]).startswith("pending"):
            print("forget: done except the sheet, which the daemon's job will finish", file=sys.stderr)
        return 0 if not mailbox or _print_mailbox(mails) else 1

    try:
        return asyncio.run(_with_privacy(config, True, go))
    except LeadboxError as e:
        print(f"forget: {e}", file=sys.stderr)
        return 1


def export(config: Config, email: str) -> int:
    if (problem := _check(email)) is not None:
        print(f"export: {problem}", file=sys.stderr)
        return 2

    async def go(p: Privacy) -> int:
        doc: dict[str, Any] = await p.export(email.strip())
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return 0 if doc["leads"] else 1

    return asyncio.run(_with_privacy(config, False, go))


def retention(config: Config, dry_run: bool) -> int:
    async def go(p: Privacy) -> int:
        print(json.dumps(await p.retention(dry_run=dry_run), ensure_ascii=False))
        return 0

    try:
        return asyncio.run(_with_privacy(config, not dry_run, go))
    except LeadboxError as e:
        print(f"retention: {e}", file=sys.stderr)
        return 1
