"""Sleeping agents in the store and on the wire: the status sets, the records' new fields
(backwards compatible), the wakes table, the timer firing's wake mark, the session
hints, and the link table's rebind (a woken agent's new process holds its old links)."""

from __future__ import annotations

from typing import Any

import pytest

from beamish.mailbox import pack
from beamish.runtime._types import (
    ACCEPTS_MESSAGES,
    HAD_PROCESS,
    IN_TREE,
    STARTED_AT_NODE_START,
    AgentStatus,
    Failure,
)
from beamish.runtime.messaging.wire import WAKE_HINT, IdleHint, idle_hint, parse_session_hint
from beamish.runtime.node.links import Deliver, LinkTable
from beamish.runtime.node.sessions import Sessions, pending_wakes
from beamish.runtime.node.timers import _fire_txn
from beamish.runtime.store.lmdb import Store
from beamish.runtime.store.records import AgentRecord, Boot, NodeFields, Timer

SLEEPING = AgentStatus.SLEEPING


@pytest.mark.parametrize(("group", "member", "why"), [
    (ACCEPTS_MESSAGES, True, "a sender appends to a sleeping agent (and marks its wake)"),
    (IN_TREE, True, "its name is taken; stop takes it out of the tree"),
    (HAD_PROCESS, False, "no supervisor holds it, none reports it removed"),
    (STARTED_AT_NODE_START, False, "a node start leaves it asleep"),
])
def test_where_sleeping_belongs(group: frozenset[AgentStatus], member: bool, why: str) -> None:
    assert (SLEEPING in group) is member, why


def test_a_node_start_starts_what_accepts_messages_except_sleepers() -> None:
    assert ACCEPTS_MESSAGES - {SLEEPING} == STARTED_AT_NODE_START


@pytest.mark.parametrize(("record", "wire_has"), [
    (AgentRecord("a", 1, status=SLEEPING, idle_timeout=30.0),
     {"status": "sleeping", "idle_timeout": 30.0}),
    (AgentRecord("a", 1), {}),
])
def test_agent_record_idle_timeout_round_trips_and_is_absent_when_unset(
        record: AgentRecord, wire_has: dict[str, Any]) -> None:
    wire = record.to_wire()
    assert {k: wire[k] for k in wire_has} == wire_has
    assert ("idle_timeout" in wire) is (record.idle_timeout is not None)
    assert AgentRecord.from_wire(wire) == record


def test_an_older_agent_record_has_no_idle_timeout() -> None:
    old = {"name": "a", "id": 1, "status": "running"}
    assert AgentRecord.from_wire(old).idle_timeout is None


@pytest.mark.parametrize("idle", [None, 2.5])
def test_boot_carries_idle_timeout(idle: float | None) -> None:
    boot = Boot(NodeFields("/d", "/d/s", "process", 1024), 1, "a", "m:C", {}, 1,
                idle_timeout=idle)
    wire = boot.to_wire()
    assert ("idle_timeout" in wire) is (idle is not None)
    assert Boot.from_wire(wire).idle_timeout == idle


@pytest.mark.parametrize(("timer", "name"), [
    (Timer(1, 2, 3, b"p", 1.0, name="chat"), "chat"),
    (Timer(1, 2, 3, b"p", 1.0), ""),  # set by an older beamish: no name stored
])
def test_timer_name_round_trips(timer: Timer, name: str) -> None:
    assert Timer.from_wire(1, 2, 3, timer.to_wire()) == timer
    assert timer.name == name


@pytest.fixture
def store(tmp_path: Any) -> Any:
    s = Store(str(tmp_path / "s"))
    yield s
    s.close()


def test_wakes_table_put_list_delete_and_erase(store: Store) -> None:
    store.write(lambda t: (t.put_wake(7, "b"), t.put_wake(3, "a")))
    assert store.read(lambda t: t.wakes()) == [(3, "a"), (7, "b")]
    assert store.read(lambda t: t.wakes(limit=1)) == [(3, "a")]
    assert store.write(lambda t: t.delete_wake(3)) is True
    assert store.write(lambda t: t.delete_wake(3)) is False
    store.write(lambda t: t.erase_agent_data(7))
    assert store.read(lambda t: t.wakes()) == []


def test_wakes_pages_on_after_the_last_id_and_a_scan_finds_a_mark_past_the_first_page(
        store: Store) -> None:
    store.write(lambda t: [t.put_wake(i, f"a{i}") for i in range(1, 1031)])
    first = store.read(lambda t: t.wakes())
    assert (len(first), first[-1]) == (1024, (1024, "a1024"))  # the old scan's whole view
    assert store.read(lambda t: t.wakes(after=1024)) == [(i, f"a{i}") for i in range(1025, 1031)]
    assert store.read(lambda t: t.wakes(limit=2, after=1)) == [(2, "a2"), (3, "a3")]
    assert store.read(lambda t: t.wakes(after=1030)) == []
    assert store.read(lambda t: t.wakes(after=2 ** 64 - 1)) == []
    for page in (1024, 7, 1030, 1031):
        assert list(pending_wakes(store, page)) == [(i, f"a{i}") for i in range(1, 1031)]


@pytest.mark.parametrize(("status", "agent_id", "inc", "asleep"), [
    (AgentStatus.RESTARTING, 5, 2, True),  # the exit the sleep lost: asleep, wake pending
    (AgentStatus.RESTARTING, 5, 3, False),  # a later incarnation's: not that exit's
    (AgentStatus.RESTARTING, 6, 2, False),  # the name spawned again (another id)
    (AgentStatus.STOPPED, 5, 2, False),  # stopped meanwhile: stays stopped
    (AgentStatus.RUNNING, 5, 2, False),  # restarted meanwhile: left running
])
def test_a_lost_sleeps_fallback_sleeps_only_that_exits_record_and_keeps_its_failure(
        store: Store, status: AgentStatus, agent_id: int, inc: int, asleep: bool) -> None:
    failure = Failure(kind="killed", message="SIGKILL", signal=9)
    store.write(lambda t: t.put_agent(AgentRecord(
        "a", agent_id, status=status, incarnation=2, last_failure=failure,
        recover_pending=True)))
    store.write(lambda t: Sessions._lost_txn(t, "a", 5, inc))
    rec = store.read(lambda t: t.get_agent("a"))
    assert rec.status == (SLEEPING if asleep else status)
    assert (rec.last_failure, rec.recover_pending) == (failure, True)  # the wake recovers
    assert store.read(lambda t: t.wakes()) == ([(5, "a")] if asleep else [])


@pytest.mark.parametrize(("status", "named", "marked"), [
    (SLEEPING, True, True),
    (SLEEPING, False, True),  # an older timer without a name: found by id
    (AgentStatus.RUNNING, True, False),
])
def test_a_fired_timer_marks_a_sleeping_agents_wake_in_its_transaction(
        store: Store, status: AgentStatus, named: bool, marked: bool) -> None:
    store.write(lambda t: t.put_agent(AgentRecord("a", 5, status=status)))
    store.write(lambda t: t.put_timer(Timer(5, 1, 10, pack("tick"), 0.0,
                                            name="a" if named else "")))
    fired, dropped, woke = store.write(_fire_txn(20))
    assert [(f[0], f[1]) for f in fired] == [(5, 1)] and dropped == 0
    assert woke == ({5} if marked else set())
    assert store.read(lambda t: t.wakes()) == ([(5, "a")] if marked else [])


@pytest.mark.parametrize(("data", "parsed"), [
    (WAKE_HINT, WAKE_HINT),
    (idle_hint(3, 9), IdleHint(3, 9)),
    (b"", None),
    (b"x" * 17, None),
    (b"i" + b"\0" * 3, None),
])
def test_session_hints_parse_or_are_ignored(data: bytes, parsed: Any) -> None:
    assert parse_session_hint(data) == parsed


class _H:
    def __init__(self, name: str) -> None:
        self.name = name


def test_rebind_moves_links_and_monitors_both_ways_to_the_new_handle() -> None:
    table: LinkTable[_H] = LinkTable()
    old, new, peer, watcher, watched = _H("s"), _H("s"), _H("p"), _H("w"), _H("t")
    table.link(old, peer)
    table.monitor(watcher, old)  # someone watches the sleeper
    table.monitor(old, watched)  # the sleeper watches someone
    assert table.holds(old) and not table.holds(new)
    table.rebind(old, new)
    assert not table.holds(old) and table.holds(new)
    assert table.exited(watched, "normal", False, {}) == [
        Deliver(new, {"__beamish__": "Down", "name": "t", "reason": "normal"})]
    actions = table.exited(new, "boom", True, {})
    assert Deliver(watcher, {"__beamish__": "Down", "name": "s", "reason": "boom"}) in actions
    assert any(getattr(a, "target", None) is peer for a in actions)
