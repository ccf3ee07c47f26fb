"""Offer a steady load of unique leads: POST n leads at `rate` per second (its own process).

    python bench/steady_client.py URL N RATE [TAG] [MESSAGES.jsonl]   -> prints one JSON line with counts

With MESSAGES.jsonl (lines with "message", as `leadbox eval` reads), lead i carries the text of line
i modulo the file's length, so the classifier sees distinct contact-form messages, not one text.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


def load_texts(messages_file: str | None) -> list[str]:
    if not messages_file:
        return ["Hola, quiero un presupuesto para una tienda online, gracias."]
    with open(messages_file, encoding="utf-8") as fh:
        return [json.loads(line)["message"][:4000] for line in fh if line.strip()]


async def main(url: str, n: int, rate: float, tag: str, texts: list[str]) -> None:
    sent = ok = failed = 0
    t0 = time.monotonic()
    sem = asyncio.Semaphore(64)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
        async def one(i: int) -> None:
            nonlocal ok, failed
            body = {"name": f"Cliente {i}", "email": f"e2e{i}-{tag}@bench.example",
                    "message": texts[i % len(texts)]}
            try:
                async with s.post(f"{url}/leads", json=body) as r:
                    await r.read()
                    ok += r.status in (200, 202)
                    failed += r.status not in (200, 202)
            except aiohttp.ClientError:
                failed += 1
            finally:
                sem.release()

        tasks = []
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await sem.acquire()
            tasks.append(asyncio.create_task(one(i)))
            sent += 1
        await asyncio.gather(*tasks)
    took = time.monotonic() - t0
    print(json.dumps({"sent": sent, "ok": ok, "failed": failed, "seconds": round(took, 2),
                      "offered_rate": round(sent / took)}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "s",
                     load_texts(sys.argv[5] if len(sys.argv) > 5 else None)))
