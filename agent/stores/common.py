"""What every store implementation shares: ids, row <-> Lead mapping, columns."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from agent.core.ids import id_time
from agent.core.models import (
    Category,
    EmailIntake,
    IntakeResult,
    Interaction,
    Lead,
    LeadIn,
    Priority,
    State,
)
from agent.core.queries import LeadFilter
from agent.core.states import (
    FINAL_STATES,
    LEDGER_COUNTED,
    MIRROR_TO_RETRY,
    PAST_MIRROR_STEP,
    MirrorStatus,
    ReplyStatus,
)


def sql_list(values: Iterable[enum.StrEnum]) -> str:
    """``('a','b')`` for a SQL ``IN``: the values come from our enums, never from input."""
    return "(" + ",".join(f"'{v.value}'" for v in values) + ")"


# SQL conditions both engines use, derived from the enums (the schema's partial indexes were
# written with these exact texts, so queries that repeat them can use the indexes).
ACTIVE = f"state NOT IN {sql_list(FINAL_STATES)}"
FINAL = f"state IN {sql_list(FINAL_STATES)}"
MIRROR_DUE = f"mirror_status IN {sql_list(MIRROR_TO_RETRY)} AND state IN {sql_list(PAST_MIRROR_STEP)}"
COUNTED_REPLY = f"status IN {sql_list(LEDGER_COUNTED)}"
FAILED = f"state = '{State.FAILED.value}'"
# Where ``retry`` puts a failed lead back: the first step it has not done.
RETRY_STATE = (f"CASE WHEN category IS NULL THEN '{State.RECEIVED.value}' "
               f"WHEN priority IS NULL THEN '{State.CLASSIFIED.value}' ELSE '{State.MIRRORED.value}' END")

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
    "skip_reason", "reply_status", "reply_reason", "mirror_status", "mailbox",
)


def ts(dt: float | None) -> datetime | None:
    return None if dt is None else datetime.fromtimestamp(dt, UTC)


# The texts of a new lead's statuses, read once: an enum member's .value costs a descriptor call,
# and insert_values runs once per lead on the webhook's hot path.
_NEW = (State.RECEIVED.value, ReplyStatus.PENDING.value, MirrorStatus.PENDING.value)
_SKIPPED_AT_INTAKE = (State.SKIPPED.value, ReplyStatus.SKIPPED.value, MirrorStatus.DISABLED.value)


def insert_values(item: LeadIn, lead_id: str, now: float) -> tuple[Any, ...]:
    # A lead skipped at intake (a honeypot post) is final at once: no reply, no sheet row.
    state, reply, mirror = _SKIPPED_AT_INTAKE if item.skip_reason else _NEW
    return (
        lead_id, item.email_norm, item.email, item.name, item.message, item.intake, item.phone,
        item.company, item.source, json.dumps(item.metadata, ensure_ascii=False) if item.metadata else "{}",
        item.subject, item.message_id, item.in_reply_to, item.references, item.clean_text,
        json.dumps(item.auto_headers, ensure_ascii=False) if item.auto_headers else "{}",
        state, now, now, now, item.skip_reason, reply, item.skip_reason, mirror, item.mailbox,
    )


def update_values(lead: Lead, next_attempt_at: float, now: float) -> tuple[Any, ...]:
    return (
        lead.state.value, lead.attempts, lead.last_error, next_attempt_at,
        lead.category.value if lead.category else None, lead.summary, lead.language,
        lead.confidence, lead.classifier, 1 if lead.needs_reclassify else 0,
        lead.priority.value if lead.priority else None, lead.priority_rule, MirrorStatus(lead.mirror_status).value,
        ReplyStatus(lead.reply_status).value, lead.reply_reason, lead.reply_message_id,
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
        priority_rule=r["priority_rule"], mirror_status=MirrorStatus(r["mirror_status"]),
        reply_status=ReplyStatus(r["reply_status"]), reply_reason=r["reply_reason"],
        reply_message_id=r["reply_message_id"], replied_at=ts(r["replied_at"]),
        skip_reason=r["skip_reason"], next_attempt_at=ts(r["next_attempt_at"]),
        mailbox=r["mailbox"], correction=_json(r["correction"]) or None, assigned_to=r["assigned_to"],
        handled_by=r["handled_by"],
    )
    return lead


def row_to_interaction(r: Mapping[str, Any]) -> Interaction:
    return Interaction(
        id=r["id"], lead_id=r["lead_id"], intake=r["intake"], message=r["message"],
        received_at=ts(r["received_at"]) or datetime.now(UTC), message_id=r["message_id"],
        subject=r["subject"],
    )


def list_query(state: State | None, category: Category | None, priority: Priority | None,
               limit: int, cursor: str | None, reply_status: ReplyStatus | None = None,
               mailbox: str | None = None) -> tuple[str, tuple[Any, ...]]:
    """The page query of ``list`` (``?`` placeholders), newest first by ``created_at`` (the id's
    text does not sort by time, see ``new_id``), one row more than ``limit`` to tell whether a next
    page exists. Filter values go through their enums; a cursor that is no lead id is a ValueError."""
    where: list[str] = []
    args: list[Any] = []
    for col, value in (("state", state and State(state)), ("category", category and Category(category)),
                       ("priority", priority and Priority(priority)),
                       ("reply_status", reply_status and ReplyStatus(reply_status))):
        if value:
            where.append(f"{col} = ?")
            args.append(value.value)
    if mailbox:
        where.append("mailbox = ?")
        args.append(mailbox)
    if cursor:
        # After the cursor's lead in (created_at, id) order. Its exact created_at comes from its
        # row; a lead erased between two pages falls back to the time its id carries (ms, rounded
        # up so the page still starts after it).
        when = id_time(cursor)
        if when is None:
            raise ValueError("not a cursor returned by a lead list")
        at = "COALESCE((SELECT created_at FROM leads WHERE id = ?), ?)"
        where.append(f"created_at <= {at} AND (created_at < {at} OR id < ?)")
        args += [cursor, when + 0.001, cursor, when + 0.001, cursor]
    q = "SELECT * FROM leads" + (" WHERE " + " AND ".join(where) if where else "")
    return q + " ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit + 1)


class SingleEmailIntake:
    """``intake_email``: one inbox message through ``intake_emails``."""

    async def intake_emails(self, batch: Sequence[EmailIntake]) -> list[IntakeResult | None]:
        raise NotImplementedError

    async def intake_email(
        self, item: LeadIn | None, *, mailbox: str, uidvalidity: int, uid: int,
        dedupe_key: str, skip_reason: str | None = None, raw: bytes | None = None,
    ) -> IntakeResult | None:
        entry = EmailIntake(item, mailbox, uidvalidity, uid, dedupe_key, skip_reason=skip_reason, raw=raw)
        return (await self.intake_emails([entry]))[0]


# The leads of one person: their address's dedupe key, and honeypot posts made with it.
PERSON = "(email_norm = ? OR (email_norm LIKE 'honeypot:%' AND lower(email) = ?))"


def erased_key(dedupe_key: str) -> str:
    """What an erased inbox record keeps of its key: enough to recognise the mail, nothing to read."""
    return "erased:" + hashlib.sha256(dedupe_key.encode("utf-8", "surrogatepass")).hexdigest()


EPOCH = date(1970, 1, 1)


def day_start(d: date) -> float:
    """Epoch seconds of a UTC day's midnight."""
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def console_where(f: LeadFilter, ph: str) -> tuple[list[str], list[Any]]:
    """The WHERE terms of a console filter (``ph`` is the engine's placeholder), text search aside."""
    where: list[str] = []
    args: list[Any] = []
    for col, value in (("leads.state", f.state), ("leads.category", f.category), ("leads.priority", f.priority),
                       ("leads.intake", f.intake), ("leads.source", f.source), ("leads.mailbox", f.mailbox)):
        if value:
            where.append(f"{col} = {ph}")
            args.append(str(value))
    if f.since:
        where.append(f"leads.created_at >= {ph}")
        args.append(day_start(f.since))
    if f.until:
        where.append(f"leads.created_at < {ph}")
        args.append(day_start(f.until) + 86400)
    return where, args
