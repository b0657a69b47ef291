"""The fault scenario's split of *back in* by the node's events (`restart_phases`): which
events count, and the three phases in milliseconds."""

from __future__ import annotations

import pytest

from beamish.runtime import Event
from benchmarks._isolation import restart_phases


def ev(kind: str, t: float) -> Event:
    return Event(kind=kind, name="f", supervisor="root", reason="", time=t)


DEAD, ANSWERED = 100.0, 100.020


@pytest.mark.parametrize(("events", "want"), [
    # one death, one restart: 3 ms to exited, 6 to restarted, 11 to the answer
    ([ev("exited", 100.003), ev("restarted", 100.009)], (3.0, 6.0, 11.0)),
    # the retries before the last death are left out: the last exited counts
    ([ev("exited", 99.5), ev("restarted", 99.51), ev("exited", 100.004),
      ev("restarted", 100.010)], (4.0, 6.0, 10.0)),
    # an event stamped a little before the death stamp (clock reads of two processes)
    ([ev("exited", 99.9995), ev("restarted", 100.005)], (-0.5, 5.5, 15.0)),
    # events after the answer do not count
    ([ev("exited", 100.002), ev("restarted", 100.008), ev("exited", 100.5)], (2.0, 6.0, 12.0)),
    ([ev("exited", 100.002)], None),  # no restart seen
    ([ev("restarted", 100.002)], None),  # no death seen
    ([], None),
])
def test_restart_phases(events, want):
    got = restart_phases(events, DEAD, ANSWERED)
    if want is None:
        assert got is None
    else:
        assert got is not None
        assert (got["exited"], got["restarted"], got["answered"]) == pytest.approx(want)
