"""SQLite schema: the migrations, applied in order at start-up, and the store URL.

Migrations are history: an applied one is never edited (a database created by an older release
has exactly that text); a change is a new entry at the end. The partial indexes' conditions are
the texts ``agent.stores.common`` derives from the state enums, so queries that repeat them can
use the indexes (tests/test_store_contract.py checks they still agree).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.errors import ConfigError

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE leads (
      id TEXT PRIMARY KEY,
      email_norm TEXT NOT NULL UNIQUE,
      email TEXT NOT NULL,
      name TEXT NOT NULL,
      message TEXT NOT NULL,
      intake TEXT NOT NULL,
      phone TEXT, company TEXT, source TEXT,
      metadata TEXT NOT NULL DEFAULT '{}',
      subject TEXT, message_id TEXT, in_reply_to TEXT, refs TEXT, clean_text TEXT,
      auto_headers TEXT NOT NULL DEFAULT '{}',
      state TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      last_error TEXT,
      next_attempt_at REAL NOT NULL,
      lease_owner TEXT, lease_until REAL,
      category TEXT, summary TEXT, language TEXT, confidence REAL, classifier TEXT,
      needs_reclassify INTEGER NOT NULL DEFAULT 0,
      priority TEXT, priority_rule TEXT,
      mirror_status TEXT NOT NULL DEFAULT 'pending',
      reply_status TEXT NOT NULL DEFAULT 'pending',
      reply_reason TEXT, reply_message_id TEXT, replied_at REAL,
      skip_reason TEXT,
      created_at REAL NOT NULL,
      updated_at REAL NOT NULL
    );
    CREATE INDEX leads_due ON leads(next_attempt_at) WHERE state NOT IN ('replied','skipped','failed');
    CREATE INDEX leads_state ON leads(state, id);
    CREATE INDEX leads_mirror ON leads(id)
      WHERE mirror_status IN ('pending','error') AND state IN ('mirrored','replied','skipped','failed');
    CREATE INDEX leads_reclassify ON leads(id) WHERE needs_reclassify = 1;
    CREATE TABLE interactions (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      lead_id TEXT NOT NULL REFERENCES leads(id),
      intake TEXT NOT NULL, message TEXT NOT NULL, subject TEXT, message_id TEXT,
      received_at REAL NOT NULL
    );
    CREATE INDEX interactions_lead ON interactions(lead_id, id);
    CREATE TABLE replies (
      lead_id TEXT PRIMARY KEY,
      to_addr TEXT NOT NULL,
      message_id TEXT NOT NULL,
      status TEXT NOT NULL,
      created_at REAL NOT NULL,
      sent_at REAL
    );
    CREATE INDEX replies_to ON replies(to_addr, created_at);
    CREATE INDEX replies_time ON replies(created_at);
    CREATE TABLE inbox_messages (
      dedupe_key TEXT PRIMARY KEY,
      mailbox TEXT NOT NULL, uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL,
      lead_id TEXT, outcome TEXT NOT NULL, reason TEXT, raw BLOB,
      seen_at REAL NOT NULL
    );
    CREATE TABLE inbox_checkpoints (
      mailbox TEXT PRIMARY KEY, uidvalidity INTEGER NOT NULL, last_uid INTEGER NOT NULL,
      updated_at REAL NOT NULL
    );
    CREATE TABLE known_emails (
      email_norm TEXT PRIMARY KEY, source TEXT NOT NULL, added_at REAL NOT NULL
    );
    """,
    # 2: the reply caps count sent replies in a window without reading the table (issue 20)
    "CREATE INDEX replies_counted ON replies(created_at, status, lead_id);",
]


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative/path.db`` or ``sqlite:////abs/path.db``."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"store.url: expected sqlite:///path or postgresql://..., got {url.split(':', 1)[0]}:…")
    return Path(url[len("sqlite:///"):])


def migrate(db: sqlite3.Connection) -> None:
    """Bring the schema up to date in one write transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version > current:
                for stmt in sql.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
