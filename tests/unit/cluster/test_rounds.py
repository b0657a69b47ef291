"""`run_rounds`, the round loop of a cluster node's workers: one test per rule, on a real
thread."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from beamish.runtime.cluster.rounds import run_rounds
from beamish.runtime.errors import StoreUnavailable


def _loop(round_fn, interval=0.05):
    stop, kick = threading.Event(), threading.Event()
    t = threading.Thread(target=run_rounds, args=(stop, kick, interval, round_fn, "test"))
    t.start()
    return stop, kick, t


def _end(stop, kick, t):
    stop.set()
    kick.set()
    t.join(timeout=5)
    assert not t.is_alive()


def test_a_round_runs_every_interval_without_a_kick():
    ran = []
    stop, kick, t = _loop(lambda: ran.append(1), interval=0.02)
    time.sleep(0.3)
    _end(stop, kick, t)
    assert len(ran) >= 3


def test_a_kick_runs_a_round_at_once():
    ran = threading.Event()
    stop, kick, t = _loop(ran.set, interval=60.0)
    kick.set()
    assert ran.wait(5)
    _end(stop, kick, t)


def test_a_stop_ends_the_loop_without_another_round():
    ran = []
    stop, kick, t = _loop(lambda: ran.append(1), interval=60.0)
    _end(stop, kick, t)
    assert ran == []


@pytest.mark.parametrize(("error", "logged"), [
    (StoreUnavailable("the server is gone"), "(retrying)"),
    (RuntimeError("a bug"), "test: its round failed (retrying)"),
])
def test_an_error_is_logged_and_the_rounds_go_on(caplog, error, logged):
    calls = []

    def round_fn():
        calls.append(1)
        if len(calls) == 1:
            raise error
    caplog.set_level(logging.WARNING, logger="beamish.cluster")
    stop, kick, t = _loop(round_fn, interval=0.02)
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    _end(stop, kick, t)
    assert len(calls) >= 3
    assert any(logged in r.getMessage() for r in caplog.records), caplog.records
