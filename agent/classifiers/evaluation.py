"""Measure a classifier against a labeled JSONL file (``leadbox eval``).

Why it exists: classifier changes (a new rule, another model, a local LLM
behind ``base_url``) must be judged by numbers, not by a few examples. The
report gives accuracy, per-category precision/recall/F1, the confusion
matrix and the misclassified lines, so a regression is visible and explainable.

Input: one JSON object per line with at least ``message`` and ``category``
(``subject`` optional). Bad lines are skipped and reported with their line
number, so one broken line does not hide the measurement of the others.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.core.models import Category
from agent.core.ports import Classifier
from agent.errors import LeadboxError

CATEGORIES = tuple(c.value for c in Category)
SNIPPET = 80


@dataclass(slots=True)
class LabeledRow:
    line: int
    message: str
    category: str
    subject: str | None = None
    language: str | None = None
    #: Who wrote the line (the shipped data tags each writer), for cross-validation by writer.
    source: str | None = None


@dataclass(slots=True)
class LoadResult:
    """Rows that loaded, and why the others did not (line number, reason)."""

    rows: list[LabeledRow] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)


def load_jsonl(path: str) -> LoadResult:
    """Read a labeled JSONL file; a bad line is skipped and reported, never fatal.

    Raises OSError only when the file itself cannot be opened.
    """
    result = LoadResult()
    with open(path, "rb") as fh:
        for number, raw_bytes in enumerate(fh, start=1):
            try:
                line = raw_bytes.decode("utf-8").strip()
            except UnicodeDecodeError:
                result.errors.append((number, "not UTF-8 text"))
                continue
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                result.errors.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
                continue
            if not isinstance(obj, dict):
                result.errors.append((number, "not a JSON object"))
                continue
            message = obj.get("message")
            category = obj.get("category")
            if not isinstance(message, str) or not message.strip():
                result.errors.append((number, "missing or empty 'message'"))
                continue
            if category not in CATEGORIES:
                result.errors.append(
                    (number, f"'category' must be one of {', '.join(CATEGORIES)}, got {category!r}")
                )
                continue
            subject = obj.get("subject")
            language = obj.get("language")
            source = obj.get("source")
            result.rows.append(
                LabeledRow(
                    line=number,
                    message=message,
                    category=category,
                    subject=subject if isinstance(subject, str) else None,
                    language=language if isinstance(language, str) else None,
                    source=source if isinstance(source, str) else None,
                )
            )
    return result


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET else flat[: SNIPPET - 1] + "…"


def score(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Accuracy, per-category precision/recall/F1 and confusion from (expected, got) pairs."""
    confusion = {t: dict.fromkeys(CATEGORIES, 0) for t in CATEGORIES}
    n = 0
    correct = 0
    for expected, got in pairs:
        confusion[expected][got] += 1
        n += 1
        correct += expected == got
    per_category: dict[str, dict[str, float]] = {}
    for cat in CATEGORIES:
        tp = confusion[cat][cat]
        predicted = sum(confusion[t][cat] for t in CATEGORIES)
        actual = sum(confusion[cat].values())
        # Nothing predicted as ``cat`` means no false positives: precision 1.0.
        precision = tp / predicted if predicted else 1.0
        recall = tp / actual if actual else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_category[cat] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": actual,
        }
    return {
        "n": n,
        "accuracy": round(correct / n, 4) if n else 0.0,
        "per_category": per_category,
        "confusion": confusion,
    }


def language_report(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``language_accuracy`` and ``per_language`` ({lang: {accuracy, n}}) from (expected, got)."""
    by_lang: dict[str, list[bool]] = {}
    for expected, got in pairs:
        by_lang.setdefault(expected, []).append(expected == got)
    n = len(pairs)
    return {
        "language_accuracy": round(sum(e == g for e, g in pairs) / n, 4) if n else None,
        "per_language": {
            lang: {"accuracy": round(sum(hits) / len(hits), 4), "n": len(hits)}
            for lang, hits in sorted(by_lang.items())
        },
    }


async def evaluate_async(rows: Sequence[LabeledRow | dict[str, Any]], classifier: Classifier) -> dict[str, Any]:
    """Classify every row (one at a time: a remote backend is not stampeded) and score.

    ``messages_per_s`` is the rows divided by the time spent classifying them (loading and
    scoring excluded): for the local classifier, its speed on this file on this machine.
    """
    pairs: list[tuple[str, str]] = []
    languages: list[tuple[str, str]] = []
    misclassified: list[dict[str, Any]] = []
    fallbacks = 0
    busy = 0.0
    for index, item in enumerate(rows, start=1):
        row = item if isinstance(item, LabeledRow) else LabeledRow(
            line=int(item.get("line", index)),
            message=str(item["message"]),
            category=str(item["category"]),
            subject=item.get("subject"),
            language=item.get("language"),
        )
        started = time.perf_counter()
        result = await classifier.classify(row.message, subject=row.subject)
        busy += time.perf_counter() - started
        got = str(result.category)
        fallbacks += result.needs_reclassify
        pairs.append((row.category, got))
        if row.language:
            languages.append((row.language, result.language))
        if got != row.category:
            misclassified.append(
                {"line": row.line, "expected": row.category, "got": got, "message": _snippet(row.message)}
            )
    report = score(pairs)
    report["misclassified"] = misclassified
    report["classifier"] = getattr(classifier, "name", type(classifier).__name__)
    report["fallbacks"] = fallbacks
    report["messages_per_s"] = round(len(pairs) / busy, 1) if busy > 0 else None
    if languages:
        report.update(language_report(languages))
    return report


def evaluate(rows: Sequence[LabeledRow | dict[str, Any]], classifier: Classifier) -> dict[str, Any]:
    """Synchronous wrapper for scripts; inside a running loop use :func:`evaluate_async`."""
    return asyncio.run(evaluate_async(rows, classifier))


def format_report(report: dict[str, Any]) -> str:
    """A plain-text report for humans: headline figures, per-category table, confusion."""
    lines = [
        f"classifier: {report.get('classifier', '?')}   n: {report['n']}   "
        f"accuracy: {report['accuracy']:.1%}",
    ]
    if report.get("messages_per_s"):
        lines.append(f"speed: {report['messages_per_s']:,.0f} messages/s (classification only)")
    if report.get("language_accuracy") is not None:
        per = ", ".join(f"{k} {v['accuracy']:.1%} (n={v['n']})" for k, v in report["per_language"].items())
        lines.append(f"reply language right: {report['language_accuracy']:.1%}   {per}")
    if report.get("fallbacks"):
        lines.append(f"fallbacks to local (needs_reclassify): {report['fallbacks']}")
    lines += ["", f"{'category':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>5}"]
    for cat, m in report["per_category"].items():
        lines.append(
            f"{cat:<10} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} {m.get('support', ''):>5}"
        )
    lines += ["", "confusion (rows: expected, columns: got)", "          " + "".join(f"{c:>9}" for c in CATEGORIES)]
    for true, row in report["confusion"].items():
        lines.append(f"{true:<10}" + "".join(f"{row[c]:>9}" for c in CATEGORIES))
    if report.get("misclassified"):
        lines += ["", "misclassified:"]
        for m in report["misclassified"]:
            lines.append(f"  line {m['line']}: {m['expected']} -> {m['got']}: {m['message']}")
    if report.get("skipped_lines"):
        lines += ["", "skipped lines:"]
        for item in report["skipped_lines"]:
            lines.append(f"  line {item['line']}: {item['reason']}")
    return "\n".join(lines)


def run_eval(
    path: str,
    backend: str = "local",
    as_json: bool = False,
    api_key: str | None = None,
    **openai_kwargs: Any,
) -> int:
    """Entry point for ``leadbox eval``: report on stdout, problems on stderr.

    Exit codes: 0 when the evaluation ran (whatever the accuracy), 2 when the
    file cannot be read, has no usable line, or the backend cannot be built.
    """
    from agent.classifiers.llm import make_classifier  # the adapter, only when asked for

    try:
        loaded = load_jsonl(path)
    except OSError as exc:
        print(f"leadbox eval: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for number, reason in loaded.errors:
        print(f"leadbox eval: {path}:{number}: skipped: {reason}", file=sys.stderr)
    if not loaded.rows:
        print(f"leadbox eval: {path} has no usable labeled line", file=sys.stderr)
        return 2
    try:
        classifier = make_classifier(backend, api_key=api_key, **openai_kwargs)
    except (ValueError, TypeError, LeadboxError) as exc:
        print(f"leadbox eval: {exc}", file=sys.stderr)
        return 2

    async def _run() -> dict[str, Any]:
        try:
            return await evaluate_async(loaded.rows, classifier)
        finally:
            close = getattr(classifier, "close", None)
            if close is not None:
                await close()

    report = asyncio.run(_run())
    report["skipped_lines"] = [{"line": n, "reason": r} for n, r in loaded.errors]
    if as_json:
        print(json.dumps(report, ensure_ascii=False, sort_keys=True))
    else:
        print(format_report(report))
    return 0
