"""The hand-written reply renderer: valid MIME, exact round-trips, no header injection."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.models import Category, Lead, State
from agent.core.replies import Templates, compose_reply, one_line

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = Templates(ROOT / "config" / "templates", "es")
EXPECTED_HEADERS = {"from", "to", "subject", "date", "message-id", "auto-submitted", "x-auto-response-suppress",
                    "x-leadbox-lead", "mime-version", "content-type", "content-transfer-encoding",
                    "in-reply-to", "references"}


def lead(name: str, subject: str | None = None, email_addr: str = "ana@example.com", **kw: object) -> Lead:
    now = datetime.now(UTC)
    return Lead(id="lead1", name=name, email=email_addr, email_norm=email_addr.lower(), message="hola",
                intake="email" if subject is not None else "webhook", subject=subject, state=State.MIRRORED,
                created_at=now, updated_at=now, category=Category.SALES, language="es", **kw)  # type: ignore[arg-type]


def render(ld: Lead, **kw: object) -> email.message.EmailMessage:
    out = compose_reply(ld, TEMPLATES, from_address="leads@ourco.example", from_name="Our Co",
                        domain="ourco.example", category_label="Ventas", include_summary=False, **kw)  # type: ignore[arg-type]
    assert all(len(line) <= 998 for line in out.data.split(b"\r\n"))
    assert b"\n" not in out.data.replace(b"\r\n", b"")  # only CRLF line endings
    return email.message_from_bytes(out.data, policy=policy.default)  # type: ignore[return-value]


@pytest.mark.slow
@settings(max_examples=300, derandomize=True, deadline=None)
@given(name=st.text(min_size=1, max_size=200), subject=st.text(max_size=300))
def test_any_name_and_subject_round_trip_without_injection(name: str, subject: str) -> None:
    msg = render(lead(name, subject))
    assert {k.lower() for k in msg.keys()} <= EXPECTED_HEADERS
    assert [a.addr_spec for a in msg["To"].addresses] == ["ana@example.com"]
    assert msg["To"].addresses[0].display_name == one_line(name, 200)
    expected_subject = one_line(subject, 150)
    if expected_subject:
        shown = str(msg["Subject"])
        wanted = expected_subject if expected_subject.lower().startswith("re:") else f"Re: {expected_subject}"
        assert shown == wanted
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg.get_content().startswith("Hola")


def test_threading_headers_only_for_well_formed_message_ids() -> None:
    msg = render(lead("Ana", "Hola", message_id="<m1@client.example>", references="<r0@x> junk <r1@y>"))
    assert msg["In-Reply-To"] == "<m1@client.example>"
    assert str(msg["References"]).split() == ["<r0@x>", "<r1@y>", "<m1@client.example>"]
    bad = render(lead("Ana", "Hola", message_id="<m1@x>\r\nBcc: evil@example.com"))
    assert bad["In-Reply-To"] is None and bad["Bcc"] is None


def test_internationalized_domain_goes_out_as_punycode() -> None:
    msg = render(lead("Zoë", email_addr="zoe@bücher.de"))
    assert msg["To"].addresses[0].addr_spec == "zoe@xn--bcher-kva.de"
    assert msg["To"].addresses[0].display_name == "Zoë"
