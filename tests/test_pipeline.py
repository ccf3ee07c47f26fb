"""The pipeline end to end in the real daemon: states, replies, stops with reasons, retries."""

from __future__ import annotations

import email
import json
import os
from email import policy
from pathlib import Path
from typing import Any

from tests.fixtures.daemon import all_final, wait_for

SALES = "Hola, somos una clínica y queremos un presupuesto para una web con reservas online."


async def post(c: Any, **fields: Any) -> dict[str, Any]:
    r = await c.post("/leads", data=json.dumps(fields), headers={"Content-Type": "application/json"})
    assert r.status in (200, 202), await r.text()
    return dict(await r.json())


def outbox(tmp: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
            for p in sorted((tmp / "outbox").glob("*.eml"))]


async def test_lead_is_classified_prioritized_and_answered(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon()
    lead = await post(c, name="Dra. Núñez\u200b", email="nunez@clinica.example", message=SALES)
    await wait_for(lambda: all_final(d, 1))
    stored = await d.store.get(lead["id"])
    assert stored is not None
    assert stored.state.value == "replied" and stored.category is not None
    assert stored.category.value == "sales" and stored.priority is not None
    assert stored.priority.value == "medium" and stored.priority_rule == "category:sales"
    assert stored.summary and stored.reply_status == "sent" and stored.mirror_status == "disabled"
    [msg] = outbox(tmp_path)
    assert msg["To"].addresses[0].addr_spec == "nunez@clinica.example"
    assert msg["To"].addresses[0].display_name.startswith("Dra. Núñez")
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"] == stored.reply_message_id
    assert msg["From"].addresses[0].addr_spec == "leads@ourco.example"
    assert msg["Date"] and msg["Subject"]
    assert "Dra." in msg.get_content()


async def test_spam_and_loop_senders_get_no_reply(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon()
    spam = await post(c, name="SEO Pro", email="seo@rank.example",
                      message="Guaranteed #1 Google ranking! Buy 500 high DA backlinks cheap, crypto payment "
                              "accepted, limited offer, click http://cheap-links.biz now!!!")
    noreply = await post(c, name="System", email="no-reply@vendor.example", message=SALES)
    own = await post(c, name="Us", email="Leads@ourco.example", message=SALES)
    await wait_for(lambda: all_final(d, 3))
    reasons = {}
    for x in (spam, noreply, own):
        lead = await d.store.get(x["id"])
        assert lead is not None and lead.state.value == "skipped"
        reasons[x["id"]] = lead.skip_reason
    assert reasons[spam["id"]] == "spam"
    assert reasons[noreply["id"]] and reasons[own["id"]] and "spam" not in (reasons[noreply["id"]], reasons[own["id"]])
    assert outbox(tmp_path) == []


async def test_urgent_words_and_domain_rules(make_daemon: Any) -> None:
    d, c = await make_daemon({"LEADBOX_PRIORITY__DOMAINS": '{"vip.example": "high"}'})
    urgent = await post(c, name="Leo", email="leo@shop.example",
                        message="URGENTE: necesitamos un presupuesto para una tienda online esta semana")
    vip = await post(c, name="Ann", email="ann@sub.vip.example", message="Could you tell me your office hours?")
    pt = await post(c, name="Rui", email="rui@loja.example",
                    message="Queremos um orçamento para um aplicativo de entregas, preciso com urgência")
    await wait_for(lambda: all_final(d, 3))
    u, v = await d.store.get(urgent["id"]), await d.store.get(vip["id"])
    p = await d.store.get(pt["id"])
    assert p is not None and p.priority is not None and p.priority.value == "high"
    assert p.priority_rule == "category:sales+urgent:urgencia"
    assert u is not None and u.priority is not None and u.priority.value == "high"
    assert u.priority_rule is not None and "urgent:urgente" in u.priority_rule
    assert v is not None and v.priority_rule == "domain:vip.example" and v.priority is not None
    assert v.priority.value == "high"


async def test_reply_window_per_address(make_daemon: Any, tmp_path: Path) -> None:
    # Gmail folding off: two spellings are two leads, but one address gets one auto-reply per window.
    d, c = await make_daemon()
    await post(c, name="A", email="ann.lee@gmail.com", message=SALES)
    await wait_for(lambda: all_final(d, 1))
    d2 = await d.store.get_by_email("ann.lee@gmail.com")  # type: ignore[attr-defined]
    assert d2 is not None and d2.state.value == "replied"
    # A second lead whose normalized address was already answered (store reused by a new row).
    await d.store.reply_begin("other-lead", "twin@example.com", "<m@x>")
    await d.store.reply_done("other-lead", "sent")
    lead = await post(c, name="Twin", email="twin@example.com", message=SALES)
    await wait_for(lambda: all_final(d, 2))
    got = await d.store.get(lead["id"])
    assert got is not None and got.skip_reason == "reply-window"
    assert len(outbox(tmp_path)) == 1


async def test_transient_failures_retry_then_fail_then_manual_retry(make_daemon: Any, tmp_path: Path) -> None:
    blocked = tmp_path / "outbox"
    blocked.mkdir()
    d, c = await make_daemon({"LEADBOX_WORKER__MAX_ATTEMPTS": "3", "LEADBOX_WORKER__BACKOFF_BASE": "0.05",
                              "LEADBOX_ADMIN_TOKEN": "t"})
    os.chmod(blocked, 0o500)
    try:
        if os.access(blocked, os.W_OK):  # root ignores permissions: make the path a file instead
            os.chmod(blocked, 0o700)
            blocked.rename(tmp_path / "outbox.real")
            blocked.write_text("not a directory")
        lead = await post(c, name="Ana", email="ana@example.com", message=SALES)
        await wait_for(lambda: all_final(d, 1), what="lead failed")
        got = await d.store.get(lead["id"])
        assert got is not None and got.state.value == "failed" and got.attempts >= 2
        assert got.last_error and got.last_error.startswith("reply: outbox")
    finally:
        if blocked.is_file():
            blocked.unlink()
            (tmp_path / "outbox.real").rename(blocked)
        os.chmod(blocked, 0o700)
    r = await c.post(f"/leads/{lead['id']}/retry", headers={"Authorization": "Bearer t"})
    assert r.status == 202
    await wait_for(lambda: all_final(d, 1), what="lead replied after retry")
    got = await d.store.get(lead["id"])
    assert got is not None and got.state.value == "replied"
    assert len(outbox(tmp_path)) == 1


async def test_header_injection_through_name_is_impossible(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon()
    # CR/LF are refused at the door (422); unicode line separators and quotes are neutralised.
    r = await c.post("/leads", data=json.dumps({"name": "X\r\nBcc: a@b.com", "email": "x@example.com",
                                                "message": SALES}), headers={"Content-Type": "application/json"})
    assert r.status == 422
    await post(c, name='Eve "\u2028Bcc: victim@example.com', email="eve@example.com", message=SALES)
    await wait_for(lambda: all_final(d, 1))
    [msg] = outbox(tmp_path)
    assert msg["Bcc"] is None and msg["To"].addresses[0].addr_spec == "eve@example.com"
    assert [a.addr_spec for a in msg["To"].addresses] == ["eve@example.com"]


async def test_reply_ledger_is_closed_when_a_lead_is_replied(make_daemon: Any) -> None:
    d, c = await make_daemon()
    for i in range(5):
        await post(c, name="Ana", email=f"ledger{i}@example.com", message=SALES)
    await wait_for(lambda: all_final(d, 5))
    store: Any = d.store
    statuses = await store._run(  # noqa: SLF001 - read the ledger table itself
        lambda: [r[0] for r in store.db.execute("SELECT status FROM replies")])
    assert statuses == ["sent"] * 5


async def test_reply_after_an_uncertain_attempt_is_never_marked_sent(make_daemon: Any, tmp_path: Path) -> None:
    """Regression (docs/reliability.md finding 3): a process marks a reply 'uncertain' in the ledger
    and dies before the lead's own row is written; the next process must keep it uncertain
    (failed), not take the ledger row as 'sent'."""
    from agent.core.models import Category, LeadIn, State
    from agent.core.pipeline import Reply
    from agent.core.replies import reply_message_id
    from agent.core.validation import mailbox_key

    d, _ = await make_daemon({"LEADBOX_WORKER__SWEEP_INTERVAL": "3600"})
    [res] = await d.store.intake_many([LeadIn(name="Ana", email="ana@uncertain.example",
                                              email_norm="ana@uncertain.example", message=SALES)])
    lead = await d.store.get(res.lead_id)
    assert lead is not None
    lead.state, lead.category, lead.language = State.MIRRORED, Category.SALES, "es"
    mid = reply_message_id(lead, d.svc.reply.domain)
    assert await d.store.reply_gate(lead.id, mailbox_key(lead.email_norm), mid, window_since=None,
                                    cap_since=0.0, cap=0) == (None, None)
    await d.store.reply_done(lead.id, "uncertain")  # ... and the process died here
    await Reply().run(lead, d.svc)
    assert (lead.state, lead.reply_status) == (State.FAILED, "uncertain")
    assert outbox(tmp_path) == []
