"""LeaseWatch, the membership's fencing shell, on a FakeClock: it fences once, at the
last good send + ttl - margin, whatever the attempts in between; a good renewal moves
the deadline; a renewal's answer that arrives late counts from its send."""

from __future__ import annotations

from beamish.runtime.cluster.lease import LeaseAction, LeaseTiming
from beamish.runtime.cluster.membership import LeaseWatch
from beamish.supervisor.testing import FakeClock

T = LeaseTiming(ttl=4.0, margin=1.0)


def watch() -> tuple[LeaseWatch, list[float], FakeClock]:
    clock = FakeClock(100.0)
    fences: list[float] = []
    return LeaseWatch(T, lambda: fences.append(clock.now())), fences, clock


def test_it_fences_once_when_renewals_stop():
    w, fences, clock = watch()
    w.attempted(clock.now())
    w.renewed(clock.now())
    for _ in range(12):
        clock.advance(0.5)
        w.check(clock.now())
    assert fences == [103.0]
    assert not w.alive and w.fences == 1


def test_failed_attempts_do_not_move_the_deadline_but_good_ones_do():
    w, fences, clock = watch()
    w.renewed(clock.now())                     # 100.0
    clock.advance(1.0)
    w.attempted(clock.now())                   # 101.0, fails
    clock.advance(1.0)
    w.attempted(clock.now())                   # 102.0, succeeds
    sent = clock.now()
    clock.advance(0.9)                         # the answer comes late
    w.renewed(sent)
    clock.advance(2.0)                         # 104.9 < 102 + 3
    assert w.check(clock.now()).action is LeaseAction.RENEW and fences == []
    clock.advance(0.1)
    assert w.check(clock.now()).action is LeaseAction.FENCE
    assert fences == [105.0]


def test_an_older_success_never_moves_the_deadline_back():
    w, fences, clock = watch()
    w.renewed(102.0)
    w.renewed(101.0)
    assert w.last_sent_ok == 102.0


def test_after_a_fence_only_a_new_good_renewal_makes_it_alive_again():
    w, fences, clock = watch()
    w.renewed(clock.now())
    w.fence()
    w.fence()
    assert fences == [100.0] and not w.alive
    assert w.check(clock.now() + 0.5).action is LeaseAction.WAIT  # at the renewal pace
    clock.advance(1.0)
    assert w.check(clock.now()).action is LeaseAction.RENEW
    w.renewed(clock.now())
    assert w.alive and w.check(clock.now()).action is LeaseAction.WAIT
