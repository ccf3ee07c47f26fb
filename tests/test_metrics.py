"""/metrics output parses as Prometheus text, is all leadbox_*, and moves with events."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.app.metrics import Metrics
from agent.core.models import State


def scrape(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse render() as Prometheus would; samples keyed by (name, sorted labels)."""
    payload, content_type = m.render()
    assert content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(payload.decode("utf-8")):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(m: Metrics, name: str, **labels: str) -> float:
    return scrape(m).get((name, tuple(sorted(labels.items()))), 0.0)


def test_render_parses_and_every_family_is_leadbox() -> None:
    m = Metrics()
    m.lead_received("webhook")
    m.set_circuit_state("openai", "open")
    payload, _ = m.render()
    families = list(text_string_to_metric_families(payload.decode()))
    names = {f.name for f in families}
    assert names, "no metrics rendered"
    assert all(name.startswith("leadbox_") for name in names), names
    for expected in (
        "leadbox_leads_received", "leadbox_leads_processed", "leadbox_duplicates",
        "leadbox_step_seconds", "leadbox_queue_depth", "leadbox_retries", "leadbox_failures",
        "leadbox_reply_failures", "leadbox_replies_sent",
        "leadbox_inbox_last_success_timestamp_seconds", "leadbox_inbox_messages",
        "leadbox_llm_tokens", "leadbox_llm_circuit_state", "leadbox_adapter_up",
        "leadbox_http_requests",
    ):
        assert expected in names, expected


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.lead_received("webhook")
    assert value(a, "leadbox_leads_received_total", intake="webhook") == 1
    assert value(b, "leadbox_leads_received_total", intake="webhook") == 0


def test_known_series_exist_at_zero_from_the_start() -> None:
    samples = scrape(Metrics())
    assert samples[("leadbox_leads_received_total", (("intake", "email"),))] == 0
    assert samples[("leadbox_step_seconds_count", (("step", "classify"),))] == 0
    assert samples[("leadbox_failures_total", (("step", "reply"),))] == 0


def test_counters_move() -> None:
    m = Metrics()
    m.lead_received("webhook")
    m.lead_received("webhook")
    m.lead_received("email")
    m.duplicate("webhook")
    m.lead_processed("replied", "sales")
    m.lead_processed(State.SKIPPED, None)
    m.retry("mirror")
    m.failure("reply")
    m.reply_failed()
    m.reply_sent("outbox")
    m.inbox_message("INBOX", "lead")
    m.add_llm_tokens(120)
    m.add_llm_tokens(None)
    m.http_request("/leads", 202)
    s = scrape(m)
    assert s[("leadbox_leads_received_total", (("intake", "webhook"),))] == 2
    assert s[("leadbox_leads_received_total", (("intake", "email"),))] == 1
    assert s[("leadbox_duplicates_total", (("intake", "webhook"),))] == 1
    assert s[("leadbox_leads_processed_total", (("category", "sales"), ("outcome", "replied")))] == 1
    assert s[("leadbox_leads_processed_total", (("category", "none"), ("outcome", "skipped")))] == 1
    assert s[("leadbox_retries_total", (("step", "mirror"),))] == 1
    assert s[("leadbox_failures_total", (("step", "reply"),))] == 1
    assert s[("leadbox_reply_failures_total", ())] == 1
    assert s[("leadbox_replies_sent_total", (("transport", "outbox"),))] == 1
    assert s[("leadbox_inbox_messages_total", (("mailbox", "INBOX"), ("outcome", "lead")))] == 1
    assert s[("leadbox_llm_tokens_total", ())] == 120
    assert s[("leadbox_http_requests_total", (("route", "/leads"), ("status", "202")))] == 1


def test_step_timing_counts_successes_and_failures() -> None:
    m = Metrics()
    m.observe_step("store", 0.02)
    with m.time_step("classify"):
        pass
    with pytest.raises(RuntimeError), m.time_step("classify"):
        raise RuntimeError("backend down")
    s = scrape(m)
    assert s[("leadbox_step_seconds_count", (("step", "classify"),))] == 2
    assert s[("leadbox_step_seconds_count", (("step", "store"),))] == 1
    assert s[("leadbox_step_seconds_sum", (("step", "store"),))] == pytest.approx(0.02)
    assert s[("leadbox_step_seconds_bucket", (("le", "0.025"), ("step", "store")))] == 1
    assert s[("leadbox_step_seconds_bucket", (("le", "0.01"), ("step", "store")))] == 0


def test_gauges() -> None:
    m = Metrics()
    m.set_circuit_state("openai", "half-open")
    m.set_adapter_up("sheets", False)
    m.set_adapter_up("inbox", True)
    m.inbox_polled("INBOX", when=1_700_000_000.0)
    assert value(m, "leadbox_llm_circuit_state", backend="openai") == 1
    m.set_circuit_state("openai", "open")
    assert value(m, "leadbox_llm_circuit_state", backend="openai") == 2
    m.set_circuit_state("openai", "closed")
    assert value(m, "leadbox_llm_circuit_state", backend="openai") == 0
    assert value(m, "leadbox_adapter_up", adapter="sheets") == 0
    assert value(m, "leadbox_adapter_up", adapter="inbox") == 1
    assert value(m, "leadbox_inbox_last_success_timestamp_seconds", mailbox="INBOX") == 1.7e9
    with pytest.raises(ValueError, match="ajar"):
        m.set_circuit_state("openai", "ajar")


def test_queue_depth_from_store_counts() -> None:
    m = Metrics()
    m.set_store_counts({"received": 3, "classified": 1, "saved": 2, "mirrored": 1,
                        "replied": 50, "skipped": 4, "failed": 2})
    assert value(m, "leadbox_queue_depth") == 7
    m.set_store_counts({"replied": 9})
    assert value(m, "leadbox_queue_depth") == 0


def test_queue_depth_callback_is_read_at_scrape_time_and_survives_errors() -> None:
    m = Metrics()
    depth = {"n": 5}
    m.set_queue_depth_callback(lambda: depth["n"])
    assert value(m, "leadbox_queue_depth") == 5
    depth["n"] = 8
    assert value(m, "leadbox_queue_depth") == 8

    def broken() -> float:
        raise ConnectionError("store down")

    m.set_queue_depth_callback(broken)
    assert value(m, "leadbox_queue_depth") == 8  # last known value, scrape still works
    m.set_queue_depth_callback(None)
    m.set_queue_depth(2)
    assert value(m, "leadbox_queue_depth") == 2


def test_llm_token_total_is_followed_as_a_counter() -> None:
    m = Metrics()
    m.set_llm_tokens(100)
    m.set_llm_tokens(100)  # no new usage
    m.set_llm_tokens(250)
    assert value(m, "leadbox_llm_tokens_total") == 250
    m.set_llm_tokens(40)  # the classifier was rebuilt and counts from zero
    assert value(m, "leadbox_llm_tokens_total") == 290
    m.add_llm_tokens(10)
    assert value(m, "leadbox_llm_tokens_total") == 300
