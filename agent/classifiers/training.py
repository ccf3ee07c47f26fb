"""Fit the local model on labelled leads, and measure a model by stratified cross-validation.

What it fits: a multinomial logistic regression (softmax, L2, class-balanced) over
``model.model_features`` (words, bigrams, stems, character n-grams, fired rule entries, structural
flags), the character n-grams as one block scaled to norm ``char_scale``, plus the four rule scores.
Full-batch Adam for a fixed number of steps from zero weights: the same rows give the same model,
byte for byte. numpy does the arithmetic; it is imported here only, never by the daemon's
classifier, which reads the weights with plain dict look-ups.

Used by ``leadbox train`` (``train_cli``) and by ``bench/bench_classifier.py``. The shipped
training data lives beside the shipped model in ``data/`` so ``train`` works from the package.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.classifiers.evaluation import LabeledRow, load_jsonl
from agent.classifiers.model import CHAR_NGRAMS, CLASSES, LocalModel, model_features, rule_inputs
from agent.classifiers.signals import Evidence, rule_evidence
from agent.core.models import Category

DATA_DIR = Path(__file__).resolve().parent / "data"
#: The labelled leads the shipped model was trained on (``leadbox train --merge`` adds them).
SHIPPED_TRAINING = DATA_DIR / "training.jsonl"
LABELS = [str(c) for c in CLASSES]
SPAM = LABELS.index(str(Category.SPAM))


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """Everything that decides the weights; stored in the model's ``info``."""

    steps: int = 300
    learning_rate: float = 0.05
    l2: float = 1e-3
    min_count: int = 2
    char_ngrams: tuple[int, int] | None = CHAR_NGRAMS
    char_scale: float = 3.0
    #: Spam guard (see ``LocalModel.decide``): chosen on cross-validation for spam precision.
    spam_min_prob: float = 0.6
    spam_margin: float = 0.3
    spam_min_rule: float = 0.0


DEFAULT_SETTINGS = TrainSettings()


@dataclass(slots=True)
class Example:
    evidence: Evidence
    label: int
    feats: list[str] = field(default_factory=list)
    rules: list[float] = field(default_factory=list)


def examples_from(rows: Iterable[LabeledRow], settings: TrainSettings) -> list[Example]:
    out: list[Example] = []
    for row in rows:
        full = f"{row.subject}\n{row.message}" if row.subject else row.message
        ev = rule_evidence(full)
        out.append(
            Example(ev, LABELS.index(row.category), sorted(model_features(ev, settings.char_ngrams)),
                    rule_inputs(ev))
        )
    return out


def fit(examples: Sequence[Example], settings: TrainSettings = DEFAULT_SETTINGS) -> LocalModel:
    """Train on ``examples``; raises ValueError when a class is missing (nothing to learn)."""
    k = len(LABELS)
    labels = np.array([ex.label for ex in examples], dtype=np.int64)
    counts = np.bincount(labels, minlength=k)
    if len(examples) == 0 or (counts == 0).any():
        missing = [LABELS[c] for c in range(k) if counts[c] == 0]
        raise ValueError(f"training data needs every category; missing: {', '.join(missing) or 'all'}")
    doc_freq = Counter(f for ex in examples for f in ex.feats)
    vocab = sorted(f for f, c in doc_freq.items() if c >= settings.min_count)
    index = {f: i for i, f in enumerate(vocab)}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for r, ex in enumerate(examples):
        n_chars = sum(1 for f in ex.feats if f[0] == "c")
        char_value = settings.char_scale / float(np.sqrt(n_chars)) if n_chars else 0.0
        for f in ex.feats:
            i = index.get(f)
            if i is not None:
                rows.append(r)
                cols.append(i)
                vals.append(char_value if f[0] == "c" else 1.0)
    row_a = np.array(rows, dtype=np.int64)
    col_a = np.array(cols, dtype=np.int64)
    val_a = np.array(vals, dtype=np.float64)
    n, v = len(examples), len(vocab)
    dense = np.array([ex.rules for ex in examples], dtype=np.float64)
    onehot = np.eye(k)[labels]
    # Class-balanced: every category weighs the same in the loss, whatever its count.
    sample_w = (n / (k * counts))[labels] / n

    params = [np.zeros((v, k)), np.zeros((dense.shape[1], k)), np.zeros(k)]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, settings.steps + 1):
        w, rw, b = params
        z = np.empty((n, k))
        for c in range(k):
            z[:, c] = np.bincount(row_a, weights=w[col_a, c] * val_a, minlength=n)
        z += dense @ rw + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        delta = (p - onehot) * sample_w[:, None]
        grad_w = np.empty((v, k))
        for c in range(k):
            grad_w[:, c] = np.bincount(col_a, weights=delta[row_a, c] * val_a, minlength=v)
        grads = [grad_w + settings.l2 * w, dense.T @ delta + settings.l2 * rw, delta.sum(axis=0)]
        for param, grad, (m1, m2) in zip(params, grads, moments, strict=True):
            m1 *= beta1
            m1 += (1 - beta1) * grad
            m2 *= beta2
            m2 += (1 - beta2) * grad * grad
            param -= settings.learning_rate * (m1 / (1 - beta1**step)) / (np.sqrt(m2 / (1 - beta2**step)) + eps)
    w, rw, b = params
    keep = np.abs(w).max(axis=1) >= 0.005
    weights = {vocab[i]: tuple(round(float(x), 3) for x in w[i]) for i in np.flatnonzero(keep)}
    return LocalModel(
        bias=tuple(round(float(x), 4) for x in b),
        weights=weights,
        rule_weights=tuple(tuple(round(float(x), 4) for x in row) for row in rw),
        spam_min_prob=settings.spam_min_prob,
        spam_margin=settings.spam_margin,
        spam_min_rule=settings.spam_min_rule,
        char_ngrams=settings.char_ngrams,
        char_scale=settings.char_scale,
        info={"rows": n, "per_category": {LABELS[c]: int(counts[c]) for c in range(k)}},
    )


def predict(model: LocalModel, ex: Example) -> int:
    category, _ = model.decide(model.probabilities(ex.evidence), ex.evidence.scores)
    return LABELS.index(str(category))


@dataclass(frozen=True, slots=True)
class Figures:
    """Accuracy, spam precision and recall, and every category's recall, from (true, got) pairs."""

    n: int
    accuracy: float
    spam_precision: float
    spam_recall: float
    recall: dict[str, float]

    @classmethod
    def of(cls, pairs: Sequence[tuple[int, int]]) -> Figures:
        n = len(pairs)
        predicted_spam = [t for t, g in pairs if g == SPAM]
        recall: dict[str, float] = {}
        for c, label in enumerate(LABELS):
            got = [g for t, g in pairs if t == c]
            recall[label] = round(sum(g == c for g in got) / len(got), 4) if got else 1.0
        return cls(
            n=n,
            accuracy=round(sum(t == g for t, g in pairs) / n, 4) if n else 0.0,
            spam_precision=round(sum(t == SPAM for t in predicted_spam) / len(predicted_spam), 4)
            if predicted_spam else 1.0,
            spam_recall=recall[LABELS[SPAM]],
            recall=recall,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n, "accuracy": self.accuracy, "spam_precision": self.spam_precision,
            "spam_recall": self.spam_recall, "recall": self.recall,
        }


def folds_for(labels: Sequence[int], k: int, seed: int = 7) -> list[int]:
    """Stratified fold number of every row, the same for the same labels and seed."""
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    rng = random.Random(seed)
    fold_of = [0] * len(labels)
    offset = 0
    for label in sorted(by_class):
        idxs = by_class[label]
        rng.shuffle(idxs)
        for j, i in enumerate(idxs):
            fold_of[i] = (j + offset) % k
        offset += len(idxs)
    return fold_of


def cross_validate(
    rows: Sequence[LabeledRow], settings: TrainSettings = DEFAULT_SETTINGS, k: int = 5, seed: int = 7,
    by_source: bool = False,
) -> Figures:
    """Train on k-1 folds, predict the k-th, for every fold; figures over all predictions.

    ``by_source``: one fold per writer (the rows' ``source``) instead of k stratified folds. Random
    folds put lines of the same writer on both sides and so measure fit to that writer's style;
    leaving a whole writer out is the nearer guide to how the model does on people it never read.
    """
    examples = examples_from(rows, settings)
    if by_source:
        names = sorted({row.source or "" for row in rows})
        fold_of = [names.index(row.source or "") for row in rows]
        k = len(names)
    else:
        fold_of = folds_for([ex.label for ex in examples], k, seed)
    pairs: list[tuple[int, int]] = []
    for f in range(k):
        model = fit([ex for i, ex in enumerate(examples) if fold_of[i] != f], settings)
        pairs += [(ex.label, predict(model, ex)) for i, ex in enumerate(examples) if fold_of[i] == f]
    return Figures.of(pairs)


def load_rows(paths: Iterable[Path | str]) -> tuple[list[LabeledRow], list[str]]:
    """Rows of every file, and one message per skipped line (``file:line: reason``)."""
    rows: list[LabeledRow] = []
    problems: list[str] = []
    for path in paths:
        loaded = load_jsonl(str(path))
        rows += loaded.rows
        problems += [f"{path}:{line}: skipped: {reason}" for line, reason in loaded.errors]
    return rows, problems
