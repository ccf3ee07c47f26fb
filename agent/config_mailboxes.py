"""Several mailboxes: ``inbox.mailboxes``, a list of tables that each override the ``[inbox]`` defaults.

Each resolves to a ``Mailbox``: its own effective ``[inbox]`` section (so the poller reads the
same fields as before), its login, the address its replies come from and the SMTP server they
go through. Without the list, the single-mailbox config of before is one mailbox named
``default`` (its login EMAIL_USER / EMAIL_PASS, its replies from ``reply.from_address``), and
its checkpoint, stored before under ``user@host/folder``, carries over (``legacy_key``).

Passwords and refresh tokens are never in the file: a table names the environment variable
that holds them (``password_env``, ``refresh_token_env``), read once at load time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator

from agent.config_base import Section
from agent.errors import ConfigError


class _Config(Protocol):
    """What resolving needs of ``agent.config.Config`` (not imported: config imports this module)."""

    @property
    def settings(self) -> Any: ...
    @property
    def secrets(self) -> Any: ...
    @property
    def named_secrets(self) -> Mapping[str, str]: ...
    @property
    def inbox_username(self) -> str: ...

__all__ = ["DEFAULT_NAME", "Mailbox", "MailboxConfig", "named_env", "resolve_mailboxes"]

DEFAULT_NAME = "default"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The [inbox] keys a mailbox's table may override.
INBOX_OVERRIDES = ("host", "port", "security", "auth", "ca_file", "folder", "after", "move_to", "label",
                   "idle", "poll_interval", "start")


class MailboxConfig(Section):
    """One mailbox of ``inbox.mailboxes``; unset keys take the ``[inbox]`` (or ``[reply]``) value."""

    name: str = Field(description="Unique short name (a-z, 0-9, - and _): logs, metrics, /readyz, the lead's mailbox.")
    username: str = Field(description="IMAP login.")
    from_address: str = Field(description="Replies to this mailbox's leads come from this address.")
    password_env: str = Field("", description="Environment variable holding the password (auth = password).")
    refresh_token_env: str = Field("", description="Environment variable holding the refresh token (xoauth2).")
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["tls", "starttls"] | None = None
    auth: Literal["password", "xoauth2"] | None = None
    ca_file: str | None = None
    folder: str | None = None
    after: Literal["seen", "move", "label"] | None = None
    move_to: str | None = None
    label: str | None = None
    idle: bool | None = None
    poll_interval: float | None = Field(None, gt=0)
    start: Literal["now", "all"] | None = None
    templates_dir: str | None = None
    source: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = Field(None, ge=1, le=65535)
    smtp_security: Literal["tls", "starttls"] | None = None

    @field_validator("name")
    @classmethod
    def _short_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-32 characters: a-z, 0-9, - and _ (starting with a letter or digit)")
        return v

    @field_validator("from_address", "username")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    @field_validator("password_env", "refresh_token_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if v and not _ENV.match(v):
            raise ValueError("must be the name of an environment variable (letters, digits, _)")
        return v


def check_unique(mailboxes: list[MailboxConfig]) -> list[MailboxConfig]:
    seen: set[str] = set()
    for m in mailboxes:
        if m.name in seen:
            raise ValueError(f"two mailboxes are named {m.name!r}; names must be unique")
        seen.add(m.name)
    return mailboxes


@dataclass(frozen=True)
class Mailbox:
    """One polled mailbox, resolved: what the poller, the replies and loop protection need."""

    name: str
    inbox: Any  # the effective [inbox] section (agent.config.InboxConfig) of this mailbox
    username: str
    from_address: str
    password: str | None = None  # auth = password
    refresh_token: str | None = None  # auth = xoauth2 (None: the shared GOOGLE_OAUTH_REFRESH_TOKEN)
    smtp_host: str = ""
    smtp_port: int = 465
    smtp_security: str = "tls"
    templates_dir: str = ""
    source: str | None = None
    legacy_key: str | None = None  # the checkpoint key before mailboxes had names

    def __repr__(self) -> str:  # never the password or token
        return f"Mailbox({self.name!r}, {self.username!r}, from={self.from_address!r})"


def named_env(mailboxes: list[MailboxConfig], env: Mapping[str, str]) -> dict[str, str]:
    """The values of the variables the tables name (only those: nothing else of the environment)."""
    out: dict[str, str] = {}
    for m in mailboxes:
        for var in (m.password_env, m.refresh_token_env):
            if var and env.get(var):
                out[var] = env[var]
    return out


def resolve_mailboxes(config: _Config) -> list[Mailbox]:
    """Every polled mailbox; ConfigError names the mailbox and the missing piece."""
    s = config.settings
    inbox, reply = s.inbox, s.reply
    if not inbox.mailboxes:
        user = config.inbox_username
        return [Mailbox(
            DEFAULT_NAME, inbox, user, reply.from_address.strip(), password=config.secrets.email_pass or None,
            smtp_host=reply.smtp_host, smtp_port=reply.smtp_port, smtp_security=reply.smtp_security,
            templates_dir=reply.templates_dir, legacy_key=f"{user}@{inbox.host}/{inbox.folder}")]
    out = []
    for m in inbox.mailboxes:
        over: dict[str, Any] = {k: getattr(m, k) for k in INBOX_OVERRIDES if getattr(m, k) is not None}
        eff = inbox.model_copy(update={**over, "mailboxes": [], "username": m.username})
        password = token = None
        if eff.auth == "password":
            if not m.password_env:
                raise ConfigError(f"inbox.mailboxes[{m.name}]: auth = 'password' needs password_env")
            password = config.named_secrets.get(m.password_env)
            if not password:
                raise ConfigError(f"inbox.mailboxes[{m.name}]: the environment variable {m.password_env} "
                                  "(password_env) is not set")
        elif m.refresh_token_env:
            token = config.named_secrets.get(m.refresh_token_env)
            if not token:
                raise ConfigError(f"inbox.mailboxes[{m.name}]: the environment variable {m.refresh_token_env} "
                                  "(refresh_token_env) is not set")
        elif not (config.secrets.google_oauth_refresh_token or config.secrets.inbox_oauth_token):
            raise ConfigError(f"inbox.mailboxes[{m.name}]: auth = 'xoauth2' needs refresh_token_env")
        if "@" not in m.from_address:
            raise ConfigError(f"inbox.mailboxes[{m.name}].from_address: not an address (got {m.from_address!r})")
        out.append(Mailbox(
            m.name, eff, m.username, m.from_address, password=password, refresh_token=token,
            smtp_host=m.smtp_host or reply.smtp_host, smtp_port=m.smtp_port or reply.smtp_port,
            smtp_security=m.smtp_security or reply.smtp_security,
            templates_dir=m.templates_dir or reply.templates_dir, source=m.source))
    return out
