"""Team alerts: which leads alert, and what an alert says (JSON, Slack, Teams, e-mail, digest).

Pure functions and data only: sending is the adapters' job (``agent.app.alerts``). A lead that
qualifies gets one row per channel in the durable alert ledger when its priority is decided
(``Prioritize``), in the same step the worker may repeat after a crash (the insert is idempotent).
E-mail has one row per team address (channel ``email:<address>``): each address is sent, retried,
given up on and recorded on its own, so one refused or unreachable address never makes the
others get the alert again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.core.models import Category, Lead, Priority, State

__all__ = ["AlertPolicy", "AlertRow", "alert_facts", "digest_text", "email_channel", "email_text", "render_webhook",
           "sign"]

_RANK = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2}
WEBHOOK, EMAIL = "webhook", "email"


def email_channel(address: str) -> str:
    """The ledger channel of the e-mail alert to one team address."""
    return f"{EMAIL}:{address}"


@dataclass(frozen=True)
class AlertPolicy:
    """``[alerts]``: the minimum priority, the categories, and the channels that are set up."""

    min_priority: str  # "" = off
    categories: tuple[str, ...] = ()
    channels: tuple[str, ...] = field(default_factory=tuple)

    def channels_for(self, lead: Lead) -> list[str]:
        """The channels this lead alerts on: none for spam, below the priority or another category."""
        if not self.min_priority or not self.channels or lead.priority is None or lead.category is None:
            return []
        if lead.category == Category.SPAM:
            return []
        if self.categories and str(lead.category) not in self.categories:
            return []
        if _RANK[Priority(lead.priority)] < _RANK[Priority(self.min_priority)]:
            return []
        return list(self.channels)


@dataclass(frozen=True)
class AlertRow:
    """One lead's alert on one channel, as the ledger holds it."""

    lead_id: str
    channel: str
    status: str  # pending | sent | failed
    attempts: int
    created_at: float
    next_attempt_at: float
    sent_at: float | None = None
    last_error: str | None = None

    @property
    def kind(self) -> str:
        """``webhook`` or ``email``: the channel without its address (metrics, API)."""
        return self.channel.split(":", 1)[0]

    @property
    def to(self) -> str | None:
        """The team address of an e-mail row; None for the webhook, and for an ``email`` row
        enqueued before rows were per address (it goes to every address of ``email_to``)."""
        return self.channel.split(":", 1)[1] if ":" in self.channel else None

    @property
    def label(self) -> str:
        """``webhook``, or ``email`` and its address, for people (the console's timeline)."""
        return f"{self.kind} {self.to}" if self.to else self.kind

    def as_json(self) -> dict[str, Any]:
        return {"channel": self.kind, "to": self.to, "status": self.status, "attempts": self.attempts,
                "created_at": _iso(self.created_at), "sent_at": _iso(self.sent_at) if self.sent_at else None,
                "last_error": self.last_error}


def _iso(ts: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(ts, UTC).isoformat()


def alert_facts(lead: Lead) -> dict[str, Any]:
    """The lead as an alert shows it: no message body, the classifier's summary."""
    return {"id": lead.id, "name": lead.name, "email": lead.email,
            "category": str(lead.category) if lead.category else None,
            "priority": str(lead.priority) if lead.priority else None, "priority_rule": lead.priority_rule,
            "summary": lead.summary, "mailbox": lead.mailbox, "intake": lead.intake,
            "created_at": lead.created_at.isoformat()}


def lead_url(public_url: str, lead_id: str) -> str | None:
    return f"{public_url.rstrip('/')}/console/leads/{lead_id}" if public_url else None


def _line(lead: Lead) -> str:
    f = alert_facts(lead)
    where = f" via {f['mailbox']}" if f["mailbox"] else f" via {f['intake']}"
    return (f"{f['priority']} {f['category']} lead from {f['name']} <{f['email']}>{where}"
            + (f": {f['summary']}" if f["summary"] else ""))


def render_webhook(lead: Lead, fmt: str, url: str | None) -> bytes:
    """The POST body: leadbox's JSON, or the same facts as Slack/Mattermost or Teams text."""
    if fmt == "slack":
        text = f"New lead: {_line(lead)}" + (f"\n<{url}|Open the lead>" if url else "")
        body: dict[str, Any] = {"text": text}
    elif fmt == "teams":
        text = f"**New lead**: {_line(lead)}" + (f"\n\n[Open the lead]({url})" if url else "")
        body = {"@type": "MessageCard", "@context": "https://schema.org/extensions",
                "summary": "New lead", "title": f"New {lead.priority} lead: {lead.name}", "text": text}
    else:
        body = {"event": "lead.alert", "lead": alert_facts(lead), "url": url}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def email_text(lead: Lead, url: str | None) -> tuple[str, str]:
    """Subject and body of an e-mail alert."""
    f = alert_facts(lead)
    subject = f"[leadbox] {f['priority']} {f['category']} lead: {f['name']}"
    lines = [f"New lead: {_line(lead)}", "",
             *(f"{k}: {v}" for k, v in f.items() if v is not None)]
    if url:
        lines += ["", url]
    return subject, "\n".join(lines) + "\n"


def digest_text(leads: Sequence[Lead], since: datetime, until: datetime) -> tuple[str, str]:
    """Subject and body of the digest: the leads since the last digest by category and priority,
    and the failed ones."""
    by = Counter((str(x.category or "unclassified"), str(x.priority or "-")) for x in leads)
    failed = [x for x in leads if x.state == State.FAILED]
    subject = f"[leadbox] digest: {len(leads)} lead(s), {len(failed)} failed"
    lines = [f"Leads from {since.isoformat(timespec='minutes')} to {until.isoformat(timespec='minutes')}: "
             f"{len(leads)}", ""]
    lines += [f"  {cat:<14} {prio:<8} {n}" for (cat, prio), n in sorted(by.items())] or ["  (none)"]
    lines += ["", f"Failed: {len(failed)}"]
    lines += [f"  {x.id} {x.name} <{x.email}>: {x.last_error or x.state}" for x in failed]
    return subject, "\n".join(lines) + "\n"
