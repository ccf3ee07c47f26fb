"""Priority rules: urgency word forms, phrases and accents; configurable; never for spam."""

from __future__ import annotations

import pytest

from agent.config import PriorityConfig
from agent.core.models import Category, Priority
from agent.core.priority import PriorityRules

DEFAULTS = PriorityConfig()


def rules(words: list[str] | None = None) -> PriorityRules:
    return PriorityRules(DEFAULTS.by_category, DEFAULTS.urgent_words if words is None else words, {})


@pytest.mark.parametrize(
    ("text", "matched"),
    [
        ("Preciso com urgência", "urgencia"),
        ("Lo necesito urgentemente, gracias", "urgentemente"),
        ("URGENT: quote needed", "urgent"),
        ("Need a quote ASAP!", "asap"),
        ("Por favor, respóndanme lo antes posible.", "lo antes posible"),
        ("Precisamos do orçamento o quanto antes", "o quanto antes"),
        ("could you send it as soon\nas possible?", "as soon as possible"),
        ("Es una emergencia", "emergencia"),
        ("É uma emergência", "emergencia"),
    ],
)
def test_urgency_matches_forms_phrases_and_accents(text: str, matched: str) -> None:
    decision = rules().decide(Category.SALES, "ana@shop.example", text)
    assert decision.priority is Priority.HIGH
    assert decision.rule == f"category:sales+urgent:{matched}"


@pytest.mark.parametrize("text", ["Insurgente es una palabra", "gasapo", "cuanto cuesta una web?", "antes de nada"])
def test_no_urgency_inside_other_words(text: str) -> None:
    decision = rules().decide(Category.SALES, "ana@shop.example", text)
    assert decision == rules([]).decide(Category.SALES, "ana@shop.example", text)
    assert decision.priority is Priority.MEDIUM


def test_urgency_words_are_configurable() -> None:
    custom = rules(["pronto", "rush*"])
    assert custom.decide(Category.INFO, "a@b.example", "Lo quiero pronto").priority is Priority.HIGH
    assert custom.decide(Category.INFO, "a@b.example", "a rushed job").rule == "category:info+urgent:rushed"
    assert custom.decide(Category.INFO, "a@b.example", "urgente").priority is Priority.MEDIUM
    assert rules(["", "  ", "*"]).decide(Category.INFO, "a@b.example", "urgente").priority is Priority.MEDIUM


def test_spam_is_never_raised() -> None:
    decision = rules().decide(Category.SPAM, "x@spam.example", "URGENTE!!! lo antes posible")
    assert decision.priority is Priority.LOW and "urgent" not in decision.rule
