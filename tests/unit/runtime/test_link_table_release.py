"""LinkTable (node/links.py): which incarnations an exit leaves with no link or monitor
(`on_released`: the node drops its handle for a sleeping agent then), and the reverse
index that answers `holds` and `rebind` without walking every target. One test per rule."""

from __future__ import annotations

import pytest

from beamish.runtime.node.links import Deliver, KillLinked, LinkTable, down_message


class _H:
    """An incarnation handle (only its name matters; compared by identity)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _table() -> tuple[LinkTable[_H], list[str]]:
    table: LinkTable[_H] = LinkTable()
    released: list[str] = []
    table.on_released = lambda h: released.append(h.name)
    return table, released


@pytest.mark.parametrize(("setup", "exits", "expected"), [
    pytest.param([("monitor", "w", "s")], "w", ["s"],
                 id="the only watcher exits: its target is released"),
    pytest.param([("monitor", "w", "s")], "s", ["w"],
                 id="the target exits: its watcher watches nothing more"),
    pytest.param([("monitor", "w", "s"), ("monitor", "v", "s")], "w", [],
                 id="another watcher still holds the target"),
    pytest.param([("monitor", "w", "s"), ("link", "s", "p")], "w", [],
                 id="a link still holds the target"),
    pytest.param([("link", "a", "s")], "a", ["s"],
                 id="the only linked one exits: the other is released"),
    pytest.param([("monitor", "w", "s"), ("monitor", "w", "t")], "w", ["s", "t"],
                 id="every target of the exited watcher is released"),
    pytest.param([("monitor", "s", "t"), ("monitor", "w", "s")], "w", [],
                 id="one that watches another is still held"),
    pytest.param([], "w", [], id="nothing held: nothing released"),
])
def test_an_exit_releases_what_nothing_else_holds(
        setup: list[tuple[str, str, str]], exits: str, expected: list[str]) -> None:
    table, released = _table()
    h = {n: _H(n) for n in "wvsptaz"}
    for op, a, b in setup:
        getattr(table, op)(h[a], h[b])
    table.exited(h[exits], "normal", False, {})
    assert sorted(released) == expected
    assert all(not table.holds(h[n]) for n in expected)


def test_holds_sees_every_side_and_forgets_after_the_exit() -> None:
    table, _ = _table()
    w, s, a, b = _H("w"), _H("s"), _H("a"), _H("b")
    table.monitor(w, s)
    table.link(a, b)
    assert all(table.holds(x) for x in (w, s, a, b))
    table.exited(s, "normal", False, {})
    table.exited(a, "normal", False, {})
    assert not any(table.holds(x) for x in (w, s, a, b))


def test_rebind_keeps_the_reverse_index_so_a_later_exit_finds_the_new_handle() -> None:
    table, released = _table()
    old, new, w, t = _H("s"), _H("s"), _H("w"), _H("t")
    table.monitor(w, old)   # w watches the sleeper
    table.monitor(old, t)   # the sleeper watches t
    table.rebind(old, new)
    assert table.exited(w, "normal", False, {}) == []  # w's monitor of new dies with it
    assert table.holds(new)  # new still watches t
    assert table.exited(t, "boom", True, {}) == [Deliver(new, down_message("t", "boom"))]
    assert sorted(released) == ["s"]  # new, once it watches nothing more
    assert not table.holds(new)


def test_rebind_onto_a_linked_handle_links_nothing_to_itself() -> None:
    table, _ = _table()
    old, new, p = _H("s"), _H("s"), _H("p")
    table.link(old, new)
    table.link(old, p)
    table.rebind(old, new)
    assert table.exited(new, "boom", True, {}) == [KillLinked(p, "linked agent 's' exited: boom")]
    assert not table.holds(new) and not table.holds(p)
