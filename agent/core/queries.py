"""What a reader may ask the store for beyond one lead: the console's filters and its figures.

Plain data, validated here once, so the console, the API and both stores agree on meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from agent.core.models import Category, Priority
from agent.core.states import State

INTAKES = ("webhook", "email")


@dataclass(frozen=True)
class LeadFilter:
    """A bookmarkable view of the leads: each field narrows it; empty fields don't."""

    state: State | None = None
    category: Category | None = None
    priority: Priority | None = None
    intake: str | None = None
    source: str | None = None
    mailbox: str | None = None
    since: date | None = None  # created on or after this day (UTC)
    until: date | None = None  # created on or before this day (UTC)
    q: str = ""  # full text over name, email, company and message

    def terms(self) -> list[str]:
        """The search words: letters and digits, lower-cased, at most 8 of up to 40 characters."""
        word: list[str] = []
        out: list[str] = []
        for ch in self.q.lower() + " ":
            if ch.isalnum():
                word.append(ch)
            elif word:
                out.append("".join(word)[:40])
                word = []
        return out[:8]


@dataclass
class LeadEvent:
    """One entry of a lead's timeline written by a person or a job (corrections, retries...)."""

    at: float
    kind: str  # "corrected" | "retried" | "reply_requested" | "handled" | "assigned"
    actor: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Overview:
    """The console's front page figures."""

    per_day: dict[date, dict[str, int]]
    states: dict[str, int]
    reply_seconds: list[float]  # reply latencies of the period, sorted
    fallbacks: int
