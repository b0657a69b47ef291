"""Bounded: at most ``limit`` entries, the oldest dropped first; one test per rule."""

from __future__ import annotations

import pytest

from beamish.runtime.node.bounded import Bounded


@pytest.mark.parametrize(("limit", "puts", "kept", "dropped"), [
    (3, ["a", "b"], ["a", "b"], [0, 0]),
    (3, ["a", "b", "c"], ["a", "b", "c"], [0, 0, 0]),
    (3, ["a", "b", "c", "d"], ["b", "c", "d"], [0, 0, 0, 1]),  # the oldest goes first
    (1, ["a", "b", "c"], ["c"], [0, 1, 1]),
    (2, ["a", "b", "a"], ["b", "a"], [0, 0, 0]),  # a key put again replaces, newest
    (2, ["a", "b", "a", "c"], ["a", "c"], [0, 0, 0, 1]),  # ... so "b" is now the oldest
])
def test_put_keeps_the_newest_limit_entries(limit, puts, kept, dropped):
    held: Bounded[str, int] = Bounded(limit)
    assert [held.put(k, i) for i, k in enumerate(puts)] == dropped
    assert len(held) == len(kept)
    assert all(k in held for k in kept)
    assert not any(k in held for k in set(puts) - set(kept))


def test_pop_takes_the_entry_once():
    held: Bounded[int, str] = Bounded(4)
    held.put(7, "x")
    assert held.pop(7) == "x"
    assert held.pop(7) is None and 7 not in held and len(held) == 0


def test_pop_of_an_absent_key_is_none():
    assert Bounded[int, str](2).pop(1) is None


def test_a_popped_entry_frees_its_room():
    held: Bounded[str, int] = Bounded(2)
    held.put("a", 1)
    held.put("b", 2)
    held.pop("a")
    assert held.put("c", 3) == 0 and "b" in held


def test_limit_below_one_is_refused():
    with pytest.raises(ValueError):
        Bounded(0)
