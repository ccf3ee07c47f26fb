"""Inbox intake: turn each new email in one IMAP folder into a lead intake, exactly once.

This module is the poller: scheduling, leadership, the checkpoint, IDLE and the
poll's state for /readyz. The IMAP specifics live in the mailbox adapter
(``imap``), parsing in ``parse_pool`` (with ``email_parse``), and what each
message becomes in the store in ``inbox_record``. It decides nothing about
leads; the worker does the rest, as for the webhook.

Why it is shaped like this:

* **Exactly once rests on the store, not on IMAP flags.** Each message's intake
  record (lead, interaction, skip or quarantine) and the mailbox checkpoint
  (UIDVALIDITY, highest UID done) are written in one transaction per fetched
  batch (the checkpoint moves only with the committed batch; a batch the store
  rejects is retried one message at a time, so one bad message is found,
  counted and quarantined). The message's dedupe key (its
  Message-ID, or a SHA-256 of the raw bytes when it has none) makes a second
  sight of it a no-op. So a
  crash between the commit and the ``\\Seen``/move leaves nothing to redo twice,
  and a UIDVALIDITY change (mailbox rebuilt, UIDs renumbered) is handled by
  re-scanning every UID: the keys say which ones are already done.
* **imapclient blocks,** so all its work for the polling connection runs in one
  dedicated thread (a one-thread executor): one connection per mailbox, and
  commands never interleave. IDLE, when on, holds a second connection in a
  second thread and only *triggers* polls.
* **Parsing is the expensive part** (see ``parse_pool``); fetching batch n+1
  and parsing it overlaps with storing batch n.
* **The loop never dies**: network trouble -> state ``down`` and a
  retry with exponential backoff and jitter, forever; a refused login ->
  ``needs_credentials``, retried every few minutes or on ``poll_now``; a message
  that cannot be parsed -> quarantined with its raw bytes (and moved to the
  quarantine folder, best effort) and the next one goes on.
* **After-actions are courtesy.** Only leads and interactions get
  ``inbox.after`` (seen / move / label), after their batch is durable; automatic
  mail (bounces, lists, auto-replies) is left untouched for a human to see. A
  failing after-action is logged and changes nothing: the checkpoint already
  moved past the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from imapclient.exceptions import IMAPClientError

from agent.config import Config
from agent.config_mailboxes import DEFAULT_NAME, Mailbox, resolve_mailboxes
from agent.core.backoff import backoff_delay
from agent.core.models import Health
from agent.core.ports import InboxStore, IntakeMetrics
from agent.core.replies import is_reply_message_id
from agent.core.states import INBOX_TAKEN, HealthState, InboxOutcome
from agent.errors import ConfigError, NeedsCredentials, TransientError
from agent.intake.email_parse import ParsedEmail
from agent.intake.imap import FetchedMessage, ImapMailbox
from agent.intake.imap_auth import TokenSource, mailbox_token_source
from agent.intake.inbox_record import InboxRecorder
from agent.intake.parse_pool import ParseOptions, ParsePool

__all__ = ["InboxPoller", "PollSummary"]

log = logging.getLogger("leadbox.inbox")

JOB_ID = "inbox-poll"
# Backoff for a server we cannot reach: 1 s, 2 s, 4 s ... capped, with jitter.
BACKOFF_BASE = 1.0
BACKOFF_MAX = 300.0
# A refused login is retried this often (or at the next poll_now): slow, never off.
CREDENTIALS_RETRY = 300.0
# IDLE is re-issued before servers drop it (RFC 2177: 29 min; Gmail drops at ~30).
IDLE_RENEW = 25 * 60.0
# How often the IDLE thread looks up from idle_check to see whether it should stop.
IDLE_TICK = 1.0

_IMAP_ERRORS: tuple[type[BaseException], ...] = (
    TransientError, OSError, EOFError, imaplib.IMAP4.error, IMAPClientError,
)
_POLL_ONCE_ERRORS: tuple[type[BaseException], ...] = (ConfigError, *_IMAP_ERRORS)


@dataclass
class PollSummary:
    """What one poll did; ``poll-once`` prints it as JSON."""

    fetched: int = 0
    leads: int = 0
    interactions: int = 0
    skipped: int = 0
    quarantined: int = 0
    already_seen: int = 0

    def as_json(self) -> dict[str, int]:
        return {"fetched": self.fetched, "leads": self.leads, "interactions": self.interactions,
                "skipped": self.skipped, "quarantined": self.quarantined}

    def add(self, other: PollSummary) -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)

    def count(self, outcome: InboxOutcome) -> None:
        self.fetched += 1
        if outcome is InboxOutcome.LEAD:
            self.leads += 1
        elif outcome is InboxOutcome.INTERACTION:
            self.interactions += 1
        elif outcome is InboxOutcome.QUARANTINED:
            self.quarantined += 1
        elif outcome is InboxOutcome.ALREADY_SEEN:
            self.already_seen += 1
        else:
            self.skipped += 1


# A fetched message and what parsing made of it (None: too large, not downloaded).
_Message = tuple[FetchedMessage, ParsedEmail | None]


class InboxPoller:
    """Polls one IMAP folder on the daemon's scheduler; optional IDLE triggers polls early.

    One poller per mailbox (``inbox.mailboxes``): each has its own job, connection, checkpoint,
    failure state and backoff, and leadership lock, so one failing mailbox never holds up another.
    """

    def __init__(self, config: Config, store: InboxStore, metrics: IntakeMetrics, *,
                 on_intake: Callable[[], None] | None = None, mailbox: Mailbox | None = None) -> None:
        self.config = config
        self.box = mailbox if mailbox is not None else resolve_mailboxes(config)[0]
        self.cfg = self.box.inbox
        self.store = store
        self.metrics = metrics
        self.on_intake = on_intake
        self._tokens: TokenSource | None = (mailbox_token_source(config, self.box) if self.cfg.auth == "xoauth2"
                                            else None)
        # One thread owns the polling connection: commands never interleave.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"inbox-imap-{self.box.name}")
        self._mb = self._make_mailbox()
        self.mailbox = self.box.name
        self.job_id = JOB_ID if self.mailbox == DEFAULT_NAME else f"{JOB_ID}:{self.mailbox}"
        self.adapter = "inbox" if self.mailbox == DEFAULT_NAME else f"inbox:{self.mailbox}"
        self.leader_name = f"inbox:{self.mailbox}"
        self.parser = ParsePool(ParseOptions(config.own_addresses, frozenset({config.message_id_domain}),
                                             self.cfg.max_message_bytes, frozenset(self.cfg.form_senders)))
        self.recorder = InboxRecorder(store, self.mailbox, self.cfg.max_message_bytes, metrics,
                                      source=self.box.source)
        self._scheduler: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._again = False
        self._stopping = False
        self._poll_task: asyncio.Task[Any] | None = None
        self._failures = 0
        self._leader = True
        self._state = HealthState.CONNECTING
        self._reason: str | None = None
        self._last_success: float | None = None
        self._next_retry: float | None = None
        self._uidvalidity: int | None = None
        self._last_uid: int | None = None
        # IDLE
        self._idle_thread: threading.Thread | None = None
        self._idle_stop = threading.Event()
        self._idle_mb: ImapMailbox | None = None
        self._idle_state = "off"
        self.idle_renew = float(self.cfg.idle_renew)
        self.idle_events = 0

    # ------------------------------------------------------------------ set-up

    def _make_mailbox(self) -> ImapMailbox:
        c = self.cfg
        if self._tokens is not None:
            auth: dict[str, Any] = {"oauth2_token": self._tokens}
        else:
            auth = {"password": self.box.password or ""}
        return ImapMailbox(c.host, c.port, security=c.security, username=self.box.username,
                           folder=c.folder, ca_file=c.ca_file or None, timeout=c.timeout, **auth)

    def start(self, scheduler: Any) -> None:
        """Add the poll job (first run now) and, with ``inbox.idle``, start the IDLE thread."""
        self._scheduler = scheduler
        self._loop = asyncio.get_running_loop()
        scheduler.add_job(
            self._job, "interval", seconds=self.cfg.poll_interval, id=self.job_id, replace_existing=True,
            max_instances=1, coalesce=True, misfire_grace_time=max(30, int(self.cfg.poll_interval)),
            next_run_time=datetime.now(UTC),
        )
        if self.cfg.idle:
            self._idle_state = "connecting"
            self._idle_thread = threading.Thread(target=self._idle_loop, name=f"inbox-idle-{self.mailbox}", daemon=True)
            self._idle_thread.start()

    def poll_now(self) -> None:
        """Poll as soon as possible (admin endpoint, IDLE, tests). Call on the event loop thread.

        A poll in progress loops once more instead, so mail that arrived while
        it ran is not left for the next interval.
        """
        if self._stopping:
            return
        if self._running:
            self._again = True
            return
        self._schedule_at(0.0)

    def _schedule_at(self, delay: float) -> None:
        self._next_retry = time.time() + delay if delay > 0 else None
        if self._scheduler is None:
            return
        when = datetime.now(UTC) + timedelta(seconds=delay)
        with contextlib.suppress(LookupError):  # the job is gone (stopping)
            self._scheduler.modify_job(self.job_id, next_run_time=when)

    async def stop(self) -> None:
        """Stop polling and IDLE, let a running poll finish its message, close the connections."""
        self._stopping = True
        self.parser.closed = True  # no new worker processes from here on
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job(self.job_id)
        self._idle_stop.set()
        task = self._poll_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            await asyncio.wait({task}, timeout=self.cfg.timeout)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._io, self._mb.close), timeout=5.0)
        except (TimeoutError, RuntimeError):
            # Stuck in a network call: cut the socket under it so the thread returns.
            with contextlib.suppress(Exception):
                self._mb.abort()
        if self._idle_thread is not None:
            await asyncio.to_thread(self._idle_thread.join, 5.0)
        self._io.shutdown(wait=False)
        self.parser.close()
        if self._leader:
            with contextlib.suppress(Exception):
                await self.store.release_leadership(self.leader_name)
        self._state, self._idle_state = HealthState.STOPPED, "off"

    # ------------------------------------------------------------------ state

    def health(self) -> Health:
        """For /readyz: ok | connecting | down | needs_credentials | not_leader | stopped, and details."""
        out: dict[str, Any] = {"mailbox": self.mailbox}
        if self._last_success is not None:
            out["last_success"] = datetime.fromtimestamp(self._last_success, UTC).isoformat()
        if self._next_retry is not None and self._state in (HealthState.DOWN, HealthState.NEEDS_CREDENTIALS):
            out["retry_in_seconds"] = max(0.0, round(self._next_retry - time.time(), 1))
        if self._failures:
            out["failures"] = self._failures
        if self._uidvalidity is not None:
            out["uidvalidity"], out["last_uid"] = self._uidvalidity, self._last_uid
        if self.cfg.idle:
            out["idle"] = self._idle_state
        return Health(self._state, self._reason, out)

    def state(self) -> dict[str, Any]:
        """``health()`` as /readyz shows it."""
        return self.health().as_json()

    def _set_state(self, state: HealthState, reason: str | None = None) -> None:
        self._state, self._reason = state, reason
        self.metrics.set_adapter_up(self.adapter, state is HealthState.OK)

    # ------------------------------------------------------------------ the job

    async def _job(self) -> None:
        """The scheduled poll: repeats while poll_now asked again during the run."""
        if self._stopping:
            return
        if self._running:
            self._again = True
            return
        self._running = True
        self._poll_task = asyncio.current_task()
        try:
            while not self._stopping:
                self._again = False
                ok = await self.poll_guarded()
                if not (ok and self._again):
                    break
        finally:
            self._running = False

    async def poll_guarded(self) -> bool:
        """One poll; every failure becomes a state and a scheduled retry, never an exception."""
        try:
            summary = await self.poll()
        except NeedsCredentials as e:
            self._failures += 1
            if self._tokens is not None:
                self._tokens.invalidate()  # refresh before the next try: it may have been revoked
            self._set_state(HealthState.NEEDS_CREDENTIALS, str(e))
            log.error("inbox: login refused; retrying slowly", extra={"mailbox": self.mailbox, "reason": str(e)})
            self._schedule_at(CREDENTIALS_RETRY)
            return False
        except ConfigError as e:
            self._failures += 1
            self._set_state(HealthState.DOWN, str(e))
            log.error("inbox: configuration problem", extra={"mailbox": self.mailbox, "reason": str(e)})
            self._schedule_at(CREDENTIALS_RETRY)
            return False
        except Exception as e:  # network, server, store: back off and retry, forever
            self._failures += 1
            delay = backoff_delay(self._failures, BACKOFF_BASE, BACKOFF_MAX)
            reason = f"{type(e).__name__}: {e}"[:500]
            self._set_state(HealthState.DOWN, reason)
            level = logging.WARNING if isinstance(e, _IMAP_ERRORS) else logging.ERROR
            log.log(level, "inbox: poll failed; reconnecting with backoff",
                    exc_info=not isinstance(e, _IMAP_ERRORS),
                    extra={"mailbox": self.mailbox, "reason": reason, "attempt": self._failures,
                           "duration_ms": int(delay * 1000)})
            with contextlib.suppress(Exception):
                await self._call(self._mb.close)
            self._schedule_at(delay)
            return False
        if summary is not None:
            log.info("inbox: polled", extra={"mailbox": self.mailbox, "reason": json.dumps(summary.as_json())})
        return True

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in the mailbox's IMAP thread."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def _checkpoint(self) -> tuple[int, int] | None:
        """This mailbox's checkpoint; the single-mailbox install's one (kept under ``user@host/folder``
        before mailboxes had names) carries over to ``default``, so nothing is fetched again."""
        checkpoint = await self.store.get_checkpoint(self.mailbox)
        legacy = self.box.legacy_key
        if checkpoint is None and legacy:
            checkpoint = await self.store.get_checkpoint(legacy)
            if checkpoint is not None:
                await self.store.set_checkpoint(self.mailbox, checkpoint[0], checkpoint[1])
                log.info("inbox: checkpoint carried over to the mailbox's name",
                         extra={"mailbox": self.mailbox, "reason": f"{legacy} -> {self.mailbox}"})
        return checkpoint

    async def _is_leader(self) -> bool:
        return await self.store.try_acquire_leadership(self.leader_name)

    async def poll(self, *, since: date | None = None,
                   progress: Callable[[int, int], None] | None = None) -> PollSummary | None:
        """Connect if needed, then process every UID above the checkpoint.

        With ``since`` (backfill), first re-process the mail SINCE that date that
        lies at or below the checkpoint (dedupe keeps it from being taken twice;
        the checkpoint does not move back), then go on as a normal poll.
        Returns None when another replica holds the mailbox.
        """
        if not await self._is_leader():
            if self._leader:
                log.info("inbox: another replica polls this mailbox", extra={"mailbox": self.mailbox})
            self._leader = False
            self._set_state(HealthState.NOT_LEADER, "another replica holds the inbox lock")
            await self._call(self._mb.close)
            return None
        self._leader = True
        if not self._mb.connected:
            if self._state is not HealthState.OK:
                self._set_state(self._state if self._state in (HealthState.DOWN, HealthState.NEEDS_CREDENTIALS)
                                else HealthState.CONNECTING,
                                self._reason)
            await self._call(self._mb.connect)
        uidvalidity, uidnext = await self._call(self._mb.select)
        checkpoint = await self._checkpoint()
        last = 0
        if checkpoint is not None:
            if checkpoint[0] == uidvalidity:
                last = int(checkpoint[1])
            else:
                log.warning("inbox: UIDVALIDITY changed; re-scanning every message (deduped by Message-ID)",
                            extra={"mailbox": self.mailbox, "reason": f"{checkpoint[0]} -> {uidvalidity}"})
        summary = PollSummary()
        if checkpoint is None and since is None and self.cfg.start == "now":
            # First contact with this mailbox: start from here, never auto-answer old mail.
            start_uid = max(int(uidnext or 1) - 1, 0)
            await self.store.set_checkpoint(self.mailbox, uidvalidity, start_uid)
            log.info("inbox: first start; taking mail from now on (older mail: leadbox backfill)",
                     extra={"mailbox": self.mailbox, "reason": f"uidvalidity={uidvalidity} uid={start_uid}"})
            self._uidvalidity, self._last_uid = uidvalidity, start_uid
            self._last_success = time.time()
            self._set_state(HealthState.OK)
            return summary
        todo: list[int] = []
        if since is not None and last:
            old = await self._call(self._mb.search_since, since)
            todo = [u for u in old if u <= last]
        if not (uidnext and uidnext - 1 <= last):  # UIDNEXT says there is something new
            todo += await self._call(self._mb.new_uids, last)
        await self._process(todo, uidvalidity, summary, progress)
        self._uidvalidity = uidvalidity
        self._last_uid = max([last, *todo]) if todo else last
        self._failures = 0
        self._next_retry = None
        self._last_success = time.time()
        self._set_state(HealthState.OK)
        self.metrics.inbox_polled(self.mailbox)
        return summary

    # ------------------------------------------------------------------ batches

    async def _process(self, uids: Sequence[int], uidvalidity: int, summary: PollSummary,
                       progress: Callable[[int, int], None] | None) -> None:
        """Fetch+parse batch n+1 while batch n is written to the store."""
        size = self.cfg.batch_size
        batches = [list(uids[i:i + size]) for i in range(0, len(uids), size)]
        if not batches:
            return
        loop = asyncio.get_running_loop()
        pending = loop.create_task(self._fetch_and_parse(batches[0]))
        done = 0
        try:
            for i in range(len(batches)):
                items = await pending
                if i + 1 < len(batches) and not self._stopping:
                    pending = loop.create_task(self._fetch_and_parse(batches[i + 1]))
                await self._store_batch(items, uidvalidity, summary)
                done += len(batches[i])
                if progress is not None:
                    progress(done, len(uids))
                if self._stopping:
                    return
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    async def _fetch_and_parse(self, uids: list[int]) -> list[_Message]:
        items: list[FetchedMessage] = await self._call(self._mb.fetch_batch, uids, self.cfg.max_message_bytes)
        raws = [it.raw for it in items if it.raw is not None]
        parsed = iter(await self.parser.parse(raws) if raws else [])
        return [(it, next(parsed) if it.raw is not None else None) for it in items]

    async def _store_batch(self, items: list[_Message], uidvalidity: int, summary: PollSummary) -> None:
        """Make the messages durable (checkpoint included), then apply the after-actions."""
        if self._stopping or not items:
            return
        outcomes = await self.recorder.record(items, uidvalidity, lambda: self._stopping)
        taken: list[int] = []
        quarantined: list[int] = []
        own_copies: list[int] = []  # our replies' self-copies (reply.settle): never leads
        for (msg, parsed), outcome in zip(items, outcomes, strict=False):  # fewer outcomes: stopped
            summary.count(outcome)
            if outcome in INBOX_TAKEN:
                taken.append(msg.uid)
            elif outcome is InboxOutcome.QUARANTINED:
                quarantined.append(msg.uid)
            elif parsed is not None and is_reply_message_id(parsed.message_id, self.config.message_id_domain):
                own_copies.append(msg.uid)
            self.metrics.inbox_message(self.mailbox, outcome.value)
        if taken and self.on_intake is not None:
            self.on_intake()
        copies_to = self.config.settings.reply.self_copy_folder if own_copies else ""
        if taken or quarantined or copies_to:
            c = self.cfg
            self._io.submit(lambda: self._mb.after_actions(
                taken, quarantined, after=c.after, move_to=c.move_to, label=c.label,
                quarantine_folder=c.quarantine_folder, own_copies=own_copies if copies_to else [],
                own_copy_folder=copies_to))

    # ------------------------------------------------------------------ IDLE

    def _idle_loop(self) -> None:
        """Second connection in its own thread: IDLE, and on EXISTS ask the loop for a poll."""
        failures = 0
        mb = self._idle_mb = self._make_mailbox()
        try:
            while not self._idle_stop.is_set():
                if not self._leader:
                    mb.close()
                    self._idle_state = "not_leader"
                    self._idle_stop.wait(self.cfg.poll_interval)
                    continue
                try:
                    if not mb.connected:
                        mb.connect()
                        failures = 0
                        self._trigger_poll()  # catch up on what arrived while we were away
                    self._idle_state = "ok"
                    mb.idle_until(time.monotonic() + self.idle_renew, self._idle_stop, self._new_mail, IDLE_TICK)
                except NeedsCredentials as e:
                    self._idle_state = "needs_credentials"
                    log.warning("inbox idle: login refused", extra={"mailbox": self.mailbox, "reason": str(e)})
                    mb.close()
                    self._idle_stop.wait(CREDENTIALS_RETRY)
                except Exception as e:  # noqa: BLE001 - never let the IDLE thread die
                    failures += 1
                    delay = backoff_delay(failures, BACKOFF_BASE, BACKOFF_MAX)
                    self._idle_state = "down"
                    log.warning("inbox idle: connection lost; reconnecting",
                                extra={"mailbox": self.mailbox, "reason": f"{type(e).__name__}: {e}"[:300],
                                       "attempt": failures, "duration_ms": int(delay * 1000)})
                    mb.close()
                    self._idle_stop.wait(delay)
        finally:
            mb.close()
            self._idle_state = "off"

    def _new_mail(self) -> None:
        self.idle_events += 1
        self._trigger_poll()

    def _trigger_poll(self) -> None:
        loop = self._loop
        if loop is not None and not self._stopping:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self.poll_now)
