"""Replies of several mailboxes: each goes out over the SMTP login of the mailbox it answers.

The pipeline builds each reply From its mailbox's ``from_address``; this transport picks the
mailbox's own SMTP transport by that address (its login, its server, its sending limits) and
hands everything else to the default one (the ``[reply]`` account: webhook leads, the settle
lookup). One mailbox's SMTP trouble shows under ``/readyz`` ``reply.mailboxes`` and pauses or
fails only that mailbox's replies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agent.core.models import Health, OutgoingMail
from agent.core.ports import MailTransport

__all__ = ["MailboxRouter"]


class MailboxRouter:
    """A MailTransport that sends each message through the transport of its From address."""

    def __init__(self, default: MailTransport, by_from: Mapping[str, tuple[str, MailTransport]]) -> None:
        self.default = default
        self.name = default.name
        self.commit_point = default.commit_point and all(t.commit_point for _, t in by_from.values())
        self._by_from = {addr.strip().lower(): pair for addr, pair in by_from.items()}

    def pick(self, from_addr: str) -> MailTransport:
        pair = self._by_from.get(from_addr.strip().lower())
        return pair[1] if pair is not None else self.default

    async def send(
        self, msg: OutgoingMail, before_commit: Callable[[], Awaitable[None]] | None = None,
        after_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        await self.pick(msg.from_addr).send(msg, before_commit=before_commit, after_commit=after_commit)

    async def was_sent(self, message_id: str) -> bool | None:
        return await self.default.was_sent(message_id)

    def health(self) -> Health:
        """The default account's state; each mailbox's own under ``mailboxes`` (shown, not 503)."""
        base = self.default.health()
        boxes = {name: t.health().as_json() for name, t in self._by_from.values()}
        return Health(base.state, base.reason, {**base.details, "mailboxes": boxes})

    async def check(self) -> None:
        for t in (self.default, *(t for _, t in self._by_from.values())):
            check: Any = getattr(t, "check", None)
            if check is not None:
                await check()

    async def close(self) -> None:
        await asyncio.gather(*(t.close() for t in (self.default, *(t for _, t in self._by_from.values()))),
                             return_exceptions=True)
