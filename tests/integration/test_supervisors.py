"""Nested supervisors through real processes (the pure logic has its own unit tests)."""

from __future__ import annotations

import os
import signal

import pytest

from beamish.runtime import ConfigError
from tests.conftest import wait_until

pytestmark = pytest.mark.slow
COUNTER = "tests.agents.basic:Counter"


def _pids(node, names):
    return {n: node.info(n).pid for n in names}


@pytest.mark.parametrize("strategy, changed", [
    ("one_for_one", {"b"}), ("one_for_all", {"a", "b", "c"}), ("rest_for_one", {"b", "c"}),
])
def test_crash_of_the_second_of_three_children(node, strategy, changed):
    node.add_supervisor("workers", strategy=strategy, max_restarts=5, max_seconds=5)
    for name in "abc":
        node.spawn(COUNTER, name=name, supervisor="workers")
        node.call(name, "incr")
    before = _pids(node, "abc")
    os.kill(before["b"], signal.SIGKILL)
    wait_until(lambda: node.info("b").pid not in (None, before["b"])
               and all(node.info(n).status == "running" for n in "abc"),
               what="the strategy's restarts")
    after = _pids(node, "abc")
    assert {n for n in "abc" if after[n] != before[n]} == changed
    assert [node.call(n, "get") for n in "abc"] == [1, 1, 1]  # state kept by every restart
    tree = node.tree()
    workers = next(c for c in tree["children"] if c["name"] == "workers")
    assert workers["strategy"] == strategy and [c["name"] for c in workers["children"]] == list("abc")


def test_add_supervisor_refuses_bad_input(node):
    with pytest.raises(ConfigError, match="parent"):
        node.add_supervisor("s", parent="ghost")
    with pytest.raises(ConfigError, match="strategy"):
        node.add_supervisor("s", strategy="all_for_none")


def test_backoff_delays_grow_and_show_in_ps(node):
    node.add_supervisor("slow", max_restarts=10, max_seconds=30, backoff=(0.2, 2.0))
    node.spawn(COUNTER, name="b", supervisor="slow")
    delays = []
    for _ in range(3):
        info = node.info("b")
        pid = info.pid
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: node.info("b").status == "backoff", what="status backoff")
        wait_until(lambda p=pid: (lambda i: i.status == "running" and i.pid != p)(node.info("b")),
                   what="the delayed restart")
        events = [e for e in node.events() if e.name == "b"]
        exited = [e.time for e in events if e.kind == "exited"][-1]
        restarted = [e.time for e in events if e.kind == "restarted"][-1]
        delays.append(restarted - exited)
    assert delays[0] >= 0.2 and delays[0] < delays[1] < delays[2], delays
    assert node.call("b", "get") == 0
