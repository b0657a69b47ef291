"""The node's registry: status transitions of agent records and the events they emit."""

from __future__ import annotations

import threading

import pytest

from beamish.runtime._types import AgentStatus, Failure
from beamish.runtime.node.registry import Registry
from beamish.runtime.store import open_store
from beamish.runtime.store.records import AgentRecord, SupervisorRecord
from beamish.supervisor import ChildStatus, EventKind

FAILURE = Failure(kind="exit", message="exited with code 3", exit_code=3)


@pytest.fixture
def reg(tmp_path):
    store = open_store(str(tmp_path / "s"))
    events: list[tuple[str, str, str, str]] = []
    registry = Registry(store, lambda *e: events.append(e), threading.Event())
    registry.events = events  # for the tests to read
    yield registry
    store.close()


def _put(reg, status, **fields):
    reg.store.write(lambda t: t.put_agent(AgentRecord("a", 1, status=status, **fields)))


def _status(reg):
    return reg.get("a").status


def test_set_status_keeps_the_last_failure_unless_given_one(reg):
    _put(reg, AgentStatus.RUNNING, pid=5, last_failure=FAILURE)
    reg.set_status("a", AgentStatus.STOPPED)
    rec = reg.get("a")
    assert (rec.status, rec.pid, rec.last_failure) == (AgentStatus.STOPPED, None, FAILURE)
    other = Failure(kind="signal", signal=9)
    reg.set_status("a", AgentStatus.RESTARTING, failure=other)
    assert reg.get("a").last_failure == other


@pytest.mark.parametrize(("before", "given", "after"), [
    (False, None, False), (True, None, True), (False, True, True), (True, False, False),
])
def test_recover_pending_is_set_cleared_or_left(reg, before, given, after):
    _put(reg, AgentStatus.RUNNING, recover_pending=before)
    reg.set_status("a", AgentStatus.RUNNING, recover_pending=given)
    assert reg.get("a").recover_pending is after


def test_set_status_of_an_unknown_agent_does_nothing(reg):
    reg.set_status("ghost", AgentStatus.FAILED)
    assert reg.get("ghost") is None


@pytest.mark.parametrize(("kind", "status"), [
    (EventKind.FAILED, AgentStatus.FAILED), (EventKind.BACKOFF, AgentStatus.BACKOFF),
    (EventKind.RESTARTED, AgentStatus.RUNNING),
])
def test_a_supervisor_event_is_emitted_and_sets_the_status_it_implies(reg, kind, status):
    _put(reg, AgentStatus.RUNNING, pid=5)
    reg.on_supervisor_event(kind, "a", "root", "why")
    assert reg.events == [(str(kind), "a", "root", "why")] and _status(reg) is status


@pytest.mark.parametrize(("before", "after"), [
    (AgentStatus.RUNNING, AgentStatus.EXITED), (AgentStatus.RESTARTING, AgentStatus.EXITED),
    (AgentStatus.STARTING, AgentStatus.STARTING), (AgentStatus.FAILED, AgentStatus.FAILED),
])
def test_an_agent_removed_from_the_tree_by_itself_has_exited(reg, before, after):
    _put(reg, before)
    reg.on_supervisor_event(EventKind.REMOVED, "a", "root", "")
    assert _status(reg) is after


def test_an_agent_a_command_removes_or_the_node_stops_is_not_marked_exited(reg):
    _put(reg, AgentStatus.RUNNING)
    with reg.removing("a"):
        reg.on_supervisor_event(EventKind.REMOVED, "a", "root", "")
    assert _status(reg) is AgentStatus.RUNNING
    reg.stopping.set()
    reg.on_supervisor_event(EventKind.REMOVED, "a", "root", "")
    assert _status(reg) is AgentStatus.RUNNING


def test_a_supervisor_event_sets_a_nested_supervisors_status(reg):
    reg.store.write(lambda t: t.put_sup(SupervisorRecord("s")))
    reg.on_supervisor_event(EventKind.FAILED, "s", "root", "")
    assert reg.store.read(lambda t: t.get_sup("s")).status is ChildStatus.FAILED


def test_supervisor_of_and_name_of(reg):
    reg.store.write(lambda t: t.put_agent(AgentRecord("a", 7, supervisor="s")))
    assert reg.supervisor_of("a") == "s" and reg.supervisor_of("ghost") == "root"
    assert reg.name_of(7) == "a" and reg.name_of(8) is None
