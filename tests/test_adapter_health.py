"""Each adapter's health says whether it can do its job, before the job comes (issue 12, item 13).

The SMTP transport used to learn its state only from a reply: /readyz said 200 with a refused
password until the first lead, and stayed 503 after a server came back until a reply was retried.
It now logs in at start and while it is not known to work, against the real aiosmtpd fixture.
"""

from __future__ import annotations

from typing import Any

from tests.fixtures.daemon import post_lead, settle, wait_for
from tests.test_observability import smtp_env


async def reply_check(client: Any) -> tuple[int, dict[str, Any]]:
    r = await client.get("/readyz")
    return r.status, (await r.json())["checks"]["reply"]


async def test_refused_smtp_login_shows_before_any_reply(make_daemon: Any, smtp_server: Any) -> None:
    env = {**smtp_env(smtp_server), "EMAIL_PASS": "not-the-password"}
    d, c = await make_daemon(env)

    async def refused() -> bool:
        status, reply = await reply_check(c)
        return status == 503 and reply["state"] == "needs_credentials"

    await wait_for(refused, 15, what="/readyz to report the refused SMTP login with no lead sent")
    assert "EMAIL_PASS" in (await reply_check(c))[1]["reason"]
    assert "not-the-password" not in str(await reply_check(c))
    assert smtp_server.messages == []


async def test_smtp_server_back_makes_readyz_ready_without_a_reply(make_daemon: Any, smtp_server: Any) -> None:
    smtp_server.stop()
    try:
        d, c = await make_daemon({**smtp_env(smtp_server), "LEADBOX_REPLY__SMTP_CHECK_INTERVAL": "0.2"})

        async def down() -> bool:
            status, reply = await reply_check(c)
            return status == 503 and reply["state"] == "down"

        await wait_for(down, 15, what="/readyz to report the SMTP server down with no lead sent")
    finally:
        smtp_server.start()

    async def ready() -> bool:
        status, reply = await reply_check(c)
        return status == 200 and reply["state"] == "ok"

    await wait_for(ready, 15, what="/readyz to follow the SMTP server back with no reply to retry")
    # The session the check logged in with carries the next reply: no second login.
    await post_lead(c, "ana@example.com", "Hola, ¿me enviáis un presupuesto para una web?")
    await settle(d, 1)
    assert len(smtp_server.messages) == 1
    assert d.svc.transport.sessions_opened == 1  # type: ignore[attr-defined]


async def test_throttled_login_at_the_check_pauses_replies_not_needs_credentials(
        make_daemon: Any, smtp_server: Any) -> None:
    """A 454 'too many login attempts' met by the check is the account's limit, as for a reply:
    the transport pauses (ready, 200) and probes later; nobody is told to fix the password."""
    throttled = [True]

    def refuse(stage: str) -> str | None:
        if stage == "auth" and throttled[0]:
            return "454 4.7.0 Too many login attempts, please try again later. - gsmtp"
        return None

    smtp_server.sink.refuse = refuse
    d, c = await make_daemon({**smtp_env(smtp_server), "LEADBOX_REPLY__PAUSE_SECONDS": "1"})

    async def paused() -> bool:
        status, reply = await reply_check(c)
        return status == 200 and reply["state"] == "paused"

    await wait_for(paused, 15, what="the check's throttled login to pause the transport")
    assert (await reply_check(c))[1]["kind"] == "throttle"
    _, lead_id = await post_lead(c, "ana@example.com", "Hola, ¿me enviáis un presupuesto para una web?")
    throttled[0] = False
    await settle(d, 1, timeout=30)
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.state.value == "replied" and lead.attempts == 0
    assert len(smtp_server.messages) == 1
