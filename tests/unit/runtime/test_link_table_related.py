"""LinkTable.related (node/links.py): what an incarnation is tied to, which the cluster's
links tell about its exit (node/cluster_links.py); and the stand-ins they use. One test
per rule."""

from __future__ import annotations

import signal

import pytest

from beamish.runtime.node.cluster_links import stand_in
from beamish.runtime.node.links import LinkTable
from beamish.runtime.node.spawner import Incarnation


def proc(name: str) -> Incarnation:
    """One incarnation handle (a process); never started."""
    return Incarnation(name, id=hash(name) & 0xFFFF, inc=1, pid=0, create_time=None)


@pytest.mark.parametrize(("ties", "of", "expected"), [
    ([], "a", set()),
    ([("monitor", "a", "b")], "a", {"b"}),            # what it monitors
    ([("monitor", "a", "b")], "b", {"a"}),            # who monitors it
    ([("link", "a", "b")], "a", {"b"}),               # a link, both ways
    ([("link", "a", "b")], "b", {"a"}),
    ([("monitor", "a", "b"), ("link", "a", "c"), ("monitor", "d", "a")], "a",
     {"b", "c", "d"}),
    ([("monitor", "a", "b"), ("monitor", "a", "b")], "a", {"b"}),  # once each
    ([("link", "b", "c")], "a", set()),               # others' ties are not its
])
def test_related_lists_every_tie_either_way(ties: list[tuple[str, str, str]], of: str,
                                            expected: set[str]) -> None:
    table: LinkTable[Incarnation] = LinkTable()
    procs = {n: proc(n) for n in "abcd"}
    for op, x, y in ties:
        getattr(table, op)(procs[x], procs[y])
    assert {i.name for i in table.related(procs[of])} == expected


def test_related_is_empty_once_it_exited() -> None:
    table: LinkTable[Incarnation] = LinkTable()
    a, b = proc("a"), proc("b")
    table.link(a, b)
    table.exited(a, "killed", True, {})
    assert table.related(a) == set() and table.related(b) == set()


def test_a_stand_in_names_its_node_and_can_never_be_signalled() -> None:
    incn = stand_in("x", "n2")
    assert (incn.name, incn.remote, incn.pid) == ("x", "n2", 0)
    assert incn.signal(signal.SIGKILL) is False  # pid 0 would be our own process group
