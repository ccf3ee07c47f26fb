"""The offline classifier: rule tables and structural signals read by a small learned model.

Why this shape: the daemon must triage leads with no API key, no network and no model download,
deterministically (tests and re-classification compare results), and fast enough never to matter
(thousands of messages a second). How it decides:

1. ``signals.rule_evidence``: the text (subject + message) is folded and split into words; every
   rule-table entry (``rules``) that occurs adds its weight to its category once; structural
   signals (links, money offers, shouting, gibberish) add to spam.
2. ``model.LocalModel`` turns the words, the entries that fired, the flags and the four scores into
   probabilities. Spam needs a confident model, a clear margin and rule-level spam evidence,
   because hiding a real lead is worse than showing a spam one.
3. ``language`` picks the reply language, ``text.summarize`` the one-line summary.

The model is the shipped one (``data/local_model.json``) or one trained by ``leadbox train``
(``classifier.model_path``); a model that cannot be loaded is a :class:`~model.ModelError` at
construction, never a silent downgrade.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from agent.classifiers.language import detect_from_tokens, statistical_detector
from agent.classifiers.model import CLASSES, SHIPPED_MODEL, LocalModel, cached_model
from agent.classifiers.signals import rule_evidence
from agent.classifiers.text import summarize
from agent.core.models import Classification, Health
from agent.core.states import HealthState


@dataclass(frozen=True, slots=True)
class LocalVerdict:
    """A classification with the evidence behind it (for debugging and evaluation)."""

    classification: Classification
    scores: dict[str, float]
    fired: tuple[str, ...]
    probabilities: dict[str, float] = field(default_factory=dict)


class LocalClassifier:
    """Offline, deterministic classifier for Spanish, English and Portuguese."""

    name = "local"

    def __init__(
        self, *, default_language: str = "es", model: LocalModel | None = None,
        model_path: Path | str | None = None,
    ) -> None:
        self.default_language = default_language
        self.model_path = Path(model_path) if model_path is not None else SHIPPED_MODEL
        self.model = model if model is not None else cached_model(str(self.model_path))
        statistical_detector()  # built now (once per process), not on the first short message

    async def classify(self, text: str, *, subject: str | None = None) -> Classification:
        """Async face of :meth:`classify_sync`; it is CPU-only and short, so it runs inline
        rather than in a thread."""
        await asyncio.sleep(0)
        return self.classify_sync(text, subject)

    def classify_sync(self, text: str, subject: str | None = None) -> Classification:
        return self.explain(text, subject).classification

    # Offline: no breaker to report, nothing to probe, close or pay for.
    tokens_used = 0

    def health(self) -> Health:
        return Health(HealthState.OK, None, {"backend": "local"})

    def circuit(self) -> str | None:
        return None

    async def probe(self) -> bool:
        return True

    async def close(self) -> None:
        pass

    def describe(self) -> str:
        """Which model file, and what it was trained on (for the start-up log)."""
        rows = self.model.info.get("rows")
        shipped = " (shipped)" if self.model_path == SHIPPED_MODEL else ""
        return f"{self.model_path}{shipped}" + (f", trained on {rows} leads" if rows else "")

    def explain(self, text: str, subject: str | None = None) -> LocalVerdict:
        """Classify and say which rules fired (used by tests and ``leadbox classify``)."""
        text = text or ""
        full = f"{subject}\n{text}" if subject else text
        evidence = rule_evidence(full)
        scores = evidence.scores
        probs = self.model.probabilities(evidence)
        category, confidence = self.model.decide(probs, scores)
        language = detect_from_tokens(full, evidence.tokens, self.default_language)
        classification = Classification(
            category=category,
            summary=summarize(text or (subject or "")),
            language=language,
            confidence=confidence,
            classifier=self.name,
        )
        return LocalVerdict(
            classification,
            {str(k): round(v, 2) for k, v in scores.items()},
            tuple(sorted(evidence.fired)),
            {str(c): round(p, 4) for c, p in zip(CLASSES, probs, strict=True)},
        )
