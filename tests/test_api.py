"""The HTTP contract of the README, against the real in-process daemon (SQLite, outbox)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from agent.intake.access import sign
from agent.intake.openapi import OPENAPI
from tests.fixtures.daemon import all_final, wait_for

LEAD = {"name": "Ana García", "email": "ana@example.com", "message": "Hola, quiero un presupuesto para una web."}


async def post(client: Any, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    h = {"Content-Type": "application/json", **(headers or {})}
    r = await client.post("/leads", data=data, headers=h)
    try:
        payload = await r.json(content_type=None)
    except ValueError:
        payload = await r.text()
    return r.status, payload


async def stored(d: Any) -> int:
    return sum((await d.store.counts()).values())


async def test_new_lead_202_then_duplicate_200(make_daemon: Any) -> None:
    d, c = await make_daemon()
    status, body = await post(c, LEAD)
    assert status == 202 and body["status"] == "received" and body["id"]
    status2, body2 = await post(c, {**LEAD, "email": "  ANA@Example.COM ", "message": "otra vez"})
    assert status2 == 200 and body2 == {"id": body["id"], "status": "duplicate"}
    lead = await d.store.get(body["id"])
    assert lead is not None and [i.message for i in lead.interactions] == ["otra vez"]


async def test_validation_errors_are_field_level(make_daemon: Any) -> None:
    d, c = await make_daemon()
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"email": "a@b.com", "message": "x"}, "name", "required"),
        ({**LEAD, "name": "   "}, "name", "empty"),
        ({**LEAD, "name": "x" * 201}, "name", "at most 200"),
        ({**LEAD, "name": 5}, "name", "must be a string"),
        ({**LEAD, "name": "Eve\r\nBcc: victim@example.com"}, "name", "line breaks"),
        ({**LEAD, "name": "Null\x00Byte"}, "name", "control"),
        ({**LEAD, "email": "not-an-email"}, "email", "address"),
        ({**LEAD, "email": "a@b"}, "email", "dot"),
        ({**LEAD, "email": "a b@example.com"}, "email", "spaces"),
        ({**LEAD, "email": ["a@b.com"]}, "email", "string"),
        ({**LEAD, "message": ""}, "message", "empty"),
        ({**LEAD, "message": "m" * 20_001}, "message", "at most 20000"),
        ({**LEAD, "message": "bell\x07"}, "message", "control"),
        ({**LEAD, "metadata": [1]}, "metadata", "object"),
        ({**LEAD, "metadata": {"k": "v" * 9000}}, "metadata", "8 KiB"),
        ({**LEAD, "phone": 123}, "phone", "string"),
        ({**LEAD, "company": "c" * 201}, "company", "at most"),
    ]
    for body, field, words in cases:
        status, payload = await post(c, body)
        assert status == 422, (body, payload)
        fields = {e["field"]: e["message"] for e in payload["errors"]}
        assert field in fields and words in fields[field], (field, payload)
    status, payload = await post(c, [LEAD])
    assert status == 422 and payload["errors"][0]["field"] == "body"
    assert await stored(d) == 0


async def test_not_json_415_and_too_large_413(make_daemon: Any) -> None:
    d, c = await make_daemon()
    r = await c.post("/leads", data=json.dumps(LEAD), headers={"Content-Type": "text/plain"})
    assert r.status == 415
    r = await c.post("/leads", data=b"name=a&email=b", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 422  # forms are accepted now; this one lacks a message and a valid email
    assert {e["field"] for e in (await r.json())["errors"]} == {"email", "message"}
    for raw in (b"{not json", b'{"name": "\xff\xfe"}', b"", b"[" * 100_00):
        status, payload = await post(c, raw)
        assert status in (413, 415), (raw[:20], status)
    status, _ = await post(c, json.dumps({**LEAD, "message": "x" * 70_000}))
    assert status == 413
    status, payload = await post(c, '{"name": "a", "name": "b", "email": "a@b.com", "message": "m"}')
    assert status == 422 and payload["errors"][0]["field"] == "name"
    assert await stored(d) == 0


async def test_unicode_and_idn_accepted(make_daemon: Any) -> None:
    _, c = await make_daemon()
    status, _ = await post(c, {"name": "Zoë 李", "email": "zoe@bücher.de", "message": "¿Precio? 🙂",
                               "metadata": {"utm": "x", "n": [1, 2]}, "source": "landing"})
    assert status == 202


async def test_concurrent_same_email_makes_one_lead(make_daemon: Any, tmp_path: Any) -> None:
    d, c = await make_daemon()
    variants = ["dup@example.com", "DUP@example.com", " Dup@Example.com ", "dup@EXAMPLE.COM"]
    results = await asyncio.gather(*(
        post(c, {**LEAD, "email": variants[i % 4], "message": f"mensaje {i}"}) for i in range(50)))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(202) == 1 and statuses.count(200) == 49
    ids = {b["id"] for _, b in results}
    assert len(ids) == 1
    await wait_for(lambda: all_final(d, 1), what="lead processed")
    lead = await d.store.get(ids.pop())
    assert lead is not None and len(lead.interactions) == 49
    assert len(list((tmp_path / "outbox").glob("*.eml"))) <= 1


async def test_admin_routes_need_token(make_daemon: Any) -> None:
    _, c = await make_daemon()
    status, lead = await post(c, LEAD)
    for path in ("/leads", f"/leads/{lead['id']}"):
        r = await c.get(path)
        assert r.status == 403
        assert "LEADBOX_ADMIN_TOKEN" in (await r.json())["errors"][0]["message"]
    r = await c.post(f"/leads/{lead['id']}/retry")
    assert r.status == 403


async def test_admin_token_no_wrong_right(make_daemon: Any) -> None:
    d, c = await make_daemon({"LEADBOX_ADMIN_TOKEN": "s3cret-admin"})
    _, lead = await post(c, LEAD)
    routes = [("get", "/leads"), ("get", f"/leads/{lead['id']}"), ("post", f"/leads/{lead['id']}/retry"),
              ("post", "/inbox/poll")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-admin"}):
            r = await getattr(c, method)(path, headers=headers)
            assert r.status == 401, (method, path, headers)
    good = {"Authorization": "Bearer s3cret-admin"}
    r = await c.get(f"/leads/{lead['id']}", headers=good)
    body = await r.json()
    assert r.status == 200 and body["id"] == lead["id"]
    for key in ("state", "category", "priority", "summary", "reply", "interactions"):
        assert key in body
    r = await c.get("/leads/nope", headers=good)
    assert r.status == 404
    r = await c.post(f"/leads/{lead['id']}/retry", headers=good)
    assert r.status == 409  # not failed
    r = await c.post("/inbox/poll", headers=good)
    assert r.status == 409  # inbox not enabled


async def test_list_filters_and_cursor(make_daemon: Any) -> None:
    d, c = await make_daemon({"LEADBOX_ADMIN_TOKEN": "tok"})
    h = {"Authorization": "Bearer tok"}
    for i in range(7):
        await post(c, {**LEAD, "email": f"p{i}@example.com"})
    await post(c, {"name": "Bot", "email": "bot@spam.example", "message":
                   "Buy cheap SEO backlinks now!!! guaranteed first page google ranking, crypto bonus, click http://x.biz"})
    await wait_for(lambda: all_final(d, 8), what="leads processed")
    seen: list[str] = []
    created: list[str] = []
    cursor = None
    while True:
        q = "/leads?limit=3" + (f"&cursor={cursor}" if cursor else "")
        r = await c.get(q, headers=h)
        page = await r.json()
        seen += [x["id"] for x in page["leads"]]
        created += [x["created_at"] for x in page["leads"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 8 == len(set(seen)) and created == sorted(created, reverse=True)
    r = await c.get("/leads?cursor=zzzz", headers=h)
    assert r.status == 422 and [e["field"] for e in (await r.json())["errors"]] == ["cursor"]
    r = await c.get("/leads?category=sales&status=replied", headers=h)
    assert {x["category"] for x in (await r.json())["leads"]} == {"sales"}
    r = await c.get("/leads?status=bogus&limit=0", headers=h)
    assert r.status == 422 and {e["field"] for e in (await r.json())["errors"]} == {"status", "limit"}


async def test_webhook_bearer(make_daemon: Any) -> None:
    d, c = await make_daemon({"LEADBOX_HTTP__WEBHOOK_AUTH": "bearer", "LEADBOX_WEBHOOK_SECRET": "hook-tok"})
    assert (await post(c, LEAD))[0] == 401
    assert (await post(c, LEAD, {"Authorization": "Bearer nope"}))[0] == 401
    assert (await post(c, LEAD, {"Authorization": "Bearer hook-tok"}))[0] == 202


async def test_webhook_hmac_signature_and_replay(make_daemon: Any) -> None:
    d, c = await make_daemon({"LEADBOX_HTTP__WEBHOOK_AUTH": "hmac", "LEADBOX_WEBHOOK_SECRET": "k3y"})
    body = json.dumps(LEAD).encode()
    ts = str(int(time.time()))
    good = {"X-Leadbox-Timestamp": ts, "X-Leadbox-Signature": sign("k3y", ts, body)}
    assert (await post(c, body))[0] == 401
    assert (await post(c, body, {**good, "X-Leadbox-Signature": sign("wrong", ts, body)}))[0] == 401
    tampered = json.dumps({**LEAD, "email": "evil@example.com"}).encode()
    assert (await post(c, tampered, good))[0] == 401
    assert (await post(c, body, good))[0] == 202
    status, payload = await post(c, body, good)
    assert status == 401 and "replay" in payload["errors"][0]["message"]
    old = str(int(time.time()) - 400)
    assert (await post(c, body, {"X-Leadbox-Timestamp": old, "X-Leadbox-Signature": sign("k3y", old, body)}))[0] == 401
    assert await stored(d) == 1


async def test_rate_limit_429(make_daemon: Any) -> None:
    _, c = await make_daemon({"LEADBOX_HTTP__RATE_LIMIT_PER_MINUTE": "12"})
    statuses = [(await post(c, {**LEAD, "email": f"r{i}@example.com"}))[0] for i in range(5)]
    assert statuses[:2] == [202, 202] and 429 in statuses
    r = await c.post("/leads", data=json.dumps(LEAD), headers={"Content-Type": "application/json"})
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1


async def test_stopping_answers_503(make_daemon: Any) -> None:
    d, c = await make_daemon()
    d.stopping = True
    r = await c.post("/leads", data=json.dumps(LEAD), headers={"Content-Type": "application/json"})
    assert r.status == 503 and r.headers["Retry-After"]
    r = await c.get("/readyz")
    assert r.status == 503
    d.stopping = False


async def test_health_ready_openapi(make_daemon: Any) -> None:
    d, c = await make_daemon()
    assert (await c.get("/healthz")).status == 200
    r = await c.get("/readyz")
    body = await r.json()
    assert r.status == 200 and body["checks"]["store"]["state"] == "ok"
    assert body["checks"]["scheduler"]["state"] == "ok"
    r = await c.get("/openapi.json")
    spec = await r.json()
    assert set(spec["paths"]["/leads"]["post"]["responses"]) >= {"200", "202", "401", "413", "415", "422", "429", "503"}


async def test_store_down_gives_503_and_readyz_recovers(make_daemon: Any) -> None:
    d, c = await make_daemon()
    real = d.store.intake_many

    async def broken(items: Any) -> Any:
        raise OSError("disk I/O error")

    d.store.intake_many = broken  # type: ignore[method-assign]
    status, payload = await post(c, LEAD)
    assert status == 503 and "nothing was stored" in payload["errors"][0]["message"]
    d.store.intake_many = real  # type: ignore[method-assign]
    assert (await post(c, LEAD))[0] == 202


def test_openapi_documents_every_status_the_handlers_use() -> None:
    import inspect

    from agent.intake import webhook

    src = inspect.getsource(webhook)
    used = {int(x) for x in __import__("re").findall(r"_error\(\s*(\d{3})", src)}
    documented = {int(code) for path in OPENAPI["paths"].values() for op in path.values()
                  for code in op["responses"]}
    assert used - {500} <= documented, used - documented


@pytest.mark.parametrize("body", [b"\x00" * 10, b'{"name":1e999}', b'"just a string"', b"null", b"123"])
async def test_odd_bodies_never_500(make_daemon: Any, body: bytes) -> None:
    d, c = await make_daemon()
    status, _ = await post(c, body)
    assert 400 <= status < 500
    assert await stored(d) == 0
