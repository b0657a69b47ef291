"""RestartLog: OTP's add_restart/3, table-driven, with now passed in (no sleeping)."""

from __future__ import annotations

import pytest

from beamish.supervisor import RestartLog


def replay(times: list[float], max_restarts: int, max_seconds: float) -> list[bool]:
    log, out = RestartLog(), []
    for now in times:
        log, exceeded = log.record(now, max_restarts, max_seconds)
        out.append(exceeded)
    return out


@pytest.mark.parametrize(
    ("times", "max_restarts", "max_seconds", "expected"),
    [
        pytest.param([0.0], 3, 5.0, [False], id="first_restart"),
        pytest.param([0.0, 0.1, 0.2, 0.3], 3, 5.0, [False, False, False, True], id="fourth_within_period_exceeds"),
        pytest.param([0.0, 0.1, 0.2], 3, 5.0, [False, False, False], id="max_restarts_is_tolerated"),
        pytest.param([0.0], 0, 5.0, [True], id="zero_intensity_gives_up_at_once"),
        pytest.param([0.0, 5.0], 1, 5.0, [False, True], id="restart_exactly_period_ago_still_counts"),
        pytest.param([0.0, 5.01], 1, 5.0, [False, False], id="restart_older_than_period_is_dropped"),
        pytest.param([0.0, 2.0, 4.0, 6.0, 8.0], 2, 3.0, [False, False, False, False, False], id="spaced_restarts_never_exceed"),
        pytest.param([0.0, 1.0, 1.5, 10.0, 10.1, 10.2], 2, 3.0, [False, False, True, False, False, True], id="window_slides"),
    ],
)
def test_add_restart(times: list[float], max_restarts: int, max_seconds: float, expected: list[bool]) -> None:
    assert replay(times, max_restarts, max_seconds) == expected


def test_record_keeps_newest_first_and_drops_old() -> None:
    log = RestartLog((4.0, 3.0, 0.5))
    new, exceeded = log.record(6.0, 5, 3.0)
    assert new.times == (6.0, 4.0, 3.0)
    assert not exceeded
    assert log.times == (4.0, 3.0, 0.5)  # immutable: the old log is unchanged
    assert len(new) == 3
