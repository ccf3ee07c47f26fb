"""PostgreSQL schema: the migrations, run at start-up under an advisory lock, and the lock keys.

Migrations are history: an applied one is never edited; a change is a new entry at the end.
Replicas that start together wait for the first one's transaction and then find nothing to do.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

MIGRATIONS: list[str] = [
    # 1: the initial schema, the SQLite one translated (epoch seconds as DOUBLE PRECISION,
    # BYTEA, identity ids). Ids and emails use the "C" collation: byte order keeps the
    # time-ordered ids sorted by arrival whatever the database's locale, and is cheaper.
    """
    CREATE TABLE leads (
      id TEXT COLLATE "C" PRIMARY KEY,
      email_norm TEXT COLLATE "C" NOT NULL UNIQUE,
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
      next_attempt_at DOUBLE PRECISION NOT NULL,
      lease_owner TEXT, lease_until DOUBLE PRECISION,
      category TEXT, summary TEXT, language TEXT, confidence DOUBLE PRECISION, classifier TEXT,
      needs_reclassify INTEGER NOT NULL DEFAULT 0,
      priority TEXT, priority_rule TEXT,
      mirror_status TEXT NOT NULL DEFAULT 'pending',
      reply_status TEXT NOT NULL DEFAULT 'pending',
      reply_reason TEXT, reply_message_id TEXT, replied_at DOUBLE PRECISION,
      skip_reason TEXT,
      created_at DOUBLE PRECISION NOT NULL,
      updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX leads_due ON leads(next_attempt_at) WHERE state NOT IN ('replied','skipped','failed');
    CREATE INDEX leads_state ON leads(state, id);
    CREATE INDEX leads_mirror ON leads(id)
      WHERE mirror_status IN ('pending','error') AND state IN ('mirrored','replied','skipped','failed');
    CREATE INDEX leads_reclassify ON leads(id) WHERE needs_reclassify = 1;
    CREATE TABLE interactions (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      lead_id TEXT COLLATE "C" NOT NULL REFERENCES leads(id),
      intake TEXT NOT NULL, message TEXT NOT NULL, subject TEXT, message_id TEXT,
      received_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX interactions_lead ON interactions(lead_id, id);
    CREATE TABLE replies (
      lead_id TEXT COLLATE "C" PRIMARY KEY,
      to_addr TEXT COLLATE "C" NOT NULL,
      message_id TEXT NOT NULL,
      status TEXT NOT NULL,
      created_at DOUBLE PRECISION NOT NULL,
      sent_at DOUBLE PRECISION
    );
    CREATE INDEX replies_to ON replies(to_addr, created_at);
    CREATE INDEX replies_time ON replies(created_at);
    CREATE TABLE inbox_messages (
      dedupe_key TEXT COLLATE "C" PRIMARY KEY,
      mailbox TEXT NOT NULL, uidvalidity BIGINT NOT NULL, uid BIGINT NOT NULL,
      lead_id TEXT, outcome TEXT NOT NULL, reason TEXT, raw BYTEA,
      seen_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE inbox_checkpoints (
      mailbox TEXT PRIMARY KEY, uidvalidity BIGINT NOT NULL, last_uid BIGINT NOT NULL,
      updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE known_emails (
      email_norm TEXT COLLATE "C" PRIMARY KEY, source TEXT NOT NULL,
      added_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 2: the reply caps count sent replies in a window without reading the table (issue 20)
    "CREATE INDEX replies_counted ON replies(created_at, status, lead_id);",
    # 3: the console: who handles a lead, corrections, people's actions, named users, and a
    # full-text GIN index over name, email, company and message ('simple': no stemming, any
    # language) (issue 14)
    """
    ALTER TABLE leads ADD COLUMN mailbox TEXT, ADD COLUMN correction TEXT, ADD COLUMN assigned_to TEXT,
      ADD COLUMN handled_by TEXT, ADD COLUMN handled_at DOUBLE PRECISION;
    CREATE INDEX leads_category ON leads(category, id);
    CREATE INDEX leads_created ON leads(created_at, id);
    CREATE INDEX leads_created_stats ON leads(created_at) INCLUDE (category, needs_reclassify, replied_at);
    CREATE TABLE lead_events (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, lead_id TEXT COLLATE "C" NOT NULL,
      at DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX lead_events_lead ON lead_events(lead_id, id);
    CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL);
    CREATE INDEX leads_fts ON leads USING GIN (to_tsvector('simple', coalesce(name, '') || ' ' ||
      coalesce(email, '') || ' ' || coalesce(company, '') || ' ' || coalesce(message, '')));
    """,
    # 4: personal data: erasures the sheet has not confirmed yet (retried by a job) (issue 21)
    """
    CREATE TABLE pending_erasures (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email_norm TEXT NOT NULL, lead_ids TEXT NOT NULL,
      created_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 5: team alerts: one row per lead and channel, and the digest's last run (issue 16)
    """
    CREATE TABLE alerts (
      lead_id TEXT COLLATE "C" NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
      next_attempt_at DOUBLE PRECISION NOT NULL, created_at DOUBLE PRECISION NOT NULL,
      sent_at DOUBLE PRECISION, last_error TEXT, PRIMARY KEY (lead_id, channel)
    );
    CREATE INDEX alerts_due ON alerts (status, next_attempt_at);
    CREATE TABLE alert_digest (id INTEGER PRIMARY KEY CHECK (id = 1), last_at DOUBLE PRECISION NOT NULL);
    """,
]

def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (same in every replica and release).

    Python's ``hash`` is salted per process, and PostgreSQL's ``hashtext`` is only 32
    bits and not a documented stable interface, so a truncated BLAKE2b digest is used.
    """
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


MIGRATION_LOCK = advisory_key("leadbox:migrate")


async def migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    """Bring the schema up to date; the caller holds a transaction on ``conn``."""
    # Transaction-level: released at commit or rollback, even if we crash mid-way.
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = await (await conn.execute("SELECT max(version) AS v FROM schema_version")).fetchone()
    current = (row or {}).get("v") or 0
    for version, sql in enumerate(MIGRATIONS, start=1):
        if version > current:
            await conn.execute(sql)  # type: ignore[arg-type]  # trusted DDL, no parameters
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
