"""Log lines are JSON with the agreed fields, and no secret or message body gets out."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from agent.app.logs import (
    configure_logging,
    describe_text,
    redact,
    secret_values_from_env,
)
from agent.errors import ConfigError

# Recognisable values, so a leak is unmistakable in the captured output.
PRIVATE_KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDleakedkeyline1\n"
    "QmVlcEJvb3BMZWFrZWRLZXlMaW5lVHdvQmVlcEJvb3BMZWFrZWRLZXlMaW5lVHdv\n"
    "-----END PRIVATE KEY-----\n"
)
ENV = {
    "OPENAI_API_KEY": "sk-LEAKCANARY-openai-0001",
    "EMAIL_USER": "agent@example.com",
    "EMAIL_PASS": "LEAKCANARY-mailpass",
    "GOOGLE_CREDENTIALS_JSON": json.dumps(
        {"type": "service_account", "client_email": "bot@x.iam", "private_key": PRIVATE_KEY}
    ),
    "LEADBOX_ADMIN_TOKEN": "LEAKCANARY-admin-token",
    "LEADBOX_WEBHOOK_SECRET": "LEAKCANARY-webhook-secret",
    "GOOGLE_OAUTH_CLIENT_SECRET": "LEAKCANARY-oauth-client-secret",
    "GOOGLE_OAUTH_REFRESH_TOKEN": "LEAKCANARY-oauth-refresh",
    "INBOX_OAUTH_TOKEN": "LEAKCANARY-inbox-token",
    "DATABASE_URL": "postgresql://leadbox:LEAKCANARY-dbpass@db:5432/leadbox",
}
CANARY = "LEAKCANARY"
KEY_LINE = "QmVlcEJvb3BMZWFrZWRLZXlMaW5lVHdvQmVlcEJvb3BMZWFrZWRLZXlMaW5lVHdv"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """configure_logging changes the root logger; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_the_fields() -> None:
    buf = io.StringIO()
    configure_logging("INFO", json_format=True, stream=buf)
    log = logging.getLogger("leadbox.worker")
    log.info(
        "lead %s replied",
        "L1",
        extra={"lead_id": "L1", "intake": "webhook", "state": "replied", "duration_ms": 12.5,
               "category": "sales", "reason": None, "mailbox": "INBOX"},
    )
    log.debug("not at INFO")
    [doc] = lines(buf)
    assert doc["event"] == "lead L1 replied"
    assert doc["level"] == "INFO"
    assert doc["logger"] == "leadbox.worker"
    assert doc["lead_id"] == "L1" and doc["intake"] == "webhook" and doc["state"] == "replied"
    assert doc["duration_ms"] == 12.5 and doc["category"] == "sales" and doc["mailbox"] == "INBOX"
    assert "reason" not in doc  # None context is left out, not written as null
    stamp = datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0


def test_a_multiline_message_stays_one_line() -> None:
    buf = io.StringIO()
    configure_logging(json_format=True, stream=buf)
    logging.getLogger("x").warning("first\nsecond")
    assert len(buf.getvalue().splitlines()) == 1
    assert lines(buf)[0]["event"] == "first\nsecond"


def test_unknown_extras_are_not_written() -> None:
    """Only the known context fields reach the line, so a body passed by mistake stays out."""
    buf = io.StringIO()
    configure_logging(json_format=True, stream=buf)
    logging.getLogger("x").info("got lead", extra={"body": "Hola, quiero precios", "lead_id": "L2"})
    assert "quiero precios" not in buf.getvalue()
    assert lines(buf)[0]["lead_id"] == "L2"


def test_describe_text_gives_the_length_only() -> None:
    assert describe_text("Hola, quiero precios") == "len=20"
    assert describe_text("") == "len=0"
    assert describe_text(None) == "len=0"


def test_calling_twice_does_not_duplicate_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(json_format=True, stream=first)
    configure_logging(json_format=True, stream=second)
    logging.getLogger("x").info("once")
    assert first.getvalue() == ""
    assert [d["event"] for d in lines(second)] == ["once"]


def test_level_is_applied_and_checked() -> None:
    buf = io.StringIO()
    configure_logging("warning", json_format=True, stream=buf)
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    assert [d["event"] for d in lines(buf)] == ["shown"]
    with pytest.raises(ConfigError, match="LOUD"):
        configure_logging("LOUD", stream=buf)


def test_tty_gets_human_readable_lines() -> None:
    tty = FakeTTY()
    configure_logging(stream=tty)
    logging.getLogger("leadbox.inbox").info("polled", extra={"mailbox": "INBOX", "lead_id": "L3"})
    out = tty.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    assert "INFO" in out and "leadbox.inbox" in out and "polled" in out
    assert "mailbox=INBOX" in out and "lead_id=L3" in out


def test_not_a_tty_defaults_to_json() -> None:
    buf = io.StringIO()
    configure_logging(stream=buf)
    logging.getLogger("x").info("plain")
    assert lines(buf)[0]["event"] == "plain"


def test_secret_values_from_env_picks_the_secrets() -> None:
    values = secret_values_from_env(ENV)
    for name in ("OPENAI_API_KEY", "EMAIL_PASS", "LEADBOX_ADMIN_TOKEN", "LEADBOX_WEBHOOK_SECRET",
                 "GOOGLE_OAUTH_CLIENT_SECRET", "GOOGLE_OAUTH_REFRESH_TOKEN", "INBOX_OAUTH_TOKEN",
                 "GOOGLE_CREDENTIALS_JSON"):
        assert ENV[name] in values, name
    assert PRIVATE_KEY in values
    assert "LEAKCANARY-dbpass" in values
    assert "agent@example.com" not in values  # an address is not a secret
    assert secret_values_from_env({}) == []
    assert secret_values_from_env({"OPENAI_API_KEY": "  ", "DATABASE_URL": "sqlite:///x"}) == []


def leak_everything(log: logging.Logger) -> None:
    """Log every secret through every path a record can carry text."""
    for name, value in ENV.items():
        log.info("config %s=%s", name, value)
        log.info(f"inline {value}")
        log.warning("with extras", extra={"error": value, "reason": f"because {value}"})
    log.info("GET /leads Authorization: Bearer abc.def-ghi_UNLISTED")
    log.info("dsn host=db user=x password=UNLISTEDpw dbname=y")
    log.info("url https://u:UNLISTEDurlpw@example.com/path")
    log.info("key line %s", KEY_LINE)
    try:
        try:
            raise ConnectionError(f"auth failed for {ENV['DATABASE_URL']}")
        except ConnectionError as exc:
            raise RuntimeError(f"token {ENV['OPENAI_API_KEY']} rejected") from exc
    except RuntimeError as exc:
        log.exception("step failed: %s", exc, extra={"error": exc})
    log.error("stack", stack_info=True, extra={"error": ENV["EMAIL_PASS"]})


@pytest.mark.parametrize("json_format", [True, False])
def test_no_secret_reaches_the_output(json_format: bool) -> None:
    buf = io.StringIO()
    configure_logging(json_format=json_format, stream=buf, secrets=secret_values_from_env(ENV))
    leak_everything(logging.getLogger("leadbox.test"))
    out = buf.getvalue()
    assert "Traceback" in out and "ConnectionError" in out  # the traceback is there...
    assert "***" in out
    assert CANARY not in out  # ...without the secrets in it
    assert "UNLISTED" not in out
    assert KEY_LINE not in out
    assert "MIIEvQ" not in out
    assert "agent@example.com" in out  # not a secret, still visible


def test_json_escaped_secret_in_a_repr_is_redacted() -> None:
    """A traceback may show the credentials JSON as a repr, with \\n escaped."""
    buf = io.StringIO()
    configure_logging(json_format=True, stream=buf, secrets=secret_values_from_env(ENV))
    logging.getLogger("x").error("bad credentials %r", {"private_key": PRIVATE_KEY})
    out = buf.getvalue()
    assert "MIIEvQ" not in out and KEY_LINE not in out


def test_redaction_also_applies_to_library_loggers() -> None:
    buf = io.StringIO()
    configure_logging(json_format=True, stream=buf, secrets=["LEAKCANARY-lib"])
    logging.getLogger("aiohttp.access").info("request with LEAKCANARY-lib")
    assert CANARY not in buf.getvalue()


def test_redact_helper() -> None:
    assert redact("token is s3cr3t-value", ["s3cr3t-value"]) == "token is ***"
    assert redact("Bearer abc123") == "Bearer ***"
    assert redact("password=hunter22 next") == "password=*** next"
    # Short values would garble everything and are not credentials: left alone.
    assert redact("a b c", ["a"]) == "a b c"
