"""Eager spawns start beside their supervisor and are handed to it once ``init`` returned:
independent spawns run side by side, and the supervisor's rules hold from the moment it
holds the child. Through real processes; every "at once" is shown by behaviour (inits
that can only finish together), never by a clock."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from beamish.runtime import (
    AgentNotFound,
    BeamishError,
    NodeNotRunning,
    SpawnError,
    connect,
    start_node,
)
from tests.conftest import shutdown_quietly, wait_until

pytestmark = pytest.mark.slow
GATED = "tests.agents.supervision_agents:GatedInit"
COUNTER = "tests.agents.basic:Counter"
DIES_AFTER_INIT = "tests.agents.supervision_agents:DiesRightAfterInit"


def test_independent_spawns_into_one_supervisor_run_their_inits_at_the_same_time(node, tmp_path):
    # Each init says it entered, then waits for a gate the test opens only once every init
    # has entered: spawns that waited for each other could never all enter.
    n = 6
    gate = tmp_path / "gate"
    entered = [tmp_path / f"entered-{i}" for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(node.spawn, GATED, name=f"g{i}", timeout=60.0,
                               args={"entered": str(entered[i]), "wait_for": str(gate)})
                   for i in range(n)]
        try:
            wait_until(lambda: all(p.exists() for p in entered), timeout=30,
                       what=f"all {n} inits entered at once")
        finally:
            gate.touch()  # never leave the spawns hanging, whatever the assertion said
        refs = [f.result() for f in futures]
    assert [node.call(r.name, "incr") for r in refs] == [1] * n
    assert sorted(c["name"] for c in node.tree()["children"]) == [f"g{i}" for i in range(n)]
    assert {node.info(r.name).status for r in refs} == {"running"}


def test_a_spawn_whose_init_fails_leaves_nothing_while_others_start_beside_it(node, tmp_path):
    gate, flag = tmp_path / "gate", tmp_path / "fail"
    flag.touch()
    entered = tmp_path / "entered"
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(node.spawn, GATED, name="slow", timeout=60.0,
                           args={"entered": str(entered), "wait_for": str(gate)})
        wait_until(entered.exists, what="the slow init entered")
        with pytest.raises(SpawnError) as err:
            node.spawn(GATED, name="bad", args={"fail_if": str(flag)})
        assert "init refused" in str(err.value)
        gate.touch()
        assert slow.result().name == "slow"
    with pytest.raises(AgentNotFound):
        node.info("bad")  # rolled back: the name is free
    assert [c["name"] for c in node.tree()["children"]] == ["slow"]
    flag.unlink()
    assert node.spawn(GATED, name="bad").call("incr") == 1


def test_an_agent_dying_right_after_its_init_is_restarted_by_its_supervisor(node, tmp_path):
    # Its first process kills itself a moment after init returned: before or after the
    # supervisor took it, the spawn succeeded and the crash is the supervisor's to handle.
    marker = tmp_path / "died-once"
    ref = node.spawn(DIES_AFTER_INIT, name="d", args={"marker": str(marker)})
    wait_until(marker.exists, what="the first process died")
    wait_until(lambda: node.info("d").restarts == 1 and node.info("d").status == "running",
               what="its supervisor restarted it")
    assert ref.call("incr") == 1
    assert any(e.kind == "exited" and e.name == "d" for e in node.events())


def test_stop_of_an_agent_whose_spawn_is_still_in_init_wins_and_leaves_no_process(node, tmp_path):
    gate, entered = tmp_path / "gate", tmp_path / "entered"
    result: list[BaseException | str] = []

    def spawn() -> None:
        try:
            result.append(node.spawn(GATED, name="s", timeout=60.0, args={
                "entered": str(entered), "wait_for": str(gate)}).name)
        except SpawnError as exc:
            result.append(exc)

    t = threading.Thread(target=spawn)
    t.start()
    try:
        wait_until(lambda: entered.exists() and entered.read_text() != "",
                   what="its init entered")
        pid = int(entered.read_text())
        node.stop("s")
    finally:
        gate.touch()
        t.join(60)
    assert len(result) == 1 and isinstance(result[0], SpawnError), result
    assert "stopped or deleted while it started" in str(result[0])
    assert node.info("s").status == "stopped"
    assert node.tree()["children"] == []
    wait_until(lambda: not _alive(pid), what="its process is gone")


def test_a_spawn_killed_in_init_fails_and_the_name_is_free(node, tmp_path):
    gate, entered = tmp_path / "gate", tmp_path / "entered"
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(node.spawn, GATED, name="k", timeout=60.0,
                          args={"entered": str(entered), "wait_for": str(gate)})
        wait_until(lambda: entered.exists() and entered.read_text() != "",
                   what="its init entered")
        os.kill(int(entered.read_text()), signal.SIGKILL)
        with pytest.raises(SpawnError) as err:
            fut.result()
    assert "did not start" in str(err.value)
    with pytest.raises(AgentNotFound):
        node.info("k")
    assert node.spawn(COUNTER, name="k").call("incr") == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_node_shut_down_among_concurrent_spawns_leaves_no_process_and_no_half_made_agent(
        node_dir, tmp_path):
    # Twenty spawns in flight (their inits wait on a gate) when the node is told to stop:
    # each spawn either completed or failed with a typed error, the node stops, and a
    # node restarted on the dir holds exactly the spawns that were acknowledged.
    n = start_node(node_dir)
    gate = tmp_path / "gate"
    outcomes: dict[str, object] = {}
    try:
        with ThreadPoolExecutor(20) as pool:
            futures = {f"c{i}": pool.submit(n.spawn, GATED, name=f"c{i}", timeout=60.0,
                                             args={"wait_for": str(gate)})
                       for i in range(20)}
            wait_until(lambda: len(_agent_pids(n.pid)) >= 5,
                       what="some inits are running")
            stopper = threading.Thread(target=n.shutdown)
            stopper.start()
            gate.touch()
            for name, fut in futures.items():
                try:
                    outcomes[name] = fut.result(60)
                except BeamishError as exc:
                    outcomes[name] = exc
            stopper.join(60)
    finally:
        shutdown_quietly(n)
    acknowledged = sorted(k for k, v in outcomes.items() if not isinstance(v, BaseException))
    n = start_node(node_dir)
    try:
        present = sorted(a.name for a in n.ps() if a.status == "running")
        assert present == acknowledged, (present, acknowledged, outcomes)
    finally:
        shutdown_quietly(n)


def _agent_pids(node_pid: int) -> list[int]:
    """This node's agent processes now alive (its zygote's children)."""
    import psutil
    try:
        return [agent.pid for zygote in psutil.Process(node_pid).children()
                for agent in zygote.children()]
    except psutil.NoSuchProcess:
        return []


def test_closing_a_client_while_another_of_its_threads_waits_on_a_spawn(node_dir, tmp_path):
    # The waiting thread gets its answer, or a typed error saying the connection closed
    # under it (never a raw ZeroMQ error); later requests say the client is closed; the
    # node carries the spawn out either way.
    n = start_node(node_dir)
    try:
        client = connect(node_dir)
        gate, entered = tmp_path / "gate", tmp_path / "entered"
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(client.spawn, GATED, name="w", timeout=60.0,
                              args={"entered": str(entered), "wait_for": str(gate)})
            wait_until(entered.exists, what="its init entered")
            client.close()
            gate.touch()
            try:
                assert fut.result(60).name == "w"
            except NodeNotRunning as exc:
                assert "closed while 'spawn' waited" in str(exc)
        with pytest.raises(NodeNotRunning, match="closed"):
            client.spawn(COUNTER, name="after")
        wait_until(lambda: n.info("w").status == "running", what="the spawn completed")
        assert n.call("w", "incr") == 1
    finally:
        shutdown_quietly(n)
