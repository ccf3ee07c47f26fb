"""Replies over SMTP to a real aiosmtpd server: implicit TLS and STARTTLS, AUTH, outages."""

from __future__ import annotations

import asyncio
import email
import json
from collections import Counter
from email import policy
from typing import Any

import pytest

from tests.fixtures.daemon import all_final, wait_for


def smtp_env(smtp: Any, security: str, port: int | None = None) -> dict[str, str]:
    """Reply over SMTP to the test server (or, with ``port``, to another server using its cert and users)."""
    if port is None:
        port = smtp.port_tls if security == "tls" else smtp.port_starttls
    return {
        "LEADBOX_REPLY__TRANSPORT": "smtp", "LEADBOX_REPLY__SMTP_HOST": smtp.host,
        "LEADBOX_REPLY__SMTP_PORT": str(port),
        "LEADBOX_REPLY__SMTP_SECURITY": security, "LEADBOX_REPLY__CA_FILE": smtp.ca_file,
        "EMAIL_USER": smtp.username, "EMAIL_PASS": smtp.password,
        "LEADBOX_REPLY__FROM_ADDRESS": smtp.username, "LEADBOX_REPLY__SMTP_TIMEOUT": "3",
    }


async def received(smtp: Any, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    async def enough() -> bool:
        return len(smtp.messages) >= n
    await wait_for(enough, timeout, what=f"{n} SMTP message(s)")
    return list(smtp.messages)


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_reply_over_smtp(make_daemon: Any, smtp_server: Any, security: str) -> None:
    d, c = await make_daemon(smtp_env(smtp_server, security))
    r = await c.post("/leads", headers={"Content-Type": "application/json"}, data=json.dumps({
        "name": "José Ñandú Çelik", "email": "jose@cliente.example",
        "message": "Hola, ¿me pueden enviar un presupuesto para una tienda online?"}))
    lead_id = (await r.json())["id"]
    [m] = await received(smtp_server, 1)
    assert m["tls"] and m["login"] == smtp_server.username
    assert m["rcpt_tos"] == ["jose@cliente.example"] and m["mail_from"] == smtp_server.username
    msg = email.message_from_bytes(m["data"], policy=policy.default)
    raw_headers = m["data"].split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii()  # UTF-8 names are RFC 2047-encoded, not raw bytes
    assert msg["To"].addresses[0].display_name == "José Ñandú Çelik"
    assert msg["From"].addresses[0].addr_spec == smtp_server.username
    assert msg["Auto-Submitted"] == "auto-replied" and msg["Subject"] and msg["Date"]
    assert msg["Message-ID"] == f"<reply-{lead_id}@example.com>"
    await wait_for(lambda: all_final(d, 1))
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state.value == "replied"


async def test_smtp_down_keeps_lead_queued_then_sends(make_daemon: Any, smtp_server: Any) -> None:
    smtp_server.stop()
    try:
        d, c = await make_daemon(smtp_env(smtp_server, "tls"))
        r = await c.post("/leads", headers={"Content-Type": "application/json"}, data=json.dumps({
            "name": "Ana", "email": "ana@cliente.example", "message": "Quiero contratar vuestro servicio, ¿precio?"}))
        lead_id = (await r.json())["id"]

        async def retried() -> bool:
            lead = await d.store.get(lead_id)
            return lead is not None and lead.attempts >= 1
        await wait_for(retried, what="a failed send attempt")
        lead = await d.store.get(lead_id)
        assert lead is not None and lead.state.value == "mirrored" and "smtp" in (lead.last_error or "")
        r = await c.get("/readyz")
        assert r.status == 503 and (await r.json())["checks"]["reply"]["state"] == "down"
    finally:
        smtp_server.start()
    await received(smtp_server, 1)
    await wait_for(lambda: all_final(d, 1))
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state.value == "replied"
    await asyncio.sleep(0.5)
    assert len(smtp_server.messages) == 1


async def test_wrong_smtp_password_is_retried_not_lost(make_daemon: Any, smtp_server: Any) -> None:
    env = {**smtp_env(smtp_server, "tls"), "EMAIL_PASS": "wrong"}
    d, c = await make_daemon(env)
    r = await c.post("/leads", headers={"Content-Type": "application/json"}, data=json.dumps({
        "name": "Ana", "email": "ana2@cliente.example", "message": "Necesito soporte, no puedo entrar"}))
    lead_id = (await r.json())["id"]

    async def tried() -> bool:
        lead = await d.store.get(lead_id)
        return lead is not None and lead.attempts >= 1
    await wait_for(tried)
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state.value == "mirrored"
    assert "credentials" in (lead.last_error or "") and "wrong" not in (lead.last_error or "")
    assert (await c.get("/readyz")).status == 503
    assert smtp_server.messages == []


async def post_many(c: Any, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        r = await c.post("/leads", json={"name": "Ana", "email": f"{tag}{i}@cliente.example",
                                         "message": "Hola, ¿me pueden enviar un presupuesto?"})
        assert r.status == 202, await r.text()
        ids.append((await r.json())["id"])
    return ids


async def test_replies_share_one_authenticated_session(make_daemon: Any, smtp_server: Any) -> None:
    env = {**smtp_env(smtp_server, "tls"), "LEADBOX_REPLY__SMTP_POOL_SIZE": "1"}
    d, c = await make_daemon(env)
    await post_many(c, 6, "pool")
    msgs = await received(smtp_server, 6)
    await wait_for(lambda: all_final(d, 6))
    assert len({m["peer"] for m in msgs}) == 1  # the server saw one connection carry all six
    assert all(m["login"] == smtp_server.username and m["tls"] for m in msgs)
    assert sorted(m["rcpt_tos"][0] for m in msgs) == sorted(f"pool{i}@cliente.example" for i in range(6))


async def test_a_session_carries_at_most_max_per_session_messages(make_daemon: Any, smtp_server: Any) -> None:
    env = {**smtp_env(smtp_server, "starttls"), "LEADBOX_REPLY__SMTP_POOL_SIZE": "1",
           "LEADBOX_REPLY__SMTP_MAX_PER_SESSION": "2"}
    d, c = await make_daemon(env)
    await post_many(c, 5, "cap")
    msgs = await received(smtp_server, 5)
    await wait_for(lambda: all_final(d, 5))
    per_peer = Counter(m["peer"] for m in msgs)
    assert sorted(per_peer.values()) == [1, 2, 2]


async def test_a_dropped_pooled_session_is_replaced_and_nothing_is_sent_twice(
    make_daemon: Any, smtp_server: Any
) -> None:
    env = {**smtp_env(smtp_server, "tls"), "LEADBOX_REPLY__SMTP_POOL_SIZE": "1"}
    d, c = await make_daemon(env)
    await post_many(c, 2, "before")
    await received(smtp_server, 2)
    await wait_for(lambda: all_final(d, 2))
    smtp_server.stop()  # the server goes away: the pooled session is dead
    smtp_server.start()
    await post_many(c, 2, "after")
    msgs = await received(smtp_server, 4)
    await wait_for(lambda: all_final(d, 4))
    counts = await d.store.counts()
    assert counts == {"replied": 4}
    assert sorted(m["rcpt_tos"][0] for m in msgs) == sorted(
        [f"before{i}@cliente.example" for i in range(2)] + [f"after{i}@cliente.example" for i in range(2)])
    assert msgs[0]["peer"] == msgs[1]["peer"] != msgs[2]["peer"]
    await asyncio.sleep(0.5)
    assert len(smtp_server.messages) == 4
