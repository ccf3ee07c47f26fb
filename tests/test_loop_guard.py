"""Loop protection decisions: every rule fires with its own name, and ordinary mail passes."""

from __future__ import annotations

import sysconfig
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.loop_guard import (
    LOOP_HEADERS,
    HeaderView,
    collect_auto_headers,
    header_str,
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


# ------------------------------------------------------ HeaderView (one pass, same values)

_VIEW_NAMES = [*LOOP_HEADERS, "message-id", "from", "reply-to", "in-reply-to", "references", "x-absent"]


def _assert_view_matches(msg: Message) -> None:
    view = HeaderView(msg)
    for name in _VIEW_NAMES:
        assert view.get(name) == header_str(msg, name), name
        assert view.get(name.upper()) == header_str(msg, name), name  # memoized, any case


@pytest.mark.slow
@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Subject", "List-Id", "Auto-Submitted", "Return-Path", "Precedence",
                             "In-Reply-To", "References", "Message-ID", "From", "X-Autoreply"]),
            st.one_of(
                st.text(max_size=40),
                st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                st.sampled_from(["a\rb", "a\r\n b", "=\r?x", "=?utf-8?q?Auto-Replied?=", " <> ",
                                 "=?", "\tbulk ", "x\x1cy", "<a@b.c> (note)", "<a.b-1@c.example>",
                                 "<a..b@c>", "<a@b> ", "<a@[1.2.3.4]>", "Ana <a@b.example>",
                                 "<a b@c>", "<a@b@c>", "<a(c)@b>"]),
            ),
        ),
        max_size=6,
    )
)
def test_header_view_reads_what_header_str_reads(headers: list[tuple[str, str]]) -> None:
    raw = b"".join(f"{n}: {v}".encode("utf-8", "surrogateescape") + b"\r\n" for n, v in headers)
    for pol in (policy.default, policy.compat32):
        _assert_view_matches(BytesParser(policy=pol).parsebytes(raw + b"\r\nbody\r\n"))


def test_header_view_on_the_cpython_corpus_and_on_built_messages() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
    files = sorted(p for p in stdlib.glob("*") if p.is_file()) if stdlib.is_dir() else []
    files += sorted((Path(__file__).parent / "data" / "emails").glob("*.eml"))
    assert files
    for path in files:
        _assert_view_matches(BytesParser(policy=policy.default).parsebytes(path.read_bytes()))
    # Headers set by code are header objects, not raw strings: read through header_str.
    _assert_view_matches(make({"List-Id": "=?utf-8?q?Lista_=C3=A9?= <l.example.org>",
                               "Subject": "Réponse automatique"}))
    # Raw values set by code may hold bare CR/LF, which policy.default drops before parsing.
    built = EmailMessage()
    built.set_raw("Subject", "Out of\roffice")
    built.set_raw("List-Id", "=\n?utf-8?q?x?=")
    built.set_raw("Precedence", "bu\r\nlk")
    _assert_view_matches(built)
    assert HeaderView(built).get("subject") == "Out ofoffice"


_ADDRESS_CHARS = st.sampled_from(list("aZ09.-_'!#=?`~+ <>@,;:()\"\\[]\t") + ["=?utf-8?q?x?=", "é"])


@pytest.mark.slow
@settings(max_examples=500, derandomize=True, deadline=None)
@given(
    st.one_of(
        st.lists(_ADDRESS_CHARS, max_size=30).map("".join),
        st.builds(lambda n, lp, d: f"{n} <{lp}@{d}>".lstrip(),
                  st.lists(_ADDRESS_CHARS, max_size=10).map("".join),
                  st.lists(_ADDRESS_CHARS, min_size=1, max_size=8).map("".join),
                  st.lists(_ADDRESS_CHARS, min_size=1, max_size=8).map("".join)),
    )
)
def test_plain_mailbox_shortcut_agrees_with_the_address_parser(value: str) -> None:
    """HeaderView.mailbox answers only when policy.default would say exactly the same."""
    raw = f"From: {value}\r\nReply-To: {value}\r\n\r\nbody".encode("utf-8", "surrogateescape")
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    view = HeaderView(msg)
    for name in ("from", "reply-to"):
        assert view.get(name) == header_str(msg, name)
        pair = view.mailbox(name)
        if pair is not None:
            header = msg[name]
            assert [(a.display_name, a.addr_spec) for a in header.addresses] == [pair]


def test_plain_mailbox_shortcut_cases() -> None:
    def mailbox(value: str) -> tuple[str, str] | None:
        msg = BytesParser(policy=policy.default).parsebytes(f"From: {value}\r\n\r\n".encode())
        return HeaderView(msg).mailbox("from")

    assert mailbox("Ana Pérez <ana@x.example>") is None  # 8-bit: the parser decodes it
    assert mailbox("Ana Lopez <ana.l@x.example>") == ("Ana Lopez", "ana.l@x.example")
    assert mailbox("ana@x.example") == ("", "ana@x.example")
    for other in ('"Ana" <a@x.example>', "a@x.example (Ana)", "a@x.example, b@x.example",
                  "Ana  Lopez <a@x.example>", "=?utf-8?q?Ana?= <a@x.example>", "a..b@x.example", "g: a@x.example;"):
        assert mailbox(other) is None, other
    built = EmailMessage()
    built["From"] = "Ana <ana@x.example>"  # a header object, not a raw value
    assert HeaderView(built).mailbox("from") is None
