"""The root supervisor's per-child intensity, --strict, restart types, shutdown, events,
durability modes and config files, through real processes."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from beamish.runtime import AgentNotFound, ConfigError, RemoteError, start_node
from tests.conftest import kill_tree, shutdown_quietly, wait_until
from tests.conftest import restarted as agent_restarted

pytestmark = pytest.mark.slow
COUNTER = "tests.agents.basic:Counter"
OBEDIENT = "tests.agents.basic:Obedient"


def _crash(node, name):
    os.kill(node.info(name).pid, signal.SIGKILL)


def test_root_marks_a_child_failed_past_its_intensity_and_serves_the_rest(node):
    ref = node.spawn(COUNTER, name="flaky")
    steady = node.spawn(COUNTER, name="steady")
    ref.call("incr")
    for i in range(4):  # the 4th restart within 5 s is one too many (max_restarts=3)
        wait_until(lambda: node.info("flaky").status == "running", what="flaky running")
        _crash(node, "flaky")
        if i < 3:
            wait_until(lambda r=i: node.info("flaky").restarts == r + 1, what="a restart")
    wait_until(lambda: node.info("flaky").status == "failed", what="flaky marked failed")
    with pytest.raises(AgentNotFound, match="failed"):
        ref.call("get")
    assert steady.call("incr") == 1
    assert any(e.kind == "failed" and e.name == "flaky" for e in node.events())
    node.restart("flaky")
    assert ref.call("get") == 1  # back, with its state


def test_strict_node_stops_non_zero_when_root_intensity_is_exceeded(node_dir):
    n = start_node(node_dir, strict=True)
    from beamish.runtime.client.api import _daemons
    proc = _daemons[n.pid]
    try:
        n.spawn(COUNTER, name="flaky")
        for _ in range(4):
            wait_until(lambda: n.info("flaky").status == "running", what="running")
            _crash(n, "flaky")
            time.sleep(0.05)
        assert proc.wait(30) == 1
        with open(n.paths.log) as fh:
            assert "strict mode" in fh.read()
    finally:
        n.close()
        kill_tree(n.pid)
        _daemons.pop(n.pid, None)
        proc.wait(10)


@pytest.mark.parametrize("restart, how, restarted", [
    ("permanent", "stop-normal", True), ("permanent", "kill", True),
    ("transient", "stop-normal", False), ("transient", "stop-odd", True),
    ("transient", "kill", True),
    ("temporary", "kill", False), ("temporary", "stop-normal", False),
])
def test_restart_types(node, restart, how, restarted):
    ref = node.spawn(OBEDIENT, name="a", restart=restart)
    pid = ref.call("pid")
    if how == "kill":
        os.kill(pid, signal.SIGKILL)
    else:
        assert ref.call(how) == "bye"
    if restarted:
        wait_until(lambda: agent_restarted(node, "a", pid), what="a restart")
    else:
        wait_until(lambda: node.info("a").status == "exited", what="exited, not restarted")
        with pytest.raises(AgentNotFound):
            ref.call("pid")


def test_stop_runs_terminate_with_reason_normal_and_shutdown_with_shutdown(node_dir, tmp_path):
    log = tmp_path / "terminate.log"
    n = start_node(node_dir)
    try:
        n.spawn(OBEDIENT, name="a", args={"file": str(log)})
        n.spawn(OBEDIENT, name="b", args={"file": str(log)})
        n.stop("a")
        assert log.read_text() == "normal\n"
    finally:
        n.shutdown()
    assert log.read_text() == "normal\nshutdown\n"


def test_shutdown_timeout_is_honoured_then_sigkill(node, tmp_path):
    ref = node.spawn(OBEDIENT, name="slow", shutdown=0.5)
    entered = tmp_path / "entered"
    msg = {"sleep": 30, "entered": str(entered)}
    t = threading.Thread(target=lambda: _quiet(lambda: ref.call(msg, timeout=60)))
    t.start()
    wait_until(entered.exists, what="the 30 s handler to start")
    started = time.monotonic()
    node.stop("slow")
    took = time.monotonic() - started
    assert 0.4 < took < 10  # waited its shutdown time, then killed it (not 30 s)
    assert any(e.kind == "killed" and e.name == "slow" for e in node.events())
    t.join(65)


def test_brutal_kill_does_not_wait(node, tmp_path):
    ref = node.spawn(OBEDIENT, name="brute", shutdown="brutal_kill")
    entered = tmp_path / "entered"
    msg = {"sleep": 30, "entered": str(entered)}
    t = threading.Thread(target=lambda: _quiet(lambda: ref.call(msg, timeout=60)))
    t.start()
    wait_until(entered.exists, what="the 30 s handler to start")
    started = time.monotonic()
    node.stop("brute")
    assert time.monotonic() - started < 5
    t.join(65)


def _quiet(fn):
    try:
        fn()
    except (RemoteError, AgentNotFound):
        pass  # the call's agent was stopped under it: expected here


def test_events_follow_sees_new_events(node):
    seen = []
    stream = node.events(follow=True)

    def follow():
        for ev in stream:
            seen.append(ev)
            if ev.kind == "restarted":
                return
    t = threading.Thread(target=follow)
    t.start()
    node.spawn(COUNTER, name="c")
    _crash(node, "c")
    t.join(30)
    assert [e.kind for e in seen][:3] == ["spawned", "exited", "restarted"]


@pytest.mark.parametrize("durability", ["fsync", "memory"])
def test_durability_modes(node_dir, durability):
    n = start_node(node_dir, durability=durability)
    try:
        ref = n.spawn(COUNTER, name="c")
        ref.call("incr")
        _crash(n, "c")
        assert ref.call("get") == 1  # both survive an agent crash
    finally:
        n.shutdown()
    n = start_node(node_dir, durability=durability)
    try:
        if durability == "fsync":
            assert n.call("c", "get") == 1
        else:
            with pytest.raises(AgentNotFound):  # memory: nothing persisted
                n.call("c", "get")
    finally:
        shutdown_quietly(n)


def test_config_file_builds_the_tree(node_dir, tmp_path):
    cfg = tmp_path / "beamish.toml"
    cfg.write_text('''
[[supervisor]]
name = "workers"
strategy = "one_for_all"

[[agent]]
name = "counter"
class = "tests.agents.basic:Counter"
supervisor = "workers"
args = { start = 5 }
''')
    n = start_node(node_dir, config=str(cfg))
    try:
        assert n.call("counter", "incr") == 6
        tree = n.tree()
        assert tree["children"][0]["name"] == "workers"
        assert tree["children"][0]["strategy"] == "one_for_all"
    finally:
        shutdown_quietly(n)


def test_a_bad_config_file_starts_nothing(node_dir, tmp_path):
    cfg = tmp_path / "beamish.toml"
    cfg.write_text('[[agent]]\nname = "a"\nclass = "tests.agents.basic:Counter"\n'
                   'limits = { memory_mb = "lots" }\n')
    with pytest.raises(ConfigError) as err:
        start_node(node_dir, config=str(cfg))
    assert "agent.0.limits.memory_mb" in str(err.value) and "'lots'" in str(err.value)
    assert not os.path.exists(os.path.join(node_dir, "node.json"))
