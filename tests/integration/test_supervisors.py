"""Nested supervisors through real processes (the pure logic has its own unit tests)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from beamish.runtime import ConfigError
from tests.conftest import beamish, restarted, wait_until

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
    wait_until(lambda: restarted(node, "b", before["b"])
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
        wait_until(lambda p=pid: restarted(node, "b", p), what="the delayed restart")
        events = [e for e in node.events() if e.name == "b"]
        exited = [e.time for e in events if e.kind == "exited"][-1]
        back = [e.time for e in events if e.kind == "restarted"][-1]
        delays.append(back - exited)
    assert delays[0] >= 0.2 and delays[0] < delays[1] < delays[2], delays
    assert node.call("b", "get") == 0


def test_intensity_escalates_one_level_and_the_subtree_restarts(node):
    node.add_supervisor("mid", max_restarts=1, max_seconds=10)
    for name in "ab":
        node.spawn(COUNTER, name=name, supervisor="mid")
        node.call(name, "incr")
    outside = node.spawn(COUNTER, name="outside")
    outside_pid = node.info("outside").pid
    b_pid = node.info("b").pid
    for _ in range(2):  # the 2nd restart within 10 s is one too many for "mid"
        pid = node.info("a").pid
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda p=pid: restarted(node, "a", p), what="a restarted")
    wait_until(lambda: any(e.kind == "escalated" and e.name == "mid" for e in node.events()),
               what="mid to escalate")
    wait_until(lambda: restarted(node, "b", b_pid), what="b restarted with its supervisor")
    assert [node.call(n, "get") for n in "ab"] == [1, 1]  # the subtree came back with state
    assert node.info("outside").pid == outside_pid and outside.call("get") == 0  # root's other child untouched
    mid = next(c for c in node.tree()["children"] if c["name"] == "mid")
    assert [c["name"] for c in mid["children"]] == ["a", "b"]


def test_simple_one_for_one_children_of_one_template(node):
    node.add_supervisor("pool", strategy="simple_one_for_one", child_restart="transient")
    for i in range(3):
        node.spawn(COUNTER, name=f"w{i}", supervisor="pool", restart="permanent")
    pid = node.info("w1").pid
    os.kill(pid, signal.SIGKILL)  # abnormal: a transient child is restarted
    wait_until(lambda: restarted(node, "w1", pid), what="w1 restarted")
    node.stop("w2")  # removed at run time
    pool = next(c for c in node.tree()["children"] if c["name"] == "pool")
    assert pool["strategy"] == "simple_one_for_one"
    assert [c["name"] for c in pool["children"]] == ["w0", "w1"]


def test_tree_shows_a_nested_supervisor_restart_count(node, node_dir):
    node.add_supervisor("outer", max_restarts=5, max_seconds=10)
    node.add_supervisor("mid", parent="outer", max_restarts=0, max_seconds=10)  # gives up at once
    node.spawn(COUNTER, name="a", supervisor="mid")
    pid = node.info("a").pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: any(e.kind == "escalated" and e.name == "mid" for e in node.events()),
               what="mid to escalate")
    wait_until(lambda: restarted(node, "a", pid), what="a restarted with mid")
    # mid's record says running once its supervisor has seen its children start, which
    # may come just after a itself runs.
    tree = wait_until(lambda: (t := node.tree()) and next(
        c for c in t["children"] if c["name"] == "outer")["children"][0]["status"] == "running"
        and t, what="mid running again")
    assert (tree["name"], tree["restarts"]) == ("root", 0)
    outer = next(c for c in tree["children"] if c["name"] == "outer")
    mid = outer["children"][0]
    assert (mid["name"], mid["status"], mid["restarts"]) == ("mid", "running", 1)
    assert (outer["restarts"], outer["child_restarts"]) == (0, 1)  # mid's one restart, not a's
    assert mid["child_restarts"] == mid["children"][0]["restarts"]
    out = beamish("tree", "--dir", node_dir, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("mid "))
    assert "[supervisor one_for_one] running restarts=1 " in line, out
    tree_json = json.loads(beamish("tree", "--json", "--dir", node_dir, check=True).stdout)
    assert tree_json["children"][0]["children"][0]["restarts"] == 1
