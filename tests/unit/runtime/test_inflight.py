"""The in-flight marker: what a dead agent had begun and not committed, and whom it blames."""

from __future__ import annotations

from beamish.runtime.agent.inflight import TIMER_SEQ, InFlight, Unfinished, blame, read_unfinished


def test_a_running_handler_is_blamed_and_the_uncommitted_group_counted_too():
    assert blame(Unfinished(9, 5, 8), {5, 6, 8, 9}) == (9, (5, 6, 8))


def test_a_death_after_the_handler_returned_blames_the_last_uncommitted_message():
    assert blame(Unfinished(None, 5, 7), {5, 6, 7}) == (7, (5, 6))


def test_a_committed_group_blames_nothing():
    assert blame(Unfinished(None, 5, 7), set()) == (None, ())
    assert blame(Unfinished(), set()) == (None, ())


def test_the_marker_file_round_trips_each_step(tmp_path):
    path = str(tmp_path / "a1.busy")
    busy = InFlight(path, incarnation=4)
    busy.mark(10)
    assert read_unfinished(path, 4) == Unfinished(10, 0, 0)
    busy.returned()
    busy.mark(11)
    busy.returned()
    assert read_unfinished(path, 4) == Unfinished(None, 10, 11)
    busy.committed()
    assert read_unfinished(path, 4) == Unfinished(None, 0, 0)
    busy.mark(TIMER_SEQ)
    assert read_unfinished(path, 4) == Unfinished(None, 0, 0)  # a timer is no message
    assert read_unfinished(path, 5) == Unfinished()  # another incarnation's file
    busy.close()
