"""Issue 9, the zygote: user code imported into it cannot take it down, a zygote that
dies anyway is replaced (its agents restarted as crashes), and garbage on the agents'
inherited ready socket is dropped and counted, never stopping spawns or restarts.

All through real processes: a real node, real agents, real signals and sockets.
"""

from __future__ import annotations

import os
import signal
import threading

import psutil
import pytest

from beamish.runtime import start_node
from beamish.runtime.errors import SpawnError
from tests.conftest import restarted, shutdown_quietly, wait_until

pytestmark = pytest.mark.slow
COUNTER = "tests.agents.basic:Counter"


def zygote_of(node) -> psutil.Process:  # type: ignore[no-untyped-def]
    """The node's live zygote process."""
    for child in psutil.Process(node.pid).children():
        # Titled "beamish zygote (node pid N)" once it runs; "python -m ...zygote" before.
        if "zygote" in " ".join(child.cmdline()):
            return child
    raise AssertionError("the node has no zygote")


def counters(node, names: list[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Spawn a counter per name and increment each (name's index + 1) times."""
    counts = {}
    for i, name in enumerate(names):
        ref = node.spawn(COUNTER, name=name)
        for _ in range(i + 1):
            ref.call("incr")
        counts[name] = i + 1
    return counts


def assert_still_serving(node, counts: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    """Every counter kept its committed state; the node still spawns."""
    for name, n in counts.items():
        assert node.call(name, "get", timeout=30) == n, name
    assert node.spawn(COUNTER, name="after").call("incr", timeout=30) == 1


@pytest.mark.parametrize("module, how", [
    ("tests.agents.zygote_exit_at_import", "exited with code 7"),
    ("tests.agents.zygote_segv_at_import", "SIGSEGV"),
])
def test_a_module_that_kills_its_importer_is_refused_and_the_zygote_survives(node, module, how):
    counts = counters(node, ["c1", "c2"])
    pids = {name: node.info(name).pid for name in counts}
    zygote = zygote_of(node).pid
    with pytest.raises(SpawnError) as err:
        node.spawn(f"{module}:Never", name="hostile", timeout=60)
    assert module in str(err.value) and how in str(err.value), str(err.value)
    # Nothing died: not the zygote, not the agents, not the node.
    assert zygote_of(node).pid == zygote
    assert {name: node.info(name).pid for name in counts} == pids
    assert_still_serving(node, counts)
    # Asked again, it is refused again (and still harms nothing).
    with pytest.raises(SpawnError):
        node.spawn(f"{module}:Never", name="hostile", timeout=60)
    assert zygote_of(node).pid == zygote


def test_a_module_that_ignores_sigchld_does_not_blind_the_zygote(node):
    counts = counters(node, ["c1"])
    quiet = node.spawn("tests.agents.zygote_sigchld_ignored:Quiet", name="quiet")
    assert quiet.call("incr") == 1
    counts["quiet"] = 1
    for name in ("c1", "quiet"):
        old = node.info(name).pid
        os.kill(old, signal.SIGKILL)
        wait_until(lambda name=name, old=old: restarted(node, name, old), timeout=30,
                   what=f"{name} to be restarted after kill -9")
        info = node.info(name)
        assert info.restarts == 1 and info.last_failure is not None
        assert info.last_failure.kind == "killed"
    assert_still_serving(node, counts)


def test_a_dead_zygote_is_replaced_and_its_agents_restarted_as_killed(node):
    counts = counters(node, ["c1", "c2", "c3"])
    node.spawn(COUNTER, name="temp", restart="temporary")
    pids = {name: node.info(name).pid for name in counts}
    # A process an agent started (its process group) has no PDEATHSIG of its own.
    grandchild = node.spawn("tests.agents.basic:Faulty", name="f").call({"start_child": 300})
    old = zygote_of(node)
    old.kill()  # as the OOM killer would
    wait_until(lambda: not psutil.pid_exists(grandchild)
               or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE, timeout=30,
               what="the process an agent started to die with it")
    for name, pid in pids.items():
        wait_until(lambda name=name, pid=pid: restarted(node, name, pid), timeout=60,
                   what=f"{name} to be restarted after its zygote died")
    assert zygote_of(node).pid != old.pid
    for name in counts:
        info = node.info(name)
        assert info.restarts == 1, info
        assert info.last_failure is not None and info.last_failure.kind == "killed", info
        assert "zygote" in info.last_failure.message, info
        assert not psutil.pid_exists(pids[name]) or \
            psutil.Process(pids[name]).status() == psutil.STATUS_ZOMBIE
    # A temporary agent is not restarted (its spec), and its name is free again.
    wait_until(lambda: node.info("temp").status != "running", timeout=30,
               what="the temporary agent to be gone")
    assert_still_serving(node, counts)


def test_garbage_on_the_ready_socket_is_dropped_and_counted(node):
    counts = counters(node, ["c1"])
    vandal = node.spawn("tests.agents.zygote_ready_vandal:ReadyVandal", name="vandal")
    before = node._control.request("ping")["dropped_frames"]
    written = vandal.call("vandalize", timeout=30)
    assert written > 0
    # The reader dropped and counted them, and is still alive: spawns and restarts work.
    wait_until(lambda: node._control.request("ping")["dropped_frames"] >= before + written,
               timeout=30, what="every bad datagram to be counted")
    assert node.spawn(COUNTER, name="fresh", timeout=60).call("incr", timeout=30) == 1
    old = node.info("c1").pid
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: restarted(node, "c1", old), timeout=30,
               what="c1 to be restarted after the garbage")
    assert vandal.call("incr") == 1
    assert_still_serving(node, counts)


def test_ready_reports_from_processes_that_are_not_agents_are_bounded(node):
    counts = counters(node, ["c1"])
    vandal = node.spawn("tests.agents.zygote_ready_vandal:ReadyVandal", name="vandal")
    before = node._control.request("ping")["dropped_frames"]
    # Each child's report is well-formed and its own, but no child is an agent: the node
    # holds at most 1024 such reports (one may still meet its fork answer) and drops the rest.
    sent = vandal.call({"fork_reports": 1200}, timeout=120)
    assert sent == 1200
    wait_until(lambda: node._control.request("ping")["dropped_frames"] - before >= 1200 - 1024,
               timeout=30, what="the reports past the bound to be dropped and counted")
    assert node.spawn(COUNTER, name="fresh", timeout=60).call("incr", timeout=30) == 1
    assert_still_serving(node, counts)


def test_an_agent_that_dies_while_an_import_ignores_sigchld_is_still_restarted(
        node_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ZYGOTE_TEST_MARKERS", str(tmp_path))
    node = start_node(node_dir)
    try:
        counts = counters(node, ["c1"])
        old = node.info("c1").pid
        spawned = {}

        def spawn() -> None:
            spawned["ref"] = node.spawn("tests.agents.zygote_sigchld_window:Idle", name="w",
                                        timeout=60)
        spawner = threading.Thread(target=spawn)
        spawner.start()
        wait_until(lambda: (tmp_path / "importing").exists(), timeout=60,
                   what="the zygote to be inside the import")
        os.kill(old, signal.SIGKILL)
        # The kernel reaps it at once (SIGCHLD ignored): no zombie, no status to wait for.
        wait_until(lambda: not psutil.pid_exists(old), timeout=30, what="c1 to be gone")
        (tmp_path / "go").touch()
        spawner.join(90)
        assert spawned["ref"].call("hi") == "ok"
        wait_until(lambda: restarted(node, "c1", old), timeout=30,
                   what="c1 to be restarted after dying unseen")
        assert_still_serving(node, counts)
    finally:
        shutdown_quietly(node)


def test_a_zygote_that_keeps_dying_stops_the_node(node):
    node.spawn(COUNTER, name="c1")
    node_proc = psutil.Process(node.pid)
    killed: list[int] = []

    def new_zygote() -> psutil.Process | None:
        try:
            zygote = zygote_of(node)
        except (AssertionError, psutil.Error):
            return None  # between two zygotes
        return zygote if zygote.pid not in killed else None

    for _ in range(6):  # the first and 5 replacements (ZYGOTE_MAX_RESTARTS)
        zygote = wait_until(new_zygote, timeout=30, what="a new zygote")
        killed.append(zygote.pid)
        zygote.kill()
    wait_until(lambda: not node_proc.is_running()
               or node_proc.status() == psutil.STATUS_ZOMBIE, timeout=60,
               what="the node to stop after its sixth zygote died")
    with open(os.path.join(node.dir, "node.log"), encoding="utf-8") as fh:
        assert "the zygote died 6 times within 60 s: stopping the node" in fh.read()


def test_forged_frames_from_the_zygote_are_dropped_and_counted(node):
    counts = counters(node, ["c1"])
    before = node._control.request("ping")["dropped_frames"]
    ref = node.spawn("tests.agents.zygote_frame_vandal:Innocent", name="v", timeout=60)
    assert ref.call("hi") == "ok"
    # 11 forged frames; the one answering no request is not malformed, but its pid (1,
    # not a child of the zygote) is refused too.
    wait_until(lambda: node._control.request("ping")["dropped_frames"] >= before + 11,
               timeout=30, what="the forged frames to be counted")
    assert psutil.pid_exists(1)
    old = node.info("c1").pid
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: restarted(node, "c1", old), timeout=30,
               what="c1 to be restarted after the forged frames")
    assert_still_serving(node, counts)


def test_a_module_whose_import_raises_is_probed_once(node_dir, tmp_path, monkeypatch):
    # A trial import blocks the single-threaded zygote; one that raised is remembered, so
    # every later spawn of that module pays only its own agent's import.
    log = tmp_path / "imports"
    monkeypatch.setenv("BEAMISH_TEST_IMPORT_LOG", str(log))
    n = start_node(node_dir)
    try:
        for i in range(3):
            with pytest.raises(SpawnError, match="refuses to import"):
                n.spawn("tests.agents.zygote_raises_at_import:Nothing", name=f"r{i}")
        assert len(log.read_text().splitlines()) == 1 + 3  # one probe, then each agent
        assert n.spawn(COUNTER, name="c").call("incr") == 1
    finally:
        shutdown_quietly(n)
