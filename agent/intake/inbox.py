"""Inbox intake: turn each new email in one IMAP folder into a lead intake, exactly once.

Thin entry point: this module fetches mail, asks ``email_parse`` what a
message is, and hands the result to the store (``store.intake_emails`` for a
whole fetched batch when the store has it, else ``store.intake_email`` per
message). It decides nothing about leads; the worker does the rest, as for the
webhook.

Why it is shaped like this:

* **Exactly once rests on the store, not on IMAP flags.** Each message's intake
  record (lead, interaction, skip or quarantine) and the mailbox checkpoint
  (UIDVALIDITY, highest UID done) are written in one transaction: one per
  fetched batch with ``store.intake_emails`` (the checkpoint moves only with
  the committed batch; a batch the store rejects is retried one message at a
  time, so one bad message is found, counted and quarantined as before), one
  per message with ``store.intake_email``. The message's dedupe key (its
  Message-ID, or a SHA-256 of the raw bytes when it has none) makes a second
  sight of it a no-op. So a
  crash between the commit and the ``\\Seen``/move leaves nothing to redo twice,
  and a UIDVALIDITY change (mailbox rebuilt, UIDs renumbered) is handled by
  re-scanning every UID: the keys say which ones are already done.
* **imapclient blocks,** so all its work for the polling connection runs in one
  dedicated thread (a one-thread executor): one connection per mailbox, and
  commands never interleave. IDLE, when on, holds a second connection in a
  second thread and only *triggers* polls.
* **Parsing is the expensive part** (``policy.default``; ~0.25 ms a message), so
  with cores to spare (3 or more: one stays with this process's IMAP, TLS and
  store work) a large batch is parsed in worker processes, otherwise in a
  thread; fetching batch n+1 and parsing it overlaps with storing batch n. On 2
  cores, worker processes were slower than the thread (bench/results_inbox.md).
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
import hashlib
import imaplib
import json
import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from imapclient.exceptions import IMAPClientError

from agent.app.metrics import Metrics
from agent.config import Config
from agent.core.backoff import backoff_delay
from agent.core.models import EmailIntake
from agent.errors import ConfigError, LeadboxError, NeedsCredentials, TransientError
from agent.intake.email_parse import ParsedEmail, parse_email, to_lead_in
from agent.intake.imap import ImapMailbox
from agent.intake.imap_auth import TokenSource, make_token_source

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
# Batches at least this big are parsed in worker processes when there are cores to spare.
PROCESS_PARSE_MIN = 64
# Cores left to this process (event loop, IMAP/TLS thread, store thread) when sizing the parse pool.
PARSE_RESERVED_CORES = 1
# A message whose intake keeps raising (not the store being down) is quarantined after this.
MAX_INTAKE_FAILURES = 3

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


@dataclass(slots=True)
class _Fetched:
    """One message as the IMAP thread returns it: raw bytes, or only its size when too large."""

    uid: int
    size: int
    raw: bytes | None = None
    message_id: str | None = None  # for a too-large message (header fetched alone)
    parsed: ParsedEmail | None = None


@dataclass
class _ParseOptions:
    own_addresses: frozenset[str]
    own_domains: frozenset[str]
    max_bytes: int
    form_senders: frozenset[str] = frozenset()


def _parse_many(raws: list[bytes], opts: _ParseOptions) -> list[ParsedEmail]:
    """Parse a chunk of messages (module level so worker processes can run it)."""
    return [parse_email(r, own_addresses=opts.own_addresses, own_domains=opts.own_domains,
                        max_bytes=opts.max_bytes, form_senders=opts.form_senders) for r in raws]


def dedupe_key(parsed: ParsedEmail | None, raw: bytes | None, message_id: str | None = None) -> str:
    """Per-message idempotency key: the Message-ID, or a hash of the bytes when it has none.

    It must survive a UIDVALIDITY change, so it never contains the UID.
    """
    mid = (parsed.message_id if parsed is not None else None) or message_id
    mid = (mid or "").strip()
    if mid:
        return "mid:" + mid[:900]
    return "sha256:" + hashlib.sha256(raw or b"").hexdigest()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class InboxPoller:
    """Polls one IMAP folder on the daemon's scheduler; optional IDLE triggers polls early."""

    def __init__(self, config: Config, store: Any, metrics: Metrics | None = None, *,
                 on_intake: Callable[[], None] | None = None,
                 clean_text: Callable[[str], str] | None = None) -> None:
        self.config = config
        self.cfg = config.settings.inbox
        self.store = store
        self.metrics = metrics
        self.on_intake = on_intake
        self.clean_text = clean_text
        self.mailbox = f"{config.inbox_username}@{self.cfg.host}/{self.cfg.folder}"
        self.leader_name = f"inbox:{self.mailbox}"
        self._parse_opts = _ParseOptions(config.own_addresses, frozenset({config.message_id_domain}),
                                         self.cfg.max_message_bytes, frozenset(self.cfg.form_senders))
        self._tokens: TokenSource | None = make_token_source(config) if self.cfg.auth == "xoauth2" else None
        # One thread owns the polling connection: commands never interleave.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-imap")
        self._mb = self._make_mailbox()
        self._parse_pool: ProcessPoolExecutor | None = None
        # Worker processes only pay off with at least 2 of them beside this process.
        self._parse_workers = max(1, _cpu_count() - PARSE_RESERVED_CORES)
        self._scheduler: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._again = False
        self._stopping = False
        self._poll_task: asyncio.Task[Any] | None = None
        self._failures = 0
        self._intake_failures: dict[str, int] = {}
        self._leader = True
        self._state = "connecting"
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
        self.idle_renew = float(getattr(self.cfg, "idle_renew", IDLE_RENEW))
        self.idle_events = 0

    # ------------------------------------------------------------------ set-up

    def _make_mailbox(self) -> ImapMailbox:
        c = self.cfg
        if self._tokens is not None:
            auth: dict[str, Any] = {"oauth2_token": self._tokens}
        else:
            auth = {"password": self.config.secrets.email_pass}
        return ImapMailbox(c.host, c.port, security=c.security, username=self.config.inbox_username,
                           folder=c.folder, ca_file=c.ca_file or None, timeout=c.timeout, **auth)

    def start(self, scheduler: Any) -> None:
        """Add the poll job (first run now) and, with ``inbox.idle``, start the IDLE thread."""
        self._scheduler = scheduler
        self._loop = asyncio.get_running_loop()
        scheduler.add_job(
            self._job, "interval", seconds=self.cfg.poll_interval, id=JOB_ID, replace_existing=True,
            max_instances=1, coalesce=True, misfire_grace_time=max(30, int(self.cfg.poll_interval)),
            next_run_time=datetime.now(UTC),
        )
        if self.cfg.idle:
            self._idle_state = "connecting"
            self._idle_thread = threading.Thread(target=self._idle_loop, name="inbox-idle", daemon=True)
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
            self._scheduler.modify_job(JOB_ID, next_run_time=when)

    async def stop(self) -> None:
        """Stop polling and IDLE, let a running poll finish its message, close the connections."""
        self._stopping = True
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job(JOB_ID)
        self._idle_stop.set()
        task = self._poll_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            await asyncio.wait({task}, timeout=self.cfg.timeout)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._io, self._mb.close), timeout=5.0)
        except (TimeoutError, RuntimeError):
            # Stuck in a network call: cut the socket under it so the thread returns.
            client = getattr(self._mb, "_client", None)
            if client is not None:
                with contextlib.suppress(Exception):
                    client.shutdown()
        if self._idle_thread is not None:
            await asyncio.to_thread(self._idle_thread.join, 5.0)
        self._io.shutdown(wait=False)
        if self._parse_pool is not None:
            self._parse_pool.shutdown(wait=True, cancel_futures=True)
            self._parse_pool = None
        release = getattr(self.store, "release_leadership", None)
        if release is not None and self._leader:
            with contextlib.suppress(Exception):
                await release(self.leader_name)
        self._state, self._idle_state = "stopped", "off"

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """For /readyz: ``state`` is ok | connecting | down | needs_credentials | not_leader | stopped."""
        out: dict[str, Any] = {"state": self._state, "mailbox": self.mailbox}
        if self._reason:
            out["reason"] = self._reason
        if self._last_success is not None:
            out["last_success"] = datetime.fromtimestamp(self._last_success, UTC).isoformat()
        if self._next_retry is not None and self._state in ("down", "needs_credentials"):
            out["retry_in_seconds"] = max(0.0, round(self._next_retry - time.time(), 1))
        if self._failures:
            out["failures"] = self._failures
        if self._uidvalidity is not None:
            out["uidvalidity"], out["last_uid"] = self._uidvalidity, self._last_uid
        if self.cfg.idle:
            out["idle"] = self._idle_state
        return out

    def _set_state(self, state: str, reason: str | None = None) -> None:
        self._state, self._reason = state, reason
        if self.metrics is not None:
            self.metrics.set_adapter_up("inbox", state == "ok")

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
            self._set_state("needs_credentials", str(e))
            log.error("inbox: login refused; retrying slowly", extra={"mailbox": self.mailbox, "reason": str(e)})
            self._schedule_at(CREDENTIALS_RETRY)
            return False
        except ConfigError as e:
            self._failures += 1
            self._set_state("down", str(e))
            log.error("inbox: configuration problem", extra={"mailbox": self.mailbox, "reason": str(e)})
            self._schedule_at(CREDENTIALS_RETRY)
            return False
        except Exception as e:  # network, server, store: back off and retry, forever
            self._failures += 1
            delay = backoff_delay(self._failures, BACKOFF_BASE, BACKOFF_MAX)
            reason = f"{type(e).__name__}: {e}"[:500]
            self._set_state("down", reason)
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

    async def _is_leader(self) -> bool:
        acquire = getattr(self.store, "try_acquire_leadership", None)
        if acquire is None:
            return True
        return bool(await acquire(self.leader_name))

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
            self._set_state("not_leader", "another replica holds the inbox lock")
            await self._call(self._mb.close)
            return None
        self._leader = True
        if not self._mb.connected:
            if self._state != "ok":
                self._set_state(self._state if self._state in ("down", "needs_credentials") else "connecting",
                                self._reason)
            await self._call(self._mb.connect)
        uidvalidity, uidnext = await self._call(self._mb.select)
        checkpoint = await self.store.get_checkpoint(self.mailbox)
        last = 0
        if checkpoint is not None:
            if checkpoint[0] == uidvalidity:
                last = int(checkpoint[1])
            else:
                log.warning("inbox: UIDVALIDITY changed; re-scanning every message (deduped by Message-ID)",
                            extra={"mailbox": self.mailbox, "reason": f"{checkpoint[0]} -> {uidvalidity}"})
        summary = PollSummary()
        if checkpoint is None and since is None and getattr(self.cfg, "start", "all") == "now":
            # First contact with this mailbox: start from here, never auto-answer old mail.
            start_uid = max(int(uidnext or 1) - 1, 0)
            await self.store.set_checkpoint(self.mailbox, uidvalidity, start_uid)
            log.info("inbox: first start; taking mail from now on (older mail: leadbox backfill)",
                     extra={"mailbox": self.mailbox, "reason": f"uidvalidity={uidvalidity} uid={start_uid}"})
            self._uidvalidity, self._last_uid = uidvalidity, start_uid
            self._last_success = time.time()
            self._set_state("ok")
            return summary
        todo: list[int] = []
        if since is not None and last:
            old = await self._call(self._search_since, since)
            todo = [u for u in old if u <= last]
        if not (uidnext and uidnext - 1 <= last):  # UIDNEXT says there is something new
            todo += await self._call(self._mb.new_uids, last)
        await self._process(todo, uidvalidity, summary, progress)
        self._uidvalidity = uidvalidity
        self._last_uid = max([last, *todo]) if todo else last
        self._failures = 0
        self._next_retry = None
        self._last_success = time.time()
        self._set_state("ok")
        if self.metrics is not None:
            self.metrics.inbox_polled(self.mailbox)
        return summary

    def _search_since(self, since: date) -> list[int]:
        """UIDs of mail whose INTERNALDATE is on or after ``since`` (IMAP thread)."""
        with self._mb._guard("search since"):  # noqa: SLF001 - the adapter's own error mapping
            uids = self._mb.client.search(["SINCE", since])
        return sorted(int(u) for u in uids)

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

    async def _fetch_and_parse(self, uids: list[int]) -> list[_Fetched]:
        items: list[_Fetched] = await self._call(self._fetch_batch, uids)
        have = [it for it in items if it.raw is not None]
        if have:
            parsed = await self._parse([it.raw for it in have if it.raw is not None])
            for it, p in zip(have, parsed, strict=True):
                it.parsed = p
        return items

    def _fetch_batch(self, uids: list[int]) -> list[_Fetched]:
        """Sizes first, then BODY.PEEK[] for the ones under the cap (IMAP thread).

        A UID missing from the answers was expunged meanwhile: there is nothing to take.
        """
        sizes = self._mb.sizes(uids)
        limit = self.cfg.max_message_bytes
        small = [u for u in uids if u in sizes and sizes[u] <= limit]
        big = [u for u in uids if u in sizes and sizes[u] > limit]
        bodies = self._mb.fetch(small) if small else {}
        ids = self._header_message_ids(big) if big else {}
        out = []
        for u in uids:
            if u in bodies:
                out.append(_Fetched(u, sizes[u], raw=bodies[u]))
            elif u in big:
                out.append(_Fetched(u, sizes[u], message_id=ids.get(u)))
        return out

    def _header_message_ids(self, uids: list[int]) -> dict[int, str]:
        """Message-IDs of too-large mail, fetched alone so the body is never downloaded."""
        key = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"
        with self._mb._guard("fetch message-id"):  # noqa: SLF001
            data = self._mb.client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        out = {}
        for uid, d in data.items():
            text = (d.get(key) or b"").decode("ascii", "replace")
            value = text.partition(":")[2].strip()
            if value:
                out[int(uid)] = " ".join(value.split())
        return out

    async def _parse(self, raws: list[bytes]) -> list[ParsedEmail]:
        """Parse in worker processes for a backlog, in a thread for a trickle."""
        loop = asyncio.get_running_loop()
        if len(raws) >= PROCESS_PARSE_MIN and self._parse_workers > 1 and not self._stopping:
            pool = self._process_pool()
            n = self._parse_workers
            step = math.ceil(len(raws) / n)
            chunks = [raws[i:i + step] for i in range(0, len(raws), step)]
            try:
                parts = await asyncio.gather(
                    *(loop.run_in_executor(pool, _parse_many, c, self._parse_opts) for c in chunks))
                return [p for part in parts for p in part]
            except Exception as e:  # noqa: BLE001 - a broken pool must not stop intake
                log.warning("inbox: parse workers failed; parsing in a thread",
                            extra={"reason": f"{type(e).__name__}: {e}"})
                self._parse_workers = 1
        return await asyncio.to_thread(_parse_many, raws, self._parse_opts)

    def _process_pool(self) -> ProcessPoolExecutor:
        if self._parse_pool is None:
            # spawn, not fork: this process has threads (IMAP, SQLite, IDLE).
            ctx = multiprocessing.get_context("spawn")
            self._parse_pool = ProcessPoolExecutor(max_workers=self._parse_workers, mp_context=ctx)
        return self._parse_pool

    async def _store_batch(self, items: list[_Fetched], uidvalidity: int, summary: PollSummary) -> None:
        """Make the messages durable (checkpoint included), then apply the after-actions.

        The whole batch in one transaction when the store can (``intake_emails``);
        otherwise, or when the batch cannot be written as a whole for a reason that
        is not the store being down, one message at a time.
        """
        if self._stopping or not items:
            return
        taken: list[int] = []
        quarantined: list[int] = []
        batch = await self._intake_batch(items, uidvalidity)
        for n, it in enumerate(items):
            if batch is not None:
                outcome = batch[n]
            else:
                if self._stopping:
                    break
                outcome = await self._intake_one(it, uidvalidity)
            summary.fetched += 1
            if outcome == "lead":
                summary.leads += 1
                taken.append(it.uid)
            elif outcome == "interaction":
                summary.interactions += 1
                taken.append(it.uid)
            elif outcome == "quarantined":
                summary.quarantined += 1
                quarantined.append(it.uid)
            elif outcome == "already_seen":
                summary.already_seen += 1
            else:
                summary.skipped += 1
            if self.metrics is not None:
                self.metrics.inbox_message(self.mailbox, outcome)
        if taken and self.on_intake is not None:
            self.on_intake()
        if taken or quarantined:
            self._io.submit(self._after_actions, taken, quarantined)

    async def _intake_batch(self, items: list[_Fetched], uidvalidity: int) -> list[str] | None:
        """Record a fetched batch in one store transaction; the outcome name per message.

        None means "do it one message at a time": the store has no ``intake_emails``,
        a message cannot be turned into a lead (the one-by-one path counts its
        failures and quarantines it), or the store refused the batch for a reason
        that is not an outage. Nothing was recorded then: the batch is all or nothing.
        """
        intake_emails = getattr(self.store, "intake_emails", None)
        if intake_emails is None:
            return None
        entries: list[EmailIntake] = []
        notes: list[tuple[int, str] | None] = []  # what to log once the batch is durable
        for it in items:
            p = it.parsed
            key = dedupe_key(p, it.raw, it.message_id)
            note: tuple[int, str] | None = None
            if p is None:
                reason = f"too-large: {it.size} bytes (limit {self.cfg.max_message_bytes})"
                entry = EmailIntake(None, self.mailbox, uidvalidity, it.uid, key, skip_reason=reason)
                note = (logging.INFO, "inbox: skipped")
            elif p.quarantine:
                entry = EmailIntake(None, self.mailbox, uidvalidity, it.uid, key,
                                    skip_reason=p.skip_reason, raw=it.raw)
                note = (logging.WARNING, "inbox: quarantined")
            elif p.skip_reason:
                entry = EmailIntake(None, self.mailbox, uidvalidity, it.uid, key, skip_reason=p.skip_reason)
                note = (logging.INFO, "inbox: not a lead")
            else:
                try:
                    item = to_lead_in(p)
                    if not item.clean_text and self.clean_text is not None:
                        item.clean_text = self.clean_text(item.message)
                except Exception:  # noqa: BLE001 - the one-by-one path decides about this message
                    return None
                entry = EmailIntake(item, self.mailbox, uidvalidity, it.uid, key)
            entries.append(entry)
            notes.append(note)
        try:
            results = await intake_emails(entries)
        except Exception as e:
            if isinstance(e, TransientError | OSError | LeadboxError) or self._is_store_down(e):
                raise  # the store or the network: stop here, the checkpoint is safe
            log.warning("inbox: batch intake failed; retrying it one message at a time",
                        extra={"mailbox": self.mailbox, "reason": f"{type(e).__name__}: {e}"[:300]})
            return None
        outcomes: list[str] = []
        for entry, note, result in zip(entries, notes, results, strict=True):
            if note is not None:
                outcome = "quarantined" if entry.raw is not None else "skipped"
                log.log(note[0], note[1], extra={"mailbox": self.mailbox, "reason": entry.skip_reason})
            elif result is None:
                outcome = "already_seen"
            else:
                outcome = "interaction" if result.duplicate else "lead"
                if self.metrics is not None:
                    if result.duplicate:
                        self.metrics.duplicate("email")
                    else:
                        self.metrics.lead_received("email")
            outcomes.append(outcome)
        return outcomes

    async def _intake_one(self, it: _Fetched, uidvalidity: int) -> str:
        """Record one message; the outcome name (lead, interaction, skipped, quarantined, already_seen)."""
        p = it.parsed
        key = dedupe_key(p, it.raw, it.message_id)
        common: dict[str, Any] = {"mailbox": self.mailbox, "uidvalidity": uidvalidity, "uid": it.uid,
                                  "dedupe_key": key}
        if p is None:
            reason = f"too-large: {it.size} bytes (limit {self.cfg.max_message_bytes})"
            await self.store.intake_email(None, skip_reason=reason, **common)
            log.info("inbox: skipped", extra={"mailbox": self.mailbox, "reason": reason})
            return "skipped"
        if p.quarantine:
            await self.store.intake_email(None, skip_reason=p.skip_reason, raw=it.raw, **common)
            log.warning("inbox: quarantined", extra={"mailbox": self.mailbox, "reason": p.skip_reason})
            return "quarantined"
        if p.skip_reason:
            await self.store.intake_email(None, skip_reason=p.skip_reason, **common)
            log.info("inbox: not a lead", extra={"mailbox": self.mailbox, "reason": p.skip_reason})
            return "skipped"
        try:
            item = to_lead_in(p)
            if not item.clean_text and self.clean_text is not None:
                item.clean_text = self.clean_text(item.message)
            result = await self.store.intake_email(item, **common)
        except Exception as e:
            if isinstance(e, TransientError | OSError | LeadboxError) or self._is_store_down(e):
                raise  # the store or the network: stop here, the checkpoint is safe
            n = self._intake_failures.get(key, 0) + 1
            self._intake_failures[key] = n
            if n < MAX_INTAKE_FAILURES:
                raise
            reason = f"unparseable: intake failed {n} times: {type(e).__name__}: {e}"[:300]
            await self.store.intake_email(None, skip_reason=reason, raw=it.raw, **common)
            log.error("inbox: quarantined after repeated failures", extra={"mailbox": self.mailbox, "reason": reason})
            self._intake_failures.pop(key, None)
            return "quarantined"
        if result is None:
            return "already_seen"
        if self.metrics is not None:
            if result.duplicate:
                self.metrics.duplicate("email")
            else:
                self.metrics.lead_received("email")
        return "interaction" if result.duplicate else "lead"

    @staticmethod
    def _is_store_down(e: BaseException) -> bool:
        """Database driver errors about the connection: retry the poll, do not blame the message."""
        name = type(e).__name__
        return name in {"OperationalError", "InterfaceError", "ConnectionError", "PoolTimeout"}

    def _after_actions(self, taken: list[int], quarantined: list[int]) -> None:
        """seen | move | label for leads, quarantine folder for unparseable mail (IMAP thread).

        Best effort by design: the records are durable and the checkpoint is past
        these UIDs, so a failure here only leaves a mail looking unprocessed.
        """
        if not self._mb.connected:
            return
        after = self.cfg.after
        try:
            if taken:
                if after == "seen":
                    self._mb.mark_seen(taken)
                elif after == "move":
                    self._mb.move(taken, self.cfg.move_to)
                else:
                    self._mb.add_label(taken, self.cfg.label)
        except Exception as e:  # noqa: BLE001
            log.warning("inbox: after-action failed; the mail stays where it is (nothing is lost)",
                        extra={"mailbox": self.mailbox, "reason": f"{after}: {type(e).__name__}: {e}"})
        try:
            if quarantined:
                self._mb.move(quarantined, self.cfg.quarantine_folder)
        except Exception as e:  # noqa: BLE001
            log.warning("inbox: could not move quarantined mail; its raw copy is in the store",
                        extra={"mailbox": self.mailbox, "reason": f"{type(e).__name__}: {e}"})

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
                    self._idle_once(mb)
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

    def _idle_once(self, mb: ImapMailbox) -> None:
        """One IDLE command, ended after ``idle_renew`` seconds (or on stop) and re-issued."""
        client = mb.client
        client.idle()
        deadline = time.monotonic() + self.idle_renew
        try:
            while not self._idle_stop.is_set() and time.monotonic() < deadline:
                responses = client.idle_check(timeout=IDLE_TICK)
                if any(len(r) >= 2 and r[1] == b"EXISTS" for r in responses):
                    self.idle_events += 1
                    self._trigger_poll()
        finally:
            client.idle_done()

    def _trigger_poll(self) -> None:
        loop = self._loop
        if loop is not None and not self._stopping:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self.poll_now)
