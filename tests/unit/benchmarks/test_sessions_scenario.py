"""The sessions scenario's pure parts (how calls are classified, how targets are judged,
how the sampled timeline is read) and its threads side (the session pool, the workload
driver), with real threads."""

from __future__ import annotations

import threading

import pytest

from beamish.runtime.errors import CallTimeout
from benchmarks._sessions import (
    SESSION,
    CallRecord,
    SessionPool,
    SessionSizes,
    _Names,
    drive,
    judge,
    node_log_errors,
    session_name,
    summarize,
    timeline_summary,
)

MB = 10**6


def _rec(latency_ms: float, first: bool, woke: bool | None, initialized: bool) -> CallRecord:
    return CallRecord(0.0, int(latency_ms * 1e6), first, woke, initialized)


@pytest.mark.parametrize(("records", "counts"), [
    # a first activation (init ran), two awake calls
    ([_rec(9, True, True, True), _rec(1, False, False, False), _rec(1, False, False, False)],
     {"woke": 1, "first_activation": 1, "awake": 2, "first_call": 1, "later_calls": 2}),
    # put to sleep by max_awake between two calls of one activation: a later call woke it
    ([_rec(9, True, True, True), _rec(5, False, True, False)],
     {"woke": 2, "first_activation": 1, "rewoke": 1, "first_call": 1, "later_calls": 1}),
    # the threads side cannot tell a wake: only first and later calls
    ([_rec(1, True, None, True), _rec(1, False, None, False)],
     {"first_call": 1, "later_calls": 1}),
    ([], {}),
])
def test_summarize_counts_each_kind_of_call(records, counts):
    got = summarize(records)
    assert {kind: s["n"] for kind, s in got.items()} == counts


def test_summarize_gives_latencies_in_microseconds():
    got = summarize([_rec(9, True, True, False), _rec(11, True, True, False)])
    assert got["rewoke"]["p50_us"] == pytest.approx(10_000)


WAKES = {"n": 500, "p50_us": 12_000.0, "p99_us": 40_000.0}


@pytest.mark.parametrize(("sessions", "seconds", "rss_empty", "rss", "woke", "met"), [
    # the target's own count: judged as measured
    (100_000, 9.5, 40 * MB, 300 * MB, WAKES, [True, True, True]),
    (100_000, 10.5, 40 * MB, 501 * MB, WAKES, [False, False, True]),
    # fewer (quick): the rate, and the RSS growth per session projected to 100,000
    (10_000, 0.9, 40 * MB, 80 * MB, WAKES, [True, True]),  # 40 + 400 MB: met
    (10_000, 1.1, 40 * MB, 87 * MB, WAKES, [False, False]),  # 40 + 470 MB: missed
    # wake latency: both quantiles must be within
    (100_000, 1.0, 40 * MB, 50 * MB, {**WAKES, "p50_us": 21_000.0}, [True, True, False]),
    (100_000, 1.0, 40 * MB, 50 * MB, {**WAKES, "p99_us": 51_000.0}, [True, True, False]),
    (100_000, 1.0, 40 * MB, 50 * MB, None, [True, True, False]),  # nothing woke
])
def test_judge(sessions, seconds, rss_empty, rss, woke, met):
    targets = judge(sessions, seconds, rss_empty, rss, woke)
    assert len(targets) == 3
    assert [t.met for t in targets][:len(met)] == met


def test_judge_says_when_it_projects():
    reg, rss, _ = judge(10_000, 1.0, 40 * MB, 80 * MB, WAKES)
    assert "judged by the rate" in reg.what and "10,000/s" in reg.figure
    assert "projected from 10,000" in rss.what and "440 MB projected" in rss.figure


def test_timeline_summary_reads_the_window():
    samples = [(0.0, 2, 10), (1.0, 50, 30), (2.0, 70, 20), (3.0, 4, 10)]
    assert timeline_summary(samples, 0.5, 2.5) == {
        "samples": 2, "max": 70, "mean": 60.0, "last": 70, "rss_bytes_max": 30}
    assert timeline_summary(samples, 5.0, 6.0) == {"samples": 0}


def test_names_never_hands_out_an_active_session():
    names = _Names(3, 2, returning=0.0, seed=1)
    a, b = names.take(), names.take()
    assert a != b
    names.release(a)
    assert names.take() != b  # only a or the third one can come: b is active
    with pytest.raises(ValueError, match="cannot keep 3"):
        _Names(3, 3, returning=0.0, seed=1)


@pytest.mark.parametrize(("returning", "returned"), [(0.0, 0), (1.0, 2)])
def test_names_returning_users_come_back_longest_idle_first(returning, returned):
    names = _Names(100, 2, returning=returning, seed=1)
    a, b = names.take(), names.take()
    names.release(a)
    names.release(b)
    again = [names.take(), names.take()]
    assert names.returned == returned and names.taken == 4
    assert (again == [a, b]) == (returning == 1.0)


def test_pool_runs_init_lazily_and_keeps_each_session_in_order():
    pool = SessionPool(SESSION, workers=3)
    try:
        for i in range(10):
            pool.register(session_name(i))

        def caller(name: str, out: list[int]) -> None:
            out.extend(pool.call(name, "hi")["n"] for _ in range(50))
        results: dict[str, list[int]] = {session_name(i): [] for i in range(10)}
        threads = [threading.Thread(target=caller, args=item) for item in results.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(got == list(range(1, 51)) for got in results.values())
        with pytest.raises(KeyError, match="no session 'nobody'"):
            pool.call("nobody", "hi")
    finally:
        pool.close()


def test_pool_call_times_out():
    pool = SessionPool(SESSION, workers=1)
    try:
        pool.register("a")
        gate = threading.Event()
        pool._queues[0].put(("a", "hi", _Blocker(gate), 0))  # the worker blocks on it
        with pytest.raises(CallTimeout):
            pool.call("a", "hi", timeout=0.05)
        gate.set()
        assert pool.call("a", "hi")["n"] == 3  # the timed-out call was handled meanwhile
    finally:
        pool.close()


class _Blocker:
    """A reply slot whose ``put`` blocks until ``gate`` is set (holds the worker)."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def put(self, item: object) -> None:
        self.gate.wait(10)


def test_drive_gives_each_activation_its_calls():
    sz = SessionSizes(sessions=200, active=20, calls_per_session=3, think_s=0.1,
                      returning=0.0, idle_timeout_s=1.0, max_awake=20, workload_s=1.0, clients=4,
                      sample_every_s=0.5)
    pool = SessionPool(SESSION, workers=2)
    try:
        for i in range(sz.sessions):
            pool.register(session_name(i))
        driven = drive(lambda name, msg: pool.call(name, msg), sz, knows_wakes=False)
    finally:
        pool.close()
    assert not driven.errors and not driven.wrong_counts
    firsts = sum(r.first for r in driven.records)
    assert firsts == sum(r.initialized for r in driven.records)  # 200 sessions: none repeats
    assert len(driven.records) == pytest.approx(sz.active * sz.workload_s / sz.think_s,
                                                rel=0.2)
    assert firsts <= driven.activations <= firsts + sz.active


LOG = """\
2026-12-07 14:47:13,301 INFO beamish.node: node serving
2026-12-07 14:47:35,731 ERROR beamish.node.sessions: cannot put agent 'a' to sleep (idle)
Traceback (most recent call last):
  File "x.py", line 1, in f
zmq.error.ZMQError: Too many open files
2026-12-07 14:47:35,742 ERROR beamish.node.sessions: cannot put agent 'b' to sleep (idle)
Traceback (most recent call last):
  File "x.py", line 1, in f
zmq.error.ZMQError: Too many open files
2026-12-07 14:47:36,000 ERROR beamish.node: no traceback here
2026-12-07 14:47:36,001 INFO beamish.node: event slept a (sessions) idle
"""


@pytest.mark.parametrize(("files", "expected"), [
    ({}, {"errors": 0, "distinct": []}),
    ({"node.log": "2026-12-07 14:47:13,301 INFO beamish.node: node serving\n"},
     {"errors": 0, "distinct": []}),
    ({"node.log.1": LOG, "node.log": LOG.splitlines(keepends=True)[5]},
     {"errors": 4, "distinct": [
         "zmq.error.ZMQError: Too many open files",
         "2026-12-07 14:47:36,000 ERROR beamish.node: no traceback here",
         "2026-12-07 14:47:35,742 ERROR beamish.node.sessions: cannot put agent 'b' to "
         "sleep (idle)"]}),
])
def test_node_log_errors_counts_every_generation(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert node_log_errors(str(tmp_path)) == expected
