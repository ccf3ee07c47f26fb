"""Stores: where leads, the work queue and the ledgers live (SQLite, or PostgreSQL for replicas).

``common`` holds what both engines share (row mapping, the SQL conditions derived from the state
enums), ``ledger`` the reply gate written once for both; ``sqlite`` and ``postgres`` are the two
adapters of the ``Store`` protocol in ``agent.core.ports``, each split by role (schema, intake,
inbox ledger, queue, reply ledger, reads, leadership). Modules here may import ``agent.core`` and
``agent.errors``, never the intake, the app or another adapter.
"""

from __future__ import annotations

from agent.core.ports import Store


def open_store(url: str, pool_size: int = 10) -> Store:
    """The store for ``url``: ``postgresql://…`` gives PostgreSQL, anything else a SQLite path."""
    if url.startswith(("postgres://", "postgresql://")):
        from agent.stores.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size)
    from agent.stores.sqlite import SqliteStore

    return SqliteStore(url)
