"""Every kind of crash stays inside its agent: the others and the node keep serving, and
the faulty agent comes back with its last committed state."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from beamish.runtime import RemoteError
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("msg, kind", [("raise", "exception"), ("exit", "exit"),
                                       ("segv", "signal"), ("sigkill", "killed")])
def test_crash_is_contained_and_state_is_kept(node, msg, kind):
    faulty = node.spawn("tests.agents.basic:Faulty", name="faulty")
    others = [node.spawn("tests.agents.basic:Counter", name=f"o{i}") for i in range(3)]
    assert faulty.call("incr") == 1
    with pytest.raises(RemoteError) as err:
        faulty.call(msg, timeout=30)
    assert err.value.failure.kind == kind
    # an exception is skipped at once; the others are retried up to max_attempts
    assert err.value.failure.attempt == (1 if kind == "exception" else 3)
    assert faulty.call("get", timeout=10) == 1
    assert [o.call("incr") for o in others] == [1, 1, 1]
    assert node._control.request("ping")["pid"] == node.pid


def test_an_external_sigkill_loop_never_loses_state(node):
    ref = node.spawn("tests.agents.basic:Counter", name="c")
    for round_ in range(3):
        assert ref.call("incr") == round_ + 1
        os.kill(node.info("c").pid, signal.SIGKILL)
        # A restart is counted before its fork, and the new process serves its mailbox
        # as soon as it is ready, before its supervisor records it running (with its pid):
        # the restart is done when it is running again, not when it is counted.
        wait_until(lambda r=round_: (i := node.info("c")).restarts == r + 1
                   and i.status == "running" and i.pid, what="the restart")
    assert ref.call("get") == 3


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_processes_an_agent_started_die_with_it(node):
    ref = node.spawn("tests.agents.basic:Faulty", name="f")
    assert ref.call("incr") == 1
    child = ref.call({"start_child": 120})
    assert _running(child)
    os.kill(node.info("f").pid, signal.SIGKILL)
    wait_until(lambda: not _running(child), what="the agent's child killed with it")
    assert ref.call("get", timeout=10) == 1  # and the agent is back, with its state
    child = ref.call({"start_child": 120})
    node.stop("f")
    wait_until(lambda: not _running(child), what="the child killed when the agent stopped")


def test_an_agent_that_closes_its_stdio_is_restarted_with_its_state(node):
    ref = node.spawn("tests.agents.basic:Faulty", name="f")
    other = node.spawn("tests.agents.basic:Counter", name="o")
    assert ref.call("incr") == 1
    pid = ref.call("pid")
    assert ref.call("close_stdio") == "closed"
    wait_until(lambda: node.info("f").restarts == 1, what="the restart")
    failure = node.info("f").last_failure
    assert failure.kind == "exit" and "standard streams" in failure.message
    assert ref.call("pid") != pid and ref.call("get") == 1
    assert other.call("incr") == 1
