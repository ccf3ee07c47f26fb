"""Prometheus metrics for leadbox, served at ``/metrics``.

Every metric lives in a ``CollectorRegistry`` owned by one ``Metrics`` object rather
than in prometheus_client's global registry: the app builds one at start-up and
hands it to whoever counts, and tests can build as many apps as they like without
"Duplicated timeseries" errors. All names start with ``leadbox_``.

Label values must come from small fixed sets (intakes, steps, states, categories,
route templates such as ``/leads/{id}``), never from user input such as an email
address or a raw path: each distinct value is a new time series kept forever.

This module does no I/O and knows nothing of aiohttp; the route handler calls
``render()`` and sends the bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.core.models import FINAL_STATES

__all__ = ["CIRCUIT_STATES", "INTAKES", "STEPS", "Metrics"]

STEPS: tuple[str, ...] = ("classify", "store", "mirror", "reply")
INTAKES: tuple[str, ...] = ("webhook", "email")

# The gauge value of each circuit-breaker state (names as agent.classifiers.breaker spells them).
CIRCUIT_STATES: dict[str, int] = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}

# Step latencies range from a millisecond (SQLite write) to tens of seconds (an LLM or
# SMTP server having a bad day); the default buckets stop at 10 s.
STEP_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


class _QueueDepthCollector(Collector):
    """``leadbox_queue_depth``: leads not yet in a final state.

    The value is either the last one set, or, when a callback is registered, asked
    for at scrape time so it is never stale. A failing callback must not break the
    whole scrape, so it falls back to the last known value.
    """

    def __init__(self) -> None:
        self.value: float = 0.0
        self.callback: Callable[[], float] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.callback is not None:
            try:
                self.value = float(self.callback())
            except Exception:  # noqa: BLE001 - keep the last value; /readyz reports the store itself
                pass
        yield GaugeMetricFamily(
            "leadbox_queue_depth",
            "Leads waiting in a non-final state (received, classified, saved, mirrored).",
            value=self.value,
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("leadbox_queue_depth", "Leads waiting in a non-final state.")


class Metrics:
    """Every leadbox metric, in a registry of its own.

    The attributes are the prometheus_client objects themselves (use them directly
    for anything the helpers do not cover); the helper methods exist so callers do
    not repeat label names and so label values are normalised in one place.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, str], Any] = {}
        r = self.registry
        self.leads_received = Counter(
            "leadbox_leads_received", "New leads accepted, by intake.", ["intake"], registry=r
        )
        self.leads_processed = Counter(
            "leadbox_leads_processed",
            "Leads that reached a final state (outcome: replied, skipped, failed), by category.",
            ["outcome", "category"],
            registry=r,
        )
        self.alerts = Counter(
            "leadbox_alerts", "Team alert attempts, by channel (webhook, email, digest) and outcome "
            "(sent, retry, failed).", ["channel", "outcome"], registry=r,
        )
        self.duplicates = Counter(
            "leadbox_duplicates",
            "Contacts from an already known address, kept as interactions.",
            ["intake"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "leadbox_step_seconds",
            "Time spent in one attempt of a pipeline step.",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "leadbox_retries", "Step attempts that failed transiently and were rescheduled.",
            ["step"], registry=r,
        )
        self.failures = Counter(
            "leadbox_failures", "Steps that failed for good (the lead is parked as failed).",
            ["step"], registry=r,
        )
        self.reply_failures = Counter(
            "leadbox_reply_failures", "Auto-replies that could not be sent.", registry=r
        )
        self.replies_sent = Counter(
            "leadbox_replies_sent", "Auto-replies sent, by transport.", ["transport"], registry=r
        )
        self.reply_paused = Gauge(
            "leadbox_reply_paused",
            "1 while the mail server's quota or throttling pauses replies (see /readyz), else 0.",
            registry=r,
        )
        self.inbox_last_success = Gauge(
            "leadbox_inbox_last_success_timestamp_seconds",
            "Unix time of the last successful poll of a mailbox.",
            ["mailbox"],
            registry=r,
        )
        self.inbox_messages = Counter(
            "leadbox_inbox_messages",
            "Inbox messages seen, by outcome (lead, duplicate, skipped, quarantined, ...).",
            ["mailbox", "outcome"],
            registry=r,
        )
        self.llm_tokens = Counter(
            "leadbox_llm_tokens", "Tokens used by the LLM classifier (prompt + completion).",
            registry=r,
        )
        self.llm_circuit_state = Gauge(
            "leadbox_llm_circuit_state",
            "LLM circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["backend"],
            registry=r,
        )
        self.adapter_up = Gauge(
            "leadbox_adapter_up", "1 when an adapter is usable, 0 when not.", ["adapter"],
            registry=r,
        )
        self.http_requests = Counter(
            "leadbox_http_requests", "HTTP requests answered, by route template and status.",
            ["route", "status"], registry=r,
        )
        self._llm_tokens_seen = 0
        self._queue_depth = _QueueDepthCollector()
        r.register(self._queue_depth)

        # Known label values start at zero, so rate() and absent() work from the first scrape.
        for intake in INTAKES:
            self.leads_received.labels(intake=intake)
            self.duplicates.labels(intake=intake)
        for step in STEPS:
            self.step_seconds.labels(step=step)
            self.retries.labels(step=step)
            self.failures.labels(step=step)

    # -- exposition ---------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type, for the /metrics route.

        The content type carries ``charset=``, so send it as a header
        (``web.Response(body=..., headers={"Content-Type": ct})``): aiohttp refuses a
        charset inside its ``content_type`` argument.
        """
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- intake -----------------------------------------------------------------------

    def lead_received(self, intake: str) -> None:
        """A new lead was durably recorded by an intake."""
        self._bound(self.leads_received, intake).inc()

    def duplicate(self, intake: str) -> None:
        """A contact from a known address was kept as an interaction, not a new lead."""
        self._bound(self.duplicates, intake).inc()

    def _bound(self, metric: Counter, intake: str) -> Any:
        """The labelled child, cached: ``labels()`` takes a lock and ~2 us per webhook request."""
        key = (id(metric), intake)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(intake=intake)
        return child

    # -- pipeline ---------------------------------------------------------------------

    def lead_processed(self, outcome: str, category: str | None) -> None:
        """A lead reached a final state; ``category`` None (never classified) shows as "none"."""
        self.leads_processed.labels(outcome=str(outcome), category=str(category or "none")).inc()

    def observe_step(self, step: str, seconds: float) -> None:
        """Record how long one attempt of ``step`` took."""
        self.step_seconds.labels(step=step).observe(max(0.0, seconds))

    @contextmanager
    def time_step(self, step: str) -> Iterator[None]:
        """Time the block as one attempt of ``step``, whether it succeeds or raises.

        Failed attempts are timed too: a backend that fails slowly is exactly what the
        histogram should show. Counting the failure is the caller's job (``retry`` or
        ``failure``), because only the caller knows which it was.
        """
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_step(step, time.perf_counter() - start)

    def retry(self, step: str) -> None:
        """A step failed transiently and will be tried again."""
        self.retries.labels(step=step).inc()

    def failure(self, step: str) -> None:
        """A step failed for good; its lead is parked as failed."""
        self.failures.labels(step=step).inc()

    def alert(self, channel: str, outcome: str) -> None:
        self.alerts.labels(channel=channel, outcome=outcome).inc()

    def reply_sent(self, transport: str) -> None:
        self.replies_sent.labels(transport=transport).inc()

    def reply_failed(self) -> None:
        self.reply_failures.inc()

    def set_reply_paused(self, paused: bool) -> None:
        self.reply_paused.set(1 if paused else 0)

    # -- queue depth --------------------------------------------------------------

    def set_queue_depth(self, depth: float) -> None:
        """Set the queue depth directly (ignored while a callback is registered)."""
        self._queue_depth.value = float(depth)

    def set_store_counts(self, counts: Mapping[str, int]) -> None:
        """Derive the queue depth from ``Store.counts()`` (leads per state).

        The store is async and ``render()`` is not, so the /metrics handler awaits
        ``store.counts()`` and passes the result here before rendering.
        """
        final = {str(s) for s in FINAL_STATES}
        self.set_queue_depth(sum(n for state, n in counts.items() if str(state) not in final))

    def set_queue_depth_callback(self, callback: Callable[[], float] | None) -> None:
        """Ask ``callback`` for the queue depth at every scrape (None to stop)."""
        self._queue_depth.callback = callback

    @property
    def queue_depth(self) -> float:
        """The value the next scrape shows (without calling the callback)."""
        return self._queue_depth.value

    # -- inbox, LLM, adapters, HTTP -------------------------------------------------------

    def inbox_polled(self, mailbox: str, when: float | None = None) -> None:
        """A poll of ``mailbox`` succeeded (``when`` defaults to now, as Unix time)."""
        self.inbox_last_success.labels(mailbox=mailbox).set(time.time() if when is None else when)

    def inbox_message(self, mailbox: str, outcome: str) -> None:
        self.inbox_messages.labels(mailbox=mailbox, outcome=outcome).inc()

    def add_llm_tokens(self, tokens: int | None) -> None:
        """Add the tokens an LLM call reported; None or 0 (no usage reported) adds nothing."""
        if tokens and tokens > 0:
            self.llm_tokens.inc(tokens)

    def set_llm_tokens(self, total: int) -> None:
        """Follow a classifier's running token total while keeping the metric a counter.

        Only the growth since the last call is added. A total lower than before means
        the classifier was rebuilt and counts from zero again, so all of it is new.
        """
        last = self._llm_tokens_seen
        self._llm_tokens_seen = total
        grown = total - last if total >= last else total
        if grown > 0:
            self.llm_tokens.inc(grown)

    def set_circuit_state(self, backend: str, state: str | int) -> None:
        """Record a breaker's state: "closed", "half-open" or "open" (or 0, 1, 2)."""
        if isinstance(state, str):
            key = str(state).lower()
            if key not in CIRCUIT_STATES:
                raise ValueError(f"unknown circuit state {state!r}; use closed, half-open or open")
            value = CIRCUIT_STATES[key]
        else:
            value = int(state)
        self.llm_circuit_state.labels(backend=backend).set(value)

    def set_adapter_up(self, adapter: str, up: bool) -> None:
        self.adapter_up.labels(adapter=adapter).set(1 if up else 0)

    def http_request(self, route: str, status: int) -> None:
        """Count an answered request; ``route`` is the template (``/leads/{id}``), not the path."""
        self.http_requests.labels(route=route, status=str(status)).inc()
