"""SIGKILL the real daemon again and again while webhook and email leads pour in.

The daemon runs as users run it (``leadbox run`` in a subprocess) with replies over SMTP
(aiosmtpd, implicit TLS + AUTH), the OpenAI-compatible classifier (the local fake server)
and the inbox on a real Dovecot (IDLE plus a short poll). A driver feeds N contacts, about
half by ``POST /leads`` and half as mail appended to the mailbox, 10% of them repeats of an
earlier address (by either channel), and kills the daemon with SIGKILL at random moments,
restarting it each time. At the end:

- every distinct address is stored once as a lead, and every contact's text is kept once
  (as the lead's message or as an interaction); a webhook POST whose answer was lost in a
  kill and that the driver sent again may add one extra interaction for that address, as
  for any client retry;
- every mail was taken exactly once (one inbox record per Message-ID, no second intake);
- every lead is answered exactly once, counted on the SMTP server by ``X-Leadbox-Lead``;
- settling is on (``reply.settle = auto``, which is self-copy on Dovecot, with a 2 s grace
  period): the SMTP server files the self-copy of every message it takes into the account's
  INBOX (IMAP APPEND) before its 250, as a provider delivers it. A reply killed inside SMTP DATA
  is found there (replied) or sent once more after the grace period; the test waits until no
  uncertain reply is left but the ones already sent twice, and reports how many leads were
  uncertain on the way and how many customers end unanswered (the goal is 0);
- the self-copies reach the polled INBOX and are never leads (skipped as our own mail);
- no address received two replies.

Fast mode (default): 1,000 contacts and 5 kills. Long mode (``LEADBOX_LONG=1``): 1,000
contacts and 20 kills. ``LEADBOX_CRASH_SEED`` reproduces a run (the seed is printed).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.core.settle import FOUND, RESENT
from tests.drivers import LONG, Clock, lead_header, lead_mail, query
from tests.test_smtp_replies import smtp_env

N_CONTACTS = 1000  # the number, in both modes
KILLS = 20 if LONG else 5
TOKEN = re.compile(r"\[k(\d+)\]")


@dataclass
class Contact:
    idx: int
    channel: str  # "webhook" | "email"
    address: str
    repeat: bool

    @property
    def text(self) -> str:
        return f"Hola, necesitamos un presupuesto para el proyecto [k{self.idx}]. ¿Pueden llamarnos?"


def plan(rng: random.Random, n: int) -> list[Contact]:
    contacts: list[Contact] = []
    for i in range(n):
        channel = "webhook" if rng.random() < 0.5 else "email"
        if contacts and rng.random() < 0.10:
            contacts.append(Contact(i, channel, rng.choice(contacts).address, True))
        else:
            contacts.append(Contact(i, channel, f"cliente{i}@crash{i % 7}.example", False))
    return contacts


class Driver:
    def __init__(self, proc: Any, rng: random.Random) -> None:
        self.proc, self.rng = proc, rng
        self.kills = 0
        self.feeding = True
        self.resent: Counter[str] = Counter()  # address -> POSTs sent again after a lost answer

    async def post(self, session: aiohttp.ClientSession, c: Contact) -> None:
        body = {"name": f"Cliente {c.idx}", "email": c.address, "message": c.text}
        maybe_stored = False
        for _ in range(2000):
            try:
                async with session.post(f"{self.proc.url}/leads", json=body) as r:
                    if r.status in (200, 202):
                        return
                    assert r.status == 503, (r.status, await r.text())
            except aiohttp.ClientConnectorError:
                pass  # refused: the daemon is down, nothing was sent
            except (aiohttp.ClientError, TimeoutError):
                if not maybe_stored:  # the request left: it may have been stored before the kill
                    maybe_stored = True
                    self.resent[c.address] += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"contact {c.idx} never accepted")

    async def feed_webhook(self, contacts: list[Contact]) -> None:
        sem = asyncio.Semaphore(8)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async def one(c: Contact) -> None:
                async with sem:
                    await self.post(session, c)
            await asyncio.gather(*(one(c) for c in contacts))

    async def feed_email(self, dovecot: Any, user: str, contacts: list[Contact]) -> None:
        for c in contacts:
            raw = lead_mail(c.address, f"Cliente {c.idx}", c.text, f"<k{c.idx}@crash.example>",
                            f"Presupuesto {c.idx}")
            await asyncio.to_thread(dovecot.append, user, "INBOX", raw)

    async def killer(self, done: asyncio.Event) -> None:
        """Kill at random moments while feeding and processing, at least KILLS times."""
        while self.kills < KILLS or (self.feeding and not done.is_set()):
            await asyncio.sleep(self.rng.uniform(0.2, 1.2))
            self.proc.kill()
            self.kills += 1
            await asyncio.to_thread(self.proc.start, 30.0)


def settled(db: Path, emails: int) -> bool:
    """Every mail taken, every lead final, and no uncertain reply left that settling still owns
    (an uncertain reply already sent once more stays for a human)."""
    if not db.exists():
        return False
    taken = query(db, "SELECT count(*) FROM inbox_messages WHERE outcome != 'skipped'")[0][0]
    active = query(db, "SELECT count(*) FROM leads WHERE state NOT IN ('replied','skipped','failed')")[0][0]
    open_ = query(db, "SELECT count(*) FROM leads WHERE reply_status = 'uncertain' "
                      "AND coalesce(reply_reason, '') != ?", RESENT)[0][0]
    return bool(taken == emails and active == 0 and open_ == 0)


class SelfCopyDelivery:
    """The SMTP server's delivery of our self-copies into the account's INBOX (one IMAP connection)."""

    def __init__(self, dovecot: Any, user: str) -> None:
        self.dovecot, self.user = dovecot, user
        self.lock = threading.Lock()
        self.client: Any = None

    def __call__(self, message: dict[str, Any]) -> None:
        if self.user not in message["rcpt_tos"]:
            return
        with self.lock:
            if self.client is None:
                self.client = self.dovecot.client(self.user, tls=False)
            self.client.append("INBOX", message["data"])

    def close(self) -> None:
        if self.client is not None:
            self.client.logout()


@pytest.mark.slow
async def test_sigkill_mixed_intake_every_lead_once_every_reply_once(
    daemon_process: Any, smtp_server: Any, openai_server: Any, dovecot: Any, tmp_path: Path
) -> None:
    seed = int(os.environ.get("LEADBOX_CRASH_SEED") or random.randrange(1 << 32))
    print(f"\ncrash mixed: LEADBOX_CRASH_SEED={seed} contacts={N_CONTACTS} kills>={KILLS}")
    rng = random.Random(seed)
    contacts = plan(rng, N_CONTACTS)
    user = dovecot.add_user(f"crash-{uuid.uuid4().hex[:8]}@crash.test", smtp_server.password)
    delivery = SelfCopyDelivery(dovecot, user)
    smtp_server.sink.on_accept = delivery
    env = {
        **smtp_env(smtp_server, "tls"),
        "LEADBOX_CLASSIFIER__BACKEND": "openai", "OPENAI_API_KEY": "test",
        "LEADBOX_CLASSIFIER__BASE_URL": openai_server.base_url,
        "LEADBOX_INBOX__ENABLED": "true", "LEADBOX_INBOX__START": "all",
        "LEADBOX_INBOX__HOST": "127.0.0.1", "LEADBOX_INBOX__PORT": str(dovecot.port_tls),
        "LEADBOX_INBOX__CA_FILE": dovecot.ca_file, "LEADBOX_INBOX__USERNAME": user,
        "LEADBOX_INBOX__TIMEOUT": "5", "LEADBOX_INBOX__POLL_INTERVAL": "0.5", "LEADBOX_INBOX__IDLE": "true",
        "LEADBOX_WORKER__CONCURRENCY": "8", "LEADBOX_WORKER__BATCH_SIZE": "50",
        "LEADBOX_WORKER__MAX_ATTEMPTS": "1000", "LEADBOX_REPLY__MAX_PER_HOUR": "0",
        "LEADBOX_REPLY__SETTLE": "auto", "LEADBOX_REPLY__SETTLE_GRACE_SECONDS": "2",
        "LEADBOX_REPLY__SETTLE_INTERVAL": "1",
    }
    proc = daemon_process(env)
    clock = Clock()
    proc.start(30.0)
    driver = Driver(proc, rng)
    web = [c for c in contacts if c.channel == "webhook"]
    mail = [c for c in contacts if c.channel == "email"]
    db = tmp_path / "leadbox.db"
    done = asyncio.Event()
    killer = asyncio.create_task(driver.killer(done))
    await asyncio.gather(driver.feed_webhook(web), driver.feed_email(dovecot, user, mail))
    driver.feeding = False
    fed_at = clock()
    deadline = time.monotonic() + 180
    while not settled(db, len(mail)):
        assert time.monotonic() < deadline, "the daemon did not settle within 180 s"
        await asyncio.sleep(0.2)
    done.set()
    await killer
    # The last restart may have happened after "settled": let it settle again, then stop cleanly.
    while not settled(db, len(mail)):
        assert time.monotonic() < deadline, "the daemon did not settle within 180 s"
        await asyncio.sleep(0.2)
    assert proc.terminate() == 0
    await asyncio.sleep(0.5)  # a late SMTP message would show now
    duration = clock()
    delivery.close()

    # --- leads: every distinct address once, every contact's text kept once -----------------
    leads = {r[0]: r for r in query(db, "SELECT email_norm, id, message, state, reply_status FROM leads")}
    by_address: defaultdict[str, list[Contact]] = defaultdict(list)
    for c in contacts:
        by_address[c.address].append(c)
    assert set(leads) == set(by_address), "a contact was lost or stored as a second lead"
    texts: defaultdict[str, list[int]] = defaultdict(list)
    for addr, (_e, _id, message, _s, _r) in leads.items():
        texts[addr] += [int(k) for k in TOKEN.findall(message)]
    interactions = query(db, "SELECT l.email_norm, i.message, i.intake FROM interactions i "
                             "JOIN leads l ON l.id = i.lead_id")
    for addr, message, _intake in interactions:
        texts[addr] += [int(k) for k in TOKEN.findall(message)]
    for addr, cs in by_address.items():
        got = Counter(texts[addr])
        assert set(got) == {c.idx for c in cs}, f"{addr}: texts kept {sorted(got)} != sent {[c.idx for c in cs]}"
        extra = sum(got.values()) - len(cs)
        assert 0 <= extra <= driver.resent[addr], f"{addr}: {extra} extra interaction(s)"
    repeats = sum(c.repeat for c in contacts)
    assert len(interactions) >= repeats

    # --- inbox: every mail taken exactly once -----------------------------------------------
    records = query(db, "SELECT dedupe_key, outcome, reason FROM inbox_messages")
    inbox = [(k, o) for k, o, _r in records if o != "skipped"]
    own_copies = [r for k, o, r in records if o == "skipped"]
    assert len(inbox) == len(mail) and Counter(o for _k, o in inbox).keys() <= {"lead", "interaction"}
    assert set(own_copies) <= {"own-address"}, "a self-copy was read as something else than our own mail"
    email_texts = Counter(int(k) for _a, m, i in interactions if i == "email" for k in TOKEN.findall(m))
    email_texts += Counter(int(k) for _e, _id, m, _s, _r in leads.values() for k in TOKEN.findall(m)
                           if contacts[int(k)].channel == "email")
    assert max(email_texts.values()) == 1, "a mail was taken twice"

    # --- replies: once per lead; 'uncertain' 0 or 1; nobody twice ---------------------------
    messages = smtp_server.messages
    per_lead = Counter(lead_header(m["data"]) for m in messages)
    per_rcpt = Counter(r for m in messages for r in m["rcpt_tos"] if r != user)  # our self-copies aside
    assert all(m["rcpt_tos"][-1] == user for m in messages), "a reply without its self-copy"
    ids = {r[1]: r for r in leads.values()}
    states = Counter(r[3] for r in leads.values())
    uncertain = [i for i, r in ids.items() if r[4] == "uncertain"]
    assert set(per_lead) <= set(ids), "a reply for no stored lead"
    assert max(per_lead.values()) == 1 and max(per_rcpt.values()) == 1, "someone was answered twice"
    reasons = dict(query(db, "SELECT id, coalesce(reply_reason, '') FROM leads"))
    for i, (_e, _id, _m, state, reply) in ids.items():
        if reply == "uncertain":  # lost, sent once more, and that attempt was killed in DATA too
            assert state == "failed" and reasons[i] == RESENT, (i, reasons[i])
        else:
            assert (state, reply) == ("replied", "sent"), (i, state, reply)
            if per_lead[i] != 1:  # diagnose before failing: what the store says about this lead
                row = query(db, f"SELECT intake, attempts, last_error, reply_message_id, replied_at FROM leads "
                                f"WHERE id = '{i}'")
                ledger = query(db, f"SELECT status, to_addr, created_at, sent_at FROM replies WHERE lead_id = '{i}'")
                raise AssertionError(f"lead {i} marked replied but {per_lead[i]} message(s) arrived; "
                                     f"lead {row}; ledger {ledger}; seed {seed}")
    uncertain_sent = sum(per_lead[i] for i in uncertain)
    unanswered = [i for i, r in ids.items() if r[3] != "skipped" and per_lead[i] == 0]
    found = sum(r.startswith(FOUND) and "interruption" not in r for r in reasons.values())
    found_at_restart = sum(r.startswith(FOUND) and "interruption" in r for r in reasons.values())
    resent = sum(r == RESENT for r in reasons.values())
    still = len(query(db, "SELECT 1 FROM replies WHERE status = 'uncertain'"))
    ever_uncertain = found + found_at_restart + resent + still
    print(f"crash mixed: seed={seed} contacts={len(contacts)} (webhook {len(web)}, email {len(mail)}, "
          f"repeats {repeats}) leads={len(leads)} interactions={len(interactions)} kills={driver.kills} "
          f"replies={len(messages)} uncertain-at-end={len(uncertain)} (of which delivered {uncertain_sent}) "
          f"found-at-restart={found_at_restart} settled-by-the-job: found={found} sent-again={resent} "
          f"unanswered={len(unanswered)} "
          f"self-copies-skipped={len(own_copies)} "
          f"webhook-resent-after-lost-answer={sum(driver.resent.values())} states={dict(states)} "
          f"fed-in={fed_at:.1f}s duration={duration:.1f}s")
    assert len(uncertain) <= driver.kills * 8  # at most the sends in flight (concurrency 8) per kill
    assert ever_uncertain >= len(uncertain)
    # The goal: nobody left unanswered. Only a reply lost twice (its one re-send killed inside DATA
    # as well) may stay for a human; it is reported above.
    assert set(unanswered) <= set(uncertain), f"unanswered customers: {unanswered}; seed {seed}"
