"""The SMTP refusal table (docs/sending-limits.md): providers' real answers, read whole."""

from __future__ import annotations

import pytest

from agent.mail.smtp_errors import classify, enhanced_code, retry_hint

CASES = [
    # Gmail
    (550, "5.4.5 Daily user sending limit exceeded. For more information go to gsmtp", "mail", "quota"),
    (550, "5.4.5 Daily user sending limit exceeded.", "data", "quota"),
    (550, "5.4.5 Daily SMTP relay limit exceeded for user. gsmtp", "rcpt", "quota"),
    (421, "4.7.0 Try again later, closing connection. (MAIL) gsmtp", "mail", "throttle"),
    (421, "4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP", "data",
     "throttle"),
    (454, "4.7.0 Too many login attempts, please try again later. gsmtp", "auth", "throttle"),
    (454, "4.7.0 Cannot authenticate due to a temporary system problem.", "auth", "throttle"),
    (552, "5.2.2 The email account that you tried to reach is over quota.", "rcpt", "recipient"),
    (452, "4.2.2 The email account that you tried to reach is over quota.", "data", "recipient"),
    (450, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional "
          "messages from being delivered.", "rcpt", "recipient"),
    (550, "5.1.1 The email account that you tried to reach does not exist. <x@y.example>", "rcpt", "recipient"),
    (535, "5.7.8 Username and Password not accepted.", "auth", "credentials"),
    (534, "5.7.9 Application-specific password required.", "auth", "credentials"),
    # Generic policy deferrals and greylisting
    (451, "4.7.1 Please try again later", "rcpt", "throttle"),
    (451, "4.7.1 Service unavailable", "mail", "throttle"),
    (450, "4.7.1 <a@b.example>: Sender address rejected: Too many messages from sender in last 60", "rcpt", "throttle"),
    (421, "Service not available, closing transmission channel", "connect", "throttle"),
    (421, "4.4.2 mx.example Error: timeout exceeded", "mail", "transient"),  # an idle session dropped
    # Amazon SES
    (454, "Throttling failure: Maximum sending rate exceeded.", "mail", "throttle"),
    (454, "Throttling failure: Daily message quota exceeded.", "mail", "quota"),
    # Exchange Online / Outlook.com
    (554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process", "data", "quota"),
    (550, "5.1.90 Your message can't be sent because you've reached your daily limit for message recipients",
     "rcpt", "quota"),
    (451, "4.7.500 Server busy. Please try again later from [203.0.113.5]", "rcpt", "throttle"),
    (421, "4.3.2 The maximum number of concurrent server connections has exceeded a limit", "connect", "throttle"),
    # SendGrid, Zoho
    (451, "Authentication failed: Maximum credits exceeded", "mail", "quota"),
    (550, "5.4.6 Unusual sending activity detected. Please try after sometime.", "mail", "quota"),
    # Not limits: per lead, as before
    (550, "5.7.1 Message rejected as spam", "data", "permanent"),
    (451, "4.3.0 Mail server temporarily rejected message.", "data", "transient"),
    (554, "5.7.0 Transaction failed", "data", "transient"),
]


@pytest.mark.parametrize(("code", "text", "stage", "kind"), CASES)
def test_refusals_are_read_whole(code: int, text: str, stage: str, kind: str) -> None:
    v = classify(code, text, stage)  # type: ignore[arg-type]
    assert v.kind == kind, v
    assert v.pauses_transport == (kind in ("quota", "throttle"))


def test_hints_enhanced_codes_and_no_personal_data() -> None:
    assert retry_hint("4.7.0 Try again in 30 seconds") == 30
    assert retry_hint("please retry after 5 minutes") == 300
    assert retry_hint("Retry-After: 120") == 120
    assert retry_hint("wait 2 hours") == 7200
    assert retry_hint("Try again later, closing connection.") is None
    assert retry_hint("try again in 999999 hours") == 24 * 3600  # capped
    assert classify(421, "4.7.0 Try again in 45 seconds", "mail").retry_after == 45
    assert enhanced_code("Domain 10.0.0.1 blocked") is None and enhanced_code("550-5.4.5 Daily") == "5.4.5"
    v = classify(550, "5.4.5 <ana@cliente.example>: Recipient address rejected: Sending quota exceeded", "rcpt")
    assert v.kind == "quota" and "ana@" not in v.describe() and "<address>" in v.describe()
