"""Classifier benchmark: local throughput on one core, load time, OpenAI prompt tokens per lead.

Why these figures: the local backend must never be the bottleneck of the worker (target >= 1,000
messages/s on one core on contact-form-length messages, so the end-to-end 1,000 leads/s stays
reachable), it must load in under a second, and the OpenAI backend's cost is driven by prompt
tokens per lead (system prompt + budgeted message). Throughput is printed as wall-clock and as CPU
time of this process: on a shared machine the CPU-time figure is the steadier one.

The token figure comes from the local fake server (tests/fixtures/openai_fake.py),
which counts whitespace-separated words of every message: a deterministic
stand-in for tokens (tiktoken needs a download). Real BPE token counts are
typically ~1.3x words for English and a bit more for Spanish/Portuguese.

Run: .venv/bin/python bench/bench_classifier.py [DATA.jsonl] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.classifiers.evaluation import evaluate, load_jsonl
from agent.classifiers.llm import OpenAIClassifier
from agent.classifiers.local import LocalClassifier
from agent.classifiers.training import SHIPPED_TRAINING
from tests.fixtures.openai_fake import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = str(ROOT / "tests" / "data" / "classifier" / "independent.jsonl")
LOAD_PROBE = (
    "import time, json; t = time.perf_counter(); "
    "from agent.classifiers.local import LocalClassifier; c = LocalClassifier(); "
    "c.classify_sync('Sistema fora do ar'); t = time.perf_counter() - t; "
    "rss = int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024; "
    "print(json.dumps({'seconds': t, 'rss_mb': rss}))"
)


def bench_local(messages: list[str], repeat: int) -> tuple[int, float, float]:
    clf = LocalClassifier()
    for m in messages:  # warm-up (regex caches, dict sizes)
        clf.classify_sync(m)
    work = messages * repeat
    start, cpu = time.perf_counter(), time.process_time()
    for m in work:
        clf.classify_sync(m)
    return len(work), time.perf_counter() - start, time.process_time() - cpu


def bench_distinct(messages: list[str]) -> tuple[int, float, float]:
    """One pass over distinct messages with cold per-word caches: no repetition helps."""
    from agent.classifiers.model import _token_grams
    from agent.classifiers.signals import is_gibberish

    clf = LocalClassifier()
    _token_grams.cache_clear()
    is_gibberish.cache_clear()
    start, cpu = time.perf_counter(), time.process_time()
    for m in messages:
        clf.classify_sync(m)
    return len(messages), time.perf_counter() - start, time.process_time() - cpu


def load_time() -> dict[str, float]:
    """Import + model + language models + first classification, in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", LOAD_PROBE], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return dict(json.loads(out.stdout))


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
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    messages = [r.message for r in load_jsonl(args.data).rows]

    lengths = sorted(len(m) for m in messages)
    n, seconds, cpu = bench_local(messages, args.repeat)
    print(f"machine: {platform.processor() or platform.machine()} / {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.system()}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"data: {Path(args.data).name}, {len(messages)} messages x {args.repeat}, length median "
          f"{lengths[len(lengths) // 2]} chars")
    print(f"local: {n} classifications in {seconds:.2f} s = {n / seconds:,.0f} msg/s wall, "
          f"{n / cpu:,.0f} msg/s CPU time (one core)")
    distinct = list(dict.fromkeys(r.message for r in load_jsonl(str(SHIPPED_TRAINING)).rows))
    n, seconds, cpu = bench_distinct(distinct)
    print(f"local, {n} distinct messages once (training file, cold caches): {n / seconds:,.0f} msg/s wall, "
          f"{n / cpu:,.0f} msg/s CPU time")
    loads = [load_time() for _ in range(3)]
    print("local load (fresh process, import + model + language models + first message): "
          + ", ".join(f"{x['seconds']:.2f} s" for x in loads) + f"; RSS {loads[-1]['rss_mb']:.0f} MB")
    report = evaluate(load_jsonl(args.data).rows, LocalClassifier())
    spam = report["per_category"]["spam"]
    print(f"local accuracy on {Path(args.data).name}: {report['accuracy']:.3f} (n={report['n']}), "
          f"spam precision {spam['precision']:.3f}, recall {spam['recall']:.3f}, "
          f"language {report.get('language_accuracy')}")

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
