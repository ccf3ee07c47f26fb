"""What reading website form notifications costs the email parser.

    .venv/bin/python bench/bench_form_parse.py [--rounds 8] [--mails 500]

Parses, in-process, ``--mails`` ordinary mails from people (bench_inbox's ~2 KB lead mail)
and the form notifications of tests/data/emails/forms (13 tools and variants, repeated to a
similar count), with the form reader on and with it replaced by "not a notification". Rounds
alternate on/off so a busy machine slows both alike; each figure is the fastest round
(ms per message). The ratio on/off is the number to compare across machines.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_inbox import make_mail  # noqa: E402

import agent.intake.email_parse as email_parse  # noqa: E402

FORMS = ROOT / "tests" / "data" / "emails" / "forms"


def per_message_ms(mails: list[bytes]) -> float:
    start = time.process_time()
    for raw in mails:
        email_parse.parse_email(raw, own_addresses=frozenset({"leads@example.com"}),
                                own_domains=frozenset({"example.com"}))
    return (time.process_time() - start) / len(mails) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--mails", type=int, default=500)
    args = ap.parse_args()
    people = [make_mail(i, "bench") for i in range(args.mails)]
    notes = [p.read_bytes() for p in sorted(FORMS.glob("*.eml")) if not p.name.startswith("control_")]
    forms = (notes * (args.mails // len(notes) + 1))[:args.mails]
    reader = email_parse.read_notification

    def off(**_: Any) -> None:
        return None

    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for mode, fn in (("on", reader), ("off", off)):
            email_parse.read_notification = fn  # type: ignore[assignment]
            for kind, mails in (("person", people), ("form", forms)):
                ms = per_message_ms(mails)
                best[(kind, mode)] = min(ms, best.get((kind, mode), ms))
    email_parse.read_notification = reader
    print(f"python {platform.python_version()}, {platform.machine()}, rounds {args.rounds}, "
          f"{args.mails} mails of each kind ({len(notes)} distinct notifications)")
    for kind in ("person", "form"):
        on, no = best[(kind, "on")], best[(kind, "off")]
        print(f"{kind:7s} reader on {on:.3f} ms/msg   off {no:.3f} ms/msg   on/off {on / no:.2f}")


if __name__ == "__main__":
    main()
