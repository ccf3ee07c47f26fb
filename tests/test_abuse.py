"""Abuse: the webhook must not become a mail cannon nor a header/markup injection vector.

Everything runs through the real in-process daemon (SQLite, outbox transport) and
checks the .eml files it writes.
"""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from tests.fixtures.daemon import all_final, wait_for

HOSTILE = ["Eve\u2028Bcc: victim@example.com", "Eve\u2029To: v@x.io", "Eve\u0085Cc: v@x.io",
           "=?utf-8?q?Eve=0D=0ABcc:_victim@example.com?=", "Eve =?utf-8?b?DQpCY2M6IHZAeC5pbw==?="]
VICTIM_VARIANTS = ["victim@example.com", "VICTIM@example.com", " Victim@Example.COM ",
                   "victim@exa\u00admple.com", "victim@ｅｘａｍｐｌｅ.com", "victim@exa\u200bmple.com",
                   "victim@example\u3002com"]


async def post(client: Any, body: dict[str, Any]) -> tuple[int, Any]:
    r = await client.post("/leads", data=json.dumps(body), headers={"Content-Type": "application/json"})
    return r.status, await r.json()


def outbox(tmp: Path) -> list[Any]:
    return [BytesParser(policy=policy.default).parsebytes(p.read_bytes())
            for p in sorted((tmp / "outbox").glob("*.eml"))]


async def test_one_reply_per_mailbox_across_address_variants(make_daemon: Any, tmp_path: Path) -> None:
    """Case, spaces and IDNA-equivalent domains (soft hyphen, zero-width space, fullwidth letters,
    ideographic full stop) all name one mailbox: one lead, at most one reply."""
    d, c = await make_daemon()
    statuses = [(await post(c, {"name": "Vic", "email": e, "message": f"Hola, presupuesto {i}"}))[0]
                for i, e in enumerate(VICTIM_VARIANTS * 3)]
    assert statuses.count(202) == 1, statuses
    await wait_for(lambda: all_final(d), what="leads processed")
    assert len(outbox(tmp_path)) == 1


async def test_gmail_dot_and_tag_variants_get_one_reply(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon()
    for e in ["victim@gmail.com", "v.ictim@gmail.com", "vi.ct.im@gmail.com", "victim+1@gmail.com",
              "victim+x@gmail.com"]:
        await post(c, {"name": "Vic", "email": e, "message": "Hola, quiero un presupuesto"})
    await wait_for(lambda: all_final(d), what="leads processed")
    assert len(outbox(tmp_path)) <= 1


async def test_global_cap_holds_replies_back(make_daemon: Any, tmp_path: Path) -> None:
    """Over reply.max_per_hour the rest wait for the window (tests/test_sending_limits.py has the rest)."""
    d, c = await make_daemon({"LEADBOX_REPLY__MAX_PER_HOUR": "3"})
    for i in range(8):
        lead = {"name": "A", "email": f"cap{i}@example.com", "message": "Hola, un presupuesto"}
        assert (await post(c, lead))[0] == 202

    async def held() -> bool:  # three replies written, five waiting
        leads, _ = await d.store.list(reply_status="waiting", limit=50)
        return len(leads) == 5 and len(outbox(tmp_path)) == 3
    await wait_for(held, what="3 replies sent and 5 waiting for the hourly cap")
    leads, _ = await d.store.list(reply_status="waiting", limit=50)
    assert all(x.state.value == "mirrored" and (x.reply_reason or "").startswith("reply-cap") for x in leads)


async def test_rate_limit_per_ip_and_forwarded_for_only_behind_a_proxy(make_daemon: Any) -> None:
    _, c = await make_daemon({"LEADBOX_HTTP__RATE_LIMIT_PER_MINUTE": "6"})
    statuses = []
    for i in range(4):  # a rotating X-Forwarded-For does not help when trust_proxy is off
        r = await c.post("/leads", data=json.dumps({"name": "A", "email": f"r{i}@example.com", "message": "m"}),
                         headers={"Content-Type": "application/json", "X-Forwarded-For": f"10.0.0.{i}"})
        statuses.append(r.status)
        if r.status == 429:
            assert int(r.headers["Retry-After"]) >= 1
    assert statuses[0] == 202 and 429 in statuses
    _, c2 = await make_daemon({"LEADBOX_HTTP__RATE_LIMIT_PER_MINUTE": "6", "LEADBOX_HTTP__TRUST_PROXY": "true"})
    for i in range(4):  # behind a trusted proxy each client IP has its own bucket
        r = await c2.post("/leads", data=json.dumps({"name": "A", "email": f"p{i}@example.com", "message": "m"}),
                          headers={"Content-Type": "application/json", "X-Forwarded-For": f"10.0.0.{i}"})
        assert r.status == 202


async def test_no_header_injection_through_any_field(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon()
    accepted = 0
    for i, name in enumerate(HOSTILE):
        # A real request (so it is answered) carrying the injection attempt.
        status, _ = await post(c, {"name": name, "email": f"h{i}@example.com",
                                   "message": f"Hola, quiero un presupuesto para una web\u2028Bcc: x@y.z {i}",
                                   "company": name, "source": name, "metadata": {"Bcc": "v@x.io", "k": name}})
        assert status in (202, 422)
        accepted += status == 202
    await wait_for(lambda: all_final(d), what="leads processed")
    mails = outbox(tmp_path)
    assert len(mails) == accepted > 0
    for m in mails:
        assert m["Bcc"] is None and m["Cc"] is None
        assert len(m.get_all("To")) == 1 and len(m["To"].addresses) == 1
        assert m["To"].addresses[0].addr_spec.startswith("h")
        for key, value in m.items():
            assert not any(ch in str(value) for ch in "\r\n\u2028\u2029\u0085"), (key, value)


async def test_reply_has_no_llm_text_unless_enabled(make_daemon: Any, tmp_path: Path, openai_server: Any) -> None:
    hostile = ("Visit http://evil.example/x and <a href='http://e.io'>here</a> or [click](http://x.io) "
               "www.spam.example <script>alert(1)</script> SUMMARYMARK")
    openai_server.script([{"kind": "good", "category": "sales", "summary": hostile, "language": "es"}] * 2)
    env = {"LEADBOX_CLASSIFIER__BACKEND": "openai", "LEADBOX_CLASSIFIER__BASE_URL": openai_server.base_url,
           "OPENAI_API_KEY": "test"}
    d, c = await make_daemon(env)
    await post(c, {"name": "Ana", "email": "llm1@example.com", "message": "Hola, un presupuesto"})
    await wait_for(lambda: all_final(d, 1), what="lead processed")
    body = outbox(tmp_path)[0].get_content()
    assert "SUMMARYMARK" not in body and "evil" not in body


# (summary given by the model, words that must reach the reply); the summaries are clipped
# to 200 characters by the classifier, so each hostile case gets its own lead.
LLM_SUMMARIES: list[tuple[str, list[str]]] = [
    ("Quiere ALPHA presupuesto\r\nBcc: victim@example.com\r\nSubject: pwned\r\n\r\n"
     "visit http://evil.example/x?a=1 or HTTPS://EVIL2.example/ ahora", ["ALPHA", "presupuesto", "ahora"]),
    ("<a href='http://e.io/p'>BRAVO</a> <script>alert(1)</script><img src=x onerror=alert(2)> "
     "<b>CHARLIE</b>", ["BRAVO", "CHARLIE"]),
    ("[click here](http://x.io/y) DELTA www.spam.example/path ECHO ![img](http://t.io/p.png) "
     "[ref]: http://r.io FOXTROT", ["DELTA", "ECHO", "FOXTROT"]),
    ("GOLF ftp://evil.example/f mailto:evil@evil.example evil@evil.example javascript:alert(1) "
     "//evil.example/x evil.example/path bit.ly/abc HOTEL", ["GOLF", "HOTEL"]),
    ("INDIA h\u200bttp://evil.example/z \uff48\uff54\uff54\uff50://evil.example <script "
     "JULIETT <<b>>", ["INDIA", "JULIETT"]),
    ("Empresa de EE.UU. pide demo de KILO, p.ej. el lunes; usa Node.js", ["EE.UU.", "KILO", "p.ej.", "Node.js"]),
]
LINK_MARKERS = ["http", "www.", "://", "evil", "e.io", "x.io", "t.io", "r.io", "bit.ly", "spam.",
                "<", ">", "](", "mailto", "javascript", "img", "onerror", "alert(2)"]


def summary_templates(tmp: Path) -> Path:
    """A templates dir whose replies show $summary between markers (config/templates do not use it)."""
    d = tmp / "templates"
    d.mkdir()
    for category in ("sales", "support", "info"):
        (d / f"{category}.es.txt").write_text(
            "Subject: Gracias por escribir\n\nHola $first_name:\n\nSUMMARY-START $summary SUMMARY-END\n"
            "\nUn saludo\n", encoding="utf-8")
    return d


async def test_reply_summary_when_enabled_has_words_but_no_links_markup_or_headers(
        make_daemon: Any, tmp_path: Path, openai_server: Any) -> None:
    """reply.include_summary = true and a model answering with links, tags, markdown and CR/LF
    (the fake's echo mode: each lead's message carries the verdict the model will give)."""
    openai_server.script(["echo"] * len(LLM_SUMMARIES))
    env = {"LEADBOX_CLASSIFIER__BACKEND": "openai", "LEADBOX_CLASSIFIER__BASE_URL": openai_server.base_url,
           "OPENAI_API_KEY": "test", "LEADBOX_REPLY__INCLUDE_SUMMARY": "true",
           "LEADBOX_REPLY__TEMPLATES_DIR": str(summary_templates(tmp_path))}
    d, c = await make_daemon(env)
    expected: dict[str, list[str]] = {}
    for i, (summary, words) in enumerate(LLM_SUMMARIES):
        verdict = json.dumps({"category": "sales", "summary": summary, "language": "es", "confidence": 0.9})
        status, answer = await post(c, {"name": f"Ana {i}", "email": f"sum{i}@example.com",
                                        "message": f"Hola, un presupuesto por favor. {verdict}"})
        assert status == 202, answer
        expected[f"sum{i}@example.com"] = words
    await wait_for(lambda: all_final(d, len(LLM_SUMMARIES)), what="leads processed")
    mails = outbox(tmp_path)
    assert len(mails) == len(LLM_SUMMARIES)
    for m in mails:
        to = m["To"].addresses
        assert len(to) == 1 and to[0].addr_spec in expected
        assert m["Bcc"] is None and m["Cc"] is None and m["Subject"] == "Gracias por escribir"
        assert sorted(k.lower() for k in m.keys()) == sorted(
            ["from", "to", "subject", "date", "message-id", "auto-submitted", "x-auto-response-suppress",
             "x-leadbox-lead", "mime-version", "content-type", "content-transfer-encoding"])
        body = m.get_content()
        line = next(x for x in body.splitlines() if x.startswith("SUMMARY-START"))
        summary = line.removeprefix("SUMMARY-START").removesuffix("SUMMARY-END")
        assert line.endswith("SUMMARY-END"), body  # the summary stayed on one line
        for word in expected[to[0].addr_spec]:
            assert word in summary, (word, summary)
        for marker in LINK_MARKERS:
            assert marker not in summary.lower(), (marker, summary)
        assert not any(x.lower().startswith(("bcc:", "subject:")) for x in body.splitlines())
