"""What an SMTP server's refusal means for leadbox: the sending account's limit, or this lead's problem.

A reply is a code (RFC 5321), usually an enhanced status code (RFC 3463, ``class.subject.detail``)
and free text. Providers announce their sending limits with all three, at whatever step the
limit is checked (AUTH, MAIL, RCPT or DATA), so each answer is read whole:

- ``quota``: the account's daily (or longer) sending limit. The transport pauses for everyone
  and re-probes every ``reply.quota_probe_minutes``.
- ``throttle``: too fast, too many connections or logins. The transport pauses for everyone,
  as long as the server hints (``try again in 30 seconds``), else exponentially from a minute.
- ``credentials``: the login was refused (535, 534, 530 at AUTH): ``needs_credentials``.
- ``recipient``: this address's problem (unknown user, mailbox full): an error of this lead only.
- ``permanent`` / ``transient``: anything else, per lead, by the reply code's class.

The table (docs/sending-limits.md) lists the answers of the large providers this module knows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["quota", "throttle", "credentials", "recipient", "permanent", "transient"]
Stage = Literal["connect", "auth", "mail", "rcpt", "data"]

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")

# The account's own sending limit, by its words. Checked before the recipient rules, because
# some servers refuse an over-quota sender at RCPT ("Recipient address rejected: Domain
# Sending Quota Exceeded"), but after "mailbox full" (the recipient's quota, not ours).
_QUOTA_TEXT = re.compile(
    r"daily\s+(?:user\s+)?(?:sending|smtp\s+relay|message|send|mail)\s+(?:quota|limit)"  # Gmail, SES
    r"|sending\s+(?:quota|limit)"  # Gmail, Yahoo, many hosts
    r"|submission\s*quota|submissionquotaexceeded"  # Exchange Online / Outlook.com
    r"|(?:message|recipient|mail)s?\s+(?:quota|limit)\s+(?:exceeded|reached)"
    r"|daily\s+limit|limit\s+for\s+message\s+recipients"  # Outlook.com "reached your daily limit"
    r"|(?:maximum\s+)?credits?\s+exceeded"  # SendGrid "Maximum credits exceeded"
    r"|unusual\s+sending\s+activity"  # Zoho
    r"|(?:hourly|daily|per[-\s]day)\s+(?:quota|limit)"
    r"|quota\s+(?:exceeded|reached)|exceeded\s+(?:the\s+|your\s+)?quota",
    re.I,
)
# The recipient's mailbox quota: full, over quota. Never our limit.
_MAILBOX_FULL_TEXT = re.compile(
    r"mailbox\s+(?:is\s+)?full|over\s+(?:its\s+|their\s+|the\s+)?quota|mailbox\s+quota|storage\s+quota"
    r"|insufficient\s+(?:mailbox\s+)?storage\s+for\s+(?:the\s+)?(?:user|recipient)",
    re.I,
)
# Too fast, too many: the server wants us to slow down.
_THROTTLE_TEXT = re.compile(
    r"rate[-\s]?limit|throttl|too\s+many|try\s+(?:again\s+)?later|retry\s+later|temporarily\s+deferred"
    r"|server\s+(?:is\s+)?busy|sending\s+rate|maximum\s+(?:sending\s+)?rate|unusual\s+rate|slow\s+down"
    r"|concurrent\s+connections|connection\s+limit|temporarily\s+rate",
    re.I,
)
# A server's hint of how long to wait: "try again in 30 seconds", "retry after 5 min", "Retry-After: 120".
_HINT = re.compile(
    r"\b(?:retry[-\s]after:?|try\s+again\s+(?:in|after)|retry\s+(?:in|after)|wait(?:\s+for)?|after)"
    r"\s*(\d{1,6})\s*(seconds?|secs?|s\b|minutes?|mins?|m\b|hours?|hrs?|h\b)?",
    re.I,
)
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_HINT = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    code: int
    enhanced: str | None  # "5.4.5", when the server sent one
    text: str  # the server's text, one line, cut short
    retry_after: float | None = None  # seconds, when the server hinted

    @property
    def pauses_transport(self) -> bool:
        return self.kind in ("quota", "throttle")

    def describe(self) -> str:
        code = f"{self.code} {self.enhanced}" if self.enhanced else str(self.code)
        return f"{code} {self.text}".strip()


def enhanced_code(text: str) -> str | None:
    """The first RFC 3463 code in a reply's text ("5.4.5"), or None."""
    m = _ENHANCED.search(text)
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else None


def retry_hint(text: str) -> float | None:
    """Seconds the server asks us to wait, when its text says so (bare numbers are seconds)."""
    m = _HINT.search(text)
    if m is None:
        return None
    value = float(m.group(1))
    unit = (m.group(2) or "s")[0].lower()
    seconds = value * _UNIT.get(unit, 1.0)
    return min(seconds, MAX_HINT) if seconds > 0 else None


_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


def _one_line(text: str, limit: int = 160) -> str:
    """The server's text for logs and /readyz: one line, addresses (personal data) masked."""
    return _ADDRESS.sub("<address>", " ".join(text.split()))[:limit]


def classify(code: int, text: str, stage: Stage) -> Verdict:
    """Read one refusal (``code`` as answered, ``text`` the rest of the reply) at ``stage``."""
    text = text or ""
    enh = enhanced_code(text)
    subject_detail = enh.split(".", 1)[1] if enh else ""

    def verdict(kind: Kind, hint: bool = False) -> Verdict:
        return Verdict(kind, code, enh, _one_line(text), retry_hint(text) if hint else None)

    if code < 400:  # not a refusal (a 3xx where it does not belong): let the caller decide
        return verdict("transient")
    # 1. The recipient's mailbox is full (its quota, not ours): this lead's problem.
    if subject_detail == "2.2" or _MAILBOX_FULL_TEXT.search(text):
        return verdict("recipient")
    # 2. The sending account's limits, by code and words; they may come at any step, RCPT too.
    if enh == "5.4.5":  # Gmail "Daily user sending limit exceeded"
        return verdict("quota", hint=True)
    if _QUOTA_TEXT.search(text):
        return verdict("quota", hint=True)
    if stage == "auth" and code == 454:  # "Too many login attempts": throttling, not a bad password
        return verdict("throttle", hint=True)
    # 3. The recipient's address or mailbox (unknown user, disabled, receiving too fast).
    if subject_detail.startswith("1.") or subject_detail in ("2.1", "2.3", "2.4"):
        return verdict("recipient")
    # 4. Too fast, too many: Gmail 421 4.7.0 and 4.7.28, 451 4.7.1, the providers' words.
    if enh in ("4.7.28", "4.7.0") and code == 421:
        return verdict("throttle", hint=True)
    if _THROTTLE_TEXT.search(text):
        return verdict("throttle", hint=True)
    # 5. By code alone.
    if code == 421 and enh not in ("4.4.1", "4.4.2"):  # "closing channel": for everyone, not this lead
        return verdict("throttle", hint=True)
    if code in (450, 451, 452) and enh is not None and enh.startswith("4.7."):  # policy deferral, 451 4.7.1
        return verdict("throttle", hint=True)
    if stage == "auth":  # 535, 534, 530...: the login itself was refused
        return verdict("credentials")
    if stage == "rcpt":
        return verdict("recipient")
    if code >= 500 and code not in (530, 535, 554):
        return verdict("permanent")
    return verdict("transient")
