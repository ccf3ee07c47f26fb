"""Train the learned layer of the local classifier and measure it honestly.

What it does: a multinomial logistic regression (softmax, L2, AdaGrad, fixed
epochs, seeded order, so every run gives the same weights) over the features of
``agent.classifiers.local.model_features`` (words, bigrams, stems, fired rule
entries, structural flags) plus the four rule scores. Features seen in fewer
than ``--min-count`` training messages are dropped, weights are rounded, and
the result is written as JSON to ``agent/classifiers/data/local_model.json``.

Why stdlib only: the daemon ships without numpy, and a few hundred to a few
thousand messages train in seconds in pure Python.

Data: tests/data/classifier/train.jsonl and the shared dev file. The held-out
file tests/data/classifier/holdout.jsonl is never used for training or for
choosing settings; ``--report`` only prints its aggregate figures.

Run:
    .venv/bin/python bench/train_local_classifier.py            # train, write the model
    .venv/bin/python bench/train_local_classifier.py --cv 5     # 5-fold CV over train+dev
    .venv/bin/python bench/train_local_classifier.py --report   # train, write, score files
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.classifiers import local as cl  # noqa: E402
from agent.classifiers.evaluation import LabeledRow, evaluate, load_jsonl  # noqa: E402

TRAIN = ROOT / "tests" / "data" / "classifier" / "train.jsonl"
HOLDOUT = ROOT / "tests" / "data" / "classifier" / "holdout.jsonl"
DEV = ROOT / "tests" / "data" / "leads-dev.jsonl"
CLASSES = [str(c) for c in cl._CLASSES]  # noqa: SLF001 - the bench trains the module's model
SPAM = CLASSES.index("spam")

#: Spam guard shipped with the model (see LocalModel.decide); chosen for precision.
SPAM_GUARD = {"min_prob": 0.6, "margin": 0.3, "min_rule_score": 2.0}


@dataclass(slots=True)
class Example:
    feats: list[str]
    rules: list[float]
    label: int
    rule_spam: float


def to_example(row: LabeledRow) -> Example:
    full = f"{row.subject}\n{row.message}" if row.subject else row.message
    ev = cl.rule_evidence(full)
    return Example(cl.model_features(ev), cl.rule_inputs(ev), CLASSES.index(row.category),
                   ev.scores[cl.Category.SPAM])


def train(
    examples: Sequence[Example], *, epochs: int = 40, lr: float = 0.1, l2: float = 1e-4,
    min_count: int = 2, seed: int = 13,
) -> dict[str, object]:
    """Softmax regression with AdaGrad; class-balanced; deterministic."""
    k = len(CLASSES)
    counts = Counter(f for ex in examples for f in set(ex.feats))
    vocab = {f for f, c in counts.items() if c >= min_count}
    weights: dict[str, list[float]] = {f: [0.0] * k for f in sorted(vocab)}
    grad_sq: dict[str, list[float]] = {f: [1e-8] * k for f in weights}
    n_rules = len(examples[0].rules) if examples else 4
    rule_w = [[0.0] * k for _ in range(n_rules)]
    rule_g = [[1e-8] * k for _ in range(n_rules)]
    bias = [0.0] * k
    bias_g = [1e-8] * k
    label_counts = Counter(ex.label for ex in examples)
    class_weight = [len(examples) / (k * label_counts[c]) if label_counts[c] else 0.0 for c in range(k)]
    order = list(range(len(examples)))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for idx in order:
            ex = examples[idx]
            feats = [f for f in ex.feats if f in weights]
            z = list(bias)
            for f in feats:
                w = weights[f]
                for c in range(k):
                    z[c] += w[c]
            for value, row in zip(ex.rules, rule_w, strict=True):
                for c in range(k):
                    z[c] += value * row[c]
            p = cl.softmax(z)
            cw = class_weight[ex.label]
            g = [cw * (p[c] - (1.0 if c == ex.label else 0.0)) for c in range(k)]
            for c in range(k):
                bias_g[c] += g[c] * g[c]
                bias[c] -= lr * g[c] / math.sqrt(bias_g[c])
            for f in feats:
                w = weights[f]
                gs = grad_sq[f]
                for c in range(k):
                    gc = g[c] + l2 * w[c]
                    gs[c] += gc * gc
                    w[c] -= lr * gc / math.sqrt(gs[c])
            for value, row, rg in zip(ex.rules, rule_w, rule_g, strict=True):
                if value:
                    for c in range(k):
                        gc = g[c] * value + l2 * row[c]
                        rg[c] += gc * gc
                        row[c] -= lr * gc / math.sqrt(rg[c])
    kept = {
        f: [round(x, 3) for x in w] for f, w in weights.items() if max(abs(x) for x in w) >= 0.005
    }
    return {
        "format": 1,
        "classes": CLASSES,
        "bias": [round(x, 4) for x in bias],
        "rule_weights": [[round(x, 4) for x in row] for row in rule_w],
        "spam_guard": SPAM_GUARD,
        "weights": kept,
    }


def predict(model: cl.LocalModel, ex: Example) -> int:
    z = list(model.bias)
    for f in ex.feats:
        w = model.weights.get(f)
        if w is not None:
            for c in range(4):
                z[c] += w[c]
    for value, row in zip(ex.rules, model.rule_weights, strict=True):
        for c in range(4):
            z[c] += value * row[c]
    probs = cl.softmax(z)
    scores = dict.fromkeys(cl.Category, 0.0)
    scores[cl.Category.SPAM] = ex.rule_spam
    return CLASSES.index(str(model.decide(probs, scores)[0]))


def figures(pairs: list[tuple[int, int]]) -> tuple[float, float, float]:
    """accuracy, spam precision, spam recall."""
    n = len(pairs)
    acc = sum(a == b for a, b in pairs) / n if n else 0.0
    pred_spam = [a for a, b in pairs if b == SPAM]
    true_spam = [b for a, b in pairs if a == SPAM]
    prec = sum(a == SPAM for a in pred_spam) / len(pred_spam) if pred_spam else 1.0
    rec = sum(b == SPAM for b in true_spam) / len(true_spam) if true_spam else 1.0
    return acc, prec, rec


def cross_validate(rows: list[LabeledRow], folds: int, seed: int = 7) -> None:
    examples = [to_example(r) for r in rows]
    by_class: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_class.setdefault(ex.label, []).append(i)
    rng = random.Random(seed)
    fold_of = [0] * len(examples)
    for idxs in by_class.values():  # stratified
        rng.shuffle(idxs)
        for j, i in enumerate(idxs):
            fold_of[i] = j % folds
    all_pairs: list[tuple[int, int]] = []
    rule_pairs: list[tuple[int, int]] = []
    rules_only = cl.LocalClassifier()
    for f in range(folds):
        tr = [ex for i, ex in enumerate(examples) if fold_of[i] != f]
        te = [i for i in range(len(examples)) if fold_of[i] == f]
        model = cl.LocalModel.from_json(train(tr))
        pairs = [(examples[i].label, predict(model, examples[i])) for i in te]
        all_pairs += pairs
        decide = rules_only._decide  # noqa: SLF001 - the rules alone, as the baseline
        rpairs = [(examples[i].label, CLASSES.index(str(decide(cl.rule_evidence(rows[i].message).scores)[0])))
                  for i in te]
        rule_pairs += rpairs
        acc, prec, rec = figures(pairs)
        print(f"fold {f + 1}: n={len(te)} accuracy={acc:.3f} spam precision={prec:.3f} recall={rec:.3f}")
    acc, prec, rec = figures(all_pairs)
    print(f"{folds}-fold CV (model+rules): accuracy={acc:.3f} spam precision={prec:.3f} recall={rec:.3f}")
    acc, prec, rec = figures(rule_pairs)
    print(f"same folds, rules only:     accuracy={acc:.3f} spam precision={prec:.3f} recall={rec:.3f}")


def load_rows(paths: Sequence[Path]) -> list[LabeledRow]:
    rows: list[LabeledRow] = []
    for path in paths:
        if path.exists():
            rows += load_jsonl(str(path)).rows
        else:
            print(f"warning: {path} missing, skipped", file=sys.stderr)
    return rows


def report(path: Path) -> None:
    loaded = load_jsonl(str(path))
    clf = cl.LocalClassifier()
    r = evaluate(loaded.rows, clf)
    spam = r["per_category"]["spam"]
    by_lang: dict[str, list[bool]] = {}
    for row in loaded.rows:
        by_lang.setdefault(row.language or "?", []).append(clf.classify_sync(row.message).category == row.category)
    langs = ", ".join(f"{k} {sum(v) / len(v):.3f} (n={len(v)})" for k, v in sorted(by_lang.items()))
    print(f"{path.name}: n={r['n']} accuracy={r['accuracy']:.3f} spam precision={spam['precision']:.3f} "
          f"recall={spam['recall']:.3f}; by language: {langs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", type=Path, default=[TRAIN, DEV])
    parser.add_argument("--out", type=Path, default=cl.MODEL_PATH)
    parser.add_argument("--cv", type=int, default=0, help="k-fold cross-validation only (no model written)")
    parser.add_argument("--report", action="store_true", help="score dev and held-out files after training")
    args = parser.parse_args()
    rows = load_rows(args.data)
    print(f"training rows: {len(rows)} {dict(Counter(r.category for r in rows))}")
    if args.cv:
        cross_validate(rows, args.cv)
        return 0
    model = train([to_example(r) for r in rows])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(model, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(model['weights'])} features, {len(text) / 1024:.0f} KiB)")  # type: ignore[arg-type]
    if args.report:
        cl._MODEL = cl.load_model(args.out)  # noqa: SLF001 - report on the model just written
        for path in (DEV, TRAIN, HOLDOUT):
            if path.exists():
                report(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
