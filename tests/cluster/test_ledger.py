"""The ledger check of the cluster fault tests (`tests/cluster/ledger.py`), one case per
rule: each broken ledger fails it, naming the rule."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.cluster.ledger import check_agent


@dataclass
class _Ledger:
    index: int
    acked: dict[str, list[int]] = field(default_factory=dict)
    doubt: dict[str, set[int]] = field(default_factory=dict)


def _senders() -> list[_Ledger]:
    return [_Ledger(0, {"a": [1, 2, 4]}, {"a": {3}}), _Ledger(1, {"a": [1, 2]})]


@pytest.mark.parametrize(("applied", "found"), [
    ([[0, 1], [1, 1], [0, 2], [1, 2], [0, 4]], 5),                # the one in doubt: not applied
    ([[0, 1], [0, 2], [1, 1], [0, 3], [0, 4], [1, 2]], 5),        # ...or applied, in order
    ([["cast", 0, 1], ["call", 0, 2], ["cast", 1, 1], ["cast", 0, 4], ["cast", 1, 2]], 5),
])
def test_a_ledger_kept_passes(applied: list[list[object]], found: int):
    assert check_agent("a", applied, _senders()) == found


@pytest.mark.parametrize(("applied", "rule"), [
    ([[0, 1], [0, 1], [0, 2], [0, 4], [1, 1], [1, 2]], "applied twice"),
    ([[0, 2], [0, 1], [0, 4], [1, 1], [1, 2]], "sender 0's order"),
    ([[0, 1], [0, 4], [1, 1], [1, 2]], "acknowledged casts lost: [2]"),
    ([[0, 1], [0, 2], [0, 4], [1, 1]], "sender 1: acknowledged casts lost: [2]"),
    ([[0, 1], [0, 2], [0, 4], [0, 5], [1, 1], [1, 2]], "never acknowledged nor in doubt: [5]"),
    ([[0, 1], [0, 2], [0, 4], [1, 1], [1, 2], [1, 3]], "sender 1: applied but never"),
])
def test_a_broken_ledger_fails_naming_its_rule(applied: list[list[object]], rule: str):
    with pytest.raises(AssertionError, match=rule.replace("[", r"\[").replace("]", r"\]")):
        check_agent("a", applied, _senders())
