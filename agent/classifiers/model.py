"""The learned layer of the local classifier: features, weights, the spam guard, loading.

A multinomial logistic regression (trained by ``training``) over sparse binary features of one
message: its words (unigrams, bigrams, stems), the rule entries that fired, the structural flags,
character 3-5-grams of its words (one block, scaled so their number does not drown the rest), plus
the four rule scores as numbers. The tables stay the backbone; the model learns how far to trust
each of them and the vocabulary they miss. Inference is plain dict look-ups (no numpy): the file
is JSON, format 2 (format 1, without n-grams, still loads).

Loading is explicit: a model file that is missing or unreadable raises :class:`ModelError` with the
path and the reason. Nothing falls back silently to a weaker classifier.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from agent.classifiers.signals import Evidence
from agent.core.models import Category
from agent.errors import LeadboxError

CLASSES: tuple[Category, ...] = (Category.SALES, Category.SUPPORT, Category.INFO, Category.SPAM)
#: The model shipped in the package (used when ``classifier.model_path`` does not exist).
SHIPPED_MODEL = Path(__file__).resolve().parent / "data" / "local_model.json"
#: Rule scores enter the model scaled and capped, so one loud table cannot dominate.
RULE_SCALE = 4.0
RULE_CAP = 3.0
STEM_LEN = 5
#: Character n-gram sizes of the default model (the model file says which it was trained with).
CHAR_NGRAMS: tuple[int, int] | None = (3, 5)


def word_features(evidence: Evidence) -> set[str]:
    """Words (unigrams, bigrams, 5-letter stems), fired rule entries, structural flags and the
    length band of one message, as binary feature names."""
    tokens = evidence.tokens
    feats: set[str] = set()
    add = feats.add
    prev = "^"
    for tok in tokens:
        if tok.isdigit():
            tok = "#"
        add("u:" + tok)
        add("b:" + prev + " " + tok)
        if len(tok) > STEM_LEN + 1:
            add("p:" + tok[:STEM_LEN])
        prev = tok
    if tokens:
        add("b:" + prev + " $")
    for key in evidence.fired:
        add("r:" + key)
    for flag in evidence.flags:
        add("s:" + flag)
    n = len(tokens)
    add("len:" + ("0" if n == 0 else "1-4" if n <= 4 else "5-12" if n <= 12 else "13-40" if n <= 40 else "41+"))
    return feats


def char_features(tokens: list[str], lo: int, hi: int) -> set[str]:
    """The character n-grams (``lo``..``hi`` letters) of every word padded with spaces: they
    survive misspellings ("presupesto") and word forms no training line had."""
    grams: set[str] = set()
    for tok in tokens:
        if len(tok) < 40:  # longer: a pasted token or a hash, noise
            grams.update(_token_grams(tok, lo, hi))
    return grams


@lru_cache(maxsize=8192)  # common words repeat across messages; a few MB at most
def _token_grams(tok: str, lo: int, hi: int) -> tuple[str, ...]:
    padded = " " + tok + " "
    size = len(padded)
    return tuple({padded[i : i + n] for n in range(lo, hi + 1) for i in range(size - n + 1)})


def model_features(evidence: Evidence, char_ngrams: tuple[int, int] | None = CHAR_NGRAMS) -> list[str]:
    """Every binary feature name of one message, character n-grams prefixed ``c:`` (training)."""
    feats = list(word_features(evidence))
    if char_ngrams:
        feats += ["c:" + g for g in char_features(evidence.tokens, *char_ngrams)]
    return feats


def rule_inputs(evidence: Evidence) -> list[float]:
    """The four rule scores as numeric model inputs (scaled, capped)."""
    return [min(RULE_CAP, evidence.scores[c] / RULE_SCALE) for c in CLASSES]


@dataclass(frozen=True, slots=True)
class LocalModel:
    """Weights of the learned layer, the feature settings it was trained with, the spam guard."""

    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]
    rule_weights: tuple[tuple[float, ...], ...]  # one row per rule score, one column per class
    spam_min_prob: float
    spam_margin: float
    spam_min_rule: float
    char_ngrams: tuple[int, int] | None = None
    #: Character n-grams enter as one block of norm ``char_scale`` (each 1/sqrt(count) times it),
    #: so hundreds of them do not drown the word and rule features.
    char_scale: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)  # how it was trained (rows, figures)
    _chars: dict[str, tuple[float, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalModel:
        if tuple(data["classes"]) != tuple(str(c) for c in CLASSES):
            raise ValueError("model classes do not match")
        ngrams = data.get("char_ngrams")
        if ngrams is not None:
            lo, hi = int(ngrams[0]), int(ngrams[1])
            if not 1 <= lo <= hi <= 8:
                raise ValueError(f"char_ngrams out of range: {ngrams}")
        weights = {str(k): tuple(map(float, v)) for k, v in data["weights"].items()}
        if any(len(v) != 4 for v in weights.values()):
            raise ValueError("every weight row needs one value per class")
        return cls(
            bias=tuple(float(x) for x in data["bias"]),
            weights=weights,
            rule_weights=tuple(tuple(float(x) for x in row) for row in data["rule_weights"]),
            spam_min_prob=float(data["spam_guard"]["min_prob"]),
            spam_margin=float(data["spam_guard"]["margin"]),
            spam_min_rule=float(data["spam_guard"]["min_rule_score"]),
            char_ngrams=(lo, hi) if ngrams is not None else None,
            char_scale=float(data.get("char_scale", 1.0)),
            info=dict(data.get("info") or {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 2,
            "classes": [str(c) for c in CLASSES],
            "bias": [round(x, 4) for x in self.bias],
            "rule_weights": [[round(x, 4) for x in row] for row in self.rule_weights],
            "spam_guard": {
                "min_prob": self.spam_min_prob, "margin": self.spam_margin,
                "min_rule_score": self.spam_min_rule,
            },
            "char_ngrams": list(self.char_ngrams) if self.char_ngrams else None,
            "char_scale": self.char_scale,
            "info": self.info,
            "weights": {k: [round(x, 3) for x in v] for k, v in sorted(self.weights.items())},
        }

    def __post_init__(self) -> None:
        # Character n-gram weights in their own dict, keyed without the "c:" prefix, so
        # inference looks up the grams as generated (no string building per gram).
        chars = {k[2:]: v for k, v in self.weights.items() if k.startswith("c:")}
        object.__setattr__(self, "_chars", chars)

    def logits(self, evidence: Evidence) -> list[float]:
        get = self.weights.get
        found = [w for w in map(get, word_features(evidence)) if w is not None]
        z = list(self.bias)
        if found:
            for c, total in enumerate(map(sum, zip(*found, strict=True))):
                z[c] += total
        if self.char_ngrams:
            grams = char_features(evidence.tokens, *self.char_ngrams)
            cget = self._chars.get
            found = [w for w in map(cget, grams) if w is not None]
            if found:
                scale = self.char_scale / math.sqrt(len(grams))
                for c, total in enumerate(map(sum, zip(*found, strict=True))):
                    z[c] += total * scale
        for value, row in zip(rule_inputs(evidence), self.rule_weights, strict=True):
            if value:
                z[0] += value * row[0]
                z[1] += value * row[1]
                z[2] += value * row[2]
                z[3] += value * row[3]
        return z

    def probabilities(self, evidence: Evidence) -> list[float]:
        return softmax(self.logits(evidence))

    def decide(self, probs: list[float], scores: dict[Category, float]) -> tuple[Category, float]:
        """Spam only when the model is sure, clearly ahead, and the rules saw enough spam
        evidence; otherwise the most probable of sales/support/info."""
        p_spam = probs[3]
        best_other = max(probs[:3])
        if (
            p_spam >= self.spam_min_prob
            and p_spam - best_other >= self.spam_margin
            and scores[Category.SPAM] >= self.spam_min_rule
        ):
            return Category.SPAM, round(min(0.99, p_spam), 3)
        index = max(range(3), key=lambda i: (probs[i], -i))
        total = sum(probs[:3]) or 1.0
        return CLASSES[index], round(min(0.99, max(0.3, probs[index] / total)), 3)


def softmax(z: list[float]) -> list[float]:
    top = max(z)
    exps = [math.exp(v - top) for v in z]
    total = sum(exps)
    return [e / total for e in exps]


class ModelError(LeadboxError):
    """A classifier model file cannot be used: the message names the file and the reason."""


def load_model(path: Path | str = SHIPPED_MODEL) -> LocalModel:
    """Read a model file; raise :class:`ModelError` (path and reason) when it cannot be used."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ModelError(f"cannot read classifier model {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"classifier model {path} is not valid JSON: {exc}") from None
    try:
        return LocalModel.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"classifier model {path} is not a leadbox model: {exc!r}") from None


@lru_cache(maxsize=4)
def cached_model(path: str) -> LocalModel:
    """One loaded copy per file for the process (the daemon builds several classifiers)."""
    return load_model(path)


def resolve_model_path(configured: Path | str | None) -> Path:
    """``classifier.model_path`` when that file exists (written by ``leadbox train``), else the
    shipped model. A file that exists but cannot be used is a ModelError when loaded, not a
    silent fall back to the shipped one."""
    if configured:
        path = Path(configured)
        if path.exists():
            return path
    return SHIPPED_MODEL
