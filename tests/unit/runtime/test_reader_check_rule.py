"""reader_check_due: when the node clears dead processes' LMDB reader slots (pure)."""

from __future__ import annotations

import pytest

from beamish.runtime.node.readers import (
    READER_CHECK_AFTER_EXIT_S,
    READER_CHECK_IDLE_S,
    ReaderCheck,
    reader_check_due,
)

LAST = ReaderCheck(at=100.0, exits=7)


@pytest.mark.parametrize(("now", "exits", "due"), [
    # No process exited: only the slow check, for processes the node does not hear about.
    (100.0 + READER_CHECK_AFTER_EXIT_S, 7, False),
    (100.0 + READER_CHECK_IDLE_S - 0.1, 7, False),
    (100.0 + READER_CHECK_IDLE_S, 7, True),
    # An agent's process exited: soon, but not more often than the short period.
    (100.0 + READER_CHECK_AFTER_EXIT_S - 0.1, 8, False),
    (100.0 + READER_CHECK_AFTER_EXIT_S, 8, True),
    (100.0 + READER_CHECK_AFTER_EXIT_S, 1007, True),
    (100.0 + READER_CHECK_IDLE_S, 8, True),
])
def test_reader_check_due(now: float, exits: int, due: bool) -> None:
    assert reader_check_due(LAST, now, exits) is due
