"""The cluster scenario's pure parts: how its targets are judged and reported, and that
quick runs leave it out unless it is named."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.__main__ import _parse
from benchmarks._cluster import _targets, target_rows


def _figures(same_ms: float, cross_ms: float, casts: list[float],
             kills: list[float]) -> dict[str, Any]:
    per = {f"n{i + 1}": {"threads": {"acked_msgs_per_s": r}} for i, r in enumerate(casts)}
    out: dict[str, Any] = {
        "calls": {"same-node": {"p50_us": same_ms * 1000},
                  "cross-node": {"p50_us": cross_ms * 1000}},
        "casts": per,
        "failover": {"runs": [{"seconds": s} for s in kills],
                     "p50_s": sorted(kills)[len(kills) // 2], "max_s": max(kills)},
    }
    out["targets"] = _targets(out)
    return out


@pytest.mark.parametrize(("same", "cross", "casts", "kills", "met"), [
    (1.8, 2.3, [2500, 2100, 2000], [6.0, 7.0, 7.5], [True, True, True, True]),
    (1.8, 3.1, [2500, 2100, 2000], [6.0, 7.0, 7.5], [False, True, True, True]),
    (3.2, 2.0, [2500, 2100, 2000], [6.0, 7.0, 7.5], [True, False, True, True]),
    # the slowest node decides the casts' target
    (1.8, 2.3, [2500, 1999, 3000], [6.0, 7.0, 7.5], [True, True, False, True]),
    # failover: p50 over 8 s, or one kill over 15 s
    (1.8, 2.3, [2500, 2100, 2000], [8.5, 9.0, 7.0], [True, True, True, False]),
    (1.8, 2.3, [2500, 2100, 2000], [6.0, 16.0, 7.0], [True, True, True, False]),
])
def test_each_target_is_judged_against_its_bound(same: float, cross: float,
                                                 casts: list[float], kills: list[float],
                                                 met: list[bool]):
    rows = target_rows(_figures(same, cross, casts, kills))
    assert [r.endswith("**met** |") for r in rows] == met
    assert all(r.endswith(("**met** |", "**missed** |")) for r in rows)


def test_a_failed_or_missing_scenario_has_no_target_rows():
    assert target_rows(None) == []
    assert target_rows({"error": "RuntimeError: no PostgreSQL"}) == []


@pytest.mark.parametrize(("argv", "has_cluster"), [
    (["--quick"], False),
    ([], True),
    (["--quick", "--scenarios", "cluster"], True),
    (["--quick", "--scenarios", "call,cluster"], True),
])
def test_quick_runs_leave_the_cluster_scenario_out_unless_named(argv: list[str],
                                                                has_cluster: bool):
    assert ("cluster" in _parse(argv).scenario_list) is has_cluster
