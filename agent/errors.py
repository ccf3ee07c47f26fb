"""One exception root for leadbox; every message says what to do next."""


class LeadboxError(Exception):
    """Root of every error leadbox raises on purpose."""


class ConfigError(LeadboxError):
    """The configuration is wrong: the message names the key and the problem."""


class TransientError(LeadboxError):
    """A step failed for a reason that may go away (network, 429, 5xx): retry later.

    ``retry_after`` is a hint in seconds from the remote side, when it gave one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(LeadboxError):
    """A step failed for a reason retrying will not fix (403, 404, bad data)."""


class NeedsCredentials(PermanentError):
    """A remote service refused our credentials: fix the secret, leadbox keeps retrying slowly."""


class DeliveryUncertain(LeadboxError):
    """The message was handed over but the server's answer never came: it may have been delivered.

    Never retried (that could answer twice); the lead is failed with reply status 'uncertain'.
    """


class Deferred(LeadboxError):
    """Not this lead's fault: the step must wait until ``until`` (epoch seconds) and try again.

    A paused mail transport or a full reply cap raises it. The worker keeps the lead in its
    state without spending an attempt, and claims it again at ``until``.
    """

    def __init__(self, reason: str, until: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.until = until
