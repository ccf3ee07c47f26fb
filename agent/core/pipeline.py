"""The pipeline is data: an ordered list of named steps. Reading STEPS tells the flow.

    received --classify--> classified --prioritize--> saved --mirror--> mirrored --reply--> replied | skipped

Each step is idempotent and only moves a lead forward from one state. Decisions
(loop protection, priority) are pure functions elsewhere; steps carry out the
side effects. A stop ("spam, no reply") is an outcome with a reason, not an error.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from agent.core.alerts import AlertPolicy
from agent.core.loop_guard import reply_block_reason
from agent.core.mirror_ledger import MirrorLedger
from agent.core.models import Category, Lead, State
from agent.core.ports import Classifier, MailTransport, Mirror, NoMetrics, PipelineMetrics, Store
from agent.core.priority import PriorityRules
from agent.core.replies import Templates, compose_reply, reply_message_id
from agent.core.settle import FOUND
from agent.core.states import GateNote, GatePrior, LedgerStatus, MirrorStatus, ReplyStatus
from agent.core.text import classifier_text
from agent.core.validation import mailbox_key
from agent.errors import Deferred, DeliveryUncertain, PermanentError, TransientError

log = logging.getLogger("leadbox.pipeline")


@dataclass
class ReplyPolicy:
    enabled: bool
    from_address: str
    from_name: str
    domain: str
    window_hours: float
    max_per_hour: int
    include_summary: bool
    own_addresses: frozenset[str]
    category_labels: dict[str, str]
    company_name: str = ""
    max_per_day: int = 0  # rolling 24 hours; 0 = no cap
    max_delay_hours: float = 0.0  # a reply later than this after the lead is skipped; 0 = never
    # inbox.mailboxes: a lead's reply comes from the from_address of the mailbox it wrote to.
    from_by_mailbox: dict[str, str] = field(default_factory=dict)

    def sender(self, lead: Lead) -> str:
        """The From address of this lead's reply: its mailbox's, else reply.from_address."""
        return self.from_by_mailbox.get(lead.mailbox or "", self.from_address)

    def caps(self) -> dict[str, tuple[float, int]]:
        """Skip reason of each cap the store may answer -> (window seconds, cap); 0 = none."""
        return {"reply-cap": (3600.0, self.max_per_hour), "reply-cap-day": (86400.0, self.max_per_day)}

    def too_late(self, lead: Lead, when: float) -> bool:
        """Would a reply sent at ``when`` come later than ``max_delay_hours`` after the lead?"""
        return bool(self.max_delay_hours) and when > lead.created_at.timestamp() + self.max_delay_hours * 3600


@dataclass
class Services:
    """Everything a step may use, constructed in one place (Daemon.start)."""

    store: Store
    classifier: Classifier
    local_classifier: Classifier
    rules: PriorityRules
    transport: MailTransport
    templates: Templates
    reply: ReplyPolicy
    mirror: Mirror | None = None
    mirror_ledger: MirrorLedger | None = None
    metrics: PipelineMetrics = field(default_factory=NoMetrics)
    # inbox.mailboxes with their own templates_dir: the lead's mailbox -> its templates.
    templates_by_mailbox: dict[str, Templates] = field(default_factory=dict)
    alerts: AlertPolicy | None = None  # [alerts]: which leads alert, on which channels


class Step(Protocol):
    """One step: it runs on leads in ``applies_to`` and moves them forward."""

    name: str
    applies_to: State
    # True for the step that asks a classifier: a paid (non-local) answer is written at once,
    # so a later failure of the lead does not pay for it twice.
    calls_classifier: bool
    # True when the step bounds its own concurrency (so the worker's limit need not).
    limits_itself: bool

    async def run(self, lead: Lead, svc: Services) -> None: ...


class Classify:
    """Category, summary and language. Loop-stopped leads only get the free local classifier."""

    name = "classify"
    applies_to = State.RECEIVED
    calls_classifier = True
    limits_itself = True  # the LLM adapter holds classifier.concurrency; local is CPU only

    async def run(self, lead: Lead, svc: Services) -> None:
        blocked = reply_block_reason(lead.email_norm, lead.auto_headers, own_addresses=svc.reply.own_addresses)
        clf = svc.local_classifier if blocked else svc.classifier
        if lead.clean_text is None:  # webhook leads: here, not in intake, keeps the webhook fast
            cleaned = classifier_text(lead.message)
            lead.clean_text = cleaned if cleaned != lead.message else None
        c = await clf.classify(lead.text_for_classifier, subject=lead.subject)
        lead.category, lead.summary, lead.language = c.category, c.summary, c.language
        lead.confidence, lead.classifier = c.confidence, c.classifier
        lead.needs_reclassify = c.needs_reclassify
        lead.state = State.CLASSIFIED


class Prioritize:
    """Priority from the configured rules; the lead records which rule decided."""

    name = "prioritize"
    applies_to = State.CLASSIFIED
    calls_classifier = False
    limits_itself = False

    async def run(self, lead: Lead, svc: Services) -> None:
        assert lead.category is not None
        d = svc.rules.decide(lead.category, lead.email_norm, lead.text_for_classifier)
        lead.priority, lead.priority_rule = d.priority, d.rule
        if svc.alerts is not None and (channels := svc.alerts.channels_for(lead)):
            # Before the step is recorded: a crash here repeats the step, and the insert is idempotent.
            await svc.store.enqueue_alerts(lead.id, channels, time.time())
        lead.state = State.SAVED


class MirrorRow:
    """Queue the lead's row and move on: the reply never waits for the sheet.

    The row's outcome is recorded when the mirror confirms it (``MirrorLedger``); a lead whose
    row could not be queued or written stays ``pending`` and is caught up by a job.
    """

    name = "mirror"
    applies_to = State.SAVED
    calls_classifier = False
    limits_itself = False

    async def run(self, lead: Lead, svc: Services) -> None:
        lead.state = State.MIRRORED
        if svc.mirror is None:
            lead.mirror_status = MirrorStatus.DISABLED
            return
        lead.mirror_status = MirrorStatus.PENDING
        try:
            confirmed = svc.mirror.submit(lead)
        except TransientError as e:
            log.info("mirror deferred", extra={"lead_id": lead.id, "reason": str(e)})
            return
        except PermanentError as e:
            lead.mirror_status = MirrorStatus.ERROR
            log.warning("mirror refused", extra={"lead_id": lead.id, "reason": str(e)})
            return
        if svc.mirror_ledger is None:
            svc.mirror_ledger = MirrorLedger(svc.store)
        confirmed.add_done_callback(functools.partial(svc.mirror_ledger.note, lead))


def reply_skip_reason(lead: Lead, policy: ReplyPolicy) -> str | None:
    """Pure checks: why this lead gets no auto-reply, or None."""
    if not policy.enabled:
        return "replies-disabled"
    if lead.category is Category.SPAM:
        return "spam"
    return reply_block_reason(lead.email_norm, lead.auto_headers, own_addresses=policy.own_addresses)


class Reply:
    """The automatic answer, exactly once: a ledger row is written before sending.

    Over a reply cap, or while the mail transport is paused by the server's limits, the lead
    waits (``reply_status = "waiting"``): Deferred tells the worker when to try again, and no
    attempt is spent. A reply that could only go out past ``max_delay_hours`` is skipped.
    """

    name = "reply"
    applies_to = State.MIRRORED
    calls_classifier = False
    limits_itself = False

    async def run(self, lead: Lead, svc: Services) -> None:
        policy, store = svc.reply, svc.store
        reason = reply_skip_reason(lead, policy)
        now = datetime.now(UTC)
        mid = reply_message_id(lead, policy.domain)
        prior: GatePrior = None
        if reason is None:
            window = now - timedelta(hours=policy.window_hours) if policy.window_hours > 0 else None
            reason, prior = await store.reply_gate(
                lead.id, mailbox_key(lead.email_norm), mid, window_since=window.timestamp() if window else None,
                cap_since=(now - timedelta(hours=1)).timestamp(), cap=policy.max_per_hour,
                contact=lead.email_norm, day_since=(now - timedelta(days=1)).timestamp(),
                day_cap=policy.max_per_day)
            if reason in policy.caps():
                reason = await self._cap_wait(lead, svc, reason, now.timestamp())
        if reason is not None:
            self._skip(lead, reason)
            return
        if prior is GateNote.ELSEWHERE:
            raise TransientError("another attempt holds this reply; retrying later")
        if prior is GateNote.RESUMED:  # interrupted earlier: the transport may know it went out already
            sent = not svc.transport.commit_point and await svc.transport.was_sent(mid)
            prior = LedgerStatus.SENT if sent else None
        if prior is LedgerStatus.COMMITTING:  # interrupted at the point of no return
            known = await svc.transport.was_sent(mid)
            if known is None:
                await store.reply_done(lead.id, LedgerStatus.UNCERTAIN)
                prior = LedgerStatus.UNCERTAIN
            elif known:  # the mailbox has it (reply.settle): it went out before the interruption
                prior = LedgerStatus.SENT
                lead.reply_reason = f"{FOUND}: {mid} (looked up after an interruption)"
            else:
                prior = None
        if prior is LedgerStatus.UNCERTAIN:  # decided before (perhaps by a process that died since): keep it
            lead.reply_status, lead.reply_message_id = ReplyStatus.UNCERTAIN, mid
            lead.state = State.FAILED
            lead.last_error = ("reply outcome unknown after an interruption; not sent again to avoid "
                               "a duplicate (check the Sent folder)")
            return
        if prior not in (None, LedgerStatus.SENT):  # a ledger state this code does not know: never guess "sent"
            raise PermanentError(f"reply ledger in unexpected state {prior!r}")
        if prior is None:
            if policy.too_late(lead, now.timestamp()):  # waited (paused, capped, retried) too long
                await store.reply_done(lead.id, LedgerStatus.RETRY)
                self._skip(lead, "reply-too-late")
                return
            lead.replied_at = now
            templates = svc.templates_by_mailbox.get(lead.mailbox or "", svc.templates)
            msg = compose_reply(
                lead, templates, from_address=policy.sender(lead), from_name=policy.from_name,
                company_name=policy.company_name,
                domain=policy.domain, category_label=policy.category_labels.get(lead.category or "", ""),
                include_summary=policy.include_summary, now=now,
            )

            async def committing() -> None:
                await store.reply_done(lead.id, LedgerStatus.COMMITTING)

            async def accepted() -> None:
                await store.reply_done(lead.id, LedgerStatus.SENT)

            try:
                await svc.transport.send(msg, before_commit=committing, after_commit=accepted)
            except DeliveryUncertain as e:
                await store.reply_done(lead.id, LedgerStatus.UNCERTAIN)
                lead.reply_status, lead.reply_message_id = ReplyStatus.UNCERTAIN, mid
                lead.state, lead.last_error = State.FAILED, f"reply: {e}"
                svc.metrics.reply_failed()
                return
            except Deferred as e:  # the transport is paused by the server's limits: not sent
                await store.reply_done(lead.id, LedgerStatus.RETRY)
                lead.replied_at = None
                self._wait(lead, policy, e)
                self._skip(lead, "reply-too-late")
                return
            except (TransientError, PermanentError):
                await store.reply_done(lead.id, LedgerStatus.RETRY)
                svc.metrics.reply_failed()
                raise
            svc.metrics.reply_sent(svc.transport.name)
        # The ledger row is closed ("sent") with the lead's final update, in one transaction.
        lead.reply_status, lead.reply_message_id = ReplyStatus.SENT, mid
        lead.replied_at = lead.replied_at or now
        lead.state = State.REPLIED

    @staticmethod
    def _skip(lead: Lead, reason: str) -> None:
        lead.state, lead.skip_reason = State.SKIPPED, reason
        lead.reply_status, lead.reply_reason = ReplyStatus.SKIPPED, reason
        log.info("no reply", extra={"lead_id": lead.id, "reason": reason})

    @staticmethod
    def _wait(lead: Lead, policy: ReplyPolicy, e: Deferred) -> None:
        """Raise ``e`` for the worker (the lead waits), unless the reply would then come too late."""
        if policy.too_late(lead, e.until):
            return
        if lead.reply_status is not ReplyStatus.WAITING:
            log.info("reply waits", extra={"lead_id": lead.id, "reason": e.reason[:300]})
        lead.reply_status, lead.reply_reason = ReplyStatus.WAITING, e.reason[:300]
        raise e

    async def _cap_wait(self, lead: Lead, svc: Services, reason: str, now: float) -> str:
        """Over a reply cap: wait until the window frees a slot (Deferred), or 'reply-too-late'."""
        window, cap = svc.reply.caps()[reason]
        oldest = await svc.store.reply_cap_opens_at(now - window, cap, exclude_lead=lead.id)
        # A slot opens when the cap-th newest reply leaves the window; spread the waiting
        # leads over one slot's spacing so they do not all come back at the same instant.
        until = max((oldest or now) + window, now + 1.0) + random.uniform(0, window / max(cap, 1))
        self._wait(lead, svc.reply, Deferred(f"{reason}: {cap} replies in {window / 3600:g} h", until))
        return "reply-too-late"


STEPS: list[Step] = [Classify(), Prioritize(), MirrorRow(), Reply()]
