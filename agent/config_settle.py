"""Settings of settling "uncertain" replies from the mailbox: part of ``[reply]``.

Kept apart from ``agent.config`` only for size; ``ReplyConfig`` inherits these fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.config_base import Section


class SettleSettings(Section):
    """How a reply whose SMTP answer was lost (a crash inside DATA) is looked up over IMAP."""

    settle: Literal["auto", "sent-folder", "self-copy", "off"] = Field(
        "auto", description="Settle 'uncertain' SMTP replies by looking them up over IMAP (the [inbox] "
        "server, EMAIL_USER / EMAIL_PASS): sent-folder (the \\Sent folder; Gmail files every accepted "
        "message there) | self-copy (every reply also goes to EMAIL_USER as a hidden envelope "
        "recipient, looked up in INBOX and self_copy_folder) | auto (sent-folder for Gmail, recognized "
        "by X-GM-EXT-1, else self-copy) | off (uncertain replies wait for a human).")
    sent_folder: str = Field(
        "", description="Folder searched by settle = sent-folder; empty = the folder flagged \\Sent "
        "(RFC 6154).")
    self_copy_folder: str = Field(
        "Leads/Sent", description="Where the inbox poller moves our own reply copies (self-copy); "
        "also searched by settle.")
    settle_grace_seconds: float = Field(
        300.0, ge=0, description="A reply not found in the mailbox this many seconds after its attempt "
        "was not taken by the server: it is sent once more.")
    settle_interval: float = Field(
        60.0, gt=0, description="Seconds between checks of the uncertain replies (one IMAP session "
        "per check).")
    uncertain_max_age: float = Field(
        86400.0, gt=0, description="Seconds (24 h): older uncertain replies are no longer checked and "
        "stay failed/uncertain for a human.")
