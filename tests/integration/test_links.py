"""Links and monitors between agents, as in Erlang, through real processes."""

from __future__ import annotations

import os
import signal

import pytest

from beamish.runtime import RemoteError
from tests.conftest import restarted, wait_until

pytestmark = pytest.mark.slow
WATCHER = "tests.agents.basic:Watcher"
TRAPPER = "tests.agents.basic:TrappingWatcher"
COUNTER = "tests.agents.basic:Counter"


def test_monitor_delivers_down_when_the_target_dies(node):
    w = node.spawn(WATCHER, name="w")
    node.spawn(COUNTER, name="t")
    assert w.call(["monitor", "t"]) == "ok"
    os.kill(node.info("t").pid, signal.SIGKILL)
    seen = wait_until(lambda: w.call("seen"), what="the Down message")
    assert seen[0][:2] == ["Down", "t"] and "killed" in seen[0][2]


def test_monitor_of_a_dead_name_is_down_noproc(node):
    w = node.spawn(WATCHER, name="w")
    w.call(["monitor", "ghost"])
    assert wait_until(lambda: w.call("seen"), what="Down noproc") == [["Down", "ghost", "noproc"]]


def test_link_kills_the_other_side_unless_it_traps_exits(node):
    a = node.spawn(WATCHER, name="a")
    node.spawn(COUNTER, name="b")
    a_pid = a.call("pid")
    a.call(["link", "b"])
    os.kill(node.info("b").pid, signal.SIGKILL)
    wait_until(lambda: restarted(node, "a", a_pid), what="a killed by the link and restarted")
    failure = node.info("a").last_failure
    assert failure.kind == "killed" and "linked agent 'b'" in failure.message


def test_trap_exits_receives_exit_instead(node):
    a = node.spawn(TRAPPER, name="a")
    node.spawn(COUNTER, name="b")
    a_pid = a.call("pid")
    a.call(["link", "b"])
    os.kill(node.info("b").pid, signal.SIGKILL)
    seen = wait_until(lambda: a.call("seen"), what="the Exit message")
    assert seen[0][:2] == ["Exit", "b"]
    assert a.call("pid") == a_pid  # not killed


def test_links_work_both_ways_and_normal_exits_do_not_propagate(node):
    a = node.spawn(WATCHER, name="a")
    node.spawn(TRAPPER, name="b")
    a_pid = a.call("pid")
    a.call(["link", "b"])
    node.stop("b")  # a normal exit
    assert a.call("pid") == a_pid
    node.spawn(TRAPPER, name="b")
    node.call("b", ["link", "a"])
    os.kill(a_pid, signal.SIGKILL)  # now the other way round
    seen = wait_until(lambda: node.call("b", "seen"), what="b's Exit")
    assert seen[0][:2] == ["Exit", "a"]


def test_an_agent_trapping_exits_hears_of_a_normal_exit_too(node):
    a = node.spawn(TRAPPER, name="a")
    node.spawn(COUNTER, name="b")
    a.call(["link", "b"])
    node.stop("b")  # normal: it kills no one, but a trapping agent gets Exit, as in Erlang
    seen = wait_until(lambda: a.call("seen"), what="the Exit message")
    assert seen[0][:2] == ["Exit", "b"] and seen[0][2].startswith("normal")


def test_link_to_a_dead_name_raises(node):
    a = node.spawn(WATCHER, name="a")
    with pytest.raises(RemoteError, match="AgentNotFound"):
        a.call(["link", "ghost"])
