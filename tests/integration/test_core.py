"""The core runtime through real processes, real ZeroMQ sockets and a real LMDB."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time

import psutil
import pytest

from beamish.runtime import (
    AgentNotFound,
    CallTimeout,
    ConfigError,
    MessageTooLarge,
    NodeAlreadyRunning,
    NodeNotRunning,
    RemoteError,
    SpawnError,
    connect,
    start_node,
)
from tests.conftest import kill_node, shutdown_quietly, wait_until

pytestmark = pytest.mark.slow
COUNTER = "tests.agents.basic:Counter"
FAULTY = "tests.agents.basic:Faulty"


def test_spawn_call_cast(node):
    ref = node.spawn(COUNTER, args={"start": 5}, name="c1")
    assert ref.call("incr") == 6
    ref.cast("incr")
    ref.cast("incr")
    assert ref.call("get") == 8
    info = node.info("c1")
    assert info.status == "running" and info.pid and info.pid != node.pid
    assert info.processed == 4 and info.mailbox_depth == 0 and info.restarts == 0
    assert node.call("c1", "get") == 8


def test_each_agent_runs_in_its_own_process_forked_from_the_zygote(node):
    a = node.spawn(COUNTER, name="a")
    b = node.spawn(COUNTER, name="b")
    pa, pb = a.call("pid"), b.call("pid")
    assert len({pa, pb, node.pid, os.getpid()}) == 4
    zygote = psutil.Process(pa).parent()
    assert zygote.pid == psutil.Process(pb).parent().pid
    assert zygote.parent().pid == node.pid


def test_async_handler(node):
    ref = node.spawn("tests.agents.basic:AsyncEcho", name="ae")
    assert ref.call([1, "x"]) == {"echo": [1, "x"]}


def test_asyncio_client_flavour(node):
    ref = node.spawn(COUNTER, name="c")

    async def go() -> list[int]:
        return list(await asyncio.gather(*(ref.acall("incr") for _ in range(5))))
    assert sorted(asyncio.run(go())) == [1, 2, 3, 4, 5]


def test_node_is_safe_from_many_threads(node):
    from concurrent.futures import ThreadPoolExecutor
    ref = node.spawn(COUNTER, name="c")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ref.call("incr"), range(200)))
    assert sorted(results) == list(range(1, 201))


def test_call_unknown_name_raises_agent_not_found_at_once(node):
    t = time.monotonic()
    with pytest.raises(AgentNotFound, match="nope"):
        node.call("nope", 1, timeout=5)
    with pytest.raises(AgentNotFound):
        node.cast("nope", 1)
    assert time.monotonic() - t < 4  # "at once": well before the 5 s call timeout


def test_stopped_agent_is_not_found_and_spawning_the_name_resumes_it(node):
    ref = node.spawn(COUNTER, name="c")
    ref.call("incr")
    ref.call("incr")
    node.stop("c")
    assert node.info("c").status == "stopped"
    with pytest.raises(AgentNotFound, match="stopped"):
        ref.call("get")
    again = node.spawn(COUNTER, name="c", args={"start": 100})
    assert again.call("get") == 2  # resumed: init did not run again


def test_call_timeout(node):
    ref = node.spawn(FAULTY, name="slow")
    with pytest.raises(CallTimeout) as err:
        ref.call({"sleep": 1.0}, timeout=0.2)
    assert err.value.target == "slow" and err.value.timeout == 0.2
    assert isinstance(err.value, TimeoutError)
    assert ref.call("get", timeout=5) == 0  # the agent goes on; the late reply was dropped


def test_exception_reaches_caller_as_remote_error_and_agent_restarts_with_state(node):
    ref = node.spawn(FAULTY, name="f")
    assert ref.call("incr") == 1
    pid = ref.call("pid")
    with pytest.raises(RemoteError) as err:
        ref.call("raise")
    e = err.value
    assert e.type == "ValueError" and e.message == "boom"
    assert "ValueError: boom" in e.traceback and "handle_call" in e.traceback
    assert e.failure is not None and e.failure.kind == "exception"
    assert e.failure.in_flight is not None and e.failure.in_flight["kind"] == "call"
    assert ref.call("get") == 1  # the last committed state
    assert ref.call("pid") != pid  # a fresh process: let it crash
    info = node.info("f")
    assert info.restarts == 1 and info.last_failure.exc_type == "ValueError"


def test_sigkill_restarts_with_last_committed_state(node):
    ref = node.spawn(COUNTER, name="c", args={"start": 40})
    assert ref.call("incr") == 41
    assert ref.call("incr") == 42
    pid = ref.call("pid")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: node.info("c").restarts == 1, what="restart after SIGKILL")
    assert ref.call("get") == 42
    assert ref.call("pid") != pid
    failure = node.info("c").last_failure
    assert failure.kind == "killed" and failure.signal == signal.SIGKILL
    assert failure.in_flight is None  # killed while idle: no message is blamed


def test_calls_wait_through_a_crash_and_get_the_retry_reply(node, tmp_path):
    ref = node.spawn(FAULTY, name="f")
    pid = ref.call("pid")
    import threading
    result = {}
    entered = tmp_path / "entered"
    msg = {"sleep": 0.5, "entered": str(entered)}
    t = threading.Thread(target=lambda: result.update(v=ref.call(msg, timeout=10)))
    t.start()
    wait_until(entered.exists, what="the handler to start")
    entered.unlink()  # the retry creates it again; only the first attempt is killed
    os.kill(pid, signal.SIGKILL)  # mid-message: the default recover resumes (retries) it
    t.join(15)
    assert result == {"v": "slept"}
    assert node.info("f").last_failure.in_flight is not None


def test_unserializable_state_is_a_clear_error_naming_agent_and_type(node):
    ref = node.spawn(FAULTY, name="f")
    with pytest.raises(RemoteError) as err:
        ref.call("unserializable")
    assert err.value.type == "StateError"
    assert "'f'" in err.value.message and "object" in err.value.message
    assert ref.call("get") == 0


def test_message_too_large_is_refused_before_sending(node):
    ref = node.spawn(COUNTER, name="c")
    with pytest.raises(MessageTooLarge) as err:
        ref.call(b"x" * (16 * 1024 * 1024 + 1))
    assert err.value.limit == 16 * 1024 * 1024
    assert node.info("c").mailbox_depth == 0
    assert ref.call("get") == 0


def test_spawn_errors(node):
    node.spawn(COUNTER, name="c")
    with pytest.raises(SpawnError, match="in use"):
        node.spawn(COUNTER, name="c")
    with pytest.raises(SpawnError, match="ModuleNotFoundError"):
        node.spawn("no.such.module:Agent", name="x")
    with pytest.raises(SpawnError, match="init refused") as err:
        node.spawn(FAULTY, name="y", args={"fail_init": True})
    assert err.value.failure is not None and err.value.failure.exc_type == "RuntimeError"
    with pytest.raises(AgentNotFound):
        node.info("y")  # a failed spawn leaves nothing behind
    with pytest.raises(ConfigError, match="module:Class"):
        node.spawn("not-a-path", name="z")
    with pytest.raises(ConfigError, match="restart"):
        node.spawn(COUNTER, name="z", restart="sometimes")
    assert node.ref("c").call("get") == 0  # the node kept serving


def test_class_from_main_is_refused_clearly(node):
    class Local:  # stands in for a class defined in __main__
        __module__ = "__main__"
        __qualname__ = "Local"
    with pytest.raises(ConfigError, match="__main__"):
        node.spawn(Local, name="m")


def test_class_object_is_accepted(node):
    from tests.agents.basic import Counter
    assert node.spawn(Counter, name="c").call("get") == 0


def test_agent_context_call_cast_spawn(node):
    node.spawn(COUNTER, name="target")
    relay = node.spawn("tests.agents.basic:Relay", name="relay")
    assert relay.call({"op": "call", "to": "target", "msg": "incr"}) == 1
    assert relay.call({"op": "cast", "to": "target", "msg": "incr"}) == "cast"
    wait_until(lambda: node.call("target", "get") == 2, what="the relayed cast")
    assert relay.call({"op": "spawn", "name": "child"}) == "child"
    assert node.call("child", "get") == 7


def test_send_after_arrives_in_handle_info(node):
    ref = node.spawn("tests.agents.basic:Timers", name="t")
    assert ref.call("arm") == "armed"
    wait_until(lambda: ref.call("ticks") == 1, what="the timer tick")


def test_second_node_on_one_dir_is_refused(node, node_dir):
    with pytest.raises(NodeAlreadyRunning) as err:
        start_node(node_dir)
    assert str(node.pid) in str(err.value)
    assert node.ref("x") is not None and node.ps() == []


def test_connect_without_node_raises_node_not_running(node_dir):
    with pytest.raises(NodeNotRunning):
        connect(node_dir)


def test_dir_and_socket_permissions(node, node_dir):
    assert stat.S_IMODE(os.stat(node_dir).st_mode) == 0o700
    node.spawn(COUNTER, name="c")
    socks = [os.path.join(node.paths.run, f) for f in os.listdir(node.paths.run)
             if f.endswith(".sock")]
    assert socks
    for path in socks:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_a_dir_writable_by_others_is_refused(node_dir):
    os.makedirs(node_dir)
    os.chmod(node_dir, 0o777)
    with pytest.raises(ConfigError, match="writable by others"):
        start_node(node_dir)


def test_no_orphans_after_sigkill_of_the_node(node_dir):
    n = start_node(node_dir)
    try:
        pids = [n.spawn(COUNTER, name=f"c{i}").call("pid") for i in range(3)]
        zygote = psutil.Process(pids[0]).parent().pid
        os.kill(n.pid, signal.SIGKILL)
        for pid in [*pids, zygote]:
            wait_until(lambda p=pid: not psutil.pid_exists(p)
                       or psutil.Process(p).status() == psutil.STATUS_ZOMBIE,
                       what=f"pid {pid} to die with the node")
    finally:
        kill_node(n)


def test_states_and_mailboxes_survive_a_node_restart(node_dir):
    n = start_node(node_dir)
    try:
        ref = n.spawn(COUNTER, name="c", args={"start": 10})
        ref.call("incr")
        n.spawn(COUNTER, name="d")
    finally:
        n.shutdown()
    n = start_node(node_dir)
    try:
        assert n.call("c", "get") == 11
        assert {i.name for i in n.ps()} == {"c", "d"}
    finally:
        shutdown_quietly(n)


def test_whole_node_sigkill_then_restart_restores_state_and_pending_casts(node_dir):
    n = start_node(node_dir)
    try:
        ref = n.spawn(FAULTY, name="f")
        for _ in range(5):
            ref.call("incr")
        ref.cast({"sleep": 0.3})  # keeps the agent busy ...
        for _ in range(3):
            ref.cast("incr")  # ... while these wait, durably, in its mailbox
    finally:
        kill_node(n)
    n = start_node(node_dir)
    try:
        # 5 calls + the sleeping cast (re-run: it never committed) + 3 pending casts
        wait_until(lambda: n.call("f", "get") == 9, what="the pending casts to be handled")
    finally:
        shutdown_quietly(n)


def test_a_sleeping_session_survives_a_node_restart_and_delete_erases_it(node_dir):
    n = start_node(node_dir)
    try:
        ref = n.spawn(COUNTER, name="s", args={"start": 1})
        ref.call("incr")
        n.stop("s")  # asleep: no process, state kept
        assert n.info("s").pid is None
    finally:
        n.shutdown()
    n = start_node(node_dir)
    try:
        assert n.info("s").status == "stopped"  # it stays asleep across the restart
        assert n.spawn(COUNTER, name="s").call("get") == 2  # and wakes up where it was
        n.delete("s")
        with pytest.raises(AgentNotFound):
            n.info("s")
        assert n.spawn(COUNTER, name="s", args={"start": 9}).call("get") == 9  # fresh
    finally:
        shutdown_quietly(n)
