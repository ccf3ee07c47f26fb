"""The PostgreSQL store: the parts of ``agent.stores.postgres`` put together as one ``Store``."""

from __future__ import annotations

from agent.stores.postgres.alerts import PostgresAlerts
from agent.stores.postgres.console import PostgresConsole
from agent.stores.postgres.inbox import PostgresInbox
from agent.stores.postgres.leadership import PostgresLeadership
from agent.stores.postgres.privacy import PostgresPrivacy
from agent.stores.postgres.queue import PostgresQueue
from agent.stores.postgres.reads import PostgresReads
from agent.stores.postgres.replies import PostgresReplies


class PostgresStore(PostgresAlerts, PostgresPrivacy, PostgresConsole, PostgresInbox, PostgresQueue, PostgresReplies,
                    PostgresReads, PostgresLeadership):
    """The Store protocol on PostgreSQL, safe for several processes at once."""

    async def close(self) -> None:
        await self._drop_leader_conn()
        await self._close_pool()
