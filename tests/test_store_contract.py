"""The store contract, run once against SQLite and once against PostgreSQL.

Every test takes ``store_url`` (parametrized over both kinds, see
tests/fixtures/postgres.py) and checks behaviour through the public methods only,
so a difference between the two stores fails here. Tests that need several
processes' worth of stores open several store objects on one URL: for PostgreSQL
those are separate pools, like separate replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.core.models import Category, LeadIn, Priority, State
from agent.stores.postgres import LeaseLost, PostgresStore
from agent.stores.postgres.schema import MIGRATIONS as PG_MIGRATIONS
from agent.stores.sqlite import SqliteStore

StoreFactory = Callable[[], Awaitable[Any]]


def make_store(url: str, pool_size: int = 8) -> Any:
    if url.startswith("postgresql://"):
        return PostgresStore(url, pool_size=pool_size)
    return SqliteStore(url)


@pytest.fixture
async def open_store(store_url: str) -> AsyncIterator[StoreFactory]:
    """Open (and at the end close) any number of stores on this test's URL."""
    opened: list[Any] = []

    async def make() -> Any:
        s = make_store(store_url)
        await s.open()
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def store(open_store: StoreFactory) -> Any:
    return await open_store()


def lead_in(email: str, message: str = "Hola, quiero una cotización", **kw: Any) -> LeadIn:
    return LeadIn(name=kw.pop("name", "Ana"), email=email, email_norm=email.strip().lower(),
                  message=message, **kw)


async def until(pred: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def is_pg(store_url: str) -> bool:
    return store_url.startswith("postgresql://")


# -- intake ------------------------------------------------------------------
async def test_intake_new_duplicate_and_interaction(store: Any) -> None:
    first = await store.intake_many([lead_in("ana@example.com", subject="Precio"),
                                     lead_in("bob@example.com")])
    assert [r.duplicate for r in first] == [False, False]
    assert first[0].lead_id != first[1].lead_id

    again = await store.intake_many([lead_in("ANA@example.com ", "Segundo mensaje", intake="email",
                                             subject="Re: Precio", message_id="<m2@x>")])
    assert again[0].duplicate and again[0].lead_id == first[0].lead_id

    lead = await store.get(first[0].lead_id)
    assert lead is not None and lead.state is State.RECEIVED and lead.email_norm == "ana@example.com"
    assert lead.subject == "Precio"
    assert [(i.message, i.intake, i.subject, i.message_id) for i in lead.interactions] == [
        ("Segundo mensaje", "email", "Re: Precio", "<m2@x>")]
    by_email = await store.get_by_email("ana@example.com")
    assert by_email is not None and by_email.id == lead.id and len(by_email.interactions) == 1
    assert await store.get_by_email("nobody@example.com") is None
    assert await store.get("no-such-id") is None


async def test_intake_keeps_fields_and_same_batch_duplicates(store: Any) -> None:
    item = lead_in("carla@example.com", "Necesito soporte", name="Carla Ñandú", phone="+34 600",
                   company="ACME", source="form", metadata={"utm": "x", "n": 2}, in_reply_to="<a@b>",
                   references="<a@b> <c@d>", clean_text="soporte", auto_headers={"precedence": "bulk"})
    res = await store.intake_many([item, lead_in("carla@example.com", "otra vez"),
                                   lead_in("dan@example.com")])
    assert [r.duplicate for r in res] == [False, True, False]
    assert res[0].lead_id == res[1].lead_id
    lead = await store.get(res[0].lead_id)
    assert (lead.name, lead.phone, lead.company, lead.source) == ("Carla Ñandú", "+34 600", "ACME", "form")
    assert lead.metadata == {"utm": "x", "n": 2} and lead.auto_headers == {"precedence": "bulk"}
    assert (lead.in_reply_to, lead.references, lead.clean_text) == ("<a@b>", "<a@b> <c@d>", "soporte")
    assert [i.message for i in lead.interactions] == ["otra vez"]
    assert await store.intake_many([]) == []


async def test_concurrent_intake_same_email_makes_one_lead(open_store: StoreFactory) -> None:
    """50 concurrent intakes of one address through two store objects: one lead, 49 interactions."""
    stores = [await open_store(), await open_store()]
    results = await asyncio.gather(*(
        stores[i % 2].intake_many([lead_in("Eve@Example.com".lower(), f"mensaje {i}")]) for i in range(50)))
    flat = [r[0] for r in results]
    assert len({r.lead_id for r in flat}) == 1
    assert sum(not r.duplicate for r in flat) == 1
    lead = await stores[0].get(flat[0].lead_id)
    assert len(lead.interactions) == 49
    assert await stores[1].counts() == {"received": 1}


async def test_concurrent_batches_with_shared_addresses_do_not_deadlock(open_store: StoreFactory) -> None:
    """Batches naming the same addresses in opposite orders (as two replicas may) all commit."""
    stores = [await open_store(), await open_store()]
    emails = [f"p{i}@example.com" for i in range(30)]
    batches = [list(reversed(emails)) if k % 2 else emails for k in range(8)]
    await asyncio.gather(*(stores[k % 2].intake_many([lead_in(e) for e in b]) for k, b in enumerate(batches)))
    assert await stores[0].counts() == {"received": 30}
    lead = await stores[1].get_by_email("p7@example.com")
    assert len(lead.interactions) == 7


# -- work queue --------------------------------------------------------------
async def test_claim_lease_update_release(store: Any) -> None:
    ids = [r.lead_id for r in await store.intake_many([lead_in(f"q{i}@example.com") for i in range(5)])]
    got = await store.claim(3, "owner-a", 60)
    assert len(got) == 3 and all(g.state is State.RECEIVED for g in got)
    rest = await store.claim(10, "owner-b", 60)
    assert len(rest) == 2 and not {g.id for g in got} & {g.id for g in rest}
    assert await store.claim(10, "owner-c", 60) == []

    lead = got[0]
    lead.state, lead.category, lead.summary, lead.language = State.CLASSIFIED, Category.SALES, "quiere precio", "es"
    lead.confidence, lead.classifier, lead.needs_reclassify = 0.9, "local", True
    await store.update(lead)  # keeps the lease
    assert await store.claim(10, "owner-c", 60) == []
    stored = await store.get(lead.id)
    assert (stored.state, stored.category, stored.confidence, stored.needs_reclassify) == (
        State.CLASSIFIED, Category.SALES, 0.9, True)

    lead.state, lead.priority, lead.priority_rule = State.SAVED, Priority.MEDIUM, "category:sales"
    await store.update(lead, release=True)
    again = await store.claim(10, "owner-c", 60)
    assert [g.id for g in again] == [lead.id] and again[0].priority is Priority.MEDIUM

    # A release with a future next attempt keeps it out of the queue until then.
    later = again[0]
    later.attempts, later.last_error = 1, "mirror: boom"
    await store.update(later, release=True, next_attempt_at=time.time() + 3600)
    assert await store.claim(10, "owner-d", 60) == []
    assert (await store.get(later.id)).last_error == "mirror: boom"

    # Final states leave the queue for good.
    b = rest[0]
    b.state, b.reply_status, b.replied_at = State.REPLIED, "sent", datetime.now(UTC)
    await store.update(b, release=True)
    assert await store.queue_depth() == 4
    assert set(ids) >= {b.id}


async def test_update_many_in_one_call(store: Any) -> None:
    await store.intake_many([lead_in(f"u{i}@example.com") for i in range(4)])
    leads = await store.claim(10, "w", 60)
    for lead in leads:
        lead.state, lead.skip_reason = State.SKIPPED, "spam"
    await store.update_many([(lead, True, None) for lead in leads])
    assert await store.counts() == {"skipped": 4}
    await store.update_many([])


async def test_expired_lease_lets_another_owner_claim(store: Any) -> None:
    await store.intake_many([lead_in("lease@example.com")])
    first = await store.claim(10, "dies", 0.3)
    assert len(first) == 1
    assert await store.claim(10, "survivor", 60) == []

    taken: list[Any] = []

    async def claimed() -> bool:
        taken.extend(await store.claim(10, "survivor", 60))
        return bool(taken)

    await until(claimed, what="the expired lease to be claimable")
    assert [t.id for t in taken] == [first[0].id]


async def test_retry_puts_failed_leads_back(store: Any) -> None:
    await store.intake_many([lead_in(f"f{i}@example.com") for i in range(3)])
    leads = sorted(await store.claim(10, "w", 60), key=lambda x: x.email)
    leads[0].state, leads[0].attempts, leads[0].last_error = State.FAILED, 8, "classify: down"
    leads[1].state, leads[1].category, leads[1].priority = State.FAILED, Category.INFO, Priority.MEDIUM
    leads[2].state, leads[2].category = State.FAILED, Category.SUPPORT
    for lead in leads:
        await store.update(lead, release=True)
    assert await store.claim(10, "w", 60) == []

    assert await store.retry(leads[0].id) == 1
    assert await store.retry(leads[0].id) == 0  # no longer failed
    back = await store.get(leads[0].id)
    assert back.state is State.RECEIVED and back.attempts == 0

    assert await store.retry(all_failed=True) == 2
    states = {x.email: x.state for x in await store.claim(10, "w2", 60)}
    assert states == {"f0@example.com": State.RECEIVED, "f1@example.com": State.MIRRORED,
                      "f2@example.com": State.CLASSIFIED}


# -- replies ledger ----------------------------------------------------------
async def test_reply_ledger(store: Any) -> None:
    a, b = (r.lead_id for r in await store.intake_many([lead_in("r1@example.com"), lead_in("r2@example.com")]))
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert await store.replies_since(None, since) == 0

    assert await store.reply_begin(a, "r1@example.com", "<reply-a@x>") is None
    # Stopped before its point of no return: 'sending' is resumed (and may be sent again).
    assert await store.reply_begin(a, "r1@example.com", "<reply-a@x>") == "resumed"
    await store.reply_done(a, "retry")
    assert await store.reply_begin(a, "r1@example.com", "<reply-a2@x>") == "resumed"
    await store.reply_done(a, "committing")
    assert await store.reply_begin(a, "r1@example.com", "<reply-a@x>") == "committing"
    # The worker closes the ledger row together with the lead's final write.
    (la,) = [x for x in await store.claim(10, "w", 60) if x.id == a]
    la.state, la.reply_status = State.REPLIED, "sent"
    await store.update(la, release=True, ledger_status="sent")
    assert (await store.get(a)).state is State.REPLIED
    assert await store.reply_begin(a, "r1@example.com", "<reply-a@x>") == "sent"

    assert await store.replies_since("r1@example.com", since) == 1
    assert await store.replies_since("r1@example.com", since, exclude_lead=a) == 0
    assert await store.replies_since("r2@example.com", since) == 0
    assert await store.replies_since(None, datetime.now(UTC) + timedelta(minutes=1)) == 0

    assert await store.reply_begin(b, "r2@example.com", "<reply-b@x>") is None
    await store.reply_done(b, "uncertain")
    assert await store.replies_since(None, since) == 2
    assert await store.replies_since(None, since, exclude_lead=b) == 1
    await store.reply_done(b, "retry")  # a failed send does not count against the window
    assert await store.replies_since(None, since) == 1


async def test_settling_uncertain_replies(open_store: StoreFactory) -> None:
    """Uncertain replies are listed (recent ones, or one by id); settling one is atomic and happens
    once: found -> replied, not found -> back to the reply step; a second settler gets False."""
    store, other = await open_store(), await open_store()
    ids = [r.lead_id for r in await store.intake_many([lead_in(f"u{i}@example.com") for i in range(3)])]
    for i, lead_id in enumerate(ids):
        assert await store.reply_begin(lead_id, f"u{i}@example.com", f"<reply-{lead_id}@x>") is None
        await store.reply_done(lead_id, "uncertain")
    for lead in await store.claim(10, "w", 60):  # the worker's final write: failed / uncertain
        lead.category, lead.priority = Category.SALES, Priority.HIGH
        lead.state, lead.reply_status = State.FAILED, "uncertain"
        await store.update(lead, release=True)
    now = time.time()
    rows = await store.uncertain_replies(since=now - 60)
    assert sorted(r.lead_id for r in rows) == sorted(ids)
    assert all(r.message_id == f"<reply-{r.lead_id}@x>" and now - 60 <= r.attempted_at <= now for r in rows)
    assert await store.uncertain_replies(since=now + 60) == []  # older than the window: left alone
    [one] = await store.uncertain_replies(since=0, lead_id=ids[0])
    assert one.lead_id == ids[0]

    assert await store.settle_reply(ids[0], sent=True, reason="settle: found", now=now)
    assert not await other.settle_reply(ids[0], sent=False, reason="x", now=now)  # settled already
    a = await store.get(ids[0])
    assert (a.state, a.reply_status, a.reply_reason) == (State.REPLIED, "sent", "settle: found")
    assert a.replied_at is not None
    assert await store.reply_begin(ids[0], "u0@example.com", f"<reply-{ids[0]}@x>") == "sent"

    assert await other.settle_reply(ids[1], sent=False, reason="settle: resend", now=now)
    assert not await store.settle_reply(ids[1], sent=True, reason="x", now=now)
    b = await store.get(ids[1])
    assert (b.state, b.reply_status, b.reply_reason) == (State.MIRRORED, "pending", "settle: resend")
    assert [x.id for x in await store.claim(10, "w2", 60)] == [ids[1]]  # due again, once
    assert await store.reply_begin(ids[1], "u1@example.com", f"<reply-{ids[1]}@x>") == "resumed"
    assert [r.lead_id for r in await store.uncertain_replies(since=0)] == [ids[2]]


async def test_reply_gate_caps_wait_and_count_a_waiting_reply_again(store: Any) -> None:
    """Both caps apply to fresh rows and to rows left at 'retry' (a reply that waited)."""
    ids = [r.lead_id for r in await store.intake_many([lead_in(f"g{i}@example.com") for i in range(4)])]
    now = time.time()

    async def gate(i: int, cap: int = 0, day_cap: int = 0) -> tuple[str | None, str | None]:
        return tuple(await store.reply_gate(  # type: ignore[return-value]
            ids[i], f"g{i}@example.com", f"<r{i}@x>", window_since=now - 3600, cap_since=now - 3600, cap=cap,
            contact=f"g{i}@example.com", day_since=now - 86400, day_cap=day_cap))

    assert await gate(0, cap=2, day_cap=3) == (None, None)
    assert await gate(1, cap=2, day_cap=3) == (None, None)
    assert await gate(2, cap=2, day_cap=3) == ("reply-cap", None)  # no ledger row written
    assert await gate(2, cap=5, day_cap=2) == ("reply-cap-day", None)
    opens = await store.reply_cap_opens_at(now - 3600, 2, exclude_lead=ids[2])
    assert opens is not None and now - 5 < opens <= time.time()  # the 2nd newest row's time
    assert await store.reply_cap_opens_at(now - 3600, 3) is None  # under that cap
    # A reply that waited (its row at 'retry') meets the caps again before it resumes...
    await store.reply_done(ids[1], "retry")
    assert await gate(1, cap=1) == ("reply-cap", None)
    assert await gate(1, cap=2) == (None, "resumed")
    # ...and its own row never counts against it.
    assert await gate(1, cap=2) == (None, "resumed")
    assert await gate(3, cap=0, day_cap=0) == (None, None)  # 0 = no cap


# -- reading -----------------------------------------------------------------
async def test_list_filters_and_cursor_paging(store: Any) -> None:
    for k in range(5):  # ids are time-ordered: write in a few batches
        await store.intake_many([lead_in(f"l{k}-{i}@example.com") for i in range(5)])
    claimed = await store.claim(100, "w", 60)
    assert len(claimed) == 25
    for n, lead in enumerate(sorted(claimed, key=lambda x: x.id)):
        if n % 5 == 0:
            lead.state, lead.category, lead.priority = State.REPLIED, Category.SUPPORT, Priority.HIGH
        elif n % 5 == 1:
            lead.state, lead.category, lead.priority = State.SKIPPED, Category.SPAM, Priority.LOW
        await store.update(lead, release=True)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.list(limit=10, cursor=cursor)
        seen += [x.id for x in page]
        pages += 1
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 25 == len(set(seen))
    times = {x.id: x.created_at for x in claimed}
    assert [times[i] for i in seen] == sorted(times.values(), reverse=True)

    replied, nxt = await store.list(state="replied")
    assert len(replied) == 5 and nxt is None and all(x.category is Category.SUPPORT for x in replied)
    spam, _ = await store.list(category="spam", priority="low")
    assert len(spam) == 5
    assert (await store.list(category="spam", priority="high"))[0] == []
    first, cur = await store.list(state="received", limit=7)
    second, cur2 = await store.list(state="received", limit=7, cursor=cur)
    assert len(first) == 7 and len(second) == 7 and cur2 is not None
    assert first[-1].created_at >= second[0].created_at and first[-1].id not in {x.id for x in second}
    assert await store.counts() == {"replied": 5, "skipped": 5, "received": 15}
    assert await store.queue_depth() == 15


async def test_list_is_newest_first_where_id_text_does_not_sort(store: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Ids are base32 (RFC 4648): the 9th character goes 'z' (value 25) -> '2' (value 26) 8 ms later,
    # and '2' sorts before 'z' as text. Leads written across that step must still list newest first
    # and page without a gap, which ORDER BY id got wrong.
    base = 1_790_000_000_000 // 256 * 256 + 25 * 8  # ms with (ms >> 3) & 31 == 25
    clock = iter(range(base, base + 64, 2))
    fake = type("Clock", (), {"time": staticmethod(lambda: next(clock) / 1000)})
    for mod in ("agent.stores.sqlite.intake", "agent.stores.postgres.intake"):
        monkeypatch.setattr(f"{mod}.time", fake)
    ids = [(await store.intake_many([lead_in(f"t{k}@example.com")]))[0].lead_id for k in range(8)]
    assert sorted(ids) != ids  # the text order really is wrong across the step
    monkeypatch.undo()
    everything, _ = await store.list(limit=50)
    assert [x.id for x in everything] == ids[::-1]
    paged: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list(limit=3, cursor=cursor)
        paged += [x.id for x in page]
        if cursor is None:
            break
    assert paged == ids[::-1]
    with pytest.raises(ValueError):
        await store.list(cursor="not-a-lead-id")


async def test_mirror_pending_and_status(store: Any) -> None:
    ids = [r.lead_id for r in await store.intake_many([lead_in(f"m{i}@example.com") for i in range(4)])]
    leads = {x.id: x for x in await store.claim(10, "w", 60)}
    plan = [(State.SAVED, "pending"), (State.MIRRORED, "pending"), (State.REPLIED, "error"), (State.REPLIED, "done")]
    for lead_id, (state, mirror) in zip(ids, plan, strict=True):
        lead = leads[lead_id]
        lead.state, lead.mirror_status = state, mirror
        await store.update(lead, release=True)
    pending = await store.mirror_pending(10)
    assert [x.id for x in pending] == sorted(ids[1:3])  # in id order
    await store.set_mirror_status(ids[1], "done")
    assert [x.id for x in await store.mirror_pending(10)] == [ids[2]]
    assert (await store.get(ids[1])).mirror_status == "done"


async def test_needing_reclassify(store: Any) -> None:
    await store.intake_many([lead_in(f"c{i}@example.com") for i in range(3)])
    leads = sorted(await store.claim(10, "w", 60), key=lambda x: x.id)
    leads[1].needs_reclassify, leads[1].state = True, State.REPLIED
    for lead in leads:
        await store.update(lead, release=True)
    assert [x.id for x in await store.needing_reclassify(10)] == [leads[1].id]
    leads[1].needs_reclassify = False
    await store.update(leads[1])
    assert await store.needing_reclassify(10) == []


async def test_known_contacts(store: Any) -> None:
    assert await store.add_known_emails(["k1@example.com", "k2@example.com", "k1@example.com"]) == 2
    assert await store.add_known_emails(["k2@example.com", "k3@example.com"]) == 1
    assert await store.add_known_emails([]) == 0
    assert await store.is_known_contact("k3@example.com")
    assert not await store.is_known_contact("k4@example.com")


# -- inbox intake ------------------------------------------------------------
async def test_intake_email_dedupe_and_checkpoint(store: Any) -> None:
    box = "imap://leads@example.com/INBOX"
    assert await store.get_checkpoint(box) is None
    r1 = await store.intake_email(lead_in("in1@example.com", intake="email", message_id="<a@x>"),
                                  mailbox=box, uidvalidity=7, uid=10, dedupe_key="<a@x>")
    assert r1 is not None and not r1.duplicate
    assert await store.get_checkpoint(box) == (7, 10)

    # The same message again (e.g. re-delivered with a new UID): ignored, checkpoint still moves.
    assert await store.intake_email(lead_in("in1@example.com", intake="email"), mailbox=box,
                                    uidvalidity=7, uid=12, dedupe_key="<a@x>") is None
    assert await store.get_checkpoint(box) == (7, 12)

    # A new message from a known sender: an interaction.
    r2 = await store.intake_email(lead_in("in1@example.com", "again", intake="email"), mailbox=box,
                                  uidvalidity=7, uid=13, dedupe_key="<b@x>")
    assert r2 is not None and r2.duplicate and r2.lead_id == r1.lead_id

    # Skipped and quarantined messages are remembered too; a lower UID never moves back.
    assert await store.intake_email(None, mailbox=box, uidvalidity=7, uid=11, dedupe_key="<c@x>",
                                    skip_reason="auto-submitted") is None
    assert await store.intake_email(None, mailbox=box, uidvalidity=7, uid=14, dedupe_key="sha:1",
                                    skip_reason="unparseable", raw=b"\xff\x00garbage") is None
    assert await store.get_checkpoint(box) == (7, 14)
    assert await store.inbox_outcomes(box) == {"lead": 1, "interaction": 1, "skipped": 1, "quarantined": 1}
    assert await store.inbox_outcomes() == await store.inbox_outcomes(box)
    assert await store.inbox_outcomes("other") == {}

    # UIDVALIDITY changed: the new mailbox's UIDs start again, lower is fine.
    assert await store.intake_email(lead_in("in2@example.com", intake="email"), mailbox=box,
                                    uidvalidity=8, uid=3, dedupe_key="<d@x>") is not None
    assert await store.get_checkpoint(box) == (8, 3)
    assert await store.intake_email(None, mailbox=box, uidvalidity=8, uid=2, dedupe_key="<e@x>",
                                    skip_reason="list") is None
    assert await store.get_checkpoint(box) == (8, 3)

    await store.set_checkpoint(box, 9, 1)
    assert await store.get_checkpoint(box) == (9, 1)
    assert await store.counts() == {"received": 2}


# -- leadership --------------------------------------------------------------
async def test_leadership(store_url: str, open_store: StoreFactory) -> None:
    a, b = await open_store(), await open_store()
    assert await a.try_acquire_leadership("inbox:INBOX")
    assert await a.try_acquire_leadership("inbox:INBOX")  # still ours
    if not is_pg(store_url):
        assert await b.try_acquire_leadership("inbox:INBOX")  # one process owns a SQLite file
        return
    assert not await b.try_acquire_leadership("inbox:INBOX")
    assert await b.try_acquire_leadership("inbox:Other")  # per name
    await a.release_leadership("inbox:INBOX")
    assert await b.try_acquire_leadership("inbox:INBOX")
    assert not await a.try_acquire_leadership("inbox:INBOX")
    await b.close()  # a leader that goes away (its session ends) frees the lock
    assert await a.try_acquire_leadership("inbox:INBOX")
    assert await a.try_acquire_leadership("inbox:Other")


# -- PostgreSQL only: what several replicas add -------------------------------
@pytest.fixture
def pg_only(store_url: str) -> str:
    if not is_pg(store_url):
        pytest.skip("several processes on one store: PostgreSQL only")
    return store_url


async def test_pg_replicas_migrate_once_at_the_same_time(pg_only: str) -> None:
    stores = [PostgresStore(pg_only, pool_size=2) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        last = len(PG_MIGRATIONS)
        assert {await s.schema_version() for s in stores} == {last}
        async with stores[0].pool.connection() as conn:
            rows = await (await conn.execute("SELECT version FROM schema_version ORDER BY version")).fetchall()
        assert [r["version"] for r in rows] == list(range(1, last + 1))  # each migration once
    finally:
        for s in stores:
            await s.close()


async def test_pg_lost_lease_is_fenced(pg_only: str, open_store: StoreFactory) -> None:
    """A replica that stalled past its lease cannot write the lead back nor start its reply."""
    slow, fast = await open_store(), await open_store()
    (res,) = await slow.intake_many([lead_in("fence@example.com")])
    (mine,) = await slow.claim(1, "slow", 0.3)
    taken: list[Any] = []

    async def claimed() -> bool:
        taken.extend(await fast.claim(1, "fast", 60))
        return bool(taken)

    await until(claimed, what="the other replica to take the expired lease")
    mine.state, mine.category = State.FAILED, Category.SPAM
    await slow.update(mine, release=True)  # refused: the lead is the other replica's now
    lead = await fast.get(res.lead_id)
    assert lead.state is State.RECEIVED
    with pytest.raises(LeaseLost):
        await slow.reply_begin(res.lead_id, "fence@example.com", "<r@x>")

    # The holder works normally; its reply is fenced in its favour.
    assert await fast.reply_begin(res.lead_id, "fence@example.com", "<r@x>") is None
    await fast.reply_done(res.lead_id, "committing")
    taken[0].state = State.REPLIED
    await slow.update(taken[0], release=True, ledger_status="retry")  # stale: refused, ledger too
    await fast.update(taken[0], release=True, ledger_status="sent")
    assert (await slow.get(res.lead_id)).state is State.REPLIED
    assert await fast.reply_begin(res.lead_id, "fence@example.com", "<r@x>") == "sent"


async def test_pg_reply_commit_is_fenced(pg_only: str, open_store: StoreFactory) -> None:
    """Lease lost between reply_begin and the point of no return: the commit is refused."""
    slow, fast = await open_store(), await open_store()
    (res,) = await slow.intake_many([lead_in("fence2@example.com")])
    await slow.claim(1, "slow", 0.3)
    assert await slow.reply_begin(res.lead_id, "fence2@example.com", "<r@x>") is None
    taken: list[Any] = []

    async def claimed() -> bool:
        taken.extend(await fast.claim(1, "fast", 60))
        return bool(taken)

    await until(claimed, what="the other replica to take the expired lease")
    with pytest.raises(LeaseLost):
        await slow.reply_done(res.lead_id, "committing")
    assert await fast.reply_begin(res.lead_id, "fence2@example.com", "<r@x>") == "resumed"  # safe to send


async def test_pg_unreachable_database_is_a_clear_error() -> None:
    from agent.errors import ConfigError

    s = PostgresStore("postgresql://postgres@127.0.0.1:1/none", pool_size=1, pool_timeout=1.0)
    with pytest.raises(ConfigError, match="cannot connect to PostgreSQL"):
        await s.open()


async def test_alert_ledger_is_idempotent_and_records_each_outcome(store: Any) -> None:
    from dataclasses import replace

    [r] = await store.intake_many([lead_in("alert@example.com")])
    await store.enqueue_alerts(r.lead_id, ["webhook", "email"], 100.0)
    await store.enqueue_alerts(r.lead_id, ["webhook"], 200.0)  # the step repeated: nothing doubles
    due = await store.alerts_due(150.0, 10)
    assert sorted(a.channel for a in due) == ["email", "webhook"] and all(a.created_at == 100.0 for a in due)
    hook = next(a for a in due if a.channel == "webhook")
    await store.alert_result(replace(hook, status="sent", attempts=1, sent_at=160.0))
    mail = next(a for a in due if a.channel == "email")
    await store.alert_result(replace(mail, attempts=1, next_attempt_at=300.0, last_error="down"))
    assert await store.alerts_due(200.0, 10) == []  # sent, and the retry is not due yet
    assert [a.channel for a in await store.alerts_due(300.0, 10)] == ["email"]
    shown = {a.channel: a for a in await store.alerts_of(r.lead_id)}
    assert shown["webhook"].status == "sent" and shown["webhook"].sent_at == 160.0
    assert shown["email"].last_error == "down" and shown["email"].attempts == 1
    assert await store.digest_last() is None
    await store.set_digest_last(123.0)
    await store.set_digest_last(456.0)
    assert await store.digest_last() == 456.0
    lead = await store.get(r.lead_id)
    ts = lead.created_at.timestamp()
    assert [x.id for x in await store.leads_between(ts - 1, ts + 1, 10)] == [r.lead_id]
    assert await store.leads_between(ts + 1, ts + 2, 10) == []
