"""node/activity.py: which awake agents max_awake puts to sleep. One test per rule."""

from __future__ import annotations

import pytest

from beamish.runtime.node.activity import Activity, choose_sleepers, observe


def a(name: str, active_at: float, idle: bool = True, processed: int = 0) -> Activity:
    return Activity(name, processed, active_at, idle)


@pytest.mark.parametrize(
    ("awake", "max_awake", "expected"),
    [
        pytest.param([a("x", 1), a("y", 2)], None, [], id="unlimited: nobody sleeps"),
        pytest.param([a("x", 1), a("y", 2)], 2, [], id="at the limit: nobody sleeps"),
        pytest.param([a("x", 5), a("y", 2), a("z", 9)], 2, ["y"],
                     id="over by one: the least recently active"),
        pytest.param([a("x", 5), a("y", 2), a("z", 9)], 1, ["y", "x"],
                     id="over by two: the two least recently active, oldest first"),
        pytest.param([a("x", 1, idle=False), a("y", 2), a("z", 3)], 2, ["y"],
                     id="an agent with messages waiting is never chosen"),
        pytest.param([a("x", 1, idle=False), a("y", 2, idle=False)], 1, [],
                     id="too few idle: fewer sleep than the excess"),
        pytest.param([a("b", 1), a("a", 1), a("c", 2)], 1, ["a", "b"],
                     id="ties go by name"),
        pytest.param([a("x", 1)], 0, ["x"], id="max_awake 0: every idle agent sleeps"),
    ],
)
def test_choose_sleepers(awake: list[Activity], max_awake: int | None,
                         expected: list[str]) -> None:
    assert choose_sleepers(awake, max_awake) == expected


@pytest.mark.parametrize(
    ("processed", "idle", "now", "expected_at"),
    [
        pytest.param(3, True, 10.0, 1.0, id="same count: still as active as before"),
        pytest.param(4, True, 10.0, 10.0, id="a moved count is activity now"),
        pytest.param(3, False, 10.0, 1.0, id="messages waiting is not activity"),
    ],
)
def test_observe(processed: int, idle: bool, now: float, expected_at: float) -> None:
    prev = Activity("x", 3, 1.0, True)
    assert observe(prev, processed, idle, now) == Activity("x", processed, expected_at, idle)
