"""FakeClock (refuses to go backwards, runs due callbacks) and the real MonotonicClock."""

from __future__ import annotations

import threading

import pytest
from sup_helpers import WAIT

from beamish.supervisor import Clock, MonotonicClock
from beamish.supervisor.testing import FakeClock


def test_fake_clock_runs_due_callbacks_in_order() -> None:
    clock = FakeClock(10.0)
    ran: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: ran.append(("b", clock.now())))
    clock.call_later(1.0, lambda: ran.append(("a", clock.now())))
    clock.call_later(2.0, lambda: ran.append(("c", clock.now())))
    late = clock.call_later(5.0, lambda: ran.append(("late", clock.now())))
    clock.advance(2.0)
    assert ran == [("a", 11.0), ("b", 12.0), ("c", 12.0)]
    assert clock.now() == 12.0
    late.cancel()
    clock.advance(10.0)
    assert len(ran) == 3 and clock.pending == 0


def test_fake_clock_refuses_to_go_backwards() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-0.1)
    with pytest.raises(ValueError):
        clock.advance(float("nan"))
    assert clock.now() == 0.0


def test_fake_clock_jump_goes_to_the_next_callback() -> None:
    clock = FakeClock()
    assert clock.jump() == 0.0
    ran: list[float] = []
    clock.call_later(3.0, lambda: ran.append(clock.now()))
    clock.call_later(7.0, lambda: ran.append(clock.now()))
    assert clock.next_due() == 3.0
    assert clock.jump() == 3.0
    assert ran == [3.0]
    assert clock.jump() == 4.0
    assert ran == [3.0, 7.0]


def test_fake_clock_callback_scheduled_by_a_callback_runs_if_due() -> None:
    clock = FakeClock()
    ran: list[float] = []
    clock.call_later(1.0, lambda: clock.call_later(0.5, lambda: ran.append(clock.now())))
    clock.advance(2.0)
    assert ran == [1.5]


def test_fake_clock_wait_for_timers() -> None:
    clock = FakeClock()
    with pytest.raises(TimeoutError):
        clock.wait_for_timers(1, timeout=0.001)
    thread = threading.Thread(target=lambda: clock.call_later(1.0, lambda: None))
    thread.start()
    clock.wait_for_timers(1, timeout=WAIT)
    thread.join(WAIT)


def test_clocks_satisfy_the_protocol() -> None:
    assert isinstance(FakeClock(), Clock)
    assert isinstance(MonotonicClock(), Clock)


def test_monotonic_clock_runs_callbacks_in_due_order_and_cancels() -> None:
    clock = MonotonicClock()
    try:
        done = threading.Event()
        ran: list[str] = []
        # Gaps far wider than a busy machine's pause between two lines: "b" is scheduled
        # first but due later, and "x" is cancelled long before it is due.
        clock.call_later(0.3, lambda: ran.append("b"))
        clock.call_later(0.001, lambda: ran.append("a"))
        clock.call_later(0.001, lambda: 1 / 0)  # logged, does not stop the others
        clock.call_later(5.0, lambda: ran.append("x")).cancel()
        clock.call_later(0.4, done.set)
        assert done.wait(WAIT)
        assert ran == ["a", "b"]
        assert clock.now() > 0
    finally:
        clock.close()
    with pytest.raises(RuntimeError):
        clock.call_later(0.0, lambda: None)
