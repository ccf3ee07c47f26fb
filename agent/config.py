"""Layered, checked settings: defaults in code -> config/agent.toml -> environment.

Every tunable lives in a section model below with its default. Unknown keys and
wrong values stop start-up with a ConfigError naming the key; secrets come only
from the environment (``Secrets``) and never appear in ``effective()`` unmasked.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = "config/agent.toml"
ENV_PREFIX = "LEADBOX_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(65536, ge=1024)
    # Seconds a client may take to send its request (slow-loris guard).
    read_timeout: float = Field(15.0, gt=0)
    # Per-client-IP limit on POST /leads; 0 turns it off.
    rate_limit_per_minute: int = Field(600, ge=0)
    # Seconds SIGTERM waits for in-flight work before exiting.
    shutdown_grace: float = Field(10.0, ge=0)
    # Webhook authentication: none (web forms), bearer, or hmac (LEADBOX_WEBHOOK_SECRET).
    webhook_auth: Literal["none", "bearer", "hmac"] = "none"
    signature_tolerance: int = Field(300, ge=1)
    # Trust X-Forwarded-For for the client IP (only behind your own proxy).
    trust_proxy: bool = False


class StoreConfig(_Section):
    url: str = "sqlite:///data/leadbox.db"
    pool_size: int = Field(5, ge=1, le=100)


class WorkerConfig(_Section):
    batch_size: int = Field(200, ge=1, le=5000)
    concurrency: int = Field(16, ge=1, le=1000)
    max_attempts: int = Field(8, ge=1)
    backoff_base: float = Field(2.0, gt=0)
    backoff_max: float = Field(900.0, gt=0)
    sweep_interval: float = Field(1.0, gt=0)
    lease_seconds: float = Field(120.0, gt=0)


class ClassifierConfig(_Section):
    # auto = openai when OPENAI_API_KEY is set, else local.
    backend: Literal["auto", "local", "openai"] = "auto"
    model: str = "gpt-4o-mini"
    base_url: str = ""
    timeout: float = Field(20.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    max_input_chars: int = Field(4000, ge=200)
    breaker_failures: int = Field(5, ge=1)
    breaker_reset_seconds: float = Field(60.0, gt=0)
    reclassify_interval: float = Field(300.0, gt=0)


class LabelsConfig(_Section):
    categories: dict[str, str] = Field(
        default_factory=lambda: {
            "sales": "Ventas", "support": "Soporte", "info": "Información", "spam": "Spam",
        }
    )
    priorities: dict[str, str] = Field(
        default_factory=lambda: {"high": "Alta", "medium": "Media", "low": "Baja"}
    )

    @field_validator("categories")
    @classmethod
    def _all_categories(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = set(v) - {"sales", "support", "info", "spam"}
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; use sales, support, info, spam")
        return v

    @field_validator("priorities")
    @classmethod
    def _all_priorities(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = set(v) - {"high", "medium", "low"}
        if unknown:
            raise ValueError(f"unknown priorities {sorted(unknown)}; use high, medium, low")
        return v


PriorityName = Literal["high", "medium", "low"]
_DEFAULT_PRIORITIES: dict[str, PriorityName] = {
    "support": "high", "sales": "medium", "info": "medium", "spam": "low",
}


class PriorityConfig(_Section):
    by_category: dict[str, PriorityName] = Field(default_factory=lambda: dict(_DEFAULT_PRIORITIES))
    # Words that raise a lead one level (never a spam lead).
    urgent_words: list[str] = Field(
        default_factory=lambda: [
            "urgent", "urgente", "asap", "emergency", "emergencia", "emergência",
            "immediately", "inmediato", "imediatamente", "caído", "caida", "fora do ar",
        ]
    )
    # Sender domain -> priority (exact domain or a parent domain).
    domains: dict[str, PriorityName] = Field(default_factory=dict)


class ReplyConfig(_Section):
    enabled: bool = True
    transport: Literal["outbox", "smtp"] = "outbox"
    outbox_dir: str = "data/outbox"
    from_address: str = "leads@localhost"
    from_name: str = "Leadbox"
    templates_dir: str = "config/templates"
    default_language: str = "es"
    smtp_host: str = "smtp.gmail.com"
    smtp_port: int = Field(465, ge=1, le=65535)
    smtp_security: Literal["tls", "starttls"] = "tls"
    smtp_timeout: float = Field(20.0, gt=0)
    ca_file: str = ""
    # At most one auto-reply per address per window.
    window_hours: float = Field(24.0, ge=0)
    # Global cap on auto-replies per hour (a mail-bomb brake); 0 = no cap.
    max_per_hour: int = Field(500, ge=0)
    # Put the classifier's summary in the reply (links and markup are stripped).
    include_summary: bool = False


class InboxConfig(_Section):
    enabled: bool = False
    host: str = "imap.gmail.com"
    port: int = Field(993, ge=1, le=65535)
    security: Literal["tls", "starttls"] = "tls"
    auth: Literal["password", "xoauth2"] = "password"
    username: str = ""  # defaults to EMAIL_USER
    folder: str = "INBOX"
    poll_interval: float = Field(60.0, gt=0)
    idle: bool = False
    # Re-issue IDLE before the server's timeout (RFC 2177 servers may drop it after 30 min).
    idle_renew: float = Field(1500.0, ge=10, le=1740)
    # First start on a mailbox: "now" takes only mail that arrives from then on (older mail:
    # `leadbox backfill`), so an existing inbox is not auto-answered wholesale; "all" takes everything.
    start: Literal["now", "all"] = "now"
    after: Literal["seen", "move", "label"] = "seen"
    move_to: str = "Leads/Processed"
    label: str = "Leads"
    quarantine_folder: str = "Leads/Quarantine"
    ca_file: str = ""
    batch_size: int = Field(200, ge=1, le=5000)
    max_message_bytes: int = Field(10_000_000, ge=1024)
    timeout: float = Field(30.0, gt=0)


class SheetsConfig(_Section):
    enabled: bool = False
    # When false, broken credentials disable the mirror with a reason instead of stopping start-up.
    required: bool = False
    spreadsheet: str = ""
    worksheet: str = "Leads"
    endpoint: str = "https://sheets.googleapis.com"
    credentials_file: str = ""
    columns: list[str] = Field(
        default_factory=lambda: [
            "received_at", "name", "email", "category", "priority", "summary", "source", "id",
        ]
    )
    batch_size: int = Field(50, ge=1, le=10000)
    flush_seconds: float = Field(2.0, gt=0)
    import_existing: bool = False
    timeout: float = Field(20.0, gt=0)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: list[str]) -> list[str]:
        allowed = {
            "received_at", "name", "email", "category", "priority", "summary", "source", "id",
            "phone", "company", "message", "language", "state", "intake",
        }
        unknown = [c for c in v if c not in allowed]
        if unknown:
            raise ValueError(f"unknown columns {unknown}; allowed: {sorted(allowed)}")
        return v


class DedupeConfig(_Section):
    # Fold Gmail dots and +tags (a.b+x@gmail.com == ab@gmail.com).
    fold_gmail: bool = False


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto = JSON unless stdout is a terminal.
    format: Literal["auto", "json", "text"] = "auto"


class Settings(_Section):
    http: HttpConfig = Field(default_factory=HttpConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    priority: PriorityConfig = Field(default_factory=PriorityConfig)
    reply: ReplyConfig = Field(default_factory=ReplyConfig)
    inbox: InboxConfig = Field(default_factory=InboxConfig)
    sheets: SheetsConfig = Field(default_factory=SheetsConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


@dataclass(frozen=True)
class Secrets:
    """Secrets and deployment settings, only from the environment."""

    openai_api_key: str = ""
    email_user: str = ""
    email_pass: str = ""
    google_credentials_json: str = ""
    database_url: str = ""
    admin_token: str = ""
    webhook_secret: str = ""
    google_oauth_client_id: str = ""
    google_oauth_client_secret: str = ""
    google_oauth_refresh_token: str = ""
    inbox_oauth_token: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Secrets:
        g = lambda k: env.get(k, "").strip()  # noqa: E731
        return cls(
            openai_api_key=g("OPENAI_API_KEY"),
            email_user=g("EMAIL_USER"),
            email_pass=env.get("EMAIL_PASS", ""),
            google_credentials_json=env.get("GOOGLE_CREDENTIALS_JSON", ""),
            database_url=g("DATABASE_URL"),
            admin_token=g("LEADBOX_ADMIN_TOKEN"),
            webhook_secret=g("LEADBOX_WEBHOOK_SECRET"),
            google_oauth_client_id=g("GOOGLE_OAUTH_CLIENT_ID"),
            google_oauth_client_secret=g("GOOGLE_OAUTH_CLIENT_SECRET"),
            google_oauth_refresh_token=g("GOOGLE_OAUTH_REFRESH_TOKEN"),
            inbox_oauth_token=g("INBOX_OAUTH_TOKEN"),
        )

    def values(self) -> list[str]:
        """Every non-empty secret value (for log redaction)."""
        return [v for v in vars(self).values() if v]


@dataclass(frozen=True)
class Config:
    settings: Settings
    secrets: Secrets
    source: str  # where the settings came from (path or "built-in defaults")

    @property
    def store_url(self) -> str:
        return self.secrets.database_url or self.settings.store.url

    @property
    def classifier_backend(self) -> str:
        b = self.settings.classifier.backend
        if b == "auto":
            return "openai" if self.secrets.openai_api_key else "local"
        return b

    @property
    def inbox_username(self) -> str:
        return self.settings.inbox.username or self.secrets.email_user

    @property
    def own_addresses(self) -> frozenset[str]:
        """Addresses whose mail is never a lead and never gets a reply."""
        own = {self.settings.reply.from_address.strip().lower()}
        if "@" in self.secrets.email_user:
            own.add(self.secrets.email_user.lower())
        if "@" in self.settings.inbox.username:
            own.add(self.settings.inbox.username.lower())
        return frozenset(a for a in own if a)

    @property
    def message_id_domain(self) -> str:
        addr = self.settings.reply.from_address
        return addr.rsplit("@", 1)[1].lower() if "@" in addr else "leadbox.local"


def _coerce_env_value(raw: str) -> Any:
    """Env values are strings; JSON lists/objects/numbers are accepted as such."""
    s = raw.strip()
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            return raw
    return raw


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    sections = set(Settings.model_fields)
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, field = key[len(ENV_PREFIX):].lower().partition("__")
        if section not in sections:
            raise ConfigError(f"{key}: unknown section '{section}' (known: {', '.join(sorted(sections))})")
        out.setdefault(section, {})[field] = _coerce_env_value(value)
    return out


def _merge(base: dict[str, Any], over: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, fields in over.items():
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: must be a table")
        target.update(fields)
    return merged


def _format_validation(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see config/agent.toml for every key)"
        got = err.get("input")
        shown = "" if err["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{key}: {msg}{shown}")
    return "; ".join(lines)


def resolve_path(env: Mapping[str, str], cli_path: str | None) -> tuple[Path, bool]:
    """The config path and whether it was given explicitly (flag or LEADBOX_CONFIG)."""
    if cli_path:
        return Path(cli_path), True
    if env.get("LEADBOX_CONFIG"):
        return Path(env["LEADBOX_CONFIG"]), True
    return Path(DEFAULT_CONFIG_PATH), False


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate; raise ConfigError with the key and the problem."""
    env = os.environ if env is None else env
    cfg_path, explicit = resolve_path(env, path)
    data: dict[str, Any] = {}
    source = str(cfg_path)
    if cfg_path.is_file():
        try:
            data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{cfg_path}: not valid TOML: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{cfg_path}: cannot read: {e}") from None
    elif explicit:
        raise ConfigError(f"config file {cfg_path} not found (given by --config or LEADBOX_CONFIG)")
    else:
        log.warning("config file %s not found: using built-in defaults", cfg_path)
        source = "built-in defaults"
    merged = _merge(data, _env_overrides(env))
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(f"config error: {_format_validation(e)}") from None
    secrets = Secrets.from_env(env)
    config = Config(settings=settings, secrets=secrets, source=source)
    _check_cross(config)
    return config


def _check_cross(config: Config) -> None:
    s = config.settings
    if config.classifier_backend == "openai" and not config.secrets.openai_api_key and not s.classifier.base_url:
        raise ConfigError(
            "classifier.backend: 'openai' needs OPENAI_API_KEY in the environment "
            "(or classifier.base_url for a local OpenAI-compatible server)"
        )
    if s.reply.transport == "smtp" and (not config.secrets.email_user or not config.secrets.email_pass):
        raise ConfigError("reply.transport: 'smtp' needs EMAIL_USER and EMAIL_PASS in the environment")
    if s.inbox.enabled:
        if not config.inbox_username:
            raise ConfigError("inbox.username: empty; set it or EMAIL_USER")
        if s.inbox.auth == "password" and not config.secrets.email_pass:
            raise ConfigError("inbox.auth: 'password' needs EMAIL_PASS in the environment")
        if s.inbox.auth == "xoauth2" and not (
            config.secrets.inbox_oauth_token or config.secrets.google_oauth_refresh_token
        ):
            raise ConfigError(
                "inbox.auth: 'xoauth2' needs GOOGLE_OAUTH_CLIENT_ID, GOOGLE_OAUTH_CLIENT_SECRET and "
                "GOOGLE_OAUTH_REFRESH_TOKEN (or INBOX_OAUTH_TOKEN for testing)"
            )
    if s.sheets.enabled and not s.sheets.spreadsheet:
        raise ConfigError("sheets.spreadsheet: empty; give the spreadsheet key or URL")
    if s.http.webhook_auth != "none" and not config.secrets.webhook_secret:
        raise ConfigError(
            f"http.webhook_auth: '{s.http.webhook_auth}' needs LEADBOX_WEBHOOK_SECRET in the environment"
        )
    if "@" not in s.reply.from_address:
        raise ConfigError(f"reply.from_address: not an address (got {s.reply.from_address!r})")


def mask(value: str) -> str:
    if not value:
        return "(not set)"
    return "***" + (f" ({len(value)} chars)" if len(value) > 3 else "")


def _mask_dsn(url: str) -> str:
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def effective(config: Config) -> dict[str, Any]:
    """The effective configuration with secrets masked (for check-config)."""
    out: dict[str, Any] = config.settings.model_dump(mode="json")
    out["store"]["url"] = _mask_dsn(config.store_url)
    out["classifier"]["backend"] = config.classifier_backend
    out["inbox"]["username"] = config.inbox_username
    secrets = {k: mask(v) for k, v in vars(config.secrets).items()}
    secrets["database_url"] = _mask_dsn(config.secrets.database_url) if config.secrets.database_url else "(not set)"
    secrets["email_user"] = config.secrets.email_user or "(not set)"
    secrets["google_oauth_client_id"] = config.secrets.google_oauth_client_id or "(not set)"
    out["environment"] = secrets
    out["source"] = config.source
    return out
