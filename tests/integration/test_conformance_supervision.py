"""Issue 9, supervision and the agent registry, through real processes: links and monitors
set in ``init``/``recover``, ``restart`` of a running child, temporary bystanders, spawn
from ``init``, one namespace for agents and supervisors, and a node killed mid-spawn."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from beamish.runtime import (
    AgentNotFound,
    AlreadyRunning,
    BeamishError,
    ConfigError,
    SpawnError,
    connect,
    start_node,
)
from tests.conftest import kill_node, restarted, shutdown_quietly, wait_until

pytestmark = pytest.mark.slow
COUNTER = "tests.agents.basic:Counter"
INIT_WATCHER = "tests.agents.supervision_agents:InitWatcher"
TRAPPING_INIT_WATCHER = "tests.agents.supervision_agents:TrappingInitWatcher"
INIT_SPAWNER = "tests.agents.supervision_agents:InitSpawner"
GATED = "tests.agents.supervision_agents:GatedInit"


def _kill(node, name):
    os.kill(node.info(name).pid, signal.SIGKILL)


# -- item 1: monitor and link in init and recover ------------------------------------------------

def test_monitor_and_link_set_in_init_deliver_down_and_exit(node):
    node.spawn(COUNTER, name="target")
    node.spawn(COUNTER, name="peer")
    w = node.spawn(TRAPPING_INIT_WATCHER, name="w", args={
        "init_ops": [["monitor", "target"], ["link", "peer"], ["monitor", "ghost"]]})
    w_pid = w.call("pid")
    _kill(node, "target")
    _kill(node, "peer")
    seen = wait_until(lambda: (lambda s: len(s) >= 3 and s)(w.call("seen")),
                      what="Down ghost, Down target and Exit peer")
    assert seen[0] == ["Down", "ghost", "noproc"]
    assert sorted(s[:2] for s in seen[1:]) == [["Down", "target"], ["Exit", "peer"]]
    assert all("killed" in s[2] for s in seen[1:])
    assert w.call("pid") == w_pid  # it traps exits: not taken down


def test_link_set_in_init_takes_the_agent_down_with_its_peer(node):
    node.spawn(COUNTER, name="peer")
    w = node.spawn(INIT_WATCHER, name="w", args={"init_ops": [["link", "peer"]]})
    w_pid = w.call("pid")
    _kill(node, "peer")
    wait_until(lambda: restarted(node, "w", w_pid), what="w killed by its link, restarted")
    failure = node.info("w").last_failure
    assert failure.kind == "killed" and "linked agent 'peer'" in failure.message


def test_monitor_and_link_set_in_recover_hold_after_the_restart(node):
    node.spawn(COUNTER, name="target")
    node.spawn(COUNTER, name="peer")
    w = node.spawn(TRAPPING_INIT_WATCHER, name="w", args={
        "recover_ops": [["monitor", "target"], ["link", "peer"]]})
    w_pid = w.call("pid")
    _kill(node, "w")  # the restarted process runs recover, which sets them
    wait_until(lambda: restarted(node, "w", w_pid), what="w restarted through recover")
    w_pid = w.call("pid")
    _kill(node, "target")
    _kill(node, "peer")
    seen = wait_until(lambda: (lambda s: len(s) >= 2 and s)(w.call("seen")),
                      what="Down target and Exit peer")
    assert sorted(s[:2] for s in seen) == [["Down", "target"], ["Exit", "peer"]]
    assert w.call("pid") == w_pid


# -- item 3: restart of a running child is refused, the record untouched ---------------------------

def test_restart_of_a_running_agent_is_refused_and_leaves_its_record(node):
    c1 = node.spawn(COUNTER, name="c1")
    pid = c1.call("pid")
    _kill(node, "c1")  # one restart on the record before we try
    wait_until(lambda: restarted(node, "c1", pid), what="c1 restarted")
    before = node.info("c1")
    with pytest.raises(AlreadyRunning, match=r"c1.*running.*beamish stop c1"):
        node.restart("c1")
    after = node.info("c1")
    assert (after.status, after.pid, after.restarts) == ("running", before.pid, 1)
    assert [r.pid for r in node.ps() if r.name == "c1"] == [before.pid]
    _kill(node, "c1")  # its next crash is counted as usual
    wait_until(lambda: node.info("c1").restarts == 2 and node.info("c1").status == "running",
               what="the next crash counted")
    c1.call("incr")
    node.stop("c1")  # what the error says to do
    node.restart("c1")
    assert node.info("c1").status == "running" and c1.call("get") == 1


def test_cli_restart_of_a_running_agent_says_to_stop_it_first(node):
    from tests.integration.test_cli import beamish
    pid = node.spawn(COUNTER, name="c1").call("pid")
    proc = beamish("restart", "c1", "--dir", node.dir, check=False)
    assert proc.returncode == 1 and "`beamish stop c1` first" in proc.stderr, proc.stderr
    rows = json.loads(beamish("ps", "--json", "--dir", node.dir).stdout)
    assert [(r["name"], r["pid"], r["restarts"]) for r in rows] == [("c1", pid, 0)]


def test_restart_of_a_running_supervisor_is_refused(node):
    node.add_supervisor("team")
    node.spawn(COUNTER, name="member", supervisor="team")
    pid = node.info("member").pid
    with pytest.raises(AlreadyRunning, match=r"team.*running"):
        node.restart("team")
    assert node.info("member").pid == pid
    assert node.tree()["children"][0]["status"] == "running"


def test_restart_of_a_failed_supervisor_brings_its_subtree_back(node):
    node.add_supervisor("team", max_restarts=0)  # gives up at its child's first crash
    node.spawn(COUNTER, name="member", supervisor="team").call("incr")
    for i in range(4):  # the root restarts team 3 times in 5 s; the 4th time it is failed
        pid = wait_until(lambda: (lambda x: x.status == "running" and x.pid)(
            node.info("member")), what="member running")
        os.kill(pid, signal.SIGKILL)
        if i < 3:
            wait_until(lambda p=pid: restarted(node, "member", p), what="team restarted")
    wait_until(lambda: node.tree()["children"][0]["status"] == "failed", what="team failed")
    node.restart("team")
    assert node.tree()["children"][0]["status"] == "running"
    assert node.call("member", "get") == 1
    with pytest.raises(AlreadyRunning):
        node.restart("team")


# -- item 5: temporary bystanders are gone -----------------------------------------------------

def _assert_gone(node, name):
    with pytest.raises(AgentNotFound):
        node.call(name, "get", timeout=30)
    assert name not in [c["name"] for c in node.tree()["children"][0]["children"]]
    node.spawn(COUNTER, name=name, supervisor="root")  # the name is free again
    node.delete(name)


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_a_temporary_bystander_is_gone_after_its_supervisor_restarts_the_group(node, strategy):
    node.add_supervisor("g", strategy=strategy)
    first = node.spawn(COUNTER, name="first", supervisor="g")
    node.spawn(COUNTER, name="temp", supervisor="g", restart="temporary")
    pid = first.call("pid")
    _kill(node, "first")
    wait_until(lambda: restarted(node, "first", pid), what="first restarted")
    wait_until(lambda: node.info("temp").status != "running", what="temp's record updated")
    _assert_gone(node, "temp")


def test_a_temporary_child_is_gone_when_its_supervisor_escalates(node):
    node.add_supervisor("g", max_restarts=0)
    first = node.spawn(COUNTER, name="first", supervisor="g")
    node.spawn(COUNTER, name="temp", supervisor="g", restart="temporary")
    pid = first.call("pid")
    _kill(node, "first")  # g gives up at once; root restarts it, without temp
    wait_until(lambda: restarted(node, "first", pid), what="g and first restarted")
    wait_until(lambda: node.info("temp").status != "running", what="temp's record updated")
    _assert_gone(node, "temp")


def test_a_temporary_child_comes_back_with_a_restarted_node(node_dir):
    n = start_node(node_dir)
    try:
        n.spawn(COUNTER, name="temp", restart="temporary").call("incr")
    finally:
        shutdown_quietly(n)
    n = start_node(node_dir)  # a node stop is not the child's exit: it comes back
    try:
        assert n.call("temp", "get") == 1
    finally:
        shutdown_quietly(n)


# -- item 4: spawn from init -------------------------------------------------------------------

def test_spawn_from_init_of_a_spawned_agent_into_its_own_supervisor_works(node):
    # A spawn starts its agent outside the supervisor and hands it over once init
    # returned, so the supervisor is not waiting on p's init: p may spawn into it.
    p = node.spawn(INIT_SPAWNER, name="p", args={
        "child_cls": COUNTER, "child": "kid", "into": "root", "timeout": 5.0})
    assert p.call("outcome") == ["ok", "kid"]
    assert node.call("kid", "incr") == 1
    assert sorted(c["name"] for c in node.tree()["children"]) == ["kid", "p"]


def test_spawn_from_recover_into_its_own_supervisor_is_refused_at_once(node):
    # A restart is the supervisor's own start: it waits for recover to return, so a spawn
    # from recover into it could never be served (OTP deadlocks here).
    p = node.spawn(INIT_SPAWNER, name="p", args={
        "child_cls": COUNTER, "child": "kid", "into": "root", "recover_child": "kid2",
        "timeout": 5.0})
    assert p.call("outcome") == ["ok", "kid"]
    pid = p.call("pid")
    _kill(node, "p")
    wait_until(lambda: restarted(node, "p", pid), what="root restarted p")
    kind, message = p.call("recovered")
    assert kind == "SpawnError", message
    assert "'root'" in message and "recover" in message and "after recover" in message
    with pytest.raises(AgentNotFound):
        node.info("kid2")  # nothing reserved, nothing half-made
    assert sorted(c["name"] for c in node.tree()["children"]) == ["kid", "p"]


def test_spawn_from_recover_into_an_ancestor_that_is_starting_it_is_refused(node):
    node.add_supervisor("outer")
    node.add_supervisor("inner", parent="outer", max_restarts=0)
    # Spawned normally, outer is idle: p's init may spawn into outer.
    p = node.spawn(INIT_SPAWNER, name="p", supervisor="inner", args={
        "child_cls": COUNTER, "child": "kid", "into": "outer", "recover_child": "kid2",
        "timeout": 5.0})
    assert p.call("outcome") == ["ok", "kid"]
    # Killed, p makes inner give up; outer restarts inner, which starts p, whose recover
    # spawns into outer: outer is busy starting inner, inner busy starting p.
    pid = p.call("pid")
    _kill(node, "p")
    wait_until(lambda: restarted(node, "p", pid), what="outer restarted inner and p")
    kind, message = p.call("recovered")
    assert kind == "SpawnError", message
    assert "'outer'" in message and "'inner'" in message and "after recover" in message
    with pytest.raises(AgentNotFound):
        node.info("kid2")


def test_spawn_from_init_into_another_supervisor_works(node):
    node.add_supervisor("kids")
    p = node.spawn(INIT_SPAWNER, name="p", args={
        "child_cls": COUNTER, "child": "kid", "into": "kids"})
    assert p.call("outcome") == ["ok", "kid"]
    assert node.call("kid", "incr") == 1
    kids = [c for c in node.tree()["children"] if c["name"] == "kids"][0]
    assert [c["name"] for c in kids["children"]] == ["kid"]


# -- item 5 (issue "lesser"): one namespace for agents and supervisors -----------------------------

def test_agents_and_supervisors_share_one_namespace(node):
    node.add_supervisor("workers")
    node.add_supervisor("other")
    for name, sup in [("workers", "root"), ("workers", "other"), ("root", "other"),
                      ("other", "workers")]:
        with pytest.raises(SpawnError, match="one namespace"):
            node.spawn(COUNTER, name=name, supervisor=sup)
    node.spawn(COUNTER, name="c1")
    with pytest.raises(ConfigError, match="already used"):
        node.add_supervisor("c1")
    first = node.spawn(COUNTER).name  # counter-<id>
    n = int(first.rpartition("-")[2])
    # The next generated name, taken by hand first (with the id before it): it is skipped.
    node.spawn(COUNTER, name=f"counter-{n + 2}").call("incr")
    auto = node.spawn(COUNTER)
    assert auto.name not in ("c1", first, f"counter-{n + 2}")
    assert node.call(f"counter-{n + 2}", "get") == 1 and auto.call("get") == 0
    assert len({r.name for r in node.ps()}) == 4


def test_a_config_agent_named_like_a_persisted_supervisor_is_refused(node_dir, tmp_path):
    n = start_node(node_dir)
    try:
        n.add_supervisor("team")
    finally:
        shutdown_quietly(n)
    cfg = tmp_path / "beamish.toml"
    cfg.write_text('[[agent]]\nname = "team"\nclass = "tests.agents.basic:Counter"\n')
    with pytest.raises(ConfigError, match="'team'.*one namespace"):
        shutdown_quietly(start_node(node_dir, config=str(cfg)))


# -- kill -9 of the node during a spawn storm ------------------------------------------------------

def _kill_node_group(n):
    os.killpg(os.getpgid(n.pid), signal.SIGKILL)  # the node's process group, as `kill -9 -PGID`


def _storm(n, k, args, attempted, acked, stop):
    i = 0
    while not stop.is_set():
        name = f"s{k}-{i}"
        i += 1
        attempted.append(name)
        try:
            n.spawn(GATED, name=name, args=args, timeout=1.0)
        except BeamishError:
            return  # the node is gone: this spawn was never acknowledged
        acked.append(name)


def _spawn_in_flight(n, name, args):
    try:
        n.spawn(GATED, name=name, args=args, timeout=1.0)
    except BeamishError:
        pass  # the node died before it answered: the test checks what the restart made


def _assert_all_or_nothing(n, acked, unacked):
    infos = {i.name: i for i in n.ps()}
    in_tree = {c["name"] for c in n.tree()["children"]}
    for name in acked:  # every acknowledged spawn is there, running, in the tree
        assert infos[name].status == "running" and name in in_tree, infos[name]
        assert n.call(name, "get") == 7
    for name in unacked:  # each unacknowledged one is all there or not at all
        if name in infos:
            assert infos[name].status == "running" and name in in_tree, infos[name]
            assert n.call(name, "get") == 7
        else:
            assert name not in in_tree
            with pytest.raises(AgentNotFound):
                n.call(name, "get")
            n.spawn(COUNTER, name=name)  # the name is free
            n.delete(name)
    assert [i.name for i in infos.values() if i.status == "failed"] == []


def test_kill_9_during_a_spawn_storm_completes_or_rolls_back_every_spawn(node_dir, tmp_path):
    # An init that ran before the kill committed its state; one that had not runs again
    # on the restarted node, and fails there: its spawn must be rolled back.
    fail_if = str(tmp_path / "fail-init")
    n = start_node(node_dir)
    attempted: list[str] = []
    acked: list[str] = []
    stop = threading.Event()
    args = {"start": 7, "fail_if": fail_if}
    threads = [threading.Thread(target=_storm, args=(n, k, args, attempted, acked, stop))
               for k in range(6)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(acked) >= 30, timeout=60, what="30 acknowledged spawns")
        _kill_node_group(n)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        kill_node(n)
    unacked = set(attempted) - set(acked)
    assert unacked, "no spawn was in flight when the node died"
    open(fail_if, "w").close()
    n = start_node(node_dir)
    try:
        _assert_all_or_nothing(n, acked, unacked)
    finally:
        shutdown_quietly(n)


@pytest.mark.parametrize("outcome", ["completed", "rolled back"])
def test_a_spawn_in_init_when_the_node_dies_is_completed_or_rolled_back(node_dir, tmp_path,
                                                                        outcome):
    entered, gate, fail_if = (str(tmp_path / f) for f in ("entered", "gate", "fail"))
    n = start_node(node_dir)
    n.spawn(COUNTER, name="old")
    args = {"start": 7, "entered": entered, "wait_for": gate, "fail_if": fail_if}
    spawner = threading.Thread(target=_spawn_in_flight, args=(n, "new", args))
    try:
        spawner.start()
        wait_until(lambda: os.path.exists(entered), what="the new agent's init entered")
        _kill_node_group(n)
    finally:
        spawner.join(60)
        kill_node(n)
    open(gate, "w").close()
    if outcome == "rolled back":
        open(fail_if, "w").close()  # its init fails on the restarted node
    n = start_node(node_dir)
    try:
        _assert_all_or_nothing(n, [], ["new"])  # its spawn was never acknowledged
        names = {i.name for i in n.ps()}
        assert ("new" in names) == (outcome == "completed")
        assert n.call("old", "get") == 0
    finally:
        shutdown_quietly(n)


def _race(*calls):  # type: ignore[no-untyped-def]
    """Run the calls at once (a barrier between them); return each one's result or error."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i, fn):  # type: ignore[no-untyped-def]
        barrier.wait()
        try:
            results[i] = fn()
        except BeamishError as exc:
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_restarts_of_a_stopped_agent_at_once_start_it_once(node):
    ref = node.spawn(COUNTER, name="c", args={"start": 5})
    ref.call("incr")
    other = connect(node.dir)  # a second client: one client's requests go one at a time
    try:
        for _ in range(5):
            node.stop("c")
            results = _race(lambda: node.restart("c"), lambda: other.restart("c"))
            errors = [r for r in results if isinstance(r, BeamishError)]
            assert len(errors) == 1 and isinstance(errors[0], AlreadyRunning), results
            info = node.info("c")
            assert info.status == "running" and info.pid is not None  # the record is whole
            assert ref.call("get") == 6
    finally:
        other.close()


def test_a_spawn_and_an_add_supervisor_of_one_name_at_once_leave_one_owner(node):
    other = connect(node.dir)
    try:
        for i in range(5):
            name = f"both-{i}"
            results = _race(lambda n=name: node.spawn(COUNTER, name=n),
                            lambda n=name: other.add_supervisor(n))
            errors = [r for r in results if isinstance(r, BeamishError)]
            assert len(errors) == 1, results
            tree = json.dumps(node.tree())
            assert tree.count(f'"{name}"') == 1, tree
    finally:
        other.close()
