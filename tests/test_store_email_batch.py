"""``intake_emails``: a fetched batch of inbox messages in one transaction, on both stores.

The contract: writing a batch gives exactly what calling ``intake_email`` for each
message, in order, gives (results, inbox records, leads and interactions, the
checkpoint), and a batch that fails is not written at all. Random sequences of
batches are checked against a small model of the one-by-one semantics, and the
same model is checked against ``intake_email`` itself, so the two methods cannot
drift apart without a failure here. Every test runs on SQLite and PostgreSQL
(``store_url``, tests/fixtures/postgres.py).

The last section drives the InboxPoller against the Dovecot fixture to check that
it writes one transaction per fetched batch and falls back to one message at a
time when the store rejects a batch.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from agent.app.metrics import Metrics
from agent.config import Config, load_config
from agent.core.models import EmailIntake, IntakeResult, LeadIn, checkpoint_steps
from agent.intake.inbox import InboxPoller
from agent.stores.postgres import PostgresStore
from agent.stores.sqlite import SqliteStore
from tests.fixtures.daemon import ROOT, base_env
from tests.fixtures.mailservers import DovecotServer


def make_store(url: str) -> Any:
    return PostgresStore(url, pool_size=4) if url.startswith("postgresql://") else SqliteStore(url)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Any]:
    s = make_store(store_url)
    await s.open()
    yield s
    await s.close()


def lead(email: str, message: str = "Hola, quiero una cotización") -> LeadIn:
    return LeadIn(name="Ana", email=email, email_norm=email.lower(), message=message, intake="email",
                  subject="Cotización", message_id=f"<{message}@x>")


def entry(key: str, uid: int, item: LeadIn | None = None, *, box: str = "box", uidvalidity: int = 7,
          skip_reason: str | None = None, raw: bytes | None = None) -> EmailIntake:
    return EmailIntake(item, box, uidvalidity, uid, key, skip_reason=skip_reason, raw=raw)


async def records(store: Any) -> dict[str, tuple[Any, ...]]:
    """Every inbox record: key -> (mailbox, uidvalidity, uid, outcome, reason, raw, lead email)."""
    q = ("SELECT m.dedupe_key, m.mailbox, m.uidvalidity, m.uid, m.outcome, m.reason, m.raw, l.email_norm "
         "FROM inbox_messages m LEFT JOIN leads l ON l.id = m.lead_id")
    if isinstance(store, SqliteStore):
        rows = [tuple(r) for r in store.db.execute(q)]
    else:
        async with store.pool.connection() as conn:
            rows = [tuple(r.values()) for r in await (await conn.execute(q)).fetchall()]
    return {r[0]: (r[1], int(r[2]), int(r[3]), r[4], r[5], bytes(r[6]) if r[6] is not None else None, r[7])
            for r in rows}


async def describe(store: Any, results: list[IntakeResult | None]) -> list[tuple[bool, str] | None]:
    """Results with lead ids replaced by the lead's email (ids are random)."""
    out: list[tuple[bool, str] | None] = []
    for r in results:
        if r is None:
            out.append(None)
        else:
            got = await store.get(r.lead_id)
            assert got is not None
            out.append((r.duplicate, got.email_norm))
    return out


# ------------------------------------------------------------------ a model of intake_email


@dataclass
class Model:
    """What ``intake_email`` called one message at a time does, in memory."""

    records: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    leads: dict[str, list[str]] = field(default_factory=dict)  # email -> [first message, *interactions]
    checkpoints: dict[str, tuple[int, int]] = field(default_factory=dict)

    def apply(self, e: EmailIntake) -> tuple[bool, str] | None:
        result: tuple[bool, str] | None = None
        if e.dedupe_key not in self.records:
            if e.item is not None:
                email = e.item.email_norm
                result = (email in self.leads, email)
                self.leads.setdefault(email, []).append(e.item.message)
                outcome = "interaction" if result[0] else "lead"
            else:
                outcome = "quarantined" if e.raw is not None else "skipped"
            self.records[e.dedupe_key] = (e.mailbox, e.uidvalidity, e.uid, outcome, e.skip_reason, e.raw,
                                          e.item.email_norm if e.item is not None else None)
        cp = self.checkpoints.get(e.mailbox)
        if cp is not None and cp[0] == e.uidvalidity:
            self.checkpoints[e.mailbox] = (e.uidvalidity, max(cp[1], e.uid))
        else:
            self.checkpoints[e.mailbox] = (e.uidvalidity, e.uid)
        return result


def random_batches(seed: int) -> list[list[EmailIntake]]:
    """Batches that repeat keys and senders (within and across batches), mix outcomes and mailboxes,
    and change UIDVALIDITY (also back to an earlier value) in the middle of a batch."""
    rng = random.Random(seed)
    validity = {"box-a": 7, "box-b": 3}
    batches = []
    n = 0
    for _ in range(8):
        batch = []
        for _ in range(rng.randint(1, 14)):
            n += 1
            box = rng.choice(["box-a", "box-a", "box-b"])
            if rng.random() < 0.08:
                validity[box] = rng.choice([validity[box] + 1, 7, 3])
            key = f"<k{rng.randint(0, 30)}@x>"
            kind = rng.random()
            if kind < 0.6:
                e = entry(key, rng.randint(1, 60), lead(f"c{rng.randint(0, 9)}@example.com", f"m{n}"),
                          box=box, uidvalidity=validity[box])
            elif kind < 0.85:
                e = entry(key, rng.randint(1, 60), box=box, uidvalidity=validity[box],
                          skip_reason=rng.choice(["auto-submitted", "mailing-list"]))
            else:
                e = entry(key, rng.randint(1, 60), box=box, uidvalidity=validity[box],
                          skip_reason="unparseable: x", raw=bytes([n % 256, 0, 255]))
            batch.append(e)
        batches.append(batch)
    return batches


async def assert_matches(store: Any, model: Model) -> None:
    assert await records(store) == model.records
    for box, cp in model.checkpoints.items():
        assert await store.get_checkpoint(box) == cp
    for email, messages in model.leads.items():
        got = await store.get_by_email(email)
        assert got is not None
        assert [got.message, *(i.message for i in got.interactions)] == messages
    assert sum((await store.counts()).values()) == len(model.leads)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_batches_write_what_one_by_one_calls_write(store: Any, seed: int) -> None:
    model = Model()
    for batch in random_batches(seed):
        results = await store.intake_emails(batch)
        assert await describe(store, results) == [model.apply(e) for e in batch]
        await assert_matches(store, model)


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_model_is_what_intake_email_does(store: Any, seed: int) -> None:
    """The reference for the test above: intake_email one by one agrees with the model."""
    model = Model()
    for batch in random_batches(seed):
        for e in batch:
            result = await store.intake_email(e.item, mailbox=e.mailbox, uidvalidity=e.uidvalidity,
                                              uid=e.uid, dedupe_key=e.dedupe_key,
                                              skip_reason=e.skip_reason, raw=e.raw)
            assert await describe(store, [result]) == [model.apply(e)]
        await assert_matches(store, model)


# ------------------------------------------------------------------ edges, spelled out


async def test_empty_batch_writes_nothing(store: Any) -> None:
    assert await store.intake_emails([]) == []
    assert await store.get_checkpoint("box") is None


async def test_repeats_within_one_batch(store: Any) -> None:
    results = await store.intake_emails([
        entry("<a@x>", 10, lead("ana@example.com", "first")),
        entry("<a@x>", 11, lead("ana@example.com", "same key again")),  # already seen
        entry("<b@x>", 12, lead("ana@example.com", "second mail")),  # known sender
        entry("<c@x>", 13, skip_reason="auto-submitted"),
        entry("<c@x>", 14, skip_reason="auto-submitted"),
    ])
    assert [None if r is None else r.duplicate for r in results] == [False, None, True, None, None]
    assert results[0] is not None and results[2] is not None
    assert results[2].lead_id == results[0].lead_id
    got = await store.get(results[0].lead_id)
    assert got is not None and [i.message for i in got.interactions] == ["second mail"]
    assert await store.inbox_outcomes("box") == {"lead": 1, "interaction": 1, "skipped": 1}
    assert await store.get_checkpoint("box") == (7, 14)


async def test_checkpoint_follows_uidvalidity_runs(store: Any) -> None:
    await store.set_checkpoint("box", 8, 100)
    # 7 replaces 8, then back to 8: the last run (8: uids 3, 2) decides, not the old 100.
    await store.intake_emails([entry("<a@x>", 10, uidvalidity=7, skip_reason="s"),
                               entry("<b@x>", 3, uidvalidity=8, skip_reason="s"),
                               entry("<c@x>", 2, uidvalidity=8, skip_reason="s")])
    assert await store.get_checkpoint("box") == (8, 3)
    # Same UIDVALIDITY: the highest uid wins and never moves back; other mailboxes untouched.
    await store.intake_emails([entry("<d@x>", 9, uidvalidity=8, skip_reason="s"),
                               entry("<e@x>", 5, uidvalidity=8, skip_reason="s"),
                               entry("<f@x>", 1, box="other", uidvalidity=2, skip_reason="s")])
    assert await store.get_checkpoint("box") == (8, 9)
    assert await store.get_checkpoint("other") == (2, 1)
    # An already-seen key still moves the checkpoint, as intake_email does.
    assert await store.intake_emails([entry("<a@x>", 20, uidvalidity=8, skip_reason="s")]) == [None]
    assert await store.get_checkpoint("box") == (8, 20)


async def test_a_failing_batch_writes_nothing(store: Any) -> None:
    await store.intake_emails([entry("<old@x>", 5, lead("old@example.com"))])
    bad = lead("bad@example.com")
    bad.name = None  # type: ignore[assignment]  # NOT NULL in both schemas: the write fails
    batch = [entry("<a@x>", 6, lead("ana@example.com")), entry("<b@x>", 7, skip_reason="s"),
             entry("<c@x>", 8, lead("old@example.com", "again")), entry("<d@x>", 9, bad)]
    with pytest.raises(Exception, match=r"(?i)not null|null value"):
        await store.intake_emails(batch)
    assert await store.get_checkpoint("box") == (7, 5)
    assert await store.inbox_outcomes() == {"lead": 1}
    assert await store.get_by_email("ana@example.com") is None
    old = await store.get_by_email("old@example.com")
    assert old is not None and old.interactions == []
    # The store is usable afterwards and the good messages go in.
    assert len(await store.intake_emails(batch[:3])) == 3
    assert await store.get_checkpoint("box") == (7, 8)


def test_checkpoint_steps() -> None:
    batch = [entry("a", 5), entry("b", 9, box="o", uidvalidity=1), entry("c", 3), entry("d", 2, uidvalidity=8),
             entry("e", 4, uidvalidity=8), entry("f", 1, uidvalidity=7)]
    assert checkpoint_steps(batch) == [("box", 7, 5), ("o", 1, 9), ("box", 8, 4), ("box", 7, 1)]
    assert checkpoint_steps([]) == []


# ------------------------------------------------------------------ the poller uses it


def mail(i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Cliente {i} <cliente{i}@empresa{i}.example>"
    msg["To"] = "leads@ourco.example"
    msg["Subject"] = f"Cotización {i}"
    msg["Message-ID"] = f"<batch-{i}@empresa{i}.example>"
    msg.set_content(f"Hola, necesitamos {i} licencias.\n")
    return msg.as_bytes()


def poller_config(dovecot: DovecotServer, user: str, tmp: Path, batch_size: int) -> Config:
    env = base_env(tmp)
    env.update({
        "LEADBOX_INBOX__ENABLED": "true", "LEADBOX_INBOX__START": "all", "LEADBOX_INBOX__HOST": "127.0.0.1",
        "LEADBOX_INBOX__PORT": str(dovecot.port_tls), "LEADBOX_INBOX__CA_FILE": dovecot.ca_file,
        "LEADBOX_INBOX__TIMEOUT": "5", "LEADBOX_INBOX__BATCH_SIZE": str(batch_size),
        "EMAIL_USER": user, "EMAIL_PASS": dovecot.users[user],
    })
    return load_config(str(ROOT / "config" / "agent.toml"), env=env)


class CountingStore:
    """A SqliteStore that counts the intake calls and can refuse batches."""

    def __init__(self, inner: SqliteStore, refuse_batches: bool = False) -> None:
        self.inner = inner
        self.refuse_batches = refuse_batches
        self.batches: list[int] = []
        self.singles = 0

    async def intake_emails(self, batch: list[EmailIntake]) -> list[IntakeResult | None]:
        self.batches.append(len(batch))
        if self.refuse_batches:
            raise ValueError("this store cannot write that batch")
        return list(await self.inner.intake_emails(batch))

    async def intake_email(self, *args: Any, **kw: Any) -> IntakeResult | None:
        self.singles += 1
        return await self.inner.intake_email(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("refuse", [False, True], ids=["batch", "refused-batch"])
async def test_poller_writes_one_transaction_per_fetched_batch(
        dovecot: DovecotServer, tmp_path: Path, refuse: bool) -> None:
    user = dovecot.add_user()
    c = dovecot.client(user, tls=False)
    c.multiappend("INBOX", [mail(i) for i in range(45)])
    c.logout()
    config = poller_config(dovecot, user, tmp_path, batch_size=20)
    inner = SqliteStore(config.store_url)
    await inner.open()
    store = CountingStore(inner, refuse_batches=refuse)
    poller = InboxPoller(config, store, Metrics())
    try:
        s = await poller.poll()
        assert s is not None and (s.fetched, s.leads) == (45, 45)
        assert store.batches == [20, 20, 5]
        # Refused: each batch is retried one message at a time, and nothing is lost or doubled.
        assert store.singles == (45 if refuse else 0)
        assert await inner.inbox_outcomes() == {"lead": 45}
        cp = await inner.get_checkpoint(poller.mailbox)
        assert cp is not None and cp[1] == 45  # a new mailbox: UIDs 1..45
        s2 = await poller.poll()
        assert s2 is not None and s2.fetched == 0
    finally:
        await poller.stop()
        await inner.close()


@pytest.mark.slow
async def test_poller_parses_a_backlog_in_worker_processes(dovecot: DovecotServer, tmp_path: Path) -> None:
    """The process-pool path (the default with 3+ cores) gives the same records as the thread."""
    user = dovecot.add_user()
    c = dovecot.client(user, tls=False)
    c.multiappend("INBOX", [mail(i) for i in range(130)] + [b"\xff\xfe not a mail"])
    c.logout()
    config = poller_config(dovecot, user, tmp_path, batch_size=100)
    store = SqliteStore(config.store_url)
    await store.open()
    poller = InboxPoller(config, store, Metrics())
    poller.parser.workers = 2  # force the pool whatever this machine's cores
    try:
        s = await poller.poll()
        assert s is not None and (s.fetched, s.leads, s.quarantined) == (131, 130, 1)
        assert poller.parser.pool is not None  # the pool really parsed
        assert await store.inbox_outcomes() == {"lead": 130, "quarantined": 1}
        got = await store.get_by_email("cliente7@empresa7.example")
        assert got is not None and got.name == "Cliente 7" and got.subject == "Cotización 7"
    finally:
        await poller.stop()
        await store.close()
