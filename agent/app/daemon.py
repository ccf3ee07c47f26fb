"""The daemon: builds every adapter in one place and owns their lifetimes.

One process, one event loop: aiohttp serves the API and an APScheduler
AsyncIOScheduler runs the worker sweep, retries, re-classification, the sheet
catch-up and (when enabled) the inbox poll as jobs on the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.app.alerts import AlertSender, alert_policy
from agent.app.listen import bind_listeners
from agent.app.metrics import Metrics
from agent.app.privacy import Privacy
from agent.app.wiring import (
    make_box_lookups,
    make_classifier,
    make_local_classifier,
    make_mailboxes,
    make_mirror,
    make_sent_lookup,
    make_store,
    make_transport,
)
from agent.config import Config, ReplyConfig
from agent.console.routes import error_page as console_error_page
from agent.console.routes import setup_console
from agent.core.mirror_ledger import MirrorLedger
from agent.core.models import Health, Lead
from agent.core.pipeline import ReplyPolicy, Services
from agent.core.ports import Store
from agent.core.priority import PriorityRules
from agent.core.replies import Templates
from agent.core.settle import Outcome, Settled, settle_uncertain
from agent.core.states import FINAL_STATES, HealthState, MirrorStatus
from agent.core.worker import Worker
from agent.errors import LeadboxError
from agent.intake.access import RateLimiter, SignatureChecker
from agent.intake.batching import IntakeBatcher
from agent.intake.forms import FieldMap
from agent.intake.http_errors import ERROR_PAGE, JsonErrorSite
from agent.intake.privacy_api import add_privacy_routes
from agent.intake.webhook import DAEMON, add_routes

log = logging.getLogger("leadbox.daemon")


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        s = config.settings
        self.metrics = Metrics()
        self.stopping = False
        self.store: Store = make_store(config)
        self.intake = IntakeBatcher(self.store)
        self.rate_limiter = RateLimiter(s.http.rate_limit_per_minute)
        self.field_map = FieldMap(fields=s.forms.all_fields(), keep_fields=s.forms.keep_fields,
                                  honeypot=s.forms.honeypot_field)
        self.signatures = SignatureChecker(config.secrets.webhook_secret, s.http.signature_tolerance)
        self.scheduler = AsyncIOScheduler(
            timezone="UTC", job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 60})
        self.inbox: Any = None  # the first mailbox's poller (admin poll, single-mailbox /readyz)
        self.pollers: list[Any] = []  # one per mailbox
        self.mailboxes = make_mailboxes(config)
        # reply.settle: uncertain SMTP replies looked up over IMAP (None: outbox or settle = off).
        self.sent_lookup = make_sent_lookup(config)
        # inbox.mailboxes: the account of each mailbox whose replies go out over its own login.
        self.box_lookups = make_box_lookups(config)
        # Why there is no sheet mirror, when there is none (for /readyz).
        self.mirror_off = Health(HealthState.DISABLED, "not started")
        self._started = False
        self._tokens_seen = 0
        self.alert_sender: AlertSender | None = None  # [alerts]: webhook/e-mail alerts and the digest
        # Built in start(): they may touch files or the network.
        self.svc: Services
        self.worker: Worker

    # -- life cycle -----------------------------------------------------
    async def start(self) -> None:
        s = self.config.settings
        templates = Templates(s.reply.templates_dir, s.reply.default_language)
        await self.store.open()
        try:
            await self._start(templates)
        except BaseException:
            await self.store.close()  # a failed start leaves nothing open
            raise

    async def _start(self, templates: Templates) -> None:
        s = self.config.settings
        await self.store.recover()
        local = make_local_classifier(self.config)
        log.info("classifier: local model loaded", extra={"reason": local.describe()})
        classifier = make_classifier(self.config)
        mirror, self.mirror_off = make_mirror(self.config)
        self.svc = Services(
            store=self.store, classifier=classifier, local_classifier=local,
            rules=PriorityRules(s.priority.by_category, s.priority.urgent_words, s.priority.domains),
            transport=make_transport(self.config, self.sent_lookup, self.box_lookups), templates=templates,
            reply=ReplyPolicy(
                enabled=s.reply.enabled, from_address=s.reply.from_address, from_name=self.config.sender_name,
                company_name=s.reply.company_name.strip(),
                domain=self.config.message_id_domain, window_hours=s.reply.window_hours,
                max_per_hour=s.reply.max_per_hour, include_summary=s.reply.include_summary,
                own_addresses=self.config.own_addresses, category_labels=dict(s.labels.categories),
                max_per_day=s.reply.max_per_day, max_delay_hours=s.reply.max_delay_hours,
                from_by_mailbox={m.name: m.from_address for m in self.mailboxes},
            ),
            mirror=mirror, mirror_ledger=MirrorLedger(self.store) if mirror is not None else None,
            metrics=self.metrics,
            templates_by_mailbox={m.name: Templates(m.templates_dir, s.reply.default_language)
                                  for m in self.mailboxes if m.templates_dir != s.reply.templates_dir},
            alerts=alert_policy(self.config),
        )
        if self.svc.alerts is not None or (s.alerts.digest_cron and s.alerts.recipients()):
            self.alert_sender = AlertSender(self.config, self.store, self.svc.transport, self.metrics)
        self.worker = Worker(self.svc, s.worker, contended=self.intake.contended)
        if mirror is not None:
            mirror.exists = self.store.existing_ids  # an erased person's queued row is never written
        self.privacy = Privacy(self.config, self.store, mirror)
        reply_health = self.svc.transport.health()
        if reply_health.state is HealthState.DOWN:  # e.g. an outbox on a root-owned volume: say so now
            log.error("reply transport cannot send replies; /readyz answers 503 until it can",
                      extra={"reason": reply_health.reason or ""})
        if mirror is not None:
            try:
                await mirror.start()
                if s.sheets.import_existing:
                    known = await mirror.known_emails()
                    added = await self.store.add_known_emails(sorted(known))
                    log.info("sheets: imported known emails", extra={"reason": f"{len(known)} read, {added} new"})
            except LeadboxError as e:
                log.warning("sheets: not ready at start; will retry", extra={"reason": str(e)})
        self._add_jobs()
        self._warn_default_sender()
        if s.inbox.enabled:
            from agent.intake.inbox import InboxPoller

            for box in self.mailboxes:  # each on its own job, connection, checkpoint and lock
                poller = InboxPoller(self.config, self.store, self.metrics, on_intake=self.worker.kick,
                                     mailbox=box)
                poller.start(self.scheduler)
                self.pollers.append(poller)
            self.inbox = self.pollers[0] if self.pollers else None
        self.scheduler.start()
        self._started = True
        self.worker.kick()

    def _warn_default_sender(self) -> None:
        """Replies signed by the defaults would reach real people: say which two settings to make."""
        r = self.config.settings.reply
        defaults = ReplyConfig()
        unset = [f"reply.{k}" for k in ("from_address", "company_name")
                 if getattr(r, k).strip() == getattr(defaults, k)]
        if r.enabled and unset:
            log.warning("replies use the default sender: set " + " and ".join(unset),
                        extra={"reason": f"replies come from {r.from_address}, signed {r.company_name!r}"})

    def _add_jobs(self) -> None:
        s = self.config.settings
        now = datetime.now(UTC)
        if self.alert_sender is not None:
            self.scheduler.add_job(self.alert_sender.run_due, "interval", seconds=1.0, id="alerts-send",
                                   next_run_time=now)
            if s.alerts.digest_cron and s.alerts.recipients():
                from apscheduler.triggers.cron import CronTrigger

                self.scheduler.add_job(self.alert_sender.send_digest, CronTrigger.from_crontab(
                    s.alerts.digest_cron, timezone=ZoneInfo(s.alerts.timezone)), id="alerts-digest")
        self.scheduler.add_job(self.worker.sweep, "interval", seconds=s.worker.sweep_interval,
                               id="worker-sweep", next_run_time=now)
        if self.config.classifier_backend == "openai":
            self.scheduler.add_job(self.reclassify, "interval", seconds=s.classifier.reclassify_interval,
                                   id="reclassify")
        if s.reply.transport == "smtp" and s.reply.smtp_check_interval > 0:
            # Log in at start and while the server is not known to work: /readyz then says whether
            # replies can go out before the first one is due, and recovers with the server.
            self.scheduler.add_job(self.check_transport, "interval", seconds=s.reply.smtp_check_interval,
                                   id="transport-check", next_run_time=now)
        if s.store.retention_days > 0:
            self.scheduler.add_job(self.retention, "interval", hours=24, id="retention",
                                   next_run_time=now + timedelta(minutes=5))
        if self.svc.mirror is not None:
            self.scheduler.add_job(self.erasures_job, "interval", minutes=5, id="pending-erasures")
        if s.console.enabled:
            self.scheduler.add_job(self.index_search, "interval", seconds=2.0, id="search-index")
        if self.sent_lookup is not None:
            self.scheduler.add_job(self.settle_replies, "interval", seconds=s.reply.settle_interval,
                                   id="reply-settle", next_run_time=now)
        if self.svc.mirror is not None:
            # Rows that could not be queued or written (outage, crash) are sent again by this job;
            # its period does not follow flush_seconds up to an hour.
            self.scheduler.add_job(self.mirror_catch_up, "interval",
                                   seconds=min(60.0, max(5.0, s.sheets.flush_seconds * 5)), id="mirror-catch-up")

    async def check_transport(self) -> None:
        # Not while paused: the quota or throttle pause has its own probe (agent.mail.limits).
        if self.svc.transport.health().state not in (HealthState.OK, HealthState.PAUSED):
            await self.svc.transport.check()

    async def stop(self) -> None:
        """Stop intake, let in-flight work finish within the grace period, close everything."""
        self.stopping = True
        grace = self.config.settings.http.shutdown_grace
        if self._started:
            self.scheduler.pause()
            if self.pollers:
                try:  # a poll in flight may wait on the network: bounded by the grace period
                    await asyncio.wait_for(asyncio.gather(*(p.stop() for p in self.pollers)),
                                           timeout=max(1.0, grace / 2))
                except TimeoutError:
                    log.warning("inbox: stop timed out; the checkpoint keeps unfinished mail for next time")
            await self.worker.stop(grace)
            self.scheduler.shutdown(wait=False)
            await asyncio.sleep(0)
            if self.svc.mirror is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.svc.mirror.close(), timeout=max(1.0, grace / 2))
            if self.svc.mirror_ledger is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.svc.mirror_ledger.drain(), timeout=max(1.0, grace / 2))
            if self.alert_sender is not None:
                await self.alert_sender.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.svc.transport.close(), timeout=max(1.0, grace / 2))
            with contextlib.suppress(Exception):
                await self.svc.classifier.close()
        await self.store.close()

    # -- jobs -----------------------------------------------------------
    async def reclassify(self) -> None:
        """Leads decided by the fallback get the preferred classifier once it answers (no new reply)."""
        clf = self.svc.classifier
        leads = [x for x in await self.store.needing_reclassify(50) if x.state in FINAL_STATES]
        if not leads or not await clf.probe():
            return  # nothing to do, or still down (one cheap call at most): try again next time
        for lead in leads:
            c = await clf.classify(lead.text_for_classifier, subject=lead.subject)
            if c.needs_reclassify:
                if clf.circuit() in (None, "closed"):
                    continue  # this message's problem (refusal, length): do not starve the rest
                return  # down again: try again next time
            lead.category, lead.summary, lead.language = c.category, c.summary, c.language
            lead.confidence, lead.classifier, lead.needs_reclassify = c.confidence, c.classifier, False
            d = self.svc.rules.decide(c.category, lead.email_norm, lead.text_for_classifier)
            lead.priority, lead.priority_rule = d.priority, d.rule
            await self.store.update(lead)
            await self._alert_if_due(lead)
            log.info("re-classified", extra={"lead_id": lead.id, "category": c.category.value})

    async def settle_replies(self) -> list[Settled]:
        """Uncertain replies looked up in the mailbox: replied, or queued for one more send."""
        lookup, r = self.sent_lookup, self.config.settings.reply
        if lookup is None or not await self.store.try_acquire_leadership("reply-settle"):
            return []
        for account in (lookup, *self.box_lookups.values()):
            if account.resolved is None:  # auto: learn Gmail or not before the first reply needs it
                await account.resolve()
        done = await settle_uncertain(self.store, lookup, now=time.time(), grace=r.settle_grace_seconds,
                                      max_age=r.uncertain_max_age, by_mailbox=self.box_lookups)
        if any(x.outcome is Outcome.RESENT for x in done):
            self.worker.kick()
        return done

    async def mirror_catch_up(self) -> None:
        mirror = self.svc.mirror
        if mirror is None:
            return
        leads = await self.store.mirror_pending(500)

        async def one(lead: Any) -> None:
            try:
                await mirror.mirror(lead)
            except LeadboxError:
                return
            await self.store.set_mirror_status(lead.id, MirrorStatus.DONE)

        await asyncio.gather(*(one(x) for x in leads))

    @property
    def inbox_enabled(self) -> bool:
        return self.inbox is not None

    def trigger_poll(self) -> None:
        for poller in self.pollers:
            poller.poll_now()

    # -- observability --------------------------------------------------
    async def readiness(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        ok = not self.stopping
        try:
            await asyncio.wait_for(self.store.ping(), timeout=2.0)
            parts["store"] = Health(HealthState.OK)
        except Exception as e:  # noqa: BLE001 - any failure means the store is not ready
            parts["store"] = Health(HealthState.DOWN, type(e).__name__)
        running = bool(self._started and self.scheduler.running and not self.stopping)
        parts["scheduler"] = Health(HealthState.OK if running else HealthState.STOPPED)
        ok = ok and running
        if self._started:
            parts["classifier"] = self.svc.classifier.health()
            parts["reply"] = self.svc.transport.health()
            parts["sheets"] = self.svc.mirror.health() if self.svc.mirror is not None else self.mirror_off
            if self.config.settings.inbox.mailboxes and self.pollers:
                parts["inbox"] = self._mailboxes_health()
            elif self.inbox is not None:
                parts["inbox"] = self.inbox.health()
        for name, health in parts.items():
            self.metrics.set_adapter_up(name, health.ready)
            ok = ok and health.ready
        return {"status": "ok" if ok else "unavailable", "stopping": self.stopping,
                "checks": {name: health.as_json() for name, health in parts.items()}}

    def _mailboxes_health(self) -> Health:
        """Several mailboxes: each one by name; a failing one shows but does not make /readyz 503
        (the replica still takes webhooks and the other mailboxes)."""
        boxes = {p.mailbox: p.health() for p in self.pollers}
        bad = sorted(name for name, h in boxes.items() if not h.ready)
        state = HealthState.DEGRADED if bad else HealthState.OK
        return Health(state, f"not polling: {', '.join(bad)}" if bad else None,
                      {"mailboxes": {name: h.as_json() for name, h in boxes.items()}})

    async def refresh_gauges(self) -> None:
        with contextlib.suppress(Exception):
            self.metrics.set_store_counts(await self.store.counts())
        if self._started:
            self.metrics.set_reply_paused(self.svc.transport.health().state is HealthState.PAUSED)
            circuit = self.svc.classifier.circuit()
            if circuit is not None:
                self.metrics.set_circuit_state(self.svc.classifier.name, circuit)
            tokens = self.svc.classifier.tokens_used
            if tokens > self._tokens_seen:
                self.metrics.add_llm_tokens(tokens - self._tokens_seen)
                self._tokens_seen = tokens

    # -- HTTP -----------------------------------------------------------
    async def index_search(self) -> None:
        """Keep the console's full-text index close behind intake, yielding to a busy webhook."""
        if not self.intake.contended():
            await self.store.index_search()

    async def forget_person(self, email: str, *, mailbox: bool = False) -> dict[str, Any]:
        return await self.privacy.forget(email, mailbox=mailbox)

    async def export_person(self, email: str) -> dict[str, Any]:
        return await self.privacy.export(email)

    async def retention(self) -> None:
        """The daily job: one replica applies store.retention_days (the leadership lock)."""
        if not await self.store.try_acquire_leadership("retention"):
            return
        try:
            report = await self.privacy.retention(dry_run=False)
            log.info("retention applied", extra={"event": "retention", "reason": f"{report.get('leads', 0)} lead(s)"})
        except LeadboxError as e:
            log.warning("retention: not applied this time", extra={"reason": str(e)[:200]})
        finally:
            await self.store.release_leadership("retention")

    async def erasures_job(self) -> None:
        with contextlib.suppress(LeadboxError):
            await self.privacy.retry_pending()

    async def _alert_if_due(self, lead: Lead) -> None:
        """Team alerts for a lead whose category or priority changed after the pipeline decided
        them (re-classified, corrected): the ledger insert is idempotent per lead and channel, so
        a lead that now qualifies alerts once and one that already alerted never again."""
        if self.svc.alerts is not None and (channels := self.svc.alerts.channels_for(lead)):
            await self.store.enqueue_alerts(lead.id, channels, time.time())

    async def on_corrected(self, lead_id: str) -> None:
        """A person corrected the lead in the console: alert the team if it now qualifies, and
        rewrite its sheet row (best effort).

        A lead raised to ``alerts.min_priority`` (or rescued from spam) alerts once per channel
        (``_alert_if_due``). A sheet that is down or refuses is logged; the row
        keeps its old values until the next correction (the store, the API and the console have
        the corrected ones).
        """
        mirror = self.svc.mirror if self._started else None
        if mirror is None and self.svc.alerts is None:
            return  # nothing holds a copy of the correction: no read
        lead = await self.store.get(lead_id)
        if lead is None:
            return
        await self._alert_if_due(lead)
        if mirror is None:
            return
        try:
            await mirror.update_row(lead)
        except LeadboxError as e:
            log.warning("sheets: corrected row not rewritten", extra={"lead_id": lead_id, "reason": str(e)})

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.settings.http.max_body_bytes)
        app[DAEMON] = self
        console = self.config.settings.console
        if console.enabled:  # before the API's routes: those end with the catch-all
            setup_console(app, self.config.secrets.secret_key, console.session_hours)
        add_privacy_routes(app)  # before add_routes: /leads/export must win over /leads/{id}
        add_routes(app)
        if console.enabled:
            api_page = app[ERROR_PAGE]
            app[ERROR_PAGE] = lambda r, s, e, h: console_error_page(r, s, e, h) or api_page(r, s, e, h)
        return app


async def serve(config: Config, ready: Callable[[int], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 after a clean drain)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http = config.settings.http
    socks = bind_listeners(http.host, http.port)  # first: a busy port stops us before the store is touched
    daemon = Daemon(config)
    try:
        await daemon.start()
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    # keepalive_timeout also bounds a connection that never completes its request headers
    # (aiohttp has no header-read timeout): slow-loris clients are cut off after read_timeout.
    handler_kwargs: dict[str, Any] = {"access_log": None, "keepalive_timeout": http.read_timeout}
    runner = web.AppRunner(daemon.make_app(), handle_signals=False, **handler_kwargs)
    await runner.setup()
    for sock in socks:  # JsonErrorSite: aiohttp's own errors (unparseable requests) answer JSON too
        await JsonErrorSite(runner, sock, backlog=1024, handler_kwargs=handler_kwargs).start()
    port = runner.addresses[0][1] if runner.addresses else http.port
    log.info("leadbox running", extra={"event": "started", "reason": f"http://{http.host}:{port}",
                                        "intake": "webhook" + (" + inbox" if daemon.inbox else "")})
    if ready is not None:
        ready(port)
    await stop.wait()
    t0 = time.monotonic()
    log.info("stopping: draining in-flight work", extra={"duration_ms": int(http.shutdown_grace * 1000)})
    daemon.stopping = True
    await daemon.stop()
    await runner.cleanup()
    log.info("stopped", extra={"duration_ms": int((time.monotonic() - t0) * 1000)})
    return 0
