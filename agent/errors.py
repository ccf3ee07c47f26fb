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
