"""The pause's arithmetic on a controlled clock: hints, exponential throttling, quota probes, one probe."""

from __future__ import annotations

import asyncio

import pytest

from agent.errors import Deferred
from agent.mail.limits import SendPause
from agent.mail.smtp_errors import classify

THROTTLE = classify(421, "4.7.0 Try again later, closing connection.", "mail")
HINTED = classify(421, "4.7.0 Try again in 30 seconds", "mail")
QUOTA = classify(550, "5.4.5 Daily user sending limit exceeded.", "mail")


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


async def test_throttling_doubles_while_probes_are_refused_and_quota_waits_for_its_probe() -> None:
    clock = Clock()
    p = SendPause(base=60, quota_probe=3600, clock=clock)
    assert await p.admit() is False  # sending
    d = p.limited(THROTTLE, probe=False)
    assert isinstance(d, Deferred) and d.until == clock.t + 60 and p.state()["kind"] == "throttle"
    with pytest.raises(Deferred):  # nobody sends before the probe time
        await p.admit()
    delays = []
    for _ in range(4):  # each refused probe doubles the pause
        clock.t = p.next_probe_at
        assert await p.admit() is True
        delays.append(p.limited(THROTTLE, probe=True).until - clock.t)
    assert delays == [120, 240, 480, 960]
    clock.t = p.next_probe_at
    assert await p.admit() is True
    p.answered(probe=True)  # the probe went through: sending again
    assert p.state() is None and await p.admit() is False

    assert p.limited(HINTED, probe=False).until == clock.t + 30  # the server's hint wins
    clock.t = p.next_probe_at
    assert await p.admit() is True
    assert p.limited(QUOTA, probe=True).until == clock.t + 3600 and p.kind == "quota"
    assert p.pauses == 2


async def test_one_probe_while_others_wait_for_its_outcome() -> None:
    clock = Clock()
    p = SendPause(base=60, quota_probe=600, clock=clock)
    p.limited(QUOTA, probe=False)
    clock.t = p.next_probe_at
    assert await p.admit() is True  # the probe
    waiters = [asyncio.create_task(p.admit()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)  # they wait for the probe, they do not send
    p.limited(QUOTA, probe=True)  # refused again
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, Deferred) and r.until == clock.t + 600 for r in results)

    clock.t = p.next_probe_at
    assert await p.admit() is True
    waiters = [asyncio.create_task(p.admit()) for _ in range(3)]
    await asyncio.sleep(0)
    p.answered(probe=True)  # accepted: the waiters send
    assert await asyncio.gather(*waiters) == [False, False, False]


async def test_a_straggler_keeps_the_pause_but_a_quota_answer_outranks_throttling() -> None:
    clock = Clock()
    p = SendPause(base=60, quota_probe=3600, clock=clock)
    p.limited(THROTTLE, probe=False)
    p.answered(probe=False)  # a send that began before the pause succeeded: still paused
    assert p.kind == "throttle"
    p.limited(THROTTLE, probe=False)  # another straggler: same pause, no doubling
    assert p.next_probe_at == clock.t + 60 and p.pauses == 1
    p.limited(QUOTA, probe=False)
    assert p.kind == "quota" and p.next_probe_at == clock.t + 3600 and p.pauses == 1
    clock.t = p.next_probe_at
    assert await p.admit() is True
    p.unreachable(probe=True)  # the probe reached no server: still paused, probe again later
    assert p.kind == "quota" and p.next_probe_at == clock.t + 3600
