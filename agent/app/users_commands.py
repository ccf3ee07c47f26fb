"""``leadbox users add|list|remove|passwd``: the console's named users, kept in the store.

Passwords come from a prompt (twice, not echoed) or, for scripts, one line on standard input
with ``--password-stdin``; they never appear on the command line or in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import re
import sys
import tempfile
from typing import Any

from agent.app.wiring import make_store
from agent.config import Config
from agent.console.passwords import hash_password, password_problem
from agent.core.models import Lead

NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        print("users: no terminal to ask for the password; use --password-stdin", file=sys.stderr)
        return None
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        print("users: the two passwords differ", file=sys.stderr)
        return None
    return first


def run(config: Config, action: str, name: str | None, password_stdin: bool) -> int:
    if action in ("add", "remove", "passwd"):
        if not name or not NAME.match(name) or name == "admin":
            print("users: give a user NAME of 1-64 letters, digits or ._@- (not 'admin')", file=sys.stderr)
            return 2
    password = None
    if action in ("add", "passwd"):
        password = _read_password(password_stdin)
        if password is None:
            return 2
        problem = password_problem(password)
        if problem:
            print(f"users: the password {problem}", file=sys.stderr)
            return 2
    return asyncio.run(_apply(config, action, name or "", password))


async def _apply(config: Config, action: str, name: str, password: str | None) -> int:
    store = make_store(config)
    await store.open()
    try:
        if action == "list":
            for user in await store.user_names():
                print(user)
            return 0
        if action == "remove":
            if not await store.user_delete(name):
                print(f"users: no user {name!r}", file=sys.stderr)
                return 1
            print(f"users: removed {name}")
            return 0
        exists = name in await store.user_names()
        if action == "add" and exists:
            print(f"users: {name!r} exists; use 'leadbox users passwd {name}'", file=sys.stderr)
            return 1
        if action == "passwd" and not exists:
            print(f"users: no user {name!r}; use 'leadbox users add {name}'", file=sys.stderr)
            return 1
        assert password is not None
        await store.user_put(name, hash_password(password))
        print(f"users: {'added' if action == 'add' else 'password changed for'} {name}")
        return 0
    finally:
        await store.close()


def export_corrections(config: Config, path: str) -> int:
    """``leadbox corrections export FILE.jsonl``: corrected leads as labelled data (``eval`` format)."""
    return asyncio.run(_export(config, path))


async def _export(config: Config, path: str) -> int:
    store = make_store(config)
    await store.open()
    try:
        rows = await store.corrections()
    finally:
        await store.close()
    return _write_jsonl(path, rows)


def _write_jsonl(path: str, rows: list[tuple[Lead, dict[str, Any]]]) -> int:
    """Written to a temporary file beside the target, then renamed: never a half file."""
    target = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target) or ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for lead, corr in rows:
                out.write(json.dumps({"name": lead.name, "email": lead.email, "message": lead.message,
                                      "subject": lead.subject, "category": corr["category"],
                                      "language": lead.language, "priority": corr["priority"]},
                                     ensure_ascii=False) + "\n")
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        print(f"corrections: cannot write {path}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"corrections: {len(rows)} corrected lead(s) written to {path}")
    return 0
