"""Sleeping agents through real processes: ``node.sleep``, ``idle_timeout``, ``max_awake``
and ``lazy`` spawns put agents to sleep (no process); a message or timer wakes them, with
no ``init``/``recover``, their mailbox in order; sleep is no exit (nothing counted, no
Down, links and monitors held); and under ``kill -9`` of a waking agent or of the node
mid-wake, a ledger of acknowledged casts is applied exactly once."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from beamish.runtime import (
    AgentNotFound,
    AlreadyRunning,
    RemoteError,
    SpawnError,
    start_node,
)
from beamish.runtime._paths import NodePaths
from beamish.runtime.messaging.messenger import Messenger
from beamish.runtime.node.sessions import SLEEPERS
from beamish.runtime.store import open_store
from tests.conftest import beamish, kill_node, shutdown_quietly, wait_until

SESSION = "tests.agents.session_agents:Session"


def state(ref, timeout: float = 30):
    return ref.call({"op": "get"}, timeout=timeout)


def kinds(node, name: str, since: int = 0) -> list[tuple[str, str]]:
    return [(e.kind, e.reason) for e in node.events(after=since) if e.name == name]


def test_sleep_stops_the_process_and_a_call_wakes_it_without_init_or_recover(
        node, tmp_path):
    terminated = str(tmp_path / "terminated")
    ref = node.spawn(SESSION, name="s", args={"terminated": terminated})
    assert ref.call({"op": "add", "v": 1}) == 1
    pid = node.info("s").pid
    since = node.events()[-1].seq
    node.sleep("s")
    info = node.info("s")
    assert (info.status, info.pid, node.status().awake) == ("sleeping", None, 0)
    assert not os.path.exists(f"/proc/{pid}")
    with open(terminated) as fh:
        assert fh.read() == "sleep\n"  # terminate("sleep", state) ran on the way down
    assert ref.call({"op": "add", "v": 2}, timeout=30) == 2  # woken by the call
    st = state(ref)
    assert (st["log"], st["inits"], st["recovers"]) == ([1, 2], 1, 0)
    info = node.info("s")
    assert (info.status, info.restarts) == ("running", 0) and info.pid not in (None, pid)
    assert kinds(node, "s", since) == [("slept", "requested"), ("woke", "a message or timer")]
    node.sleep("s")
    node.sleep("s")  # asleep already: left so


def test_a_lazy_spawn_registers_without_a_process_and_its_first_message_runs_init(node):
    ref = node.spawn(SESSION, name="lazy", lazy=True, args={"k": 1})
    info = node.info("lazy")
    assert (info.status, info.pid, info.processed, node.status().awake) == \
        ("sleeping", None, 0, 0)
    # The event rides on a datagram hint the node reads a moment later.
    wait_until(lambda: [k for k, _ in kinds(node, "lazy")] == ["spawned"],
               what="the lazy spawn's event")
    st = state(ref)
    assert (st["inits"], st["recovers"], st["args"]) == (1, 0, {"k": 1})
    node.spawn(SESSION, name="lazy2", lazy=True)
    assert [(c["name"], c["status"], c["pid"]) for c in node.tree()["children"]
            if c["name"] == "lazy2"] == [("lazy2", "sleeping", None)]
    with pytest.raises(SpawnError, match="in use"):
        node.spawn(SESSION, name="lazy", lazy=True)


def test_a_lazy_spawn_checks_what_a_spawn_checks_and_emits_spawned(node):
    with pytest.raises(SpawnError, match="no supervisor named 'nope'"):
        node.spawn(SESSION, name="x", supervisor="nope", lazy=True)
    node.add_supervisor("pool", strategy="simple_one_for_one", child_restart="temporary")
    with pytest.raises(SpawnError, match="a supervisor has that name"):
        node.spawn(SESSION, name="pool", lazy=True)
    with pytest.raises(SpawnError, match="a supervisor has that name"):
        node.spawn(SESSION, name="root", lazy=True)
    gen = node.spawn(SESSION, supervisor="pool", lazy=True, idle_timeout=30)
    assert gen.name.startswith("session-") and node.info(gen.name).status == "sleeping"
    wait_until(lambda: ("spawned", "lazy") in kinds(node, gen.name), what="spawned")
    gen.call({"op": "add", "v": 1}, timeout=30)

    def pool_children() -> list[str]:
        pool = [c for c in node.tree()["children"] if c["name"] == "pool"][0]
        return [c["name"] for c in pool["children"]]
    # Adopted by its simple_one_for_one supervisor once its wake completes, which can be
    # a moment after the woken process answered (docs/limits.md).
    wait_until(lambda: pool_children() == [gen.name], what="adopted by its supervisor")
    # From an agent (the node's spawn command), in its handler:
    assert gen.call({"op": "spawn", "cls": SESSION, "name": "child"}, timeout=30) == "child"
    assert node.info("child").status == "sleeping"
    wait_until(lambda: ("spawned", "lazy") in kinds(node, "child"), what="spawned")


def test_a_cast_to_a_sleeping_agent_returns_at_once_and_order_holds_across_sleep(node):
    ref = node.spawn(SESSION, name="s")
    sent: list[int] = []

    def sender() -> None:
        for i in range(300):
            ref.cast(i)
            sent.append(i)
    t = threading.Thread(target=sender)
    t.start()
    while len(sent) < 50:
        time.sleep(0.001)
    for _ in range(3):  # casts before, during and between sleeps
        try:
            node.sleep("s")
        except AgentNotFound:
            pass  # being woken right now
        time.sleep(0.05)
    t.join()
    node.sleep("s")
    started = time.monotonic()
    ref.cast("last")
    assert time.monotonic() - started < 1.0  # committed, not handled: no wait for a fork
    wait_until(lambda: node.info("s").processed == 301, timeout=30, what="every cast")
    assert state(ref)["log"] == [*range(300), "last"]  # ledger: each once, in order


def test_idle_timeout_puts_an_agent_to_sleep_and_a_message_wakes_it(node):
    ref = node.spawn(SESSION, name="idle", idle_timeout=0.5)
    ref.call({"op": "add", "v": 1})
    wait_until(lambda: node.info("idle").status == "sleeping", what="the idle sleep")
    assert ("slept", "idle") in kinds(node, "idle")
    assert ref.call({"op": "add", "v": 2}, timeout=30) == 2
    wait_until(lambda: node.info("idle").status == "sleeping", what="the second idle sleep")


def test_a_timer_wakes_a_sleeping_agent(node):
    ref = node.spawn(SESSION, name="t")
    ref.call({"op": "timer", "after": 0.7, "tag": "ring"})
    node.sleep("t")
    wait_until(lambda: node.info("t").status == "running", what="the timer's wake")
    wait_until(lambda: ["info", "ring"] in state(ref)["log"], what="the timer message")


def test_sleep_is_no_exit_and_a_monitor_holds_across_sleep_and_wake(node):
    watcher = node.spawn(SESSION, name="w")
    target = node.spawn(SESSION, name="t")
    watcher.call({"op": "monitor", "target": "t"})
    since = node.events()[-1].seq
    node.sleep("t")
    target.call({"op": "add", "v": 1}, timeout=30)  # woken
    node.sleep("t")
    target.call({"op": "add", "v": 2}, timeout=30)
    time.sleep(0.3)
    assert state(watcher)["log"] == []  # no Down for a sleep
    assert {k for k, _ in kinds(node, "t", since)} == {"slept", "woke"}
    assert node.info("t").restarts == 0
    with pytest.raises(RemoteError):
        target.call({"op": "die"}, timeout=10)
    wait_until(lambda: any(e[0] == "Down" for e in state(watcher)["log"]),
               what="the Down after the woken target died")


def test_a_sleeping_agent_linked_to_one_that_crashes_is_woken_and_killed(node):
    a = node.spawn(SESSION, name="a")
    node.spawn(SESSION, name="b", lazy=True)
    a.call({"op": "link", "target": "b"})  # held by the node while b sleeps
    since = node.events()[-1].seq
    with pytest.raises(RemoteError):
        a.call({"op": "die"}, timeout=10)
    wait_until(lambda: node.info("b").restarts == 1 and node.info("b").status == "running",
               timeout=30, what="b killed by the link, then restarted")
    assert "woke" in [k for k, _ in kinds(node, "b", since)]
    assert node.info("b").last_failure.kind == "killed"


def test_a_sleeping_watcher_is_woken_by_the_down_it_gets(node):
    watcher = node.spawn(SESSION, name="w")
    target = node.spawn(SESSION, name="t")
    watcher.call({"op": "monitor", "target": "t"})
    node.sleep("w")
    with pytest.raises(RemoteError):
        target.call({"op": "die"}, timeout=10)
    wait_until(lambda: node.info("w").status == "running", what="the watcher's wake")
    wait_until(lambda: [e[0] for e in state(watcher)["log"]] == ["Down"], what="its Down")


def test_a_monitor_of_a_sleeping_agent_holds_and_its_stop_sends_down(node):
    watcher = node.spawn(SESSION, name="w")
    node.spawn(SESSION, name="t", lazy=True)
    watcher.call({"op": "monitor", "target": "t"})  # held by the node while t sleeps
    node.stop("t")
    wait_until(lambda: state(watcher)["log"] == [["Down", "t", "normal"]],
               what="the Down of the stopped sleeper")
    assert node.info("t").status == "stopped"
    node.delete("t")
    with pytest.raises(AgentNotFound):
        node.info("t")


def test_a_stop_during_a_slow_sleep_sends_the_monitors_down_and_the_sleep_does_not_win(
        node, tmp_path):
    terminated = str(tmp_path / "terminated")
    watcher = node.spawn(SESSION, name="w")
    node.spawn(SESSION, name="t", args={"slow_terminate": 1.0, "terminated": terminated,
                                        "terminating": str(tmp_path / "terminating")})
    watcher.call({"op": "monitor", "target": "t"})
    outcome: list[object] = []

    def sleep() -> None:
        try:
            outcome.append(node.sleep("t"))
        except AgentNotFound as exc:  # the stop came first: no sleep to report
            outcome.append(exc)
    th = threading.Thread(target=sleep)
    th.start()
    time.sleep(0.4)  # t is in terminate("sleep")
    node.stop("t")
    th.join(timeout=30)
    wait_until(lambda: state(watcher)["log"] == [["Down", "t", "normal"]],
               what="the Down of the agent stopped while it fell asleep")
    assert node.info("t").status == "stopped" and node.status().awake == 1
    if isinstance(outcome[0], AgentNotFound):
        assert "stopped meanwhile" in str(outcome[0])
    else:  # the stop waited for the sleep, then stopped the sleeper
        assert [k for k, _ in kinds(node, "t")][-2:] == ["slept", "stopped"]


def test_a_wake_does_not_wait_behind_slow_sleeps(node, tmp_path):
    # As many agents fall asleep at once (idle_timeout), each in a slow terminate, as there
    # are sleep workers: a message to a sleeping agent is still answered while they all are.
    n = SLEEPERS
    for i in range(n):
        node.spawn(SESSION, name=f"slow{i}", idle_timeout=0.2, shutdown=30,
                   args={"slow_terminate": 6.0, "terminated": str(tmp_path / f"done{i}"),
                         "terminating": str(tmp_path / f"going{i}")})
    ref = node.spawn(SESSION, name="lazy", lazy=True)
    wait_until(lambda: all(os.path.exists(tmp_path / f"going{i}") for i in range(n)),
               timeout=30, what="every slow agent in terminate('sleep')")
    assert ref.call({"op": "add", "v": 1}, timeout=30) == 1
    assert not any(os.path.exists(tmp_path / f"done{i}") for i in range(n))  # still going
    wait_until(lambda: all(node.info(f"slow{i}").status == "sleeping" for i in range(n)),
               timeout=60, what="the slow agents asleep")


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _waking(node, name: str, pidfile: str) -> int:
    """Wake lazy agent ``name`` (slow init) with a cast; return its pid once its init runs
    (its wake is in progress)."""
    node.ref(name).cast("hello")
    return _pid_from(pidfile)


def test_a_stop_during_a_wake_leaves_the_agent_stopped_with_no_process(node, tmp_path):
    pidfile = str(tmp_path / "pid")
    node.spawn(SESSION, name="s", lazy=True, args={"pidfile": pidfile, "slow_init": 1.0})
    pid = _waking(node, "s", pidfile)
    node.stop("s")  # its process is still in init: killed, the wake ended
    info = node.info("s")
    assert (info.status, info.mailbox_depth, node.status().awake) == ("stopped", 1, 0)
    assert not _alive(pid)
    events = [k for k, _ in kinds(node, "s")]
    assert events[-1] == "stopped" and "woke" not in events


def test_a_delete_during_a_wake_leaves_no_process_and_frees_the_name(node, tmp_path):
    pidfile = str(tmp_path / "pid")
    node.spawn(SESSION, name="d", lazy=True, args={"pidfile": pidfile, "slow_init": 1.0})
    pid = _waking(node, "d", pidfile)
    node.delete("d")  # its process is still in init: killed, the wake ended
    with pytest.raises(AgentNotFound):
        node.info("d")
    assert node.status().awake == 0 and not _alive(pid)
    assert [k for k, _ in kinds(node, "d")][-2:] == ["stopped", "deleted"]
    ref = node.spawn(SESSION, name="d")  # the name is free again
    assert state(ref)["log"] == []


def test_a_stop_during_a_sleep_sends_the_monitors_down(node, tmp_path):
    terminated = str(tmp_path / "terminated")
    watcher = node.spawn(SESSION, name="w")
    node.spawn(SESSION, name="t", args={"terminated": terminated, "slow_sleep": 1.0})
    watcher.call({"op": "monitor", "target": "t"})
    sleeper = threading.Thread(target=node.sleep, args=("t",))
    sleeper.start()
    wait_until(lambda: os.path.exists(terminated), what="terminate('sleep') to begin")
    node.stop("t")
    sleeper.join()
    wait_until(lambda: state(watcher)["log"] == [["Down", "t", "normal"]],
               what="the Down of the agent stopped while falling asleep")
    assert (node.info("t").status, node.status().awake) == ("stopped", 1)


def test_a_sleeping_agent_is_in_the_tree_restart_is_refused_and_a_sibling_crash_leaves_it(
        node):
    node.add_supervisor("all", strategy="one_for_all", max_restarts=10)
    node.spawn(SESSION, name="a", supervisor="all")
    node.spawn(SESSION, name="b", supervisor="all")
    node.sleep("b")
    with pytest.raises(AlreadyRunning):
        node.restart("b")
    pid = node.info("a").pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: node.info("a").pid not in (None, pid), what="a's restart")
    time.sleep(0.3)
    assert node.info("b").status == "sleeping"


def test_a_lazy_agent_whose_init_fails_on_its_first_wake_is_restarted_by_its_supervisor(
        node, tmp_path):
    ref = node.spawn(SESSION, name="f", lazy=True,
                     args={"init_fails": str(tmp_path / "once")})
    ref.cast("kept")
    wait_until(lambda: node.info("f").status == "running" and node.info("f").processed == 1,
               timeout=30, what="the restart after init failed")
    st = state(ref)
    assert st["log"] == ["kept"] and st["recovers"] == 1


def test_max_awake_puts_the_least_recently_active_idle_agents_to_sleep(node_dir, tmp_path):
    config = tmp_path / "beamish.toml"
    config.write_text("[node]\nmax_awake = 2\n")
    node = start_node(node_dir, config=str(config))
    try:
        refs = [node.spawn(SESSION, name=f"m{i}", lazy=True) for i in range(4)]
        for ref in refs:
            ref.call({"op": "add", "v": 1}, timeout=30)
            time.sleep(0.2)
        wait_until(lambda: node.status().awake == 2, what="max_awake")
        status = {r.name: node.info(r.name).status for r in refs}
        assert status == {"m0": "sleeping", "m1": "sleeping", "m2": "running",
                          "m3": "running"}
        assert all(("slept", "max_awake") in kinds(node, n) for n in ("m0", "m1"))
    finally:
        shutdown_quietly(node)


def test_a_thousand_lazy_sessions_hold_no_process_and_no_awake_incarnation(node):
    for i in range(1000):
        node.spawn(SESSION, name=f"u{i}", lazy=True)
    assert node.status().awake == 0
    for i in (0, 500, 999):
        node.ref(f"u{i}").call({"op": "add", "v": i}, timeout=30)
    # The node registers a woken process when the zygote's answer to the fork arrives,
    # which can come after the process already answered its call: the count is exact,
    # a moment later.
    wait_until(lambda: node.status().awake == 3, what="the three woken agents counted")
    assert node.status().awake == 3
    assert sum(1 for a in node.ps() if a.status == "sleeping") == 997


def test_after_node_kill_9_sleepers_stay_asleep_and_a_wake_pending_happens(node_dir):
    node = start_node(node_dir)
    try:
        for name in ("a", "b"):
            node.spawn(SESSION, name=name).call({"op": "add", "v": 0})
            node.sleep(name)
        kill_node(node)
        # A cast committed while the node is down: its wake waits in the store.
        paths = NodePaths(node_dir)
        store = open_store(paths.store)
        messenger = Messenger(paths, store, 1 << 20)
        try:
            for i in range(1, 6):
                messenger.cast("a", i)
        finally:
            messenger.close()
            store.close()
        node = start_node(node_dir)
        wait_until(lambda: node.info("a").processed == 6, timeout=30, what="the pending wake")
        assert state(node.ref("a"))["log"] == [0, 1, 2, 3, 4, 5]
        assert node.info("b").status == "sleeping"
        assert state(node.ref("a"))["recovers"] == 0
    finally:
        shutdown_quietly(node)


def _pid_from(path: str) -> int:
    def read() -> int:
        try:
            with open(path) as fh:
                return int(fh.read() or 0)
        except FileNotFoundError:
            return 0
    return wait_until(read, timeout=30, what="the waking agent's pid")


def test_kill_9_of_a_waking_agent_loses_nothing_and_applies_nothing_twice(node, tmp_path):
    pidfile = str(tmp_path / "pid")
    ref = node.spawn(SESSION, name="w", lazy=True,
                     args={"pidfile": pidfile, "slow_init": 1.0})
    for i in range(20):
        ref.cast(i)  # acknowledged: the ledger
    pid = _pid_from(pidfile)
    os.unlink(pidfile)
    os.kill(pid, signal.SIGKILL)  # during its start (init sleeps)
    wait_until(lambda: node.info("w").processed == 20, timeout=30, what="the ledger")
    assert state(ref)["log"] == list(range(20))


def test_a_kill_racing_a_sleep_ends_running_or_sleeping_and_loses_no_cast(node):
    # SIGKILL 0-2 ms after node.sleep starts: the exit lands before, during or after the
    # sleep's stop. One the sleep did not cause is a crash its supervisor restarts.
    import random
    rounds, names = 60, []
    for k in range(rounds):
        name = f"k{k}"
        ref = node.spawn(SESSION, name=name)
        ref.cast("before")  # acknowledged: the ledger
        pid = node.info(name).pid
        errors: list[Exception] = []

        def sleep(name: str = name, errors: list[Exception] = errors) -> None:
            try:
                node.sleep(name)
            except AgentNotFound as exc:  # it exited first: that is a crash, not a sleep
                errors.append(exc)
        th = threading.Thread(target=sleep)
        th.start()
        time.sleep(random.uniform(0, 0.002))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        th.join(timeout=60)
        names.append(name)
    for name in names:
        wait_until(lambda name=name: node.info(name).status in ("running", "sleeping"),
                   timeout=30, what=f"{name} running or sleeping")
        node.ref(name).cast("after")  # acknowledged: the ledger
    for name in names:
        assert state(node.ref(name))["log"] == ["before", "after"], name


def test_kill_9_of_the_node_mid_wake_loses_nothing_and_applies_nothing_twice(
        node_dir, tmp_path):
    pidfile = str(tmp_path / "pid")
    node = start_node(node_dir)
    try:
        ref = node.spawn(SESSION, name="w", lazy=True,
                         args={"pidfile": pidfile, "slow_init": 1.0})
        node.spawn(SESSION, name="other", lazy=True)
        for i in range(20):
            ref.cast(i)
        _pid_from(pidfile)
        kill_node(node)  # mid-wake: its init runs
        node = start_node(node_dir)
        ref = node.ref("w")
        wait_until(lambda: node.info("w").processed == 20, timeout=30, what="the ledger")
        assert state(ref)["log"] == list(range(20))
        ref.cast(20)
        wait_until(lambda: node.info("w").processed == 22, timeout=30,  # the get, the cast
                   what="one more")
        assert state(ref)["log"] == list(range(21))
        assert node.info("other").status == "sleeping"
    finally:
        shutdown_quietly(node)


def test_cli_spawn_lazy_with_idle_timeout_and_sleep(node):
    d = node.dir
    beamish("spawn", SESSION, "--name", "c", "--lazy", "--idle-timeout", "60", "--dir", d,
            check=True)
    assert node.info("c").status == "sleeping"
    node.ref("c").call({"op": "add", "v": 1}, timeout=30)
    out = beamish("sleep", "c", "--dir", d, check=True).stdout
    assert "c sleeps" in out and node.info("c").status == "sleeping"
    assert beamish("sleep", "nobody", "--dir", d).returncode != 0


def test_the_config_file_declares_lazy_agents_with_an_idle_timeout(node_dir, tmp_path):
    config = tmp_path / "beamish.toml"
    config.write_text(f"""
[[agent]]
name = "cfg"
class = "{SESSION}"
lazy = true
idle_timeout = 0.5
""")
    node = start_node(node_dir, config=str(config))
    try:
        assert (node.info("cfg").status, node.status().awake) == ("sleeping", 0)
        assert node.ref("cfg").call({"op": "add", "v": 1}, timeout=30) == 1
        wait_until(lambda: node.info("cfg").status == "sleeping", what="the idle sleep")
        assert ("slept", "idle") in kinds(node, "cfg")
    finally:
        shutdown_quietly(node)


def test_kill_9_of_a_waking_agent_that_has_state_loses_nothing_and_applies_nothing_twice(
        node_dir, tmp_path, monkeypatch):
    # The wake of an agent with committed state runs no init: the kill lands while the
    # woken process starts (its class's constructor is slow), before it loaded its state.
    pidfile = str(tmp_path / "pid")
    monkeypatch.setenv("BEAMISH_TEST_START_PIDFILE", pidfile)
    monkeypatch.setenv("BEAMISH_TEST_START_SLOW", "1.0")
    node = start_node(node_dir)
    try:
        ref = node.spawn("tests.agents.session_agents:SlowStart", name="w")
        for i in range(10):
            ref.cast(i)  # acknowledged: the ledger
        wait_until(lambda: node.info("w").processed == 10, what="the first casts handled")
        node.sleep("w")
        os.unlink(pidfile)
        for i in range(10, 30):
            ref.cast(i)  # acknowledged while it sleeps: each append wakes it
        pid = _pid_from(pidfile)
        os.unlink(pidfile)
        os.kill(pid, signal.SIGKILL)  # the waking process, before it loaded its state
        wait_until(lambda: node.info("w").processed == 30, timeout=60, what="the ledger")
        st = state(ref, timeout=60)
        assert st["log"] == list(range(30))
        assert st["inits"] == 1  # the wake and the restart after the kill ran no init
        info = node.info("w")
        assert info.status == "running" and info.restarts == 1, info
    finally:
        shutdown_quietly(node)
