"""The peers scenario of the benchmarks (`beamish bench --peers`), run small: beamish and the
threads runtime in the harness, Thespian and Pykka each in a subprocess of its own. No
figure is judged here (speed is the benchmark's business): the report must have every row
for every system, each figure a real measured number (or the runtime's honest n/a), and
nothing of a peer may outlive its teardown."""

from __future__ import annotations

import json
import math
import types

import pytest

from benchmarks.__main__ import markdown
from benchmarks._peers import LABELS, ROWS, PeerSizes, figure, installed, peers
from benchmarks._scenarios import Harness
from benchmarks._stats import machine_info

pytestmark = pytest.mark.slow

TINY = PeerSizes(call_warmup=10, call_samples=60, call_blocks=2, cast_messages=100,
                 cast_repeats=1, spawn_actors=4, kill_trials=1)


@pytest.fixture(scope="module")
def result():
    h = Harness()
    try:
        h.start_raw()
        h.start()
        got = peers(h, types.SimpleNamespace(peer_sizes=TINY))
    finally:
        h.close()
    assert h.leftovers == [], "a beamish process outlived the node's shutdown"
    return got


def test_every_system_has_every_row_as_a_real_number(result):
    systems = result["systems"]
    for key in ("beamish", "threads", "thespian", "pykka"):
        s = systems[key]
        assert s["available"] and "error" not in s, s.get("traceback", s)
        assert s.get("leftover_processes", []) == [], f"{key} left processes behind"
        for row in ROWS:
            value = figure(row.key, s)
            if s["isolation"] == "threads" and row.key in ("kill", "kept"):
                assert value == "n/a (threads)"
                continue
            assert isinstance(value, float) and math.isfinite(value), (key, row.key, value)
            assert value >= 0
        assert s["spawn"]["distinct_pids"] == (TINY.spawn_actors if s["isolation"] == "process"
                                               else 1)
    assert systems["beamish"]["kill"]["state_kept"] is True
    assert systems["beamish"]["kill"]["answers"] == [20]
    # Thespian re-creates the actor; its count starts again
    assert systems["thespian"]["kill"]["answers"] == [0]
    if not installed("ray"):
        assert systems["ray"] == {"available": False, "why": "not installed"}


def test_the_report_has_a_peers_table_and_a_verdict(result, tmp_path):
    results = {"mode": "quick", "beamish_version": "test", "duration_s": 1.0,
               "machine": machine_info(), "config": {"durability": "default"},
               "scenarios": {"peers": result}}
    # what --report-from reads back
    results = json.loads(json.dumps(results, default=str))
    md = markdown(results)
    assert "## Peers: the same rows on other actor runtimes" in md
    header = next(line for line in md.splitlines() if line.startswith("| row | figure |"))
    for key in ("beamish", "threads", "thespian", "pykka", "ray"):
        assert LABELS[key] in header
    for row in ROWS:
        line = next(line for line in md.splitlines()
                    if line.startswith(f"| {row.label} | {row.unit} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 2 + 5 + 1, line
        assert "Thespian" in cells[-1], "no verdict against Thespian on " + row.key
        assert cells[-1].split()[0] in ("leads", "trails", "ties")
    assert "| raw ZeroMQ DEALER↔ROUTER (the in-run reference) |" in md
    assert "beamish ahead of every process-based peer on every row (Thespian" in md
