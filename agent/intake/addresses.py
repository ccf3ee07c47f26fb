"""Address checks shared by the email parser and the form-notification reader."""

from __future__ import annotations

__all__ = ["is_valid_email", "sender_matches"]


def is_valid_email(address: str) -> bool:
    """A deliberately simple check: one '@', a local part, a dotted domain, no spaces.

    Internationalized (IDN) domains and UTF-8 local parts are allowed; strict
    RFC 5322 validation rejects real senders more often than it helps.
    """
    if not address or len(address) > 254 or address.count("@") != 1:
        return False
    if any(ch.isspace() or not ch.isprintable() for ch in address):  # controls, surrogates
        return False
    local, domain = address.split("@")
    if not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        return False
    if ".." in domain or any(ch in domain for ch in '<>()[],;:"\\'):
        return False
    return not any(ch in local for ch in '<>(),;:\\"[]')


def sender_matches(address: str, patterns: frozenset[str]) -> bool:
    """True when ``address`` is one of ``patterns``: full addresses, or ``@domain`` (subdomains too)."""
    if not patterns:
        return False
    addr = address.strip().lower()
    if addr in patterns:
        return True
    domain = addr.rpartition("@")[2].rstrip(".")
    while domain:
        if "@" + domain in patterns:
            return True
        _, dot, domain = domain.partition(".")
        if not dot:
            break
    return False
