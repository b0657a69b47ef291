"""The peers scenario's pure parts: reading a system's figure for a row, its ratio to the
in-run raw round trip, and how beamish is judged against the process-based peers."""

from __future__ import annotations

import pytest

from benchmarks._peers import ROWS, ahead_target, compare, figure, reference_ratio, verdict

LOWER = next(r for r in ROWS if r.key == "call_p50")
HIGHER = next(r for r in ROWS if r.key == "cast")


def _system(p50: float, p99: float, rate: float, spawn: float, uss_mib: float,
            kill: dict | None = None, isolation: str = "process", raw50: float = 100.0,
            raw99: float = 200.0) -> dict:
    return {"available": True, "isolation": isolation,
            "call": {"p50_us": p50, "p99_us": p99}, "raw": {"p50_us": raw50, "p99_us": raw99},
            "cast": {"msgs_per_s": rate},
            "spawn": {"seconds": spawn, "memory": {"uss_bytes_per_actor": uss_mib * 2**20}},
            "kill": kill if kill is not None else {"na": "threads"}}


KEPT = {"back_ms": 10.0, "trials": 3, "state_kept_count": 3, "state_kept": True}
LOST = {"back_ms": 30.0, "trials": 3, "state_kept_count": 0, "state_kept": False}


@pytest.mark.parametrize(("row", "ours", "theirs", "want"), [
    (LOWER, 200.0, 600.0, "leads"),  # a lower latency leads
    (LOWER, 600.0, 200.0, "trails"),
    (HIGHER, 9000.0, 2000.0, "leads"),  # a higher rate leads
    (HIGHER, 2000.0, 9000.0, "trails"),
    (LOWER, 5.0, 5.0, "ties"),
    (LOWER, 5.0, "n/a (threads)", None),  # n/a is no contest
    (LOWER, None, 5.0, None),  # not measured
])
def test_verdict(row, ours, theirs, want):
    assert verdict(row, ours, theirs) == want


@pytest.mark.parametrize(("row", "figures", "want"), [
    ("call_p50", _system(300, 900, 1e4, 1.0, 4.0), 300.0),
    ("call_p99", _system(300, 900, 1e4, 1.0, 4.0), 900.0),
    ("cast", _system(300, 900, 1e4, 1.0, 4.0), 1e4),
    ("spawn", _system(300, 900, 1e4, 1.5, 4.0), 1.5),
    ("memory", _system(300, 900, 1e4, 1.0, 3.5), 3.5),  # MiB
    ("kill", _system(300, 900, 1e4, 1.0, 4.0, KEPT), 10.0),
    ("kept", _system(300, 900, 1e4, 1.0, 4.0, LOST), 0.0),  # a share of the trials
    ("kill", _system(300, 900, 1e4, 1.0, 4.0), "n/a (threads)"),
    ("kept", _system(300, 900, 1e4, 1.0, 4.0), "n/a (threads)"),
    ("call_p50", {"available": False, "why": "not installed"}, None),
    ("call_p50", {"available": True, "error": "RuntimeError: x"}, None),
])
def test_figure(row, figures, want):
    assert figure(row, figures) == want


@pytest.mark.parametrize(("row", "want"), [
    ("call_p50", 3.0),  # 300 / raw p50 100
    ("call_p99", 4.5),  # 900 / raw p99 200
    ("cast", 1.0),  # 10,000 msgs/s: 100 µs a message, over raw p50 100
    ("spawn", None),
    ("memory", None),
    ("kill", None),
])
def test_reference_ratio(row, want):
    assert reference_ratio(row, _system(300, 900, 1e4, 1.0, 4.0, KEPT)) == want


def test_compare_only_process_based_measured_peers():
    systems = {
        "beamish": _system(300, 900, 1e4, 1.0, 4.0, KEPT),
        "threads": _system(10, 20, 4e5, 0.02, 0.03, isolation="threads"),
        "thespian": _system(600, 3000, 2e3, 1.3, 3.9, LOST),
        "pykka": _system(18, 35, 1e5, 0.3, 0.02, isolation="threads"),
        "ray": {"available": False, "why": "not installed"},
    }
    got = compare(systems)
    assert set(got) == {r.key for r in ROWS}
    assert all(set(ent) == {"thespian"} for ent in got.values())
    assert got["call_p50"]["thespian"] == {"verdict": "leads", "factor": 2.0}
    assert got["cast"]["thespian"] == {"verdict": "leads", "factor": 5.0}
    assert got["memory"]["thespian"]["verdict"] == "trails"
    assert got["kept"]["thespian"]["verdict"] == "leads"
    target = ahead_target(got)
    assert target["peers"] == ["thespian"]
    assert target["behind"] == ["memory vs Thespian"]
    assert target["met"] is False


@pytest.mark.parametrize(("comparison", "met", "behind"), [
    ({"call_p50": {"thespian": {"verdict": "leads", "factor": 2.0}},
      "kept": {"thespian": {"verdict": "ties", "factor": None}}}, True, []),
    ({"call_p50": {"thespian": {"verdict": "ties", "factor": 1.0}}}, False,
     ["call_p50 vs Thespian"]),  # level is not ahead
    ({"call_p50": {"ray": {"verdict": "trails", "factor": 0.5}}}, False, ["call_p50 vs Ray"]),
    ({"call_p50": {}}, False, []),  # no process-based peer measured: not met
])
def test_ahead_target(comparison, met, behind):
    got = ahead_target(comparison)
    assert (got["met"], got["behind"]) == (met, behind)
