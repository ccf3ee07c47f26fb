"""The PostgreSQL store: several replicas of the daemon share one database.

Split by role like the SQLite store: ``schema`` (migrations, advisory-lock keys), ``connection``
(pool, life cycle, lease fencing), ``intake``, ``inbox``, ``queue``, ``replies`` (through the
shared gate), ``reads``, ``leadership`` (advisory locks) and ``store`` (them together). Modules here
import ``agent.core``, ``agent.errors``, ``agent.stores.common`` and ``agent.stores.ledger``.
"""

from __future__ import annotations

from agent.stores.postgres.connection import LeaseLost
from agent.stores.postgres.store import PostgresStore

__all__ = ["LeaseLost", "PostgresStore"]
