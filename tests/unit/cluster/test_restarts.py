"""`cluster/restarts.after_exit`: one test per rule of its module doc."""

from __future__ import annotations

import pytest

from beamish.runtime.cluster.restarts import AfterExit, RestartIntensity, Verdict, after_exit

I = RestartIntensity(max_restarts=3, max_seconds=5.0)


@pytest.mark.parametrize(("restart", "normal", "history", "now", "ran_for", "expected"), [
    # temporary: never restarted, whatever the exit
    ("temporary", False, (), 10.0, 0.1, AfterExit(Verdict.EXITED)),
    ("temporary", True, (9.0,), 10.0, 0.1, AfterExit(Verdict.EXITED, history=(9.0,))),
    # transient: a normal exit ends it, an abnormal one restarts it
    ("transient", True, (), 10.0, 0.1, AfterExit(Verdict.EXITED)),
    ("transient", False, (), 10.0, 0.1, AfterExit(Verdict.RESTART, 0.5, (10.0,))),
    # permanent: restarted even after a normal exit
    ("permanent", True, (), 10.0, 0.1, AfterExit(Verdict.RESTART, 0.5, (10.0,))),
    # the delay doubles with each restart in the window
    ("permanent", False, (9.0,), 10.0, 0.1, AfterExit(Verdict.RESTART, 1.0, (9.0, 10.0))),
    ("permanent", False, (8.0, 9.0), 10.0, 0.1,
     AfterExit(Verdict.RESTART, 2.0, (8.0, 9.0, 10.0))),
    # max_restarts within max_seconds: failed
    ("permanent", False, (6.0, 8.0, 9.0), 10.0, 0.1,
     AfterExit(Verdict.FAILED, history=(6.0, 8.0, 9.0))),
    ("transient", False, (6.0, 8.0, 9.0), 10.0, 0.1,
     AfterExit(Verdict.FAILED, history=(6.0, 8.0, 9.0))),
    # restarts older than the window are forgotten
    ("permanent", False, (1.0, 4.0, 9.0), 10.0, 0.1,
     AfterExit(Verdict.RESTART, 1.0, (9.0, 10.0))),
])
def test_after_exit(restart, normal, history, now, ran_for, expected):
    assert after_exit(restart, normal, history, now, ran_for, I) == expected


def test_a_process_that_ran_long_restarts_after_the_first_delay():
    wide = RestartIntensity(max_restarts=5, max_seconds=60.0)
    got = after_exit("permanent", False, (1.0, 2.0), 14.0, 11.0, wide)
    assert got == AfterExit(Verdict.RESTART, 0.5, (1.0, 2.0, 14.0))


def test_after_exit_delay_is_capped():
    many = RestartIntensity(max_restarts=100, max_seconds=1000.0)
    got = after_exit("permanent", False, tuple(float(i) for i in range(20)), 20.0, 0.1, many)
    assert (got.verdict, got.delay) == (Verdict.RESTART, 30.0)


def test_no_restart_allowed():
    got = after_exit("permanent", False, (), 1.0, 0.1, RestartIntensity(0, 5.0))
    assert got.verdict is Verdict.FAILED
