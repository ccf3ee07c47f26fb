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
    # 3: the console: who handles a lead, corrections, people's actions, named users, and a
    # full-text index (FTS5, diacritics folded). New leads are indexed in batches by
    # ``index_search`` (a job, and before each search), not by an insert trigger: per-row FTS
    # inserts in the webhook's small transactions cost six times the whole intake write. The
    # triggers keep already-indexed rows right when a lead is changed or deleted (issue 14).
    """
    ALTER TABLE leads ADD COLUMN mailbox TEXT;
    ALTER TABLE leads ADD COLUMN correction TEXT;
    ALTER TABLE leads ADD COLUMN assigned_to TEXT;
    ALTER TABLE leads ADD COLUMN handled_by TEXT;
    ALTER TABLE leads ADD COLUMN handled_at REAL;
    CREATE INDEX leads_category ON leads(category, id);
    CREATE INDEX leads_created ON leads(created_at, category, needs_reclassify, replied_at);
    CREATE TABLE lead_events (
      id INTEGER PRIMARY KEY, lead_id TEXT NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL,
      actor TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX lead_events_lead ON lead_events(lead_id, id);
    CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE VIRTUAL TABLE leads_fts USING fts5(
      name, email, company, message, content='leads', content_rowid='rowid',
      tokenize='unicode61 remove_diacritics 2'
    );
    INSERT INTO leads_fts(leads_fts) VALUES ('rebuild');
    CREATE TABLE search_index_state (indexed_rowid INTEGER NOT NULL);
    INSERT INTO search_index_state VALUES ((SELECT coalesce(max(rowid), 0) FROM leads));
    CREATE TRIGGER leads_fts_delete AFTER DELETE ON leads
    WHEN old.rowid <= (SELECT indexed_rowid FROM search_index_state) BEGIN
      INSERT INTO leads_fts(leads_fts, rowid, name, email, company, message)
      VALUES ('delete', old.rowid, old.name, old.email, old.company, old.message);
    END;
    CREATE TRIGGER leads_fts_update AFTER UPDATE OF name, email, company, message ON leads
    WHEN old.rowid <= (SELECT indexed_rowid FROM search_index_state) BEGIN
      INSERT INTO leads_fts(leads_fts, rowid, name, email, company, message)
      VALUES ('delete', old.rowid, old.name, old.email, old.company, old.message);
      INSERT INTO leads_fts(rowid, name, email, company, message)
      VALUES (new.rowid, new.name, new.email, new.company, new.message);
    END;
    """,
    # 4: personal data: erasures the sheet has not confirmed yet (retried by a job) (issue 21)
    """
    CREATE TABLE pending_erasures (
      id INTEGER PRIMARY KEY, email_norm TEXT NOT NULL, lead_ids TEXT NOT NULL, created_at REAL NOT NULL
    );
    """,
    # 5: team alerts: one row per lead and channel, and the digest's last run (issue 16)
    """
    CREATE TABLE alerts (
      lead_id TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
      next_attempt_at REAL NOT NULL, created_at REAL NOT NULL, sent_at REAL, last_error TEXT,
      PRIMARY KEY (lead_id, channel)
    );
    CREATE INDEX alerts_due ON alerts (status, next_attempt_at);
    CREATE TABLE alert_digest (id INTEGER PRIMARY KEY CHECK (id = 1), last_at REAL NOT NULL);
    """,
]


def statements(script: str) -> list[str]:
    """A migration's statements, split on ``;`` but keeping a trigger's ``BEGIN … END;`` whole."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip())
    return out


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
                for stmt in statements(sql):
                    db.execute(stmt)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
