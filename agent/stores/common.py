"""What every store implementation shares: ids, row <-> Lead mapping, columns."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agent.core.models import Category, Interaction, Lead, LeadIn, Priority, State

ACTIVE_STATES = ("received", "classified", "saved", "mirrored")

# Columns the worker writes back after each step (Store.update).
UPDATE_COLUMNS = (
    "state", "attempts", "last_error", "next_attempt_at", "category", "summary", "language",
    "confidence", "classifier", "needs_reclassify", "priority", "priority_rule",
    "mirror_status", "reply_status", "reply_reason", "reply_message_id", "replied_at",
    "skip_reason", "updated_at",
)

INSERT_COLUMNS = (
    "id", "email_norm", "email", "name", "message", "intake", "phone", "company", "source",
    "metadata", "subject", "message_id", "in_reply_to", "refs", "clean_text", "auto_headers",
    "state", "next_attempt_at", "created_at", "updated_at",
    "skip_reason", "reply_status", "reply_reason", "mirror_status",
)


def new_id(now: float | None = None) -> str:
    """A time-ordered id (48-bit ms clock + 80 random bits, base32): sorts by arrival."""
    ms = int((time.time() if now is None else now) * 1000)
    raw = ms.to_bytes(6, "big") + os.urandom(10)
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def ts(dt: float | None) -> datetime | None:
    return None if dt is None else datetime.fromtimestamp(dt, UTC)


def insert_values(item: LeadIn, lead_id: str, now: float) -> tuple[Any, ...]:
    return (
        lead_id, item.email_norm, item.email, item.name, item.message, item.intake, item.phone,
        item.company, item.source, json.dumps(item.metadata, ensure_ascii=False) if item.metadata else "{}",
        item.subject, item.message_id, item.in_reply_to, item.references, item.clean_text,
        json.dumps(item.auto_headers, ensure_ascii=False) if item.auto_headers else "{}",
        State.SKIPPED.value if item.skip_reason else State.RECEIVED.value, now, now, now,
        # A lead skipped at intake (a honeypot post) is final at once: no reply, no sheet row.
        item.skip_reason, "skipped" if item.skip_reason else "pending", item.skip_reason,
        "disabled" if item.skip_reason else "pending",
    )


def update_values(lead: Lead, next_attempt_at: float, now: float) -> tuple[Any, ...]:
    return (
        lead.state.value, lead.attempts, lead.last_error, next_attempt_at,
        lead.category.value if lead.category else None, lead.summary, lead.language,
        lead.confidence, lead.classifier, 1 if lead.needs_reclassify else 0,
        lead.priority.value if lead.priority else None, lead.priority_rule, lead.mirror_status,
        lead.reply_status, lead.reply_reason, lead.reply_message_id,
        lead.replied_at.timestamp() if lead.replied_at else None, lead.skip_reason, now,
    )


def _json(v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    if not v:
        return {}
    out = json.loads(v)
    return out if isinstance(out, dict) else {}


def row_to_lead(r: Mapping[str, Any]) -> Lead:
    lead = Lead(
        id=r["id"], name=r["name"], email=r["email"], email_norm=r["email_norm"],
        message=r["message"], intake=r["intake"], state=State(r["state"]),
        created_at=ts(r["created_at"]) or datetime.now(UTC),
        updated_at=ts(r["updated_at"]) or datetime.now(UTC),
        phone=r["phone"], company=r["company"], source=r["source"], metadata=_json(r["metadata"]),
        subject=r["subject"], message_id=r["message_id"], in_reply_to=r["in_reply_to"],
        references=r["refs"], clean_text=r["clean_text"], auto_headers=_json(r["auto_headers"]),
        attempts=r["attempts"], last_error=r["last_error"],
        category=Category(r["category"]) if r["category"] else None,
        summary=r["summary"], language=r["language"], confidence=r["confidence"],
        classifier=r["classifier"], needs_reclassify=bool(r["needs_reclassify"]),
        priority=Priority(r["priority"]) if r["priority"] else None,
        priority_rule=r["priority_rule"], mirror_status=r["mirror_status"],
        reply_status=r["reply_status"], reply_reason=r["reply_reason"],
        reply_message_id=r["reply_message_id"], replied_at=ts(r["replied_at"]),
        skip_reason=r["skip_reason"], next_attempt_at=ts(r["next_attempt_at"]),
    )
    return lead


def row_to_interaction(r: Mapping[str, Any]) -> Interaction:
    return Interaction(
        id=r["id"], lead_id=r["lead_id"], intake=r["intake"], message=r["message"],
        received_at=ts(r["received_at"]) or datetime.now(UTC), message_id=r["message_id"],
        subject=r["subject"],
    )
