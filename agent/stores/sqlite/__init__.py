"""The SQLite store, the embedded default: one file in the data directory, one process owning it.

Split by role: ``schema`` (migrations, URL), ``connection`` (connections, transactions, life
cycle), ``intake`` (new leads), ``inbox`` (inbox ledger and checkpoints), ``queue`` (the work
queue), ``replies`` (the reply ledger, through the shared gate), ``reads`` (API and metrics) and
``store`` (them together). Modules here import ``agent.core``, ``agent.errors``,
``agent.stores.common`` and ``agent.stores.ledger``; nothing from intake, app or other adapters.
"""

from __future__ import annotations

from agent.stores.sqlite.schema import sqlite_path
from agent.stores.sqlite.store import SqliteStore

__all__ = ["SqliteStore", "sqlite_path"]
