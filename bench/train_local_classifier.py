"""Retrain the shipped local model and measure it: cross-validation and the independent set.

The trainer itself lives in the package (``agent/classifiers/training.py``, also behind
``leadbox train``); this script only writes the *shipped* model from the *shipped* training data
(``agent/classifiers/data/training.jsonl``) and prints the figures recorded in
bench/results_classifier.md.

The independent set (tests/data/classifier/independent.jsonl) is never trained on; ``--report``
prints its figures after training, for the record, not for choosing settings.

Run:
    .venv/bin/python bench/train_local_classifier.py             # train, write the shipped model
    .venv/bin/python bench/train_local_classifier.py --cv 5      # 5-fold CV of the shipped recipe
    .venv/bin/python bench/train_local_classifier.py --by-source # leave-one-writer-out CV
    .venv/bin/python bench/train_local_classifier.py --report    # train, write, score the files
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.classifiers.evaluation import evaluate, load_jsonl  # noqa: E402
from agent.classifiers.language import LANGUAGES, MARKER_WORDS, learn_marker_words  # noqa: E402
from agent.classifiers.local import LocalClassifier  # noqa: E402
from agent.classifiers.model import SHIPPED_MODEL  # noqa: E402
from agent.classifiers.train_command import write_atomically  # noqa: E402
from agent.classifiers.training import (  # noqa: E402
    DEFAULT_SETTINGS,
    SHIPPED_TRAINING,
    cross_validate,
    examples_from,
    fit,
    load_rows,
)

DATA = ROOT / "tests" / "data"
# Never trained on: the first independent set and the three sets of separate writers (README there).
REPORT_FILES = [DATA / "classifier" / name for name in
                ("independent.jsonl", "writers-e1.jsonl", "writers-e2.jsonl", "writers-e3.jsonl", "writers-e4.jsonl")]


def report(path: Path, model_path: Path) -> None:
    rows = load_jsonl(str(path)).rows
    r = evaluate(rows, LocalClassifier(model_path=model_path))
    pc = r["per_category"]
    recall = " ".join(f"{c} {m['recall']:.3f}" for c, m in pc.items())
    langs = ", ".join(f"{k} {v['accuracy']:.3f} (n={v['n']})" for k, v in r.get("per_language", {}).items())
    print(f"{path.name}: n={r['n']} accuracy={r['accuracy']:.3f} spam precision={pc['spam']['precision']:.3f} "
          f"recall: {recall}; language {r.get('language_accuracy')}: {langs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--cv", type=int, default=0, help="k-fold cross-validation only (no model written)")
    parser.add_argument("--by-source", action="store_true",
                        help="leave-one-writer-out CV (one fold per 'source'; no model written)")
    parser.add_argument("--report", action="store_true", help="score the independent set after training")
    args = parser.parse_args()
    rows, problems = load_rows([SHIPPED_TRAINING])
    for p in problems:
        print(p, file=sys.stderr)
    print(f"training rows: {len(rows)} {dict(Counter(r.category for r in rows))}")
    if args.cv or args.by_source:
        started = time.perf_counter()
        fig = cross_validate(rows, DEFAULT_SETTINGS, k=args.cv or 5, by_source=args.by_source)
        name = "leave-one-writer-out CV" if args.by_source else f"{args.cv}-fold CV"
        print(f"{name}: {json.dumps(fig.as_dict())} ({time.perf_counter() - started:.0f} s)")
        return 0
    started = time.perf_counter()
    model = fit(examples_from(rows, DEFAULT_SETTINGS), DEFAULT_SETTINGS)
    model.info.update({"source": "agent/classifiers/data/training.jsonl"})
    write_atomically(args.out, model)
    markers = learn_marker_words((r.message, r.language) for r in rows if r.language in LANGUAGES)
    MARKER_WORDS.write_text(json.dumps({"source": "agent/classifiers/data/training.jsonl", "words": markers},
                                       ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {MARKER_WORDS} ({len(markers)} marker words)")
    print(f"wrote {args.out} ({len(model.weights)} features, {args.out.stat().st_size / 1024:.0f} KiB) "
          f"in {time.perf_counter() - started:.1f} s")
    if args.report:
        for path in REPORT_FILES:
            report(path, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
