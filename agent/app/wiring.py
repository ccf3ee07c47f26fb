"""The make_* factories: one place that turns the config into adapters.

Adapters are imported inside each factory, so a daemon with the local classifier and the outbox
never imports openai, gspread or psycopg.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.core.models import Health
from agent.core.ports import Classifier, MailTransport, Mirror, Store, TokenSource
from agent.core.states import HealthState
from agent.errors import ConfigError
from agent.stores import open_store

if TYPE_CHECKING:
    from agent.classifiers.local import LocalClassifier
    from agent.config_mailboxes import Mailbox
    from agent.intake.imap import ImapMailbox
    from agent.mail.settle import MailboxSentLookup

log = logging.getLogger("leadbox.daemon")


def make_store(config: Config) -> Store:
    return open_store(config.store_url, pool_size=config.settings.store.pool_size)


def make_local_classifier(config: Config) -> LocalClassifier:
    """The offline classifier with ``classifier.model_path`` when that file exists, else the
    shipped model; an unusable model file raises ModelError (the daemon does not start)."""
    from agent.classifiers.local import LocalClassifier
    from agent.classifiers.model import resolve_model_path

    s = config.settings
    return LocalClassifier(model_path=resolve_model_path(s.classifier.model_path),
                           default_language=s.reply.default_language)


def make_classifier(config: Config) -> Classifier:
    if config.classifier_backend == "local":
        return make_local_classifier(config)
    from agent.classifiers.llm import make_classifier as factory

    c = config.settings.classifier
    return factory(
        config.classifier_backend, api_key=config.secrets.openai_api_key or "not-needed",
        local_model_path=c.model_path, default_language=config.settings.reply.default_language,
        model=c.model, base_url=c.base_url or None, timeout=c.timeout, max_retries=c.max_retries,
        max_input_chars=c.max_input_chars, breaker_failures=c.breaker_failures,
        breaker_reset_seconds=c.breaker_reset_seconds, concurrency=c.concurrency,
    )


def make_sent_lookup(config: Config, box: Mailbox | None = None) -> MailboxSentLookup | None:
    """reply.settle's IMAP lookup for SMTP replies, or None (the outbox, or settle = off).

    The account is the mailbox the replies go out from: ``box`` (one of ``inbox.mailboxes``, each
    sending over its own login, its password or its XOAUTH2 token); else the polled inbox's login
    when the inbox is polled, else the [inbox] connection settings with EMAIL_USER / EMAIL_PASS.
    """
    r, i = config.settings.reply, config.settings.inbox
    if r.transport != "smtp" or r.settle == "off":
        return None
    from agent.intake.imap_auth import mailbox_token_source, make_token_source
    from agent.mail.settle import MailboxSentLookup

    user, password = config.secrets.email_user, config.secrets.email_pass or None
    token: TokenSource | None = None
    if box is not None:
        i, user, password = box.inbox, box.username, box.password
        if i.auth == "xoauth2":
            password, token = None, mailbox_token_source(config, box)
    elif i.enabled:
        user = config.inbox_username
        if i.auth == "xoauth2":
            password, token = None, make_token_source(config)
    # Where our self-copy is addressed: the login when it is an address, else the address the
    # replies come from (the mailbox's own, or [reply]'s).
    own = user if "@" in user else box.from_address if box is not None else r.from_address
    return MailboxSentLookup(
        r.settle, host=i.host, port=i.port, security=i.security, username=user, password=password,
        oauth2_token=token, ca_file=i.ca_file, timeout=i.timeout, sent_folder=r.sent_folder,
        self_copy_folder=r.self_copy_folder, self_copy_address=own)


def make_forget_mailboxes(config: Config) -> list[tuple[ImapMailbox, list[str]]]:
    """The IMAP accounts ``forget --mailbox`` searches (every polled mailbox), each with the folders
    leadbox reads or files mail into; empty when no inbox is polled. Sessions of their own, never
    a poller's connection."""
    from agent.intake.imap import ImapMailbox
    from agent.intake.imap_auth import mailbox_token_source

    r = config.settings.reply
    out = []
    for m in make_mailboxes(config):
        i = m.inbox
        auth: dict[str, Any] = {"password": m.password or ""}
        if i.auth == "xoauth2":
            auth = {"oauth2_token": mailbox_token_source(config, m)}
        box = ImapMailbox(i.host, i.port, security=i.security, username=m.username, folder=i.folder,
                          ca_file=i.ca_file or None, timeout=i.timeout, **auth)
        out.append((box, [i.folder, i.move_to, i.quarantine_folder, r.self_copy_folder]))
    return out


def make_box_lookups(config: Config) -> dict[str, MailboxSentLookup]:
    """With ``inbox.mailboxes``: the settle lookup of each mailbox, in its own account (each one's
    replies go out over its own SMTP login, so its self-copy and Sent folder are its own)."""
    if not config.settings.inbox.mailboxes:
        return {}
    out = {}
    for m in make_mailboxes(config):
        if (lookup := make_sent_lookup(config, m)) is not None:
            out[m.name] = lookup
    return out


def make_transport(config: Config, lookup: MailboxSentLookup | None = None,
                   box_lookups: dict[str, MailboxSentLookup] | None = None) -> MailTransport:
    """The reply transport: with SMTP and ``inbox.mailboxes``, each mailbox's replies go out over
    its own login: its password, or ``AUTH XOAUTH2`` with its own token (``auth = "xoauth2"``)."""
    r = config.settings.reply
    if r.transport == "smtp":
        from agent.intake.imap_auth import make_token_source
        from agent.mail.limits import SendPause
        from agent.mail.smtp import SmtpTransport

        # Without EMAIL_PASS, an xoauth2 inbox's account sends with its own token (AUTH XOAUTH2).
        account: dict[str, Any] = (
            {"username": config.inbox_username, "oauth2_token": make_token_source(config)}
            if config.reply_uses_inbox_token
            else {"username": config.secrets.email_user, "password": config.secrets.email_pass})
        default = SmtpTransport(
            host=r.smtp_host, port=r.smtp_port, security=r.smtp_security, **account,
            ca_file=r.ca_file, timeout=r.smtp_timeout, from_address=r.from_address,
            pool_size=r.smtp_pool_size, max_per_session=r.smtp_max_per_session,
            pause=SendPause(base=r.pause_seconds, quota_probe=r.quota_probe_minutes * 60), lookup=lookup,
        )
        boxes = make_mailboxes(config)
        if not config.settings.inbox.mailboxes:
            return default
        from agent.intake.imap_auth import mailbox_token_source
        from agent.mail.routing import MailboxRouter

        by_from: dict[str, tuple[str, MailTransport]] = {}
        for m in boxes:
            login: dict[str, Any] = ({"oauth2_token": mailbox_token_source(config, m)} if m.inbox.auth == "xoauth2"
                                     else {"password": m.password or ""})
            by_from[m.from_address] = (m.name, SmtpTransport(
                host=m.smtp_host, port=m.smtp_port, security=m.smtp_security, username=m.username,
                **login, ca_file=r.ca_file, timeout=r.smtp_timeout, from_address=m.from_address,
                pool_size=r.smtp_pool_size, max_per_session=r.smtp_max_per_session,
                pause=SendPause(base=r.pause_seconds, quota_probe=r.quota_probe_minutes * 60),
                lookup=(box_lookups or {}).get(m.name)))
        return MailboxRouter(default, by_from)
    from agent.mail.outbox import OutboxTransport

    return OutboxTransport(r.outbox_dir)


def make_mailboxes(config: Config) -> list[Mailbox]:
    """The polled mailboxes (none when the inbox is off)."""
    if not config.settings.inbox.enabled:
        return []
    from agent.config_mailboxes import resolve_mailboxes

    return resolve_mailboxes(config)


def make_mirror(config: Config) -> tuple[Mirror | None, Health]:
    """The sheet mirror, or None with the reason it is off."""
    s = config.settings.sheets
    if not s.enabled:
        return None, Health(HealthState.DISABLED, "sheets.enabled = false")
    from agent.mirror.credentials import load_credentials
    from agent.mirror.sheets import SheetMirror

    try:
        info = load_credentials(config.secrets.google_credentials_json or None, s.credentials_file or None)
    except ConfigError as e:
        if s.required:
            raise
        log.warning("sheets: disabled", extra={"reason": str(e)})
        return None, Health(HealthState.DISABLED, str(e))
    labels = config.settings.labels
    mirror = SheetMirror(
        credentials_info=info, spreadsheet=s.spreadsheet, worksheet=s.worksheet, endpoint=s.endpoint,
        columns=list(s.columns), batch_size=s.batch_size, flush_seconds=s.flush_seconds,
        category_labels=dict(labels.categories), priority_labels=dict(labels.priorities), timeout=s.timeout,
        # Within the daemon's own bound on mirror.close() (half the shutdown grace).
        close_timeout=max(0.5, config.settings.http.shutdown_grace / 2 - 0.5),
    )
    return mirror, Health(HealthState.OK)
