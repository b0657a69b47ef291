"""The ``loaded`` scenario of the benchmarks, run small: 4 real sender processes cast to 100
agents while an idle agent is called. No latency is judged here (the benchmark reports the
target met or missed); the figures must be real, every acknowledged cast handled, and the
report must carry the rows and the target."""

from __future__ import annotations

import math
import types

import pytest

from benchmarks.__main__ import markdown
from benchmarks._loaded import BUSY_AGENTS, SENDERS, LoadedSizes, loaded
from benchmarks._scenarios import Harness
from benchmarks._stats import machine_info

pytestmark = pytest.mark.slow


def test_loaded_scenario_reports_its_ratio_and_loses_no_cast():
    h = Harness()
    try:
        h.start()
        got = loaded(h, types.SimpleNamespace(loaded_sizes=LoadedSizes(rounds=2, samples=30)))
        assert list(h.node.ps()) == [], "the scenario left its agents behind"
    finally:
        h.close()
    assert h.leftovers == []
    assert got["casts_sent"] > 0, "the senders sent nothing: nothing was loaded"
    assert got["casts_handled"] == got["casts_sent"]
    assert got["sender_errors"] == {}
    for phase in ("unloaded", "loaded"):
        assert got[phase]["n"] == 2 * 30
        assert math.isfinite(got[phase]["p99_us"]) and got[phase]["p99_us"] > 0
    assert got["p99_ratio"] == pytest.approx(got["loaded"]["p99_us"] / got["unloaded"]["p99_us"])
    assert got["target"]["met"] == (got["p99_ratio"] <= 3.0)
    md = markdown({"mode": "quick", "beamish_version": "test", "duration_s": 1.0,
                   "machine": machine_info(), "config": {"durability": "default"},
                   "scenarios": {"loaded": got}})
    what = f"{BUSY_AGENTS} agents busy on casts from {SENDERS} sender processes"
    assert f"| call to an idle agent, {what} | p99 µs |" in md
    assert f"| an idle agent's call p99 with {what}, over its unloaded p99: ≤ 3× |" in md
