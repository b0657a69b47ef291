"""LinkTable (node/links.py): what an incarnation's exit means for its monitors and links,
one test per rule, as in Erlang. Pure bookkeeping: no process runs."""

from __future__ import annotations

import threading

from beamish.runtime.node.links import (
    Deliver,
    KillLinked,
    LinkTable,
    down_message,
    exit_message,
)
from beamish.runtime.node.spawner import Incarnation

CRASH = "exception: ValueError"


def proc(name: str, inc: int = 1) -> Incarnation:
    """One incarnation handle (a process); never started."""
    return Incarnation(name, id=hash(name) & 0xFFFF, inc=inc, pid=0, create_time=None)


# ---- monitors ------------------------------------------------------------------------------


def test_a_monitor_delivers_down_once_for_any_exit() -> None:
    table, w, t = LinkTable(), proc("w"), proc("t")
    table.monitor(w, t)
    assert table.exited(t, "normal", False, {}) == [Deliver(w, down_message("t", "normal"))]
    assert table.exited(t, "normal", False, {}) == []


def test_every_watcher_gets_its_down() -> None:
    table, w1, w2, t = LinkTable(), proc("w1"), proc("w2"), proc("t")
    table.monitor(w1, t)
    table.monitor(w2, t)
    table.monitor(w1, t)  # twice: one Down, as one monitor
    actions = table.exited(t, CRASH, True, {})
    assert all(isinstance(a, Deliver) and a.message == down_message("t", CRASH)
               for a in actions)
    assert sorted(a.to.name for a in actions if isinstance(a, Deliver)) == ["w1", "w2"]


def test_a_watchers_monitors_die_with_it() -> None:
    table, w, t = LinkTable(), proc("w"), proc("t")
    table.monitor(w, t)
    assert table.exited(w, CRASH, True, {}) == []
    assert table.exited(t, CRASH, True, {}) == []  # nobody left to tell


def test_a_monitor_is_of_one_incarnation_not_of_the_name() -> None:
    table, w, t1, t2 = LinkTable(), proc("w"), proc("t", 1), proc("t", 2)
    table.monitor(w, t1)
    assert table.exited(t2, CRASH, True, {}) == []
    assert table.exited(t1, CRASH, True, {}) == [Deliver(w, down_message("t", CRASH))]


# ---- links ---------------------------------------------------------------------------------


def test_an_abnormal_exit_kills_a_linked_agent_that_does_not_trap_exits() -> None:
    table, a, b = LinkTable(), proc("a"), proc("b")
    table.link(a, b)
    assert table.exited(a, CRASH, True, {b: False}) == [
        KillLinked(b, f"linked agent 'a' exited: {CRASH}")]


def test_a_normal_exit_leaves_a_linked_agent_that_does_not_trap_exits_alone() -> None:
    table, a, b = LinkTable(), proc("a"), proc("b")
    table.link(a, b)
    assert table.exited(a, "shutdown", False, {}) == []


def test_a_linked_agent_that_traps_exits_hears_of_every_exit() -> None:
    for reason, abnormal in (("normal", False), (CRASH, True)):
        table, a, b = LinkTable(), proc("a"), proc("b")
        table.link(a, b)
        assert table.exited(a, reason, abnormal, {b: True}) == [
            Deliver(b, exit_message("a", reason))]


def test_links_go_both_ways() -> None:
    table, a, b = LinkTable(), proc("a"), proc("b")
    table.link(a, b)
    assert table.exited(b, CRASH, True, {}) == [
        KillLinked(a, f"linked agent 'b' exited: {CRASH}")]


def test_a_link_is_gone_once_either_side_exited() -> None:
    table, a, b = LinkTable(), proc("a"), proc("b")
    table.link(a, b)
    table.exited(a, CRASH, True, {})
    assert table.exited(b, CRASH, True, {}) == []


def test_linking_twice_is_one_link_and_linking_to_oneself_is_nothing() -> None:
    table, a, b = LinkTable(), proc("a"), proc("b")
    table.link(a, b)
    table.link(b, a)
    table.link(a, a)
    assert table.exited(a, CRASH, True, {}) == [
        KillLinked(b, f"linked agent 'a' exited: {CRASH}")]


def test_monitors_come_before_links_in_the_actions() -> None:
    table, a, w, b = LinkTable(), proc("a"), proc("w"), proc("b")
    table.link(a, b)
    table.monitor(w, a)
    assert table.exited(a, CRASH, True, {b: True}) == [
        Deliver(w, down_message("a", CRASH)), Deliver(b, exit_message("a", CRASH))]


def test_the_table_is_safe_from_many_threads() -> None:
    table, hub = LinkTable(), proc("hub")
    others = [proc(f"p{i}") for i in range(200)]

    def work(chunk: list[Incarnation]) -> None:
        for other in chunk:
            table.link(hub, other)
            table.monitor(other, hub)
    threads = [threading.Thread(target=work, args=(others[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    actions = table.exited(hub, CRASH, True, {})
    assert len([a for a in actions if isinstance(a, Deliver)]) == 200
    assert len([a for a in actions if isinstance(a, KillLinked)]) == 200
    assert all(table.exited(o, CRASH, True, {}) == [] for o in others)
