"""States and outcomes are enums; the SQL lists, filters and the reply gate derive from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.states import LEDGER_COUNTED, LEDGER_RESUMABLE, LedgerStatus
from agent.errors import PermanentError
from agent.stores import common
from agent.stores.postgres.schema import MIGRATIONS as PG_MIGRATIONS
from agent.stores.sqlite import SqliteStore
from agent.stores.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS


@pytest.mark.parametrize("migrations", [SQLITE_MIGRATIONS, PG_MIGRATIONS], ids=["sqlite", "postgres"])
def test_partial_indexes_use_the_conditions_queries_derive(migrations: list[str]) -> None:
    """Queries repeat the index predicates word for word, or the planner ignores the index."""
    schema = " ".join(" ".join(migrations).split())
    assert f"ON leads(next_attempt_at) WHERE {common.ACTIVE};" in schema
    assert f"ON leads(id) WHERE {common.MIRROR_DUE};" in schema


def test_every_ledger_status_is_either_resumable_or_final_to_the_gate() -> None:
    assert set(LEDGER_RESUMABLE) | {LedgerStatus.COMMITTING, LedgerStatus.SENT, LedgerStatus.UNCERTAIN} == set(
        LedgerStatus)
    assert LedgerStatus.RETRY not in LEDGER_COUNTED  # a failed send does not use up the window


async def test_reply_gate_refuses_a_ledger_status_it_does_not_know(tmp_path: Path) -> None:
    """Never guess "sent" (or resend) from a row this code did not write."""
    store = SqliteStore(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    try:
        assert await store.reply_gate("L1", "a@example.com", "<m@x>", window_since=None,
                                      cap_since=0.0, cap=0) == (None, None)
        store.db.execute("UPDATE replies SET status = 'mystery' WHERE lead_id = 'L1'")
        with pytest.raises(PermanentError, match="mystery"):
            await store.reply_gate("L1", "a@example.com", "<m@x>", window_since=None, cap_since=0.0, cap=0)
        await store.reply_done("L1", LedgerStatus.RETRY)
        assert await store.reply_gate("L1", "a@example.com", "<m@x>", window_since=None,
                                      cap_since=0.0, cap=0) == (None, "resumed")
    finally:
        await store.close()


def test_health_is_what_readyz_shows_and_decides_readiness(tmp_path: Path) -> None:
    from agent.core.models import Health
    from agent.core.states import UNREADY, HealthState
    from agent.mail.outbox import OutboxTransport

    h = Health(HealthState.DOWN, "smtp unreachable", {"host": "mail:465"})
    assert h.as_json() == {"state": "down", "reason": "smtp unreachable", "host": "mail:465"}
    assert [s for s in HealthState if not Health(s).ready] == list(UNREADY)
    assert Health(HealthState.PAUSED).ready and Health(HealthState.NOT_LEADER).ready
    # A real adapter: an outbox folder that cannot exist is down, with the reason.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    down = OutboxTransport(blocker / "outbox").health()
    assert down.state is HealthState.DOWN and not down.ready and down.reason
    assert OutboxTransport(tmp_path / "outbox").health().as_json()["state"] == "ok"
