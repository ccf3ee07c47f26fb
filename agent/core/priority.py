"""Priority rules: pure decisions from config data, each naming the rule that made it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.core.models import Category, Priority

_ORDER = [Priority.LOW, Priority.MEDIUM, Priority.HIGH]


@dataclass(frozen=True, slots=True)
class PriorityDecision:
    priority: Priority
    rule: str  # e.g. "category:support", "domain:bigcorp.com", "category:sales+urgent:asap"


def _fold(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s.lower()) if not unicodedata.combining(c))


def urgency_pattern(urgent_words: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for the configured urgency words, matched on accent-folded, lower-case text.

    ``word`` matches that whole word, ``stem*`` any word starting with the stem (``urgen*``:
    urgent, urgente, urgentemente, urgência, urgency), and several words a phrase whatever the
    spacing (``lo antes posible``). Punctuation around them does not matter ("ASAP!").
    """
    parts: set[str] = set()
    for raw in urgent_words:
        word = _fold(raw).strip()
        stem = word.endswith("*")
        words = word.rstrip("*").split()
        if not words:
            continue
        body = r"\s+".join(re.escape(w) for w in words)
        parts.add(body + (r"\w*" if stem else r"(?!\w)"))
    if not parts:
        return None
    ordered = sorted(parts, key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(ordered) + ")")


class PriorityRules:
    """category -> priority, then a sender-domain rule, then urgency words raise one level."""

    def __init__(self, by_category: Mapping[str, str], urgent_words: Sequence[str], domains: Mapping[str, str]) -> None:
        self.by_category = {k: Priority(v) for k, v in by_category.items()}
        self._urgent = urgency_pattern(urgent_words)
        self.domains = {d.lower().lstrip("@").strip("."): Priority(p) for d, p in domains.items()}

    def decide(self, category: Category, email: str, text: str) -> PriorityDecision:
        base = self.by_category.get(category.value, Priority.MEDIUM)
        rule = f"category:{category.value}"
        domain = email.rsplit("@", 1)[-1].lower()
        parts = domain.split(".")
        for i in range(len(parts) - 1):
            candidate = ".".join(parts[i:])
            if candidate in self.domains:
                base, rule = self.domains[candidate], f"domain:{candidate}"
                break
        if category is not Category.SPAM and self._urgent is not None:
            m = self._urgent.search(_fold(text))
            if m:
                idx = min(_ORDER.index(base) + 1, len(_ORDER) - 1)
                if _ORDER[idx] is not base:
                    return PriorityDecision(_ORDER[idx], f"{rule}+urgent:{' '.join(m.group(1).split())}")
        return PriorityDecision(base, rule)
