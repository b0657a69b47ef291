"""The drain's pure rules (``runtime/cluster/drain.py``): one table per rule."""

from __future__ import annotations

import pytest

from beamish.runtime.cluster.drain import (
    STALL_GIVE_UP_S,
    DrainPhase,
    DrainStatus,
    drain_phase,
    outcome_line,
    progress_line,
    stalled,
)


@pytest.mark.parametrize(("drained", "elapsed", "timeout", "phase"), [
    (False, 0.0, 10.0, DrainPhase.DRAINING),        # just begun
    (False, 9.9, 10.0, DrainPhase.DRAINING),        # still in time
    (True, 3.0, 10.0, DrainPhase.DRAINED),          # every shard handed off
    (False, 10.0, 10.0, DrainPhase.INCOMPLETE),     # out of time
    (True, 12.0, 10.0, DrainPhase.DRAINED),         # done as time ran out: done
])
def test_drain_phase(drained, elapsed, timeout, phase):
    assert drain_phase(drained, elapsed, timeout) is phase


@pytest.mark.parametrize(("drained", "stalled_for", "phase"), [
    (False, 0.0, DrainPhase.DRAINING),                     # not stalled
    (False, STALL_GIVE_UP_S - 0.1, DrainPhase.DRAINING),   # a taker may join yet
    (False, STALL_GIVE_UP_S, DrainPhase.INCOMPLETE),       # no taker for long: ends now
    (True, STALL_GIVE_UP_S, DrainPhase.DRAINED),           # done is done
])
def test_a_stalled_drain_ends_before_its_timeout(drained, stalled_for, phase):
    assert drain_phase(drained, 30.0, 120.0, stalled_for) is phase


@pytest.mark.parametrize(("held", "rounds", "released", "waiting", "expected"), [
    (5, 3, 0, 0, True),     # shards held, rounds ran, none released or paced: no taker
    (0, 3, 0, 0, False),    # nothing left to hand off
    (5, 1, 0, 0, False),    # the first round may have been planned before the drain
    (5, 3, 2, 0, False),    # handing off
    (5, 3, 0, 4, False),    # held back by the pace: a taker exists
])
def test_stalled(held, rounds, released, waiting, expected):
    assert stalled(held, rounds, released, waiting) is expected


def _st(phase: DrainPhase, left: int = 0, stall: bool = False) -> DrainStatus:
    return DrainStatus("n1", "prod", phase, 20, left, 3, 4.25, 60.0, stall)


def test_status_round_trips_through_its_wire_form():
    st = _st(DrainPhase.DRAINING, 7, True)
    assert DrainStatus.from_wire(st.to_wire()) == st
    assert not st.final and _st(DrainPhase.DRAINED).final and _st(DrainPhase.INCOMPLETE).final


@pytest.mark.parametrize(("st", "words"), [
    (_st(DrainPhase.DRAINING, 7), ["7 of 20 shard(s) left", "3 replicated"]),
    (_st(DrainPhase.DRAINING, 7, True), ["no other node alive and not draining"]),
])
def test_progress_line(st, words):
    line = progress_line(st)
    assert all(w in line for w in words), line


@pytest.mark.parametrize(("st", "words"), [
    (_st(DrainPhase.DRAINED), ["'n1' of cluster 'prod' drained", "20 shard(s) handed off"]),
    (_st(DrainPhase.INCOMPLETE, 4), ["NOT drained within 60 s", "4 shard(s) left",
                                     "stops all the same"]),
    (_st(DrainPhase.INCOMPLETE, 4, True), ["NOT drained: no other node", "its 4 shard(s)",
                                           "did not wait out its timeout",
                                           "stops all the same"]),
])
def test_outcome_line(st, words):
    line = outcome_line(st)
    assert all(w in line for w in words), line
