"""parse_email: crafted mails, a random-MIME generator and CPython's email corpus.

The property that matters most for the daemon is that no input makes
parse_email raise: the inbox loop must never die on one message.
"""

from __future__ import annotations

import json
import sysconfig
from email.message import EmailMessage, Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.text import html_to_text, normalize_text, strip_quotes_and_signature
from agent.intake.email_parse import (
    ParsedEmail,
    is_valid_email,
    main_parse_email,
    parse_email,
    to_lead_in,
)

DATA = Path(__file__).parent / "data" / "emails"
OWN = frozenset({"leads@example.com"})
OWN_DOMAINS = frozenset({"example.com"})


def parse_file(name: str) -> ParsedEmail:
    return parse_email((DATA / name).read_bytes(), own_addresses=OWN, own_domains=OWN_DOMAINS)


# ------------------------------------------------------------ crafted files


def test_plain_lead_with_rfc2047_name_and_subject() -> None:
    p = parse_file("plain_lead.eml")
    assert p.skip_reason is None and not p.quarantine
    assert p.name == "José Pérez"
    assert p.email == "Jose.Perez@Example.COM"
    assert p.subject == "Cotización para 20 licencias"
    assert p.message.startswith("Cotización para 20 licencias\n\nHola, necesitamos 20 licencias")
    assert "Gerente de Compras" in p.message  # the full text keeps the signature
    assert "Gerente de Compras" not in p.clean_text  # the classifier text does not
    assert p.message_id == "<abc123@mail.example.com>"


def test_to_lead_in_normalizes_email() -> None:
    lead = to_lead_in(parse_file("plain_lead.eml"))
    assert lead.email == "Jose.Perez@Example.COM"
    assert lead.email_norm == "jose.perez@example.com"
    assert lead.intake == "email"
    assert lead.message_id == "<abc123@mail.example.com>"
    assert lead.clean_text and "Gerente" not in lead.clean_text


def test_alternative_prefers_plain_reply_to_and_strips_quote() -> None:
    p = parse_file("alternative.eml")
    assert p.skip_reason is None
    assert p.email == "ana.vendas@empresa.com.br"  # Reply-To wins
    assert p.name == "Ana Silva"  # From's display name, same domain
    assert "demonstração na próxima semana" in p.message  # iso-8859-1 QP decoded
    assert "<p>" not in p.message  # the plain alternative, not the HTML
    assert "Obrigado pelo contato" in p.message
    assert "Obrigado pelo contato" not in p.clean_text
    assert "escreveu" not in p.clean_text
    assert p.in_reply_to == "<orig1@example.com>"
    assert p.references == "<orig0@example.com> <orig1@example.com>"


def test_html_only_becomes_readable_text() -> None:
    p = parse_file("html_only.eml")
    assert p.skip_reason is None
    assert "My order #123 never arrived" in p.message
    assert "Can you check it & refund?" in p.message
    assert "alert(1)" not in p.message and "color:red" not in p.message
    assert p.name == "support-request"  # no display name: the local part


def test_unknown_charset_falls_back_to_legacy_8bit() -> None:
    p = parse_file("bogus_charset.eml")
    assert p.skip_reason is None
    assert "Café owner" in p.message


def test_attachments_recorded_not_processed() -> None:
    p = parse_file("with_attachment.eml")
    assert p.skip_reason is None
    assert p.attachments == [
        {"filename": "RFP diseño.pdf", "content_type": "application/pdf", "size": 54}
    ]
    assert "JVBER" not in p.message
    assert to_lead_in(p).metadata["attachments"] == p.attachments


def test_form_relay_from_our_address_with_visitor_reply_to_is_a_lead() -> None:
    p = parse_file("form_relay.eml")
    assert p.skip_reason is None
    assert (p.name, p.email) == ("Laura Gómez", "laura@cliente.example")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("out_of_office.eml", "out-of-office"),
        ("auto_submitted.eml", "auto-submitted"),
        ("bounce.eml", "delivery-report"),
        ("mailing_list.eml", "precedence-bulk"),
        ("own_reply.eml", "own-address"),
    ],
)
def test_automatic_mail_is_skipped_with_a_reason(name: str, reason: str) -> None:
    p = parse_file(name)
    assert p.skip_reason == reason
    assert not p.quarantine  # an outcome, not a failure


def test_auto_headers_are_kept_for_the_reply_side() -> None:
    p = parse_file("mailing_list.eml")
    assert p.auto_headers["list-id"] == "<weekly.lists.example.com>"
    assert p.auto_headers["precedence"] == "list"
    assert parse_file("bounce.eml").auto_headers["content-type"] == "multipart/report"


@pytest.mark.parametrize("name", ["broken_headers.eml", "garbage.eml"])
def test_unparseable_mail_is_quarantined(name: str) -> None:
    p = parse_file(name)
    assert p.skip_reason is not None and p.skip_reason.startswith("unparseable: ")
    assert p.quarantine


def test_own_message_id_domain_is_skipped() -> None:
    msg = EmailMessage()
    msg["From"] = "someone@else.example"
    msg["Subject"] = "hi"
    msg["Message-ID"] = "<x1@example.com>"
    msg.set_content("hello")
    p = parse_email(msg.as_bytes(), own_domains=OWN_DOMAINS)
    assert p.skip_reason == "own-message-id"
    assert parse_email(msg.as_bytes()).skip_reason is None


def test_too_large_is_quarantined_with_headers_known() -> None:
    msg = EmailMessage()
    msg["From"] = "Big <big@example.org>"
    msg["Subject"] = "huge"
    msg.set_content("x" * 5000)
    p = parse_email(msg.as_bytes(), max_bytes=1000)
    assert p.skip_reason is not None and p.skip_reason.startswith("too-large")
    assert p.quarantine and p.email == "big@example.org"


def test_empty_input_and_non_bytes_do_not_raise() -> None:
    assert parse_email(b"").quarantine
    assert parse_email(b"\x00\xff\xfe" * 10).quarantine
    assert parse_email("From: a@b.co\n\nhi").skip_reason is None  # type: ignore[arg-type]
    assert parse_email(None).quarantine  # type: ignore[arg-type]


def test_raw_utf8_headers_are_decoded() -> None:
    raw = "From: Zoë Ødegård <zoe@example.no>\nSubject: Ærlig talt\n\nhei\n".encode()
    p = parse_email(raw)
    assert p.name == "Zoë Ødegård" and p.subject == "Ærlig talt"


def test_invalid_reply_to_falls_back_to_from() -> None:
    raw = b"From: Real <real@example.org>\nReply-To: not-an-address\nSubject: s\n\nbody\n"
    assert parse_email(raw).email == "real@example.org"
    raw = b"From: Real <real@example.org>\nReply-To: a@x.org, b@y.org\nSubject: s\n\nbody\n"
    assert parse_email(raw).email == "real@example.org"


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("a@b.co", True),
        ("user@bücher.de", True),
        ("a@b", False),
        ("@b.co", False),
        ("a@@b.co", False),
        ("a b@c.co", False),
        ("a@b..co", False),
        ("a@.b.co", False),
        ("", False),
    ],
)
def test_is_valid_email(address: str, ok: bool) -> None:
    assert is_valid_email(address) is ok


def test_main_parse_email_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_parse_email(str(DATA / "plain_lead.eml")) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"name", "email", "message", "subject", "message_id", "skip_reason"} <= out.keys()
    assert out["skip_reason"] is None and out["name"] == "José Pérez"
    assert main_parse_email(str(DATA / "garbage.eml")) == 0
    assert json.loads(capsys.readouterr().out)["quarantine"] is True
    assert main_parse_email(str(DATA / "does-not-exist.eml")) == 2


# --------------------------------------------------------------- text_clean


def test_strip_quotes_outlook_block_and_dash_signature() -> None:
    text = (
        "Necesito soporte con mi cuenta.\n\n-- \nMaría\nACME\n\n"
        "-----Original Message-----\nFrom: x\nSent: y\n\nold text"
    )
    assert strip_quotes_and_signature(text) == "Necesito soporte con mi cuenta."
    text = "Please call me.\n\nDe: Ventas\nEnviado: lunes\nPara: yo\n\nviejo"
    assert strip_quotes_and_signature(text) == "Please call me."


def test_signoff_kept_when_followed_by_long_text() -> None:
    text = "Thanks\n" + "This is a long paragraph that keeps going and going well past sixty chars."
    assert strip_quotes_and_signature(text) == text


def test_strip_never_returns_empty() -> None:
    assert strip_quotes_and_signature("> all quoted\n> here") == "> all quoted\n> here"
    assert strip_quotes_and_signature("") == ""


def test_html_to_text_and_normalize() -> None:
    assert html_to_text("<p>a &amp;lt; b</p><br/>c") == "a &lt; b\n\nc"
    assert html_to_text("<div>unclosed <b>tags") == "unclosed tags"
    assert normalize_text("a\r\nb\rc\x00d\x07\te\ud800") == "a\nb\ncd\te\ufffd"


# -------------------------------------------------------- random MIME trees

_CHARSETS = st.sampled_from(
    ["utf-8", "iso-8859-1", "windows-1252", "us-ascii", "koi8-r", "shift_jis", "utf-16",
     "x-bogus", "unknown-8bit", "base64", "rot13", "", "utf-8\x00", "=?", "zlib"]
)  # fmt: skip
_CTES = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "binary", "x-uuencode", ""])
_TYPES = st.sampled_from(
    ["text/plain", "text/html", "application/pdf", "message/rfc822", "text/enriched",
     "image/png", "multipart/report", "message/delivery-status", "bogus"]
)  # fmt: skip
_HEADER_NAMES = st.sampled_from(
    ["From", "Reply-To", "Subject", "Message-ID", "In-Reply-To", "References", "To", "Date",
     "Auto-Submitted", "Precedence", "List-Id", "Return-Path", "Content-Type",
     "Content-Disposition", "Content-Transfer-Encoding", "X-Autoreply"]
)  # fmt: skip
_HEADER_VALUES = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
    st.sampled_from(
        ['"Unclosed <a@b.co', "<>", "=?utf-8?q?=C3=A9?=", "=?x-bad?b?////?=", "a@b.co, ,,<>",
         "Name <user@bücher.de>", "group: a@b.co, c@d.co;", "(comment) <x@y.z>", "no", "bulk",
         "multipart/mixed; boundary=", 'attachment; filename*=utf-8\'\'%FF%FE.pdf', "=?"]
    ),
)  # fmt: skip


def _header_line(name: str, value: str) -> bytes:
    return f"{name}: {value}".encode("utf-8", "surrogateescape").replace(b"\n", b" ") + b"\r\n"


@st.composite
def mime_part(draw: st.DrawFn, depth: int = 0) -> bytes:
    """One MIME entity as bytes: random headers, a random leaf or nested multipart."""
    headers = b"".join(
        _header_line(n, v)
        for n, v in draw(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=4))
    )
    if depth < 3 and draw(st.booleans()):
        boundary = draw(st.sampled_from(["b1", "b2", "=_x", "", "a b"]))
        subtype = draw(st.sampled_from(["mixed", "alternative", "related", "report", "digest"]))
        children = draw(st.lists(mime_part(depth + 1), min_size=0, max_size=3))
        body = b"".join(f"--{boundary}\r\n".encode() + c + b"\r\n" for c in children)
        if draw(st.booleans()):
            body += f"--{boundary}--\r\n".encode()
        ctype = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n'.encode()
        return headers + ctype + b"\r\n" + body
    charset = draw(_CHARSETS)
    ctype = f"Content-Type: {draw(_TYPES)}; charset={charset}\r\n".encode(
        "utf-8", "surrogateescape"
    )
    cte = f"Content-Transfer-Encoding: {draw(_CTES)}\r\n".encode()
    body = draw(
        st.one_of(
            st.binary(max_size=200),
            st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.sampled_from([b"<p>hi &amp; <script>x</script>", b"=E9=\r\n=ZZ", b"////"]),
        )
    )
    return headers + ctype + cte + b"\r\n" + body


@st.composite
def raw_email(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))  # plain garbage
    sender = draw(
        st.sampled_from(
            [b"From: Ana <ana@example.org>\r\n", b"From: noreply@x.io\r\n", b"", b"From: <>\r\n"]
        )
    )
    return sender + draw(mime_part())


@pytest.mark.slow
@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw_email())
def test_parse_email_never_raises_on_random_mime(raw: bytes) -> None:
    p = parse_email(raw, own_addresses=OWN, own_domains=OWN_DOMAINS)
    assert isinstance(p, ParsedEmail)
    assert p.quarantine == bool(p.skip_reason and p.skip_reason.startswith(("unparseable", "too-")))
    if p.skip_reason is None:
        assert is_valid_email(p.email)
        assert to_lead_in(p).email_norm == p.email.strip().lower()
    json.dumps({"m": p.message, "n": p.name, "s": p.subject}, ensure_ascii=False).encode()


# ------------------------------------------------------ CPython email corpus


def _cpython_corpus() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    data = stdlib / "test" / "test_email" / "data"
    return sorted(p for p in data.glob("*") if p.is_file()) if data.is_dir() else []


@pytest.mark.skipif(not _cpython_corpus(), reason="CPython's test/test_email/data not installed")
def test_cpython_email_corpus_never_crashes() -> None:
    files = _cpython_corpus()
    for path in files:
        p = parse_email(path.read_bytes())
        assert isinstance(p, ParsedEmail), path
        json.dumps({"m": p.message, "n": p.name}, ensure_ascii=False).encode()
    # Most of the corpus has a valid From: if none became a lead, parsing is broken.
    leads = [p for p in files if parse_email(p.read_bytes()).skip_reason is None]
    assert len(leads) >= len(files) // 4


# ------------------------------------------- the memoizing message class matches policy.default


def _part_facts(part: Message) -> list[object]:
    """What parse_email reads from a part, each as a value or the exception type it raised."""
    facts: list[object] = []
    reads = [
        part.get_content_type,
        part.get_content_charset,
        part.get_filename,
        part.get_content_disposition,
        part.get_boundary,
        lambda: part.get_payload(decode=True) if not part.is_multipart() else None,
        *(lambda k=k: str(part.get(k)) for k in part.keys()),
    ]
    for read in reads:
        try:
            facts.append(read())
        except Exception as exc:  # noqa: BLE001 - the same failure on both sides is the point
            facts.append(type(exc))
    return facts


def _walk(msg: Message) -> list[list[object]]:
    try:
        return [_part_facts(p) for p in msg.walk()]
    except RecursionError:
        return [["deep"]]


def test_memoized_parse_reads_what_policy_default_reads() -> None:
    from email import policy
    from email.parser import BytesParser

    from agent.intake.email_parse import _POLICY, _Message

    files = _cpython_corpus() + sorted(DATA.glob("*.eml"))
    assert files
    for path in files:
        raw = path.read_bytes()
        ours = BytesParser(_Message, policy=_POLICY).parsebytes(raw)
        stock = BytesParser(policy=policy.default).parsebytes(raw)
        assert _walk(ours) == _walk(stock), path
        assert _walk(ours) == _walk(ours), path  # reading twice (memoized) changes nothing


def test_memo_follows_header_changes() -> None:
    from email.parser import BytesParser

    from agent.intake.email_parse import _POLICY, _Message

    msg = BytesParser(_Message, policy=_POLICY).parsebytes(
        b"Subject: one\r\nContent-Type: text/plain; charset=latin-1\r\n\r\nbody")
    assert msg.get("subject") == "one" and msg.get_content_charset() == "latin-1"
    msg.replace_header("Subject", "two")
    assert msg.get("subject") == "two"
    msg.set_param("charset", "utf-8")
    assert msg.get_content_charset() == "utf-8"
    del msg["subject"]
    assert msg.get("subject") is None
    msg["Subject"] = "three"
    assert msg["subject"] == "three"
    msg.add_header("X-Extra", "yes")
    assert msg.get("x-extra") == "yes"
