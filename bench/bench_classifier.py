"""Classifier benchmark: local throughput on one core, OpenAI prompt tokens per lead.

Why these two figures: the local backend must never be the bottleneck of the
worker (target >= 5,000 messages/s on one core), and the OpenAI backend's cost
is driven by prompt tokens per lead (system prompt + budgeted message).

The token figure comes from the local fake server (tests/fixtures/openai_fake.py),
which counts whitespace-separated words of every message: a deterministic
stand-in for tokens (tiktoken needs a download). Real BPE token counts are
typically ~1.3x words for English and a bit more for Spanish/Portuguese.

Run: .venv/bin/python bench/bench_classifier.py [DATA.jsonl] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.classifiers.evaluation import evaluate, load_jsonl
from agent.classifiers.llm import OpenAIClassifier
from agent.classifiers.local import LocalClassifier
from tests.fixtures.openai_fake import FakeOpenAIServer

DEFAULT_DATA = str(Path(__file__).resolve().parents[1] / "tests" / "data" / "leads-dev.jsonl")
HOLDOUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "classifier" / "holdout.jsonl"


def bench_local(messages: list[str], repeat: int) -> tuple[int, float]:
    clf = LocalClassifier()
    for m in messages:  # warm-up (regex caches, dict sizes)
        clf.classify_sync(m)
    work = messages * repeat
    start = time.perf_counter()
    for m in work:
        clf.classify_sync(m)
    return len(work), time.perf_counter() - start


async def bench_openai(messages: list[str], base_url: str) -> tuple[int, int, int]:
    clf = OpenAIClassifier(api_key="bench", base_url=base_url, fallback=LocalClassifier(), max_retries=0)
    try:
        for m in messages:
            await clf.classify(m)
    finally:
        await clf.close()
    return clf.calls, clf.prompt_tokens_used, clf.tokens_used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    messages = [r.message for r in load_jsonl(args.data).rows]

    n, seconds = bench_local(messages, args.repeat)
    print(f"machine: {platform.processor() or platform.machine()} / {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.system()}")
    print(f"local: {n} classifications in {seconds:.2f} s = {n / seconds:,.0f} msg/s (one core)")
    for path in (Path(args.data), HOLDOUT):
        if path.exists():
            report = evaluate(load_jsonl(str(path)).rows, LocalClassifier())
            spam = report["per_category"]["spam"]
            print(f"local accuracy on {path.name}: {report['accuracy']:.3f} (n={report['n']}), "
                  f"spam precision {spam['precision']:.3f}, recall {spam['recall']:.3f}")

    server = FakeOpenAIServer()
    server.start()
    try:
        calls, prompt, total = asyncio.run(bench_openai(messages, server.base_url))
    finally:
        server.stop()
    print(f"openai (fake server): {calls} leads, prompt tokens/lead = {prompt / calls:.1f} "
          f"(whitespace words), total tokens/lead = {total / calls:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
