"""The SQLite store: the parts of ``agent.stores.sqlite`` put together as one ``Store``."""

from __future__ import annotations

from agent.stores.sqlite.alerts import SqliteAlerts
from agent.stores.sqlite.console import SqliteConsole
from agent.stores.sqlite.inbox import SqliteInbox
from agent.stores.sqlite.privacy import SqlitePrivacy
from agent.stores.sqlite.queue import SqliteQueue
from agent.stores.sqlite.reads import SqliteReads
from agent.stores.sqlite.replies import SqliteReplies


class SqliteStore(SqliteAlerts, SqlitePrivacy, SqliteConsole, SqliteInbox, SqliteQueue, SqliteReplies,
                  SqliteReads):
    """The Store protocol on one SQLite file."""

    async def try_acquire_leadership(self, name: str) -> bool:
        """Always True: one process owns a SQLite file, so it leads every mailbox.

        (PostgresStore elects one replica per name with an advisory lock; the
        inbox poller calls this before every poll with either store.)
        """
        return True

    async def release_leadership(self, name: str) -> None:
        """Nothing to release: there is no one else to hand over to."""
