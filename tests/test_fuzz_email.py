"""Deeper fuzzing of the email parser, and of `leadbox parse-email` on hostile files.

The random-MIME strategies are the ones of tests/test_email_parse.py (imported, not
copied); here they are run longer (1,000 examples in CI, 10,000 with LEADBOX_LONG=1)
and mutated further: other line endings, cut-off mails, NUL bytes, header floods and
multiparts nested past the parser's depth limit.

Reproduce a run: the default is derandomized (the same examples every run); with
LEADBOX_FUZZ_SEED=<int> hypothesis uses that seed instead, which is printed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from agent.intake.email_parse import (
    HEADER_MAX,
    MESSAGE_MAX,
    NAME_MAX,
    ParsedEmail,
    is_valid_email,
    parse_email,
    to_lead_in,
)
from tests.fixtures.daemon import ROOT
from tests.test_email_parse import OWN, OWN_DOMAINS, mime_part, raw_email

LONG = os.environ.get("LEADBOX_LONG") == "1"
EXAMPLES = 10_000 if LONG else 1_000
_SEED = os.environ.get("LEADBOX_FUZZ_SEED")
LINE_BREAKS = "\r\n\u2028\u2029\x85\x00"
CLI_KEYS = {"name", "email", "message", "subject", "message_id", "skip_reason"}


# ------------------------------------------------------------------ mutations


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """A random part wrapped in up to 60 multipart levels (the parser walks 40)."""
    levels = draw(st.integers(0, 60))
    inner = draw(mime_part(depth=3))
    for i in range(levels):
        b = f"n{i}"
        inner = (f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n--{b}\r\n'.encode()
                 + inner + f"\r\n--{b}--\r\n".encode())
    return b"From: Deep <deep@example.org>\r\n" + inner


@st.composite
def header_flood(draw: st.DrawFn) -> bytes:
    """Many, long or folded headers in front of a random mail."""
    name = draw(st.sampled_from([b"Subject", b"From", b"X-Junk", b"Received", b"Content-Type"]))
    count = draw(st.integers(1, 300))
    length = draw(st.integers(1, 5_000))
    fold = draw(st.booleans())
    value = b"a" * length if not fold else b"\r\n ".join([b"w" * 70] * (length // 70 + 1))
    return b"".join(name + b": " + value + b"\r\n" for _ in range(count)) + draw(raw_email())


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = draw(raw_email())
    how = draw(st.sampled_from(["none", "lf", "cr", "cut", "nul", "dup"]))
    if how == "lf":
        return raw.replace(b"\r\n", b"\n")
    if how == "cr":
        return raw.replace(b"\r\n", b"\r")
    if how == "cut" and raw:
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "nul" and raw:
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + b"\x00" * draw(st.integers(1, 8)) + raw[at:]
    if how == "dup":
        return raw + b"\r\n" + raw
    return raw


HOSTILE_MAIL = st.one_of(raw_email(), mutated(), nested(), header_flood())


def check_invariants(p: ParsedEmail) -> None:
    assert isinstance(p, ParsedEmail)
    assert isinstance(p.name, str) and isinstance(p.email, str) and isinstance(p.message, str)
    assert isinstance(p.subject, str)
    assert p.skip_reason is not None or is_valid_email(p.email), (p.email, p.skip_reason)
    for field_name in ("name", "subject", "message_id", "in_reply_to", "references"):
        value = getattr(p, field_name)
        assert value is None or not any(ch in value for ch in LINE_BREAKS), (field_name, value)
    assert len(p.name) <= NAME_MAX and len(p.subject) <= HEADER_MAX
    assert len(p.message) <= MESSAGE_MAX
    if p.skip_reason is None:
        lead = to_lead_in(p)
        assert lead.email_norm == p.email.strip().lower()
    json.dumps(asdict(p), ensure_ascii=False).encode("utf-8")  # storable and printable


def _settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        derandomize=_SEED is None,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


def _seeded(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
    return seed(int(_SEED))(fn) if _SEED is not None else fn


@pytest.mark.slow
@_seeded
@_settings()
@given(HOSTILE_MAIL)
def test_parse_email_fuzz_never_raises_and_keeps_invariants(raw: bytes) -> None:
    check_invariants(parse_email(raw, own_addresses=OWN, own_domains=OWN_DOMAINS))


def test_fuzz_seed_is_reported() -> None:
    """Shown with -s (and in the failure report of the fuzz test as hypothesis's @seed/blob)."""
    print(f"\nemail fuzz: {EXAMPLES} examples, "
          f"{'seed ' + _SEED if _SEED else 'derandomized (set LEADBOX_FUZZ_SEED to vary)'}")


# ------------------------------------------------------- the CLI on hostile files


def hostile_files(rng: random.Random) -> dict[str, bytes]:
    """~20 mails a parser could choke on (deterministic for a given rng)."""
    deep = b"X"
    for i in range(200):
        deep = (f'Content-Type: multipart/mixed; boundary="d{i}"\r\n\r\n--d{i}\r\n'.encode()
                + deep + f"\r\n--d{i}--\r\n".encode())
    many_parts = b"".join(
        b"--m\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(2_000)
    )
    return {
        "random_bytes_1": rng.randbytes(4_096),
        "random_bytes_2": bytes(rng.getrandbits(8) for _ in range(64)),
        "nul_only": b"\x00" * 1_000,
        "empty": b"",
        "headers_only_no_body": b"From: a@example.org\r\nSubject: s",
        "huge_subject": b"From: a@example.org\r\nSubject: " + b"S" * 1_000_000 + b"\r\n\r\nhi\r\n",
        "header_flood": b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(20_000))
        + b"From: a@example.org\r\n\r\nbody\r\n",
        "folded_forever": b"From: a@example.org\r\nSubject: x" + b"\r\n y" * 50_000 + b"\r\n\r\nb\r\n",
        "bogus_charsets": b"From: =?x-nope?q?Ev=E9?= <a@example.org>\r\n"
        b"Subject: =?utf-7?b?////?= =?zlib?q?x?=\r\nContent-Type: text/plain; charset=\"base64\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n",
        "charset_nul": b"From: a@example.org\r\nContent-Type: text/plain; charset=utf-8\x00evil\r\n\r\n"
        + "caf\u00e9".encode("latin-1") + b"\r\n",
        "broken_boundary": b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=\r\n\r\n"
        b"--\r\nContent-Type: text/plain\r\n\r\nhi\r\n----\r\n",
        "unterminated_multipart": b"From: a@example.org\r\nContent-Type: multipart/alternative; "
        b'boundary="q"\r\n\r\n--q\r\nContent-Type: text/html\r\n\r\n<p>unclosed <b>',
        "nested_200": b"From: Deep <deep@example.org>\r\n" + deep,
        "two_thousand_parts": b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n"
        + many_parts + b"--m--\r\n",
        "crlf_in_encoded_name": b"From: =?utf-8?q?Eve=0D=0ABcc:_v@x.io?= <eve@example.org>\r\n"
        b"Subject: =?utf-8?b?aGkNCkJjYzogdkB4Lmlv?=\r\n\r\nhello\r\n",
        "rfc822_inside": b"From: a@example.org\r\nContent-Type: message/rfc822\r\n\r\n"
        + rng.randbytes(500),
        "bad_qp_and_base64": b"From: a@example.org\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"=ZZ=E9=\r\n=\r\n==",
        "raw_8bit_headers": "From: Zo\u00eb \u00d8deg\u00e5rd <zoe@example.no>\r\nSubject: \u00c6 \u2028 "
        "Bcc: v@x.io\r\n\r\nhei\r\n".encode() + rng.randbytes(100),
        "lone_cr_lines": b"From: a@example.org\rSubject: s\r\rbody\r",
        "only_garbage_header": b":::::\r\n: \r\n\r\n" + rng.randbytes(200),
    }


@pytest.mark.slow
def test_cli_parse_email_on_hostile_files(tmp_path: Path) -> None:
    files = hostile_files(random.Random(20240607))
    assert len(files) >= 20
    for name, raw in files.items():
        path = tmp_path / f"{name}.eml"
        path.write_bytes(raw)
        run = subprocess.run(
            [sys.executable, "-m", "agent.cli", "--config", str(ROOT / "config" / "agent.toml"),
             "parse-email", str(path)],
            cwd=ROOT, capture_output=True, timeout=60,
        )
        assert run.returncode == 0, (name, run.stderr.decode(errors="replace")[-2000:])
        out = json.loads(run.stdout)
        assert CLI_KEYS <= out.keys(), (name, out.keys())
        assert out["skip_reason"] is not None or is_valid_email(out["email"]), (name, out)
        assert not any(ch in out["name"] + out["subject"] for ch in LINE_BREAKS), (name, out)
        if name == "crlf_in_encoded_name":  # regression: see the test below
            assert out["email"] == "eve@example.org", out


@pytest.mark.parametrize(
    "display",
    [
        b"=?utf-8?q?Eve=0D=0ABcc:_v@x.io?=",  # was lead email "_v@x.io?="
        b"=?utf-8?q?=0D,victim@example.com,?=",  # was lead email "victim@example.com"
        b"=?utf-8?q?X=0D=0A?= =?utf-8?q?,victim@example.com,?=",
        b"=?utf-8?q?=0A_victim@example.com_?=",  # was the whole encoded word as the address
    ],
)
def test_address_inside_an_encoded_display_name_is_not_the_sender(display: bytes) -> None:
    """Finding (fixed in agent/intake/email_parse.py): when policy.default refused a From whose
    encoded display name decodes to CR/LF, the raw fallback parser read the text inside
    the encoded word as addresses, so the lead (and its reply) went to an address taken
    from the display name instead of the sender's."""
    raw = b"From: " + display + b" <eve@example.org>\r\nSubject: s\r\n\r\nhola\r\n"
    p = parse_email(raw)
    check_invariants(p)
    assert p.email == "eve@example.org" and p.skip_reason is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("From: Zoë <zoë@exämple.no>", "zoë@exämple.no"),
        ("From: zoë@exämple.no", "zoë@exämple.no"),
        ("From: Ana <ana@example.org>\r\nReply-To: josé@exämple.org", "josé@exämple.org"),
    ],
)
def test_raw_utf8_address_is_text_not_surrogate_escapes(header: str, expected: str) -> None:
    """Finding (fixed in agent/intake/email_parse.py, found by LEADBOX_FUZZ_SEED=12345 LEADBOX_LONG=1):
    an address in raw UTF-8 (RFC 6532) came back as surrogate escapes
    ('zo\\udcc3\\udcab@...'), which no store can encode: the inbox failed to take the mail
    until it quarantined it. Addresses are now decoded like names and subjects."""
    p = parse_email(f"{header}\r\nSubject: s\r\n\r\nhola\r\n".encode())
    check_invariants(p)
    assert p.skip_reason is None and p.email == expected
    to_lead_in(p).email_norm.encode("utf-8")  # storable


def test_control_characters_make_an_address_invalid() -> None:
    assert not is_valid_email("a@b.c\x80") and not is_valid_email("a\udcc3@b.co")
    assert not is_valid_email("a@exa\u200bmple.com")
    assert parse_email(b"From: a <a@b.c\xc2\x80>\r\n\r\nhi").skip_reason is not None


@pytest.mark.parametrize("name", ["nested_200", "two_thousand_parts", "header_flood"])
def test_hostile_structures_parse_in_process(name: str) -> None:
    """The same hostile files through parse_email directly (a failure here is easier to read)."""
    check_invariants(parse_email(hostile_files(random.Random(1))[name]))
