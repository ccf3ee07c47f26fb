"""Layered, checked settings: defaults in code -> config/agent.toml -> environment.

Every tunable lives in a section model below: its default and its help text are written once,
here, as ``Field(default, description=...)``. ``config/agent.toml`` and
``leadbox check-config --explain`` are generated from these models (``agent.config_docs``).
Unknown keys and wrong values stop start-up with a ConfigError naming the key; secrets come only
from the environment (``Secrets``) and are masked in every output (``config_docs.effective``).

How to add a setting:
1. Add a field to its section model with a default, its constraints and a one-sentence
   ``description`` (what it does, units, allowed values).
2. Regenerate the committed file: ``leadbox config-template > config/agent.toml``
   (``tests/test_config_docs.py`` fails until you do).
3. Document it in README.md or docs/ when a user has to know about it.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from agent.config_alerts import AlertsConfig
from agent.config_base import Section as _Section
from agent.config_forms import FormsConfig
from agent.config_input import coerce_env_value, format_validation, merge
from agent.config_mailboxes import MailboxConfig, check_unique, named_env, resolve_mailboxes
from agent.config_settle import SettleSettings
from agent.env_secrets import ENV_NAMES as ENV_NAMES
from agent.env_secrets import Secrets
from agent.errors import ConfigError

log = logging.getLogger("leadbox.config")

DEFAULT_CONFIG_PATH = "config/agent.toml"
ENV_PREFIX = "LEADBOX_"

class HttpConfig(_Section):
    """The webhook's HTTP server (POST /leads, the read API, /healthz, /readyz, /metrics)."""

    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 in the container.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    max_body_bytes: int = Field(65536, ge=1024, description="Larger POST /leads bodies answer 413.")
    read_timeout: float = Field(
        15.0, gt=0, description="Seconds a client may take to send its request; slow (slow-loris) "
        "and idle connections are closed.")
    rate_limit_per_minute: int = Field(
        600, ge=0, description="POST /leads per client IP and minute; 0 turns the limit off.")
    shutdown_grace: float = Field(
        10.0, ge=0, description="Seconds SIGTERM waits for in-flight work before exiting.")
    webhook_auth: Literal["none", "bearer", "hmac"] = Field(
        "none", description="Authentication of POST /leads: none (web forms), bearer or hmac; "
        "the token or key is LEADBOX_WEBHOOK_SECRET.")
    signature_tolerance: int = Field(
        300, ge=1, description="hmac: accepted clock skew and replay window, seconds.")
    trust_proxy: bool = Field(
        False, description="Take the client IP from X-Forwarded-For (only behind your own proxy).")
    public_url: str = Field("", description=(
        "The address people and websites reach the daemon at, behind any proxy, e.g. "
        "https://leads.example.com. Used for redirects, snippets and links; empty = the request's own host."))
    cors_origins: list[str] = Field(default_factory=list, description=(
        "Exact origins whose pages may post to /leads with fetch() (e.g. https://www.example.com)."))

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not (v.startswith(("http://", "https://")) and "." in v.split("://", 1)[1] or
                      v.startswith(("http://localhost", "http://127.0.0.1"))):
            raise ValueError("must be an http(s) URL such as https://leads.example.com")
        return v

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest or origin != origin.strip():
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], no path or trailing slash")
        return v


class StoreConfig(_Section):
    """Where leads are stored."""

    url: str = Field(
        "sqlite:///data/leadbox.db",
        description="sqlite:///path or postgresql://...; DATABASE_URL wins when set.")
    pool_size: int = Field(5, ge=1, le=100, description="PostgreSQL connections per process.")
    retention_days: int = Field(0, ge=0, le=36500, description=(
        "Keep leads this many days, then apply retention_action (a daily job; `leadbox retention "
        "--dry-run` shows what it would do). 0 keeps them forever."))
    retention_action: Literal["delete", "anonymize"] = Field("delete", description=(
        "delete: erase the person as `leadbox forget` does; anonymize: keep category, priority, dates "
        "and language for statistics, remove name, email, phone, company, message, summary, metadata "
        "and outbox files."))


class WorkerConfig(_Section):
    """The worker that classifies, mirrors and answers stored leads."""

    batch_size: int = Field(200, ge=1, le=5000, description="Leads claimed per sweep batch.")
    concurrency: int = Field(
        16, ge=1, le=1000, description="Leads in flight at once (LLM, Sheets and SMTP calls).")
    max_attempts: int = Field(
        8, ge=1, description="Attempts per lead; then the lead is 'failed' with its last error.")
    backoff_base: float = Field(
        2.0, gt=0, description="Seconds before the first retry; doubles per attempt, 50-100% jitter.")
    backoff_max: float = Field(900.0, gt=0, description="Longest wait between attempts, seconds.")
    sweep_interval: float = Field(
        1.0, gt=0, description="Seconds between sweeps (new leads also wake the worker at once).")
    lease_seconds: float = Field(
        120.0, gt=0, description="A claimed lead returns to the queue if its worker dies for this long.")


class ClassifierConfig(_Section):
    """How a lead gets its category, summary and language."""

    backend: Literal["auto", "local", "openai"] = Field(
        "auto", description="auto (openai when OPENAI_API_KEY is set, else local) | local | openai.")
    model: str = Field("gpt-4o-mini", description="Model name for the openai backend.")
    base_url: str = Field(
        "", description="Any OpenAI-compatible server, e.g. http://localhost:11434/v1 (Ollama); "
        "empty = OpenAI.")
    timeout: float = Field(20.0, gt=0, description="Seconds per request.")
    max_retries: int = Field(
        2, ge=0, le=10, description="SDK retries (429 honours Retry-After, 5xx, timeouts).")
    max_input_chars: int = Field(
        4000, ge=200, description="About 1,000 tokens; longer messages keep the start and the end.")
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failures that open the circuit breaker.")
    breaker_reset_seconds: float = Field(
        60.0, gt=0, description="How long the breaker stays open before a trial call, seconds.")
    reclassify_interval: float = Field(
        300.0, gt=0, description="Seconds between re-classification runs of fallback-decided leads.")
    model_path: str = Field(
        "data/model.json",
        description="Local model written by `leadbox train`; loaded at start when the file exists, "
        "else the model shipped in the package. Replicas each read their own path: put it on a "
        "shared volume or copy it to every replica.")
    concurrency: int = Field(
        100, ge=1, le=1000, description="Most LLM calls in flight at once (its own limit, apart from "
        "worker.concurrency); lowered by itself while the provider answers 429 or its rate-limit "
        "headers run low.")


CATEGORIES = ("sales", "support", "info", "spam")
PRIORITIES = ("high", "medium", "low")


class LabelsConfig(_Section):
    """Display labels of categories and priorities (sheet, API, reply templates)."""

    categories: dict[str, str] = Field(
        default_factory=lambda: {
            "sales": "Ventas", "support": "Soporte", "info": "Información", "spam": "Spam",
        },
        description="Category -> label; keys: sales, support, info, spam.")
    priorities: dict[str, str] = Field(
        default_factory=lambda: {"high": "Alta", "medium": "Media", "low": "Baja"},
        description="Priority -> label; keys: high, medium, low.")

    @field_validator("categories")
    @classmethod
    def _all_categories(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = set(v) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; use sales, support, info, spam")
        return v

    @field_validator("priorities")
    @classmethod
    def _all_priorities(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = set(v) - set(PRIORITIES)
        if unknown:
            raise ValueError(f"unknown priorities {sorted(unknown)}; use high, medium, low")
        return v


PriorityName = Literal["high", "medium", "low"]
_DEFAULT_PRIORITIES: dict[str, PriorityName] = {
    "support": "high", "sales": "medium", "info": "medium", "spam": "low",
}


class PriorityConfig(_Section):
    """Rules that give each lead its priority."""

    by_category: dict[str, PriorityName] = Field(
        default_factory=lambda: dict(_DEFAULT_PRIORITIES),
        description="Category -> priority (high | medium | low).")
    urgent_words: list[str] = Field(
        default_factory=lambda: [
            "urgen*", "asap", "emergenc*", "immediately", "inmediat*", "imediat*",
            "as soon as possible", "right away", "lo antes posible", "cuanto antes",
            "lo más rápido posible", "o quanto antes", "o mais rápido possível",
            "caído", "caida", "fora do ar",
        ],
        description="Any of these raises a lead one level (never a spam lead). Matched without "
        "case or accents; 'stem*' matches word forms (urgen*: urgent, urgente, urgentemente, "
        "urgência); several words match as a phrase.")
    domains: dict[str, PriorityName] = Field(
        default_factory=dict,
        description='Sender domain -> priority, e.g. { "bigclient.com" = "high" } '
        "(subdomains match too).")

    @field_validator("by_category")
    @classmethod
    def _known_categories(cls, v: dict[str, PriorityName]) -> dict[str, PriorityName]:
        for key in v:
            if key not in CATEGORIES:
                raise ValueError(f"unknown category '{key}' (known: {', '.join(CATEGORIES)})")
        return v


class ReplyConfig(SettleSettings):
    """The auto-reply sent to each lead."""

    enabled: bool = Field(True, description="Send auto-replies at all.")
    transport: Literal["outbox", "smtp"] = Field(
        "outbox", description="outbox (.eml files, no account needed) | smtp.")
    outbox_dir: str = Field("data/outbox", description="Folder of the outbox transport's .eml files.")
    from_address: str = Field(
        "leads@localhost", description="Set this first: our own address; replies come from it; never "
        "a lead, never answered.")
    company_name: str = Field(
        "Leadbox", min_length=1, max_length=100, description="Set this second: your company's name. "
        "Replies are signed with it ($company_name in templates; $company is the lead's own company) "
        "and it is the From display name unless from_name is set.")
    from_name: str = Field("", description="Display name of the From header; empty = company_name.")
    templates_dir: str = Field(
        "config/templates", description="Reply templates, one file per {category}.{language}.txt.")
    default_language: str = Field(
        "es", description="Template language when the lead's language has no template.")
    smtp_host: str = Field("smtp.gmail.com", description="SMTP server for transport = smtp.")
    smtp_port: int = Field(465, ge=1, le=65535, description="SMTP port: 465 (tls) or 587 (starttls).")
    smtp_security: Literal["tls", "starttls"] = Field(
        "tls", description="tls (implicit, 465) | starttls (587); login EMAIL_USER / EMAIL_PASS.")
    smtp_timeout: float = Field(20.0, gt=0, description="Seconds per SMTP step.")
    smtp_pool_size: int = Field(
        4, ge=1, le=50, description="Authenticated SMTP sessions kept open and reused for replies "
        "(1 = one connection).")
    smtp_max_per_session: int = Field(
        100, ge=1, le=10000, description="Messages sent over one SMTP session before it is closed "
        "and a new one opened.")
    smtp_check_interval: float = Field(
        30.0, ge=0, description="Seconds between logins to an SMTP server not known to work (at "
        "start, and while it is down or refuses the login), so /readyz follows it without waiting "
        "for a reply to send; the session is kept for the next reply. 0 = no such logins: the "
        "state comes from replies only.")
    ca_file: str = Field("", description="Extra CA bundle for a private SMTP server.")
    window_hours: float = Field(
        24.0, ge=0, description="At most one auto-reply per address in this many hours.")
    max_per_hour: int = Field(
        500, ge=0, description="Global cap on auto-replies per hour (a mail-bomb brake); 0 = no cap. "
        "Over a cap replies wait for the window.")
    max_per_day: int = Field(
        0, ge=0, description="Global cap on auto-replies in a rolling 24 hours; 0 = no cap. Keep it "
        "below the provider's daily limit (README, Sending limits).")
    max_delay_hours: float = Field(
        48.0, ge=0, description="A reply that would go out later than this many hours after the lead "
        "arrived is skipped ('reply-too-late'); 0 = no limit.")
    quota_probe_minutes: float = Field(
        60.0, gt=0, description="While the SMTP server refuses for a daily quota, one probe send this "
        "often (fractions allowed).")
    pause_seconds: float = Field(
        60.0, gt=0, description="First pause after an SMTP throttling answer with no retry hint; "
        "doubles while the throttling goes on.")
    include_summary: bool = Field(
        False, description="Put the classifier's summary ($summary) in replies (links and markup "
        "stripped).")


class InboxConfig(_Section):
    """The IMAP mailbox polled for leads."""

    enabled: bool = Field(False, description="Poll a mailbox for leads.")
    host: str = Field("imap.gmail.com", description="IMAP server.")
    port: int = Field(993, ge=1, le=65535, description="IMAP port: 993 (tls) or 143 (starttls).")
    security: Literal["tls", "starttls"] = Field("tls", description="tls (993) | starttls (143).")
    auth: Literal["password", "xoauth2"] = Field(
        "password", description="password (EMAIL_PASS, for Gmail an app password) | xoauth2.")
    username: str = Field("", description="IMAP login; empty = EMAIL_USER.")
    folder: str = Field("INBOX", description="Folder to poll.")
    poll_interval: float = Field(60.0, gt=0, description="Seconds between polls.")
    idle: bool = Field(False, description="Hold an IMAP IDLE connection for near-instant intake.")
    idle_renew: float = Field(
        1500.0, ge=10, le=1740, description="Seconds; IDLE is re-issued before the server's "
        "30-minute timeout (RFC 2177).")
    start: Literal["now", "all"] = Field(
        "now", description="First start on a mailbox: now (only mail that arrives from then on; "
        "older mail with `leadbox backfill`) | all.")
    after: Literal["seen", "move", "label"] = Field(
        "seen", description="What happens to a mail once its lead is stored: seen | move | label.")
    move_to: str = Field(
        "Leads/Processed", description='Folder for after = "move" (created when missing).')
    label: str = Field("Leads", description='Gmail label for after = "label".')
    quarantine_folder: str = Field(
        "Leads/Quarantine", description="Unparseable mail is moved here.")
    ca_file: str = Field("", description="Extra CA bundle for a private IMAP server.")
    batch_size: int = Field(200, ge=1, le=5000, description="Messages fetched per round trip.")
    max_message_bytes: int = Field(
        10_000_000, ge=1024, description="Larger mails are recorded and skipped, never downloaded.")
    timeout: float = Field(30.0, gt=0, description="Seconds per network step.")
    form_senders: list[str] = Field(default_factory=list, description=(
        "Senders whose mail is always a website form notification (the visitor becomes the lead), "
        'for formats detection misses: addresses ("wordpress@mysite.com") or domains ("@shopify.com").'))
    mailboxes: list[MailboxConfig] = Field(default_factory=list, description=(
        "Several mailboxes: [[inbox.mailboxes]] tables with name, username, from_address, password_env "
        "(or refresh_token_env) and any [inbox] key to override; empty = the one mailbox above, named default."))

    @field_validator("mailboxes")
    @classmethod
    def _unique_names(cls, v: list[MailboxConfig]) -> list[MailboxConfig]:
        return check_unique(v)

    @field_validator("form_senders")
    @classmethod
    def _sender_patterns(cls, v: list[str]) -> list[str]:
        out = []
        for entry in v:
            item = entry.strip().lower()
            local, at, domain = item.rpartition("@")
            if (not item or any(ch.isspace() for ch in item) or "." not in domain
                    or domain.startswith(".") or domain.endswith(".") or (at and "@" in local)):
                raise ValueError(f"{entry!r} is not an address (name@site.com) or a domain (@site.com)")
            out.append(item if local else f"@{domain}")
        return out


# The columns a sheet row can carry (the one list: settings are checked against it and the
# mirror writes from it): when the lead was received, and the Lead fields worth showing a person.
SHEET_COLUMNS = (
    "received_at", "name", "email", "category", "priority", "summary", "source", "id",
    "phone", "company", "message", "subject", "language", "state", "intake", "mailbox",
)
DEFAULT_SHEET_COLUMNS = SHEET_COLUMNS[:8]


class SheetsConfig(_Section):
    """The Google Sheets mirror: one row per lead."""

    enabled: bool = Field(False, description="Mirror each lead as a row of a Google Sheet.")
    required: bool = Field(
        False, description="true: broken credentials stop start-up; false: the mirror is disabled "
        "with a reason.")
    spreadsheet: str = Field("", description="Spreadsheet key or full URL.")
    worksheet: str = Field("Leads", description="Worksheet (tab) name; created when missing.")
    endpoint: str = Field("https://sheets.googleapis.com", description="Sheets API endpoint.")
    credentials_file: str = Field(
        "", description="Service-account JSON file (or GOOGLE_CREDENTIALS_JSON).")
    columns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SHEET_COLUMNS),
        description="Columns in order; any of " + ", ".join(SHEET_COLUMNS) + ".")
    batch_size: int = Field(50, ge=1, le=10000, description="Rows per append call.")
    flush_seconds: float = Field(2.0, gt=0, description="Flush a partial batch after this long.")
    import_existing: bool = Field(
        False, description="Read the sheet's emails at start: those contacts get no auto-reply.")
    timeout: float = Field(20.0, gt=0, description="Seconds per API call.")

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in SHEET_COLUMNS]
        if unknown:
            raise ValueError(f"unknown columns {unknown}; allowed: {list(SHEET_COLUMNS)}")
        return v


class DedupeConfig(_Section):
    """When two contacts count as the same person."""

    fold_gmail: bool = Field(
        False, description="Treat a.b+tag@gmail.com as ab@gmail.com.")


class LoggingConfig(_Section):
    """Log output (stdout for `leadbox run`, stderr for other commands)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG | INFO | WARNING | ERROR.")
    format: Literal["auto", "json", "text"] = Field(
        "auto", description="auto (JSON unless a terminal) | json | text.")


class ConsoleConfig(_Section):
    """The lead console at /console (sign in with a user or the admin token)."""

    enabled: bool = Field(True, description="Serve the console; it still needs LEADBOX_ADMIN_TOKEN or a user "
                          "(leadbox users add NAME) before anyone can sign in.")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description=(
        "A console session ends after this many hours without a request (sign-out ends it at once)."))


class Settings(_Section):
    """All sections; the order here is the order of config/agent.toml."""

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
    forms: FormsConfig = Field(default_factory=FormsConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)


@dataclass(frozen=True)
class Config:
    settings: Settings
    secrets: Secrets
    source: str  # where the settings came from (path or "built-in defaults")
    # The values of the variables inbox.mailboxes names (password_env, refresh_token_env).
    named_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

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
    def reply_uses_inbox_token(self) -> bool:
        """The [reply] SMTP account logs in with ``AUTH XOAUTH2`` and the inbox's token: the polled
        inbox uses ``auth = "xoauth2"`` and EMAIL_PASS is unset (a Google Workspace account with
        OAuth only has no password to give). The login is the inbox's username."""
        i = self.settings.inbox
        return (self.settings.reply.transport == "smtp" and not self.secrets.email_pass
                and i.enabled and i.auth == "xoauth2")

    @property
    def own_addresses(self) -> frozenset[str]:
        """Addresses whose mail is never a lead and never gets a reply."""
        own = {self.settings.reply.from_address.strip().lower()}
        if "@" in self.secrets.email_user:
            own.add(self.secrets.email_user.lower())
        if "@" in self.settings.inbox.username:
            own.add(self.settings.inbox.username.lower())
        for m in self.settings.inbox.mailboxes:  # every mailbox of ours: mail between them is no lead
            own.update(a.strip().lower() for a in (m.from_address, m.username) if "@" in a)
        return frozenset(a for a in own if a)

    @property
    def sender_name(self) -> str:
        """The From display name: ``reply.from_name``, else ``reply.company_name``."""
        return self.settings.reply.from_name.strip() or self.settings.reply.company_name.strip()

    @property
    def message_id_domain(self) -> str:
        addr = self.settings.reply.from_address
        return addr.rsplit("@", 1)[1].lower() if "@" in addr else "leadbox.local"


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    sections = set(Settings.model_fields)
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        if not value.strip():
            continue  # empty counts as unset, as compose's ${VAR:-} produces it
        section, _, field = key[len(ENV_PREFIX):].lower().partition("__")
        if section not in sections:
            raise ConfigError(f"{key}: unknown section '{section}' (known: {', '.join(sorted(sections))})")
        out.setdefault(section, {})[field] = _env_value(key, section, field, value)
    return out


def _env_value(key: str, section: str, field: str, value: str) -> Any:
    model = Settings.model_fields[section].annotation
    info = model.model_fields.get(field) if isinstance(model, type) and issubclass(model, BaseModel) else None
    if info is not None and info.annotation is bool:
        word = value.strip().lower()
        if word not in ("true", "false", "1", "0"):
            raise ConfigError(f"{key}: must be true, false, 1 or 0 (got {value!r})")
        return word in ("true", "1")
    return coerce_env_value(value)


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
        log.warning("config file not found: using built-in defaults", extra={"reason": str(cfg_path)})
        source = "built-in defaults"
    merged = merge(data, _env_overrides(env))
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(f"config error: {format_validation(e)}") from None
    secrets = Secrets.from_env(env)
    config = Config(settings=settings, secrets=secrets, source=source,
                    named_secrets=named_env(settings.inbox.mailboxes, env))
    _check_cross(config)
    return config


def _check_cross(config: Config) -> None:
    s = config.settings
    if config.classifier_backend == "openai" and not config.secrets.openai_api_key and not s.classifier.base_url:
        raise ConfigError(
            "classifier.backend: 'openai' needs OPENAI_API_KEY in the environment "
            "(or classifier.base_url for a local OpenAI-compatible server)"
        )
    if s.reply.transport == "smtp" and not config.reply_uses_inbox_token and (
            not config.secrets.email_user or not config.secrets.email_pass):
        raise ConfigError("reply.transport: 'smtp' needs EMAIL_USER and EMAIL_PASS in the environment "
                          "(or inbox.auth = 'xoauth2': replies then log in with the inbox's token)")
    if s.inbox.enabled and s.inbox.mailboxes:
        resolve_mailboxes(config)  # raises with the mailbox's name and what is missing
    elif s.inbox.enabled:
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
