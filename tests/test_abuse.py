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
    for e in ["victim@gmail.com", "v.ictim@gmail.com", "vi.ct.im@gmail.com", "victim+1@gmail.com", "victim+x@gmail.com"]:
        await post(c, {"name": "Vic", "email": e, "message": "Hola, quiero un presupuesto"})
    await wait_for(lambda: all_final(d), what="leads processed")
    assert len(outbox(tmp_path)) <= 1


async def test_global_cap_stops_replies(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon({"LEADBOX_REPLY__MAX_PER_HOUR": "3"})
    for i in range(8):
        assert (await post(c, {"name": "A", "email": f"cap{i}@example.com", "message": "Hola, un presupuesto"}))[0] == 202
    await wait_for(lambda: all_final(d, 8), what="leads processed")
    assert len(outbox(tmp_path)) == 3
    leads, _ = await d.store.list(state="skipped", category=None, priority=None, limit=50, cursor=None)
    assert sum(1 for x in leads if x.skip_reason == "reply-cap") == 5


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
        status, _ = await post(c, {"name": name, "email": f"h{i}@example.com", "message": f"Hola\u2028Bcc: x@y.z {i}",
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
