"""Team alerts against a local HTTP receiver (webhook) and aiosmtpd (e-mail, digest).

Priorities are made deterministic: every category is medium or low, and the domain
vip.example is high (priority.domains), so which leads alert never depends on the classifier.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fixtures.daemon import DaemonProcess, all_final, free_port, wait_for

SECRET = "alert-signing-secret"


def alerts_env(url: str, **over: str) -> dict[str, str]:
    env = {
        "LEADBOX_PRIORITY__BY_CATEGORY": json.dumps({"support": "medium", "sales": "medium", "info": "medium",
                                                     "spam": "low"}),
        "LEADBOX_PRIORITY__URGENT_WORDS": "[]",
        "LEADBOX_PRIORITY__DOMAINS": json.dumps({"vip.example": "high"}),
        "LEADBOX_ALERTS__WEBHOOK_URL": url, "LEADBOX_ALERTS__RETRY_BASE": "0.2",
        "LEADBOX_ALERTS__RETRY_MAX": "0.5", "LEADBOX_ALERTS__TIMEOUT": "5",
        "LEADBOX_ALERTS_SECRET": SECRET, "LEADBOX_ADMIN_TOKEN": "tok",
        "LEADBOX_HTTP__PUBLIC_URL": "https://leads.ourco.example",
    }
    env.update(over)
    return env


def lead(i: int, domain: str) -> dict[str, str]:
    return {"name": f"Cliente {i}", "email": f"c{i}@{domain}", "message": f"Hola, quisiera información del plan {i}."}


class Receiver:
    """An incoming-webhook endpoint on 127.0.0.1 that can be taken down and brought back on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.hold: asyncio.Event | None = None  # set: requests wait for it before answering
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append((dict(request.headers), body))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def keys(self) -> list[str]:
        return [h["Idempotency-Key"] for h, _ in self.got]


@pytest.fixture
async def receiver() -> Any:
    r = Receiver()
    yield r
    if r.hold is not None:
        r.hold.set()
    await r.stop()


def check_signature(headers: dict[str, str], body: bytes) -> None:
    ts = headers["X-Leadbox-Timestamp"]
    want = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Leadbox-Signature"], want)
    assert abs(int(ts) - time.time()) < 600


async def test_webhook_alert_signed_once_per_high_lead_and_none_for_others(
        make_daemon: Any, receiver: Receiver) -> None:
    await receiver.start()
    d, client = await make_daemon(alerts_env(receiver.url))
    ids = {}
    for i, domain in enumerate(["vip.example", "other.example", "sub.vip.example", "plain.example"]):
        r = await client.post("/leads", json=lead(i, domain))
        assert r.status == 202
        ids[domain] = (await r.json())["id"]
    await wait_for(lambda: all_final(d, 4), what="leads processed")
    await wait_for(lambda: _ge(len(receiver.got), 2), what="two alerts")
    assert d.alert_sender is not None
    await d.alert_sender.run_due()  # one more pass: nothing is due, nothing is sent again
    assert sorted(receiver.keys()) == sorted([ids["vip.example"], ids["sub.vip.example"]])
    for headers, body in receiver.got:
        check_signature(headers, body)
        payload = json.loads(body)
        assert payload["event"] == "lead.alert" and payload["lead"]["id"] == headers["Idempotency-Key"]
        assert payload["lead"]["priority"] == "high" and payload["lead"]["priority_rule"]
        assert payload["lead"]["intake"] == "webhook" and payload["lead"]["mailbox"] is None
        assert payload["url"] == f"https://leads.ourco.example/console/leads/{payload['lead']['id']}"
        # A tampered body does not verify.
        with pytest.raises(AssertionError):
            check_signature(headers, body + b" ")
    h = {"Authorization": "Bearer tok"}
    shown = await (await client.get(f"/leads/{ids['vip.example']}", headers=h)).json()
    assert [(a["channel"], a["status"], a["attempts"]) for a in shown["alerts"]] == [("webhook", "sent", 1)]
    assert (await (await client.get(f"/leads/{ids['other.example']}", headers=h)).json())["alerts"] == []
    metrics = await (await client.get("/metrics")).text()
    assert 'leadbox_alerts_total{channel="webhook",outcome="sent"} 2.0' in metrics
    # The console's lead timeline shows the alert too (its cookie is https-only here: built directly).
    from agent.console.i18n import WORDS
    from agent.console.views import timeline

    for domain, want in (("vip.example", ["Team alert webhook: sent"]), ("other.example", [])):
        got = await d.store.get(ids[domain])
        assert got is not None
        lines = [x["text"] for x in await timeline(d, got, WORDS["en"])]
        assert [x for x in lines if x.startswith("Team alert")] == want


async def _ge(a: int, b: int) -> bool:
    return a >= b


async def test_receiver_down_then_back_delivers_every_alert_once(make_daemon: Any, receiver: Receiver) -> None:
    d, client = await make_daemon(alerts_env(receiver.url, LEADBOX_ALERTS__WEBHOOK_FORMAT="slack"))
    ids = []
    for i in range(3):
        r = await client.post("/leads", json=lead(i, "vip.example"))
        ids.append((await r.json())["id"])

    async def retried() -> bool:  # every alert failed at least once against the closed port
        rows = [a for x in ids for a in await d.store.alerts_of(x)]
        return len(rows) == 3 and all(a.attempts >= 1 and a.status == "pending" for a in rows)
    await wait_for(retried, what="failed attempts while the receiver is down")
    await receiver.start()
    await wait_for(lambda: _ge(len(receiver.got), 3), what="three alerts after the receiver is back")
    assert d.alert_sender is not None
    await d.alert_sender.run_due()
    assert sorted(receiver.keys()) == sorted(ids)
    for headers, body in receiver.got:
        text = json.loads(body)["text"]  # Slack format: the same facts as text
        assert "high" in text and "vip.example" in text and "<https://leads.ourco.example/console/leads/" in text
        check_signature(headers, body)
    metrics = await (await client.get("/metrics")).text()
    assert 'leadbox_alerts_total{channel="webhook",outcome="retry"}' in metrics


@pytest.mark.slow
async def test_kill_9_while_sending_loses_nothing_and_repeats_with_the_same_key(
        daemon_process: Any, receiver: Receiver) -> None:
    await receiver.start()
    receiver.hold = asyncio.Event()  # the first request hangs: the daemon dies while sending it
    p: DaemonProcess = daemon_process(alerts_env(receiver.url))
    await asyncio.to_thread(p.start)
    ids = []
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            async with http.post(f"{p.url}/leads", json=lead(i, "vip.example")) as r:
                assert r.status == 202
                ids.append((await r.json())["id"])
    await asyncio.wait_for(receiver.arrived.wait(), timeout=20)
    await asyncio.to_thread(p.kill)  # kill -9 between the send and its record
    first = receiver.keys()[0]
    receiver.hold.set()
    receiver.hold = None
    await asyncio.to_thread(p.start)
    await wait_for(lambda: _ge(len(set(receiver.keys())), 3), timeout=30, what="every alert after the restart")
    keys = receiver.keys()
    assert set(keys) == set(ids)  # nothing lost
    for k in set(keys):
        assert keys.count(k) == 1 or k == first  # only the one in flight at the kill repeats
    for headers, body in receiver.got:
        assert json.loads(body)["lead"]["id"] == headers["Idempotency-Key"]  # a repeat carries the same key
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{p.url}/leads/{first}", headers={"Authorization": "Bearer tok"}) as r:
            assert [a["status"] for a in (await r.json())["alerts"]] == ["sent"]
    assert p.terminate() == 0


async def test_email_alerts_ignore_reply_caps_and_loop_protection_and_the_digest(
        make_daemon: Any, smtp_server: Any) -> None:
    team = "leads@ourco.example"  # our own address: loop protection must not stop the team's alert
    env = alerts_env("", LEADBOX_ALERTS__EMAIL_TO=team, LEADBOX_ALERTS__DIGEST_CRON="0 8 * * 1-5",
                     LEADBOX_ALERTS__TIMEZONE="Europe/Madrid", LEADBOX_REPLY__MAX_PER_HOUR="1")
    env.update({
        "LEADBOX_REPLY__TRANSPORT": "smtp", "LEADBOX_REPLY__SMTP_HOST": smtp_server.host,
        "LEADBOX_REPLY__SMTP_PORT": str(smtp_server.port_tls), "LEADBOX_REPLY__SMTP_SECURITY": "tls",
        "LEADBOX_REPLY__CA_FILE": smtp_server.ca_file, "LEADBOX_REPLY__SMTP_TIMEOUT": "3",
        "EMAIL_USER": smtp_server.username, "EMAIL_PASS": smtp_server.password,
        "LEADBOX_REPLY__FROM_ADDRESS": team,
    })
    d, client = await make_daemon(env)
    job = d.scheduler.get_job("alerts-digest")
    assert job is not None and str(job.next_run_time.tzinfo) == "Europe/Madrid"
    assert job.next_run_time.hour == 8 and job.next_run_time.weekday() < 5
    for i, domain in enumerate(["vip.example", "vip.example", "other.example"]):
        assert (await client.post("/leads", json=lead(i, domain))).status == 202

    def alerts() -> list[Any]:
        return [m for m in smtp_server.messages if m["rcpt_tos"] == [team]]

    await wait_for(lambda: _ge(len(alerts()), 2), what="two alert mails")
    await wait_for(lambda: _ge(len(smtp_server.messages), 3), what="one customer reply")
    customer = [m for m in smtp_server.messages if m["rcpt_tos"] != [team]]
    assert len(customer) == 1  # reply.max_per_hour = 1 held the other customers' replies, not the alerts
    assert d.alert_sender is not None
    assert await d.alert_sender.send_digest()
    mails = [message_from_bytes(m["data"], policy=policy.default) for m in alerts()]
    subjects = [str(m["Subject"]) for m in mails]
    assert sum("high" in s and "lead" in s for s in subjects) == 2
    alert_body = mails[0].get_content()
    assert "vip.example" in alert_body and "https://leads.ourco.example/console/leads/" in alert_body
    digest = [m for m in mails if "digest" in str(m["Subject"])]
    assert len(digest) == 1 and "3 lead(s), 0 failed" in str(digest[0]["Subject"])
    text = digest[0].get_content()
    assert "high" in text and "medium" in text and "Failed: 0" in text
    # The next digest covers only what came after this one.
    assert await d.alert_sender.send_digest()
    later = [message_from_bytes(m["data"], policy=policy.default) for m in alerts()][-1]
    assert "0 lead(s)" in str(later["Subject"])


def smtp_alert_env(smtp_server: Any, email_to: str, **over: str) -> dict[str, str]:
    env = alerts_env("", LEADBOX_ALERTS__EMAIL_TO=email_to, **over)
    env.update({
        "LEADBOX_REPLY__TRANSPORT": "smtp", "LEADBOX_REPLY__SMTP_HOST": smtp_server.host,
        "LEADBOX_REPLY__SMTP_PORT": str(smtp_server.port_tls), "LEADBOX_REPLY__SMTP_SECURITY": "tls",
        "LEADBOX_REPLY__CA_FILE": smtp_server.ca_file, "LEADBOX_REPLY__SMTP_TIMEOUT": "3",
        "EMAIL_USER": smtp_server.username, "EMAIL_PASS": smtp_server.password,
    })
    return env


async def test_email_alerts_to_several_addresses_reach_each_one_once_whatever_the_others_do(
        make_daemon: Any, smtp_server: Any) -> None:
    """One address refused for good, one deferred for a while, one that works: the working one gets
    the alert exactly once, the deferred one once when it takes it, the refused one is recorded
    failed at once (no retries), and the API shows each address's row."""
    ok, refused, busy = "equipo@ourco.example", "nadie@ourco.example", "guardia@ourco.example"
    deferring = True

    def rcpt(address: str) -> str | None:
        if address == refused:
            return "550 5.1.1 The email account that you tried to reach does not exist"
        if address == busy and deferring:
            return "450 4.2.1 Mailbox busy"
        return None

    smtp_server.sink.refuse_rcpt = rcpt
    d, client = await make_daemon(smtp_alert_env(smtp_server, f"{ok}, {refused}, {busy}"))
    lead_id = (await (await client.post("/leads", json=lead(1, "vip.example"))).json())["id"]
    h = {"Authorization": "Bearer tok"}

    async def rows() -> dict[str, tuple[str, int]]:
        shown = (await (await client.get(f"/leads/{lead_id}", headers=h)).json())["alerts"]
        return {a["to"]: (a["status"], a["attempts"]) for a in shown if a["channel"] == "email"}

    async def retried() -> bool:
        r = await rows()
        return r.get(busy, ("", 0))[1] >= 2 and r.get(ok, ("",))[0] == "sent"
    await wait_for(retried, what="the busy address retried while the others are done")

    def to(address: str) -> list[Any]:
        return [m for m in smtp_server.messages if m["rcpt_tos"] == [address]]

    assert len(to(ok)) == 1 and to(busy) == [] and to(refused) == []
    r = await rows()
    assert r[ok] == ("sent", 1) and r[refused] == ("failed", 1) and r[busy][0] == "pending"
    shown = (await (await client.get(f"/leads/{lead_id}", headers=h)).json())["alerts"]
    assert "550 5.1.1" in next(a["last_error"] for a in shown if a["to"] == refused)
    deferring = False

    async def busy_sent() -> bool:
        return (await rows())[busy][0] == "sent"
    await wait_for(busy_sent, what="the busy address took it")
    assert d.alert_sender is not None
    await d.alert_sender.run_due()  # one more pass: nothing is due, nothing goes out again
    assert len(to(ok)) == 1 and len(to(busy)) == 1 and to(refused) == []
    [a], [b] = to(ok), to(busy)
    ids = {message_from_bytes(m["data"], policy=policy.default)["Message-ID"] for m in (a, b)}
    assert len(ids) == 2 and all(i.startswith(f"<alert-{lead_id}-") for i in ids)  # one id per address
    metrics = await (await client.get("/metrics")).text()
    assert 'leadbox_alerts_total{channel="email",outcome="sent"} 2.0' in metrics
    assert 'leadbox_alerts_total{channel="email",outcome="failed"} 1.0' in metrics
    from agent.console.i18n import WORDS
    from agent.console.views import timeline

    got = await d.store.get(lead_id)
    assert got is not None
    lines = [x["text"] for x in await timeline(d, got, WORDS["en"])]
    assert f"Team alert email {ok}: sent" in lines and f"Team alert email {refused}: failed" in lines


async def test_an_email_alert_row_of_before_per_address_rows_goes_to_every_address(
        make_daemon: Any, smtp_server: Any) -> None:
    """A pending ``email`` row left by an older release (one row for all addresses) is still sent,
    to every address of email_to, and recorded."""
    team = ("uno@ourco.example", "dos@ourco.example")
    d, client = await make_daemon(smtp_alert_env(smtp_server, ", ".join(team), LEADBOX_ALERTS__MIN_PRIORITY="high"))
    lead_id = (await (await client.post("/leads", json=lead(2, "other.example"))).json())["id"]  # medium: none
    await wait_for(lambda: all_final(d, 1), what="the lead processed")
    assert await d.store.alerts_of(lead_id) == []
    await d.store.enqueue_alerts(lead_id, ["email"], time.time())
    assert d.alert_sender is not None and await d.alert_sender.run_due() == 1
    assert sorted(m["rcpt_tos"][0] for m in smtp_server.messages if m["rcpt_tos"][0] in team) == sorted(team)
    [row] = await d.store.alerts_of(lead_id)
    assert (row.channel, row.to, row.status) == ("email", None, "sent")


async def test_with_replicas_one_sends_the_digest_and_the_alerts(pg_url: str, tmp_path: Path) -> None:
    """Two replicas on one PostgreSQL: the leadership locks let exactly one send; it hands over on exit."""
    from agent.app.alerts import AlertSender
    from agent.app.metrics import Metrics
    from agent.config import load_config
    from agent.mail.outbox import OutboxTransport
    from agent.stores.postgres import PostgresStore
    from tests.fixtures.daemon import ROOT, base_env

    env = {**base_env(tmp_path), "LEADBOX_ALERTS__EMAIL_TO": "team@ourco.example",
           "LEADBOX_ALERTS__DIGEST_CRON": "0 8 * * *"}
    config = load_config(str(ROOT / "config" / "agent.toml"), env=env)
    stores = [PostgresStore(pg_url, pool_size=2) for _ in range(2)]
    outbox = tmp_path / "team-outbox"
    senders = [AlertSender(config, s, OutboxTransport(outbox), Metrics()) for s in stores]
    closed: set[int] = set()
    try:
        for s in stores:
            await s.open()
        sent = [await x.send_digest() for x in senders]
        assert sent == [True, False] and len(list(outbox.glob("*.eml"))) == 1
        await senders[0].run_due()  # replica 0 takes the sender's lock too
        assert not await stores[1].try_acquire_leadership("alerts")
        await stores[0].close()  # the leader goes away: the other replica takes over
        closed = {0}
        assert await senders[1].send_digest() and len(list(outbox.glob("*.eml"))) == 2
        assert await stores[1].try_acquire_leadership("alerts")
    finally:
        for i, s in enumerate(stores):
            if i not in closed:
                await s.close()


async def test_a_console_correction_to_high_alerts_once(make_daemon: Any, receiver: Receiver) -> None:
    """A lead below alerts.min_priority gets no alert; a person raising it to high in the console
    alerts the team once, and a further correction never alerts it again."""
    from tests.test_console import csrf_of, sign_in

    await receiver.start()
    env = alerts_env(receiver.url, LEADBOX_SECRET_KEY="k" * 32)
    env.pop("LEADBOX_HTTP__PUBLIC_URL")  # plain http: the console's cookie is not https-only
    d, client = await make_daemon(env)
    r = await client.post("/leads", json=lead(1, "plain.example"))
    lead_id = (await r.json())["id"]
    await wait_for(lambda: all_final(d, 1), what="lead processed")
    assert d.alert_sender is not None
    await d.alert_sender.run_due()
    assert receiver.got == []  # medium: below min_priority
    assert (await sign_in(client, password="tok")).status == 303
    token = csrf_of(await (await client.get(f"/console/leads/{lead_id}")).text())
    for category in ("sales", "support"):
        r = await client.post(f"/console/leads/{lead_id}/correct", allow_redirects=False,
                              data={"category": category, "priority": "high", "csrf_token": token})
        assert r.status == 303
        await wait_for(lambda: _ge(len(receiver.got), 1), what="the alert")
        await d.alert_sender.run_due()
    assert receiver.keys() == [lead_id]
    payload = json.loads(receiver.got[0][1])
    assert (payload["lead"]["category"], payload["lead"]["priority"]) == ("sales", "high")
