"""Loop protection decisions: every rule fires with its own name, and ordinary mail passes."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from agent.loop_guard import (
    collect_auto_headers,
    inbound_skip_reason,
    is_no_reply_address,
    reply_block_reason,
)

OWN = frozenset({"leads@example.com"})
OWN_DOMAINS = frozenset({"example.com"})


def make(
    headers: dict[str, str], *, body: str = "hello", sender: str = "ana@cliente.example"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["Subject"] = "Consulta"
    msg["Message-ID"] = "<1@cliente.example>"
    for name, value in headers.items():
        del msg[name]
        msg[name] = value
    msg.set_content(body)
    return msg


def reason(msg: EmailMessage, sender: str = "ana@cliente.example") -> str | None:
    return inbound_skip_reason(msg, sender=sender, own_addresses=OWN, own_domains=OWN_DOMAINS)


def test_ordinary_mail_passes() -> None:
    assert reason(make({})) is None
    assert reason(make({"Auto-Submitted": "no"})) is None
    assert reason(make({"Precedence": "first-class"})) is None
    assert reason(make({"Subject": "Producto ausente en catálogo, ¿cuándo llega?"})) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Auto-Submitted": "auto-replied"}, "auto-submitted"),
        ({"Auto-Submitted": "auto-generated; owner=x"}, "auto-submitted"),
        ({"Precedence": "bulk"}, "precedence-bulk"),
        ({"Precedence": "JUNK"}, "precedence-bulk"),
        ({"Precedence": "auto_reply"}, "precedence-bulk"),
        ({"List-Id": "<l.example.org>"}, "mailing-list"),
        ({"List-Unsubscribe": "<mailto:u@l.example.org>"}, "mailing-list"),
        ({"X-Autoreply": "yes"}, "auto-reply-header"),
        ({"X-Autorespond": "x"}, "auto-reply-header"),
        ({"X-Auto-Response-Suppress": "All"}, "auto-reply-header"),
        ({"Return-Path": "<>"}, "null-return-path"),
        ({"Message-ID": "<abc@example.com>"}, "own-message-id"),
        ({"Subject": "Out of Office: Re: pricing"}, "out-of-office"),
        ({"Subject": "Automatic reply: Consulta"}, "out-of-office"),
        ({"Subject": "Respuesta automática: Consulta"}, "out-of-office"),
        ({"Subject": "RE: Fuera de la oficina"}, "out-of-office"),
        ({"Subject": "Resposta automática: Proposta"}, "out-of-office"),
        ({"Subject": "Ausente: Consulta"}, "out-of-office"),
    ],
)
def test_each_header_rule(headers: dict[str, str], expected: str) -> None:
    assert reason(make(headers)) == expected


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("noreply@shop.example", "no-reply-sender"),
        ("no-reply@shop.example", "no-reply-sender"),
        ("donotreply@shop.example", "no-reply-sender"),
        ("do-not-reply@shop.example", "no-reply-sender"),
        ("bounces+abc@mail.example", "no-reply-sender"),
        ("list-bounces@lists.example", "no-reply-sender"),
        ("MAILER-DAEMON@mx.example", "delivery-report"),
        ("postmaster@mx.example", "delivery-report"),
        ("leads@example.com", "own-address"),
        ("LEADS@Example.com", "own-address"),
        ("replyguy@example.org", None),
        ("bounceback.fan@example.org", None),
    ],
)
def test_sender_rules(sender: str, expected: str | None) -> None:
    assert reason(make({}, sender=sender), sender=sender) == expected


def test_delivery_report_content_type() -> None:
    raw = (
        b"From: someone@mx.example\r\nSubject: failed\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b--\r\n"
    )
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert reason(msg, sender="someone@mx.example") == "delivery-report"


def test_broken_headers_do_not_raise() -> None:
    raw = (
        b'From: "Unclosed <x@@y\r\nAuto-Submitted: =?bogus?q?=FF?=\r\n'
        b"Message-ID: <<<@@>>>\r\nSubject: =?utf-8?b?////?=\r\n\r\nbody"
    )
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert reason(msg, sender="x@y.example") == "auto-submitted"


def test_no_reply_helper() -> None:
    assert is_no_reply_address("No_Reply@x.io")
    assert not is_no_reply_address("ana@x.io")
    assert not is_no_reply_address("")


def test_reply_block_reason_uses_stored_headers() -> None:
    stored = collect_auto_headers(make({"List-Id": "<l.example.org>"}))
    assert reply_block_reason("ana@cliente.example", stored, own_addresses=OWN) == "mailing-list"
    assert reply_block_reason("ana@cliente.example", {}, own_addresses=OWN) is None
    assert reply_block_reason("leads@example.com", {}, own_addresses=OWN) == "own-address"
    assert reply_block_reason("noreply@x.io", {}, own_addresses=OWN) == "no-reply-sender"
    assert reply_block_reason("a@b.co", {"Auto-Submitted": "auto-generated"}) == "auto-submitted"
    assert reply_block_reason("a@b.co", {"subject": "Out of office"}) == "out-of-office"
    assert reply_block_reason("a@b.co", {"content-type": "multipart/report"}) == "delivery-report"
