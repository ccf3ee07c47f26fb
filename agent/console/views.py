"""What each console page shows, computed from the store; and the actions that change a lead.

Pure shaping of data for the templates: no HTML here (Jinja2 escapes every value), and no
store engine either (the store is reached through its Protocol on the host).
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.console.chart import bars_svg
from agent.core.models import Category, Lead, Priority
from agent.core.queries import INTAKES, LeadFilter
from agent.core.states import FINAL_STATES, State
from agent.intake.webhook import WebhookHost

PAGE = 50
FILTER_KEYS = ("q", "state", "category", "priority", "intake", "source", "mailbox", "since", "until")
LATE_SECONDS = 15 * 60  # an unfinished lead this old "waits too long" and stands out


# Store-wide figures cost a scan of the whole table (tens of ms at 100,000 leads): a page reuses
# them for a few seconds rather than paying that on every view.
COUNTS_TTL, OVERVIEW_TTL = 10.0, 30.0
_cache: dict[tuple[int, str], tuple[float, Any]] = {}


async def _cached(d: WebhookHost, key: str, ttl: float, load: Callable[[], Awaitable[Any]]) -> Any:
    slot = (id(d.store), key)
    hit = _cache.get(slot)
    now = time.monotonic()
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    value = await load()
    _cache[slot] = (now, value)
    return value


def _when(dt: datetime | float | None) -> str:
    if dt is None:
        return ""
    d = datetime.fromtimestamp(dt, UTC) if isinstance(dt, int | float) else dt
    return d.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_filters(q: Mapping[str, str]) -> tuple[LeadFilter, str | None]:
    """The filter in the query string; an invalid value is dropped and named, never a 500."""
    bad: list[str] = []

    def enum(key: str, kind: Any) -> Any:
        raw = q.get(key, "")
        if not raw:
            return None
        try:
            return kind(raw)
        except ValueError:
            bad.append(key)
            return None

    def day(key: str) -> date | None:
        raw = q.get(key, "")
        if not raw:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            bad.append(key)
            return None

    intake = q.get("intake") or None
    if intake is not None and intake not in INTAKES:
        bad.append("intake")
        intake = None
    f = LeadFilter(
        state=enum("state", State), category=enum("category", Category), priority=enum("priority", Priority),
        intake=intake, source=(q.get("source") or "").strip()[:200] or None,
        mailbox=(q.get("mailbox") or "").strip()[:100] or None, since=day("since"), until=day("until"),
        q=(q.get("q") or "").strip()[:200])
    return f, (f"ignored: {', '.join(bad)}" if bad else None)


def query_of(f: LeadFilter) -> dict[str, str]:
    out = {"state": f.state or "", "category": f.category or "", "priority": f.priority or "",
           "intake": f.intake or "", "source": f.source or "", "mailbox": f.mailbox or "",
           "since": f.since.isoformat() if f.since else "", "until": f.until.isoformat() if f.until else "",
           "q": f.q}
    return {k: str(v) for k, v in out.items() if v}


def _row(lead: Lead, labels: Any, now: float) -> dict[str, Any]:
    cat = lead.category.value if lead.category else None
    pri = lead.priority.value if lead.priority else None
    text = " ".join(lead.message.split())
    return {
        "id": lead.id, "name": lead.name, "email": lead.email, "state": lead.state.value,
        "category_label": labels.categories.get(cat, cat) if cat else "",
        "priority": pri, "priority_label": labels.priorities.get(pri, pri) if pri else "",
        "received": _when(lead.created_at), "snippet": text[:140] + ("…" if len(text) > 140 else ""),
        "late": lead.state not in FINAL_STATES and now - lead.created_at.timestamp() > LATE_SECONDS,
        "reply_waiting": lead.reply_status == "waiting",
    }


async def lead_list(d: WebhookHost, f: LeadFilter, cursor: str | None = None) -> dict[str, Any]:
    labels = d.config.settings.labels
    leads, nxt = await d.store.console_page(f, PAGE, cursor)
    states, categories = await _cached(d, "counts", COUNTS_TTL, d.store.console_counts)
    now = time.time()
    return {
        "leads": [_row(x, labels, now) for x in leads], "next_cursor": nxt,
        "f": {**dict.fromkeys(FILTER_KEYS, ""), **query_of(f)},
        "states": [s.value for s in State],
        "categories": [(c.value, labels.categories.get(c.value, c.value)) for c in Category],
        "priorities": [(p.value, labels.priorities.get(p.value, p.value)) for p in Priority],
        "state_counts": [(s.value, states[s.value]) for s in State if states.get(s.value)],
        "category_counts": [(c.value, categories[c.value]) for c in Category if categories.get(c.value)],
        "category_labels": dict(labels.categories),
    }


def _reply_text(d: WebhookHost, lead: Lead) -> str | None:
    """The reply as sent, when the outbox holds it (SMTP replies are not kept)."""
    if not lead.reply_message_id or d.config.settings.reply.transport != "outbox":
        return None
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in lead.reply_message_id.strip("<>")) + ".eml"
    path = Path(d.config.settings.reply.outbox_dir) / name
    try:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    except OSError:
        return None
    body = msg.get_body(preferencelist=("plain",)) if hasattr(msg, "get_body") else None
    return body.get_content() if body is not None else None  # type: ignore[union-attr]


async def lead_page(d: WebhookHost, lead_id: str, t: Mapping[str, str]) -> dict[str, Any] | None:
    lead = await d.store.get(lead_id)
    if lead is None:
        return None
    labels = d.config.settings.labels
    cat = lead.category.value if lead.category else None
    pri = lead.priority.value if lead.priority else None
    view = {
        "id": lead.id, "name": lead.name, "email": lead.email, "phone": lead.phone, "company": lead.company,
        "subject": lead.subject, "intake": lead.intake, "source": lead.source, "mailbox": lead.mailbox,
        "message": lead.message, "state": lead.state.value, "received": _when(lead.created_at),
        "category": cat, "category_label": labels.categories.get(cat, cat) if cat else "",
        "priority": pri, "priority_label": labels.priorities.get(pri, pri) if pri else "",
        "priority_rule": lead.priority_rule, "confidence": lead.confidence, "classifier": lead.classifier,
        "fallback": lead.needs_reclassify, "language": lead.language, "summary": lead.summary,
        "assigned_to": lead.assigned_to, "handled_by": lead.handled_by,
        "can_send_reply": lead.state == State.SKIPPED and lead.reply_status != "sent",
        "reply_text": _reply_text(d, lead),
    }
    return {
        "lead": view, "timeline": await timeline(d, lead, t),
        "categories": [(c.value, labels.categories.get(c.value, c.value)) for c in Category],
        "priorities": [(p.value, labels.priorities.get(p.value, p.value)) for p in Priority],
        "users": await d.store.user_names(),
    }


async def timeline(d: WebhookHost, lead: Lead, t: Mapping[str, str]) -> list[dict[str, str]]:
    """Received, repeat contacts, people's actions, attempts, the sheet and the reply, in time order."""
    items: list[tuple[float, str, str]] = [(lead.created_at.timestamp(), t["received"], f"{lead.intake}")]
    for i in lead.interactions:
        items.append((i.received_at.timestamp(), t["interactions"], (i.subject or i.message)[:200]))
    for e in await d.store.lead_events(lead.id):
        words = {"corrected": t["corrected"], "retried": t["retried"], "reply_requested": t["reply_requested"],
                 "handled": t["marked_handled"], "assigned": t["assigned_to"], "reply_settled": t["reply_settled"]}
        detail = ", ".join(f"{k}: {v}" for k, v in e.detail.items() if not isinstance(v, dict))
        items.append((e.at, f"{words.get(e.kind, e.kind)} {e.actor}", detail))
    for a in await d.store.alerts_of(lead.id):  # team alerts: each channel and its status
        when = a.sent_at or a.created_at
        items.append((when, f"{t['alert']} {a.label}: {a.status}",
                      f"{a.attempts} × " + (a.last_error or "") if a.status != "sent" else ""))
    end = lead.updated_at.timestamp()
    if lead.attempts or lead.last_error:
        items.append((end, f"{t['attempts']}: {lead.attempts}", lead.last_error or ""))
    items.append((end, f"{t['mirror_status']}: {t.get('status_' + lead.mirror_status, lead.mirror_status)}", ""))
    reply = t.get("status_" + lead.reply_status, lead.reply_status)
    if lead.reply_status == "waiting" and lead.next_attempt_at is not None:
        items.append((end, f"{t['reply']}: {reply}", f"{t['until']} {_when(lead.next_attempt_at)}"))
    if lead.replied_at is not None:
        items.append((lead.replied_at.timestamp(), f"{t['reply']}: {reply}", lead.reply_message_id or ""))
    elif lead.state in FINAL_STATES:
        items.append((end, f"{t['reply']}: {reply}", lead.reply_reason or lead.skip_reason or lead.last_error or ""))
    items.sort(key=lambda x: x[0])
    return [{"at": _when(at), "text": text, "detail": detail} for at, text, detail in items]


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


async def overview(d: WebhookHost, t: Mapping[str, str]) -> dict[str, Any]:
    labels = d.config.settings.labels
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=29 - i) for i in range(30)]
    o = await _cached(d, f"overview:{days[0]}", OVERVIEW_TTL, lambda: d.store.console_overview(days[0]))
    report = await d.readiness()
    health = []
    for name, part in sorted((report.get("checks") or {}).items()):
        if isinstance(part, dict):
            state = part.get("state") or part.get("circuit") or part.get("breaker") or "ok"
            health.append((name, str(state), str(part.get("reason", "") or "")))
    inbox = report.get("checks", {}).get("inbox") if isinstance(report.get("checks"), dict) else None
    last_poll = inbox.get("last_success") if isinstance(inbox, dict) else None
    return {
        "chart": bars_svg(days, o.per_day, dict(labels.categories), t["per_day"]),
        "backlog": [(s.value, o.states.get(s.value, 0)) for s in State
                    if s not in FINAL_STATES or s == State.FAILED],
        "latency": {"p50": _duration(percentile(o.reply_seconds, 50)),
                    "p95": _duration(percentile(o.reply_seconds, 95)),
                    "n": len(o.reply_seconds)},
        "fallbacks": o.fallbacks, "health": health, "last_poll": last_poll,
        "inbox_enabled": d.inbox_enabled,
    }


async def act(d: WebhookHost, lead_id: str, action: str, form: Mapping[str, str], user: str) -> bool | None:
    """Carry out one console action; None when the lead does not exist, False when it does not apply."""
    lead = await d.store.get(lead_id)
    if lead is None:
        return None
    if action == "retry":
        ok = bool(await d.store.retry(lead_id))
        if ok:
            await d.store.add_event(lead_id, "retried", user, {})
            d.worker.kick()
        return ok
    if action == "correct":
        try:
            category, priority = Category(form.get("category", "")), Priority(form.get("priority", ""))
        except ValueError:
            return False
        ok = await d.store.correct(lead_id, category, priority, user)
        if ok:
            await d.on_corrected(lead_id)
        return ok
    if action == "send-reply":
        ok = await d.store.reopen_for_reply(lead_id)
        if ok:
            await d.store.add_event(lead_id, "reply_requested", user, {})
            d.worker.kick()
        return ok
    if action == "handled":
        return await d.store.mark_handled(lead_id, user)
    if action == "forget":
        if form.get("confirm") != lead.email:
            return False  # the address typed again: an erasure cannot be undone
        await d.forget_person(lead.email)
        return True
    if action == "assign":
        target = form.get("user", "").strip() or None
        if target is not None and target != "admin" and target not in await d.store.user_names():
            return False
        return await d.store.assign(lead_id, target, user)
    return False
