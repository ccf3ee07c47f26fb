"""The `leadbox` command. One-shot commands print results on stdout and log to stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from agent import envfile
from agent.config import Config, load_config
from agent.config_docs import effective
from agent.core.models import Category, Priority, State
from agent.errors import ConfigError, LeadboxError

log = logging.getLogger("leadbox.cli")


def _setup_logging(config: Config | None, *, stream: Any = sys.stderr) -> None:
    from agent.app.logs import configure_logging, secret_values_from_env

    level = config.settings.logging.level if config else "INFO"
    fmt = config.settings.logging.format if config else "auto"
    configure_logging(level=level, json_format={"auto": None, "json": True, "text": False}[fmt],
                      stream=stream, secrets=secret_values_from_env(os.environ)
                      + list(config.named_secrets.values() if config else ()))  # inbox.mailboxes' passwords
    # APScheduler logs every run at INFO: once a second is noise in a months-long log.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _config(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


def cmd_run(args: argparse.Namespace) -> int:
    from agent.app.daemon import serve

    config = _config(args)
    _setup_logging(config, stream=sys.stdout)
    try:
        import uvloop  # faster I/O for the webhook; plain asyncio works the same
    except ImportError:
        return asyncio.run(serve(config))
    return uvloop.run(serve(config))


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    from agent.core.replies import Templates

    Templates(config.settings.reply.templates_dir, config.settings.reply.default_language)
    if args.explain:
        from agent.config_docs import explain

        print(explain(config), end="")
    else:
        print(json.dumps(effective(config), indent=2, ensure_ascii=False))
    return 0


def cmd_config_template(args: argparse.Namespace) -> int:
    from agent.config_docs import template

    print(template(), end="")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    config = _config(args)
    from agent.app.wiring import make_classifier
    from agent.core.priority import PriorityRules

    text = args.text if args.text != "-" else sys.stdin.read()

    async def go() -> dict[str, Any]:
        clf = make_classifier(config) if args.classifier is None else _classifier_named(config, args.classifier)
        try:
            c = await clf.classify(text)
        finally:
            await clf.close()
        p = config.settings.priority
        d = PriorityRules(p.by_category, p.urgent_words, p.domains).decide(c.category, args.email or "", text)
        labels = config.settings.labels
        return {"category": c.category.value, "category_label": labels.categories.get(c.category.value),
                "summary": c.summary, "language": c.language, "confidence": round(c.confidence, 3),
                "classifier": c.classifier, "needs_reclassify": c.needs_reclassify,
                "priority": d.priority.value, "priority_label": labels.priorities.get(d.priority.value),
                "priority_rule": d.rule}

    print(json.dumps(asyncio.run(go()), ensure_ascii=False, indent=2))
    return 0


def _classifier_named(config: Config, name: str) -> Any:
    from dataclasses import replace

    from agent.app.wiring import make_classifier

    settings = config.settings.model_copy(deep=True)
    settings.classifier.backend = name  # type: ignore[assignment]
    return make_classifier(replace(config, settings=settings))


def cmd_leads(args: argparse.Namespace) -> int:
    config = _config(args)
    from agent.app.lead_commands import leads_command

    return asyncio.run(leads_command(config, args))


def cmd_eval(args: argparse.Namespace) -> int:
    config = _config(args)
    from agent.classifiers.evaluation import run_eval

    backend = args.classifier or config.classifier_backend
    c = config.settings.classifier
    return run_eval(args.file, backend, args.json, api_key=config.secrets.openai_api_key or "not-needed",
                    model=c.model, base_url=c.base_url or None, timeout=c.timeout, max_retries=c.max_retries,
                    max_input_chars=c.max_input_chars, local_model_path=c.model_path,
                    default_language=config.settings.reply.default_language)


def cmd_train(args: argparse.Namespace) -> int:
    config = _config(args)
    from agent.classifiers.train_command import run_train

    return run_train(args.file, args.out or config.settings.classifier.model_path, merge=args.merge,
                     force=args.force, folds=args.folds, as_json=args.json)


def cmd_parse_email(args: argparse.Namespace) -> int:
    from agent.intake.email_parse import main_parse_email

    config = _config(args)
    own = config.own_addresses
    return main_parse_email(args.file, own_addresses=own,
                            own_domains=frozenset({config.message_id_domain}),
                            form_senders=frozenset(config.settings.inbox.form_senders))


def cmd_poll_once(args: argparse.Namespace) -> int:
    config = _config(args)
    from agent.app.inbox_commands import poll_once

    return asyncio.run(poll_once(config))


def cmd_sheets(args: argparse.Namespace) -> int:
    config = _config(args)
    from agent.app.wiring import make_mirror
    from agent.mirror.check import check

    if not config.settings.sheets.enabled:
        print("sheets: disabled (sheets.enabled = false)", file=sys.stderr)
        return 1

    async def go() -> int:
        mirror, info = make_mirror(config)
        if mirror is None:
            print(f"sheets: disabled: {info.reason}", file=sys.stderr)
            return 1
        try:
            result = await check(mirror)  # type: ignore[arg-type]
        finally:
            await mirror.close()
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0

    return asyncio.run(go())


def cmd_backfill(args: argparse.Namespace) -> int:
    config = _config(args)
    from agent.app.inbox_commands import backfill

    return asyncio.run(backfill(config, args.since))


def cmd_form_snippet(args: argparse.Namespace) -> int:
    from agent.intake.snippet import render

    print(render(_config(args), args.origin))
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from agent.app.users_commands import run

    return run(_config(args), args.action, args.name, args.password_stdin)


def cmd_corrections(args: argparse.Namespace) -> int:
    from agent.app.users_commands import export_corrections

    return export_corrections(_config(args), args.file)


def cmd_forget(args: argparse.Namespace) -> int:
    from agent.app import privacy_commands

    return privacy_commands.forget(_config(args), args.email, args.yes, args.mailbox)


def cmd_export(args: argparse.Namespace) -> int:
    from agent.app import privacy_commands

    return privacy_commands.export(_config(args), args.email)


def cmd_retention(args: argparse.Namespace) -> int:
    from agent.app import privacy_commands

    return privacy_commands.retention(_config(args), args.dry_run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leadbox", description="Every inbound contact becomes a triaged, answered lead.")
    p.add_argument("--config", help="config file (default config/agent.toml or $LEADBOX_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Any, help: str, epilog: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog=epilog,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("--config", help="config file (default config/agent.toml or $LEADBOX_CONFIG)",
                        default=argparse.SUPPRESS)
        sp.set_defaults(fn=fn)
        return sp

    add("run", cmd_run, "run the daemon (webhook, worker, inbox)")
    sp = add("check-config", cmd_check_config, "validate and print the effective config (secrets masked)")
    sp.add_argument("--explain", action="store_true",
                    help="print every key with its current value, default, environment variable and help")
    add("config-template", cmd_config_template,
        "print config/agent.toml (every key with its default and help) from the settings models")
    sp = add("classify", cmd_classify, "classify one message and print the decision")
    sp.add_argument("text", help="the message ('-' reads stdin)")
    sp.add_argument("--email", default="", help="sender address (for domain priority rules)")
    sp.add_argument("--classifier", choices=["local", "openai"],
                    help="the classifier to use (default: classifier.backend)")
    sp = add("leads", cmd_leads, "list, show, retry or settle leads",
             epilog="examples:\n  leadbox leads list --status failed --priority high\n"
                    "  leadbox leads show ID\n  leadbox leads retry --failed\n  leadbox leads settle ID")
    sp.add_argument("action", nargs="?", choices=["list", "show", "retry", "settle"], default="list",
                    help="list (default): newest first, a page at a time; show ID: one lead as JSON; "
                         "retry ID|--failed: queue failed leads again; settle ID: look an uncertain "
                         "reply up in the mailbox now")
    sp.add_argument("id", nargs="?", help="the lead id (show, retry, settle)")
    sp.add_argument("--failed", action="store_true", help="with retry: every failed lead")
    sp.add_argument("--status", metavar="STATE",
                    help=f"with list: only leads in this state ({', '.join(s.value for s in State)})")
    sp.add_argument("--category",
                    help=f"with list: only this category ({', '.join(c.value for c in Category)}, "
                         "or its label from labels.categories)")
    sp.add_argument("--priority",
                    help=f"with list: only this priority ({', '.join(p.value for p in Priority)}, "
                         "or its label from labels.priorities, e.g. Alta)")
    sp.add_argument("--reply", metavar="STATUS",
                    help="with list: only leads whose reply is pending, waiting (held back by a reply cap "
                         "or the mail server's limits), sent, skipped or uncertain")
    sp.add_argument("--limit", type=int, default=50, help="with list: leads per page, 1-500 (default 50)")
    sp.add_argument("--cursor", help="with list: the next page (the command printed after a full page says it)")
    sp.add_argument("--json", action="store_true",
                    help='with list: print {"leads": [...], "next_cursor": ...} as JSON, as the API does')
    sp = add("eval", cmd_eval, "measure a classifier on labeled JSON Lines")
    sp.add_argument("file", help="JSON Lines: one object per line with 'message' and 'category'")
    sp.add_argument("--classifier", choices=["local", "openai"],
                    help="the classifier to measure (default: classifier.backend)")
    sp.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    sp = add("train", cmd_train, "fit the local classifier on your own labelled leads")
    sp.add_argument("file", help="JSON Lines as for eval: 'message' and 'category' on every line")
    sp.add_argument("--merge", action="store_true",
                    help="train on the shipped training data too (recommended for small files)")
    sp.add_argument("--force", action="store_true",
                    help="write the model even when cross-validation says it is worse")
    sp.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    sp.add_argument("--out", help="where to write the model (default: classifier.model_path)")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")
    sp = add("parse-email", cmd_parse_email, "show the lead an .eml file would become")
    sp.add_argument("file", help="an RFC 5322 message (.eml)")
    add("poll-once", cmd_poll_once, "poll the inbox once and exit")
    sp = add("sheets", cmd_sheets, "Google Sheets tools")
    sp.add_argument("action", choices=["check"], help="check: verify access and print the title, worksheet and header")
    sp = add("form-snippet", cmd_form_snippet, "print a contact form (HTML and fetch()) to paste into a website")
    sp.add_argument("--origin", help="your website's origin, e.g. https://www.example.com (checked against "
                    "http.cors_origins)")
    sp = add("users", cmd_users, "console users: add, list, remove, or change a password (passwd)")
    sp.add_argument("action", choices=["add", "list", "remove", "passwd"], help="what to do")
    sp.add_argument("name", nargs="?", help="the user's name (add, remove, passwd)")
    sp.add_argument("--password-stdin", action="store_true",
                    help="read the password from one line of standard input instead of a prompt")
    sp = add("corrections", cmd_corrections, "write the leads people corrected in the console as labelled "
             "JSON Lines (the format of 'leadbox eval' and 'leadbox train')")
    sp.add_argument("action", choices=["export"], help="export")
    sp.add_argument("file", help="the .jsonl file to write")
    sp = add("forget", cmd_forget, "erase a person everywhere leadbox wrote (store, outbox files, sheet)")
    sp.add_argument("email", help="the person's address (matched as dedupe matches it)")
    sp.add_argument("--yes", action="store_true", help="do not ask for confirmation (never asked without a terminal)")
    sp.add_argument("--mailbox", action="store_true", help="also move their original mails in the IMAP mailbox "
                    "to Trash (flagged deleted and expunged when there is no \\Trash folder)")
    sp = add("export", cmd_export, "print everything leadbox holds about a person, as one JSON document")
    sp.add_argument("email", help="the person's address")
    sp = add("retention", cmd_retention, "apply store.retention_days now (the daemon does it daily)")
    sp.add_argument("--dry-run", action="store_true", help="only say how many people and leads it would touch")
    sp = add("backfill", cmd_backfill, "process older inbox mail")
    sp.add_argument("--since", required=True, help="date, YYYY-MM-DD")
    return p


def main(argv: list[str] | None = None) -> int:
    """Every outcome is an exit code and at most one line on stderr: never a traceback."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so a closed pipe is seen now and not at interpreter exit
        return code
    except BrokenPipeError:
        # `leadbox leads show ID | head`: the reader went away. Stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + int(signal.SIGPIPE)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        envfile.load(os.environ)
    except ConfigError as e:
        print(f"leadbox: {e}", file=sys.stderr)
        return 2
    if args.command != "run":
        _setup_logging(None)
    try:
        return int(args.fn(args))
    except ConfigError as e:
        print(f"leadbox: {e}", file=sys.stderr)
        return 2
    except LeadboxError as e:
        print(f"leadbox: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as e:  # a bug or an unforeseen environment: one line, the traceback in DEBUG logs
        from agent.app.logs import redact, secret_values_from_env

        log.debug("unexpected error", exc_info=True)
        reason = redact(f"{type(e).__name__}: {e}", secret_values_from_env(os.environ))
        print(f"leadbox: unexpected error: {reason} (LEADBOX_LOGGING__LEVEL=DEBUG shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
