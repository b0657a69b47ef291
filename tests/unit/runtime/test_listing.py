"""Listing the registry at scale: the store's page of agents (real LMDB) and the pure
helpers behind ``ps``/``tree`` (status check, the lines that say what was left out)."""

from __future__ import annotations

import pytest

from beamish.runtime._types import AgentStatus
from beamish.runtime.client.cli import hidden_line, more_line
from beamish.runtime.errors import ConfigError
from beamish.runtime.node.commands import check_status
from beamish.runtime.store.lmdb import Store
from beamish.runtime.store.records import AgentRecord

# name -> (status, supervisor); written in an order that is not the name order.
AGENTS = {
    "e": (AgentStatus.RUNNING, "root"), "a": (AgentStatus.STOPPED, "root"),
    "d": (AgentStatus.STOPPED, "jobs"), "b": (AgentStatus.RUNNING, "jobs"),
    "c": (AgentStatus.FAILED, "jobs"), "f": (AgentStatus.STOPPED, "jobs"),
}


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path / "s"))

    def fill(t):  # type: ignore[no-untyped-def]
        for i, (name, (status, sup)) in enumerate(AGENTS.items()):
            t.put_agent(AgentRecord(name, i + 1, supervisor=sup, status=status, order=i))
    s.write(fill)
    yield s
    s.close()


@pytest.mark.parametrize(("after", "limit", "status", "supervisor", "names", "more"), [
    (None, None, None, None, "abcdef", 0),            # all, in name order
    (None, 2, None, None, "ab", 4),                   # a page, and how many follow
    ("b", 2, None, None, "cd", 2),                    # the next page starts after the cursor
    ("bb", 2, None, None, "cd", 2),                   # a cursor that is no name works too
    ("f", 2, None, None, "", 0),                      # after the last: empty
    ("z", None, None, None, "", 0),
    (None, None, "stopped", None, "adf", 0),          # by status (read from the routes)
    (None, 1, "stopped", None, "a", 2),
    ("a", 1, "stopped", None, "d", 1),
    (None, None, "sleeping", None, "", 0),            # a status nobody has
    (None, None, None, "jobs", "bcdf", 0),            # by supervisor (not its sub-trees')
    (None, 2, None, "jobs", "bc", 2),
    (None, None, "stopped", "jobs", "df", 0),         # both
    ("d", None, "stopped", "jobs", "f", 0),
    (None, None, None, "nobody", "", 0),
])
def test_agents_page(store, after, limit, status, supervisor, names, more):  # type: ignore[no-untyped-def]
    recs, left = store.read(lambda t: t.agents_page(after, limit, status, supervisor))
    assert "".join(r.name for r in recs) == names and left == more
    for r in recs:  # whole records, as stored
        assert (r.status, r.supervisor) == AGENTS[r.name]


def test_paging_visits_every_agent_once(store):  # type: ignore[no-untyped-def]
    seen, after = [], None
    while True:
        size = 4 if seen else 1
        recs, more = store.read(lambda t, a=after, n=size: t.agents_page(a, n))
        seen += [r.name for r in recs]
        if not more:
            break
        after = recs[-1].name
    assert seen == sorted(AGENTS)


@pytest.mark.parametrize(("status", "expected"), [
    (None, None), ("running", AgentStatus.RUNNING), ("stopped", AgentStatus.STOPPED),
])
def test_check_status_accepts_every_agent_status(status, expected):  # type: ignore[no-untyped-def]
    assert check_status(status) is expected


@pytest.mark.parametrize("status", ["Running", "asleep", ""])
def test_check_status_refuses_others_listing_the_valid_ones(status):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        check_status(status)
    assert repr(status) in str(err.value)
    for s in AgentStatus:
        assert s.value in str(err.value)


@pytest.mark.parametrize(("more", "after", "filters", "limit", "expected"), [
    (1, "x", [], None, "... 1 more agent not shown: `beamish ps --after x` for the next "
                       "page, `beamish ps --all` for all"),
    (98_000, "chat-1999", ["--status", "stopped"], None,
     "... 98,000 more agents not shown: `beamish ps --status stopped --after chat-1999` for "
     "the next page, `beamish ps --status stopped --all` for all"),
    (3, "b", ["--supervisor", "jobs"], 2,  # the page size stays for the next page only
     "... 3 more agents not shown: `beamish ps --supervisor jobs --limit 2 --after b` for "
     "the next page, `beamish ps --supervisor jobs --all` for all"),
])
def test_more_line(more, after, filters, limit, expected):  # type: ignore[no-untyped-def]
    assert more_line(more, after, filters, limit) == expected


@pytest.mark.parametrize(("more", "by_status", "expected"), [
    (1, {"running": 1}, "... 1 more agent (1 running); `beamish tree --all` shows them"),
    (99_900, {"stopped": 90_000, "running": 9_900},
     "... 99,900 more agents (9,900 running, 90,000 stopped); `beamish tree --all` shows them"),
])
def test_hidden_line(more, by_status, expected):  # type: ignore[no-untyped-def]
    assert hidden_line(more, by_status) == expected


def test_agents_by_supervisor_groups_pages_and_counts(store):  # type: ignore[no-untyped-def]
    got = store.read(lambda t: t.agents_by_supervisor(["stopped", "failed"], 1))
    assert {sup: ([r.name for r in rows], more) for sup, (rows, more) in got.items()} == {
        "root": (["a"], {}), "jobs": (["c"], {"stopped": 2})}
    got = store.read(lambda t: t.agents_by_supervisor(["stopped"]))
    assert {sup: [r.name for r in rows] for sup, (rows, _) in got.items()} == {
        "root": ["a"], "jobs": ["d", "f"]}
    assert store.read(lambda t: t.agents_by_supervisor([])) == {}


def test_tree_lists_agents_held_by_record_first_within_the_limit(store, monkeypatch):  # type: ignore[no-untyped-def]
    """``tree`` with a real store and a real supervisor shell: agents no shell holds (here
    the stopped ones stand in for sleeping agents) come first under their supervisor,
    share its limit, and are counted by status when left out."""
    from beamish.runtime.node import commands
    from beamish.supervisor import ChildSpec, Supervisor, SupervisorSpec
    from beamish.supervisor.testing import FakeClock, FakeSpawner

    monkeypatch.setattr(commands, "HELD_BY_RECORD", frozenset({AgentStatus.STOPPED}))
    root = Supervisor(SupervisorSpec("root", children=(ChildSpec("e"), ChildSpec("z"))),
                      FakeSpawner(FakeClock()))
    root.start()
    try:
        view = commands.NodeView(*([None] * 3), store, *([None] * 6), root,  # type: ignore[arg-type]
                                 *([None] * 4))
        full = commands.tree(view)
        assert [(c.name, c.status) for c in full.children] == [
            ("a", "stopped"), ("e", "running"), ("z", "running")]
        assert (full.more, full.more_by_status) == (0, {})
        cut = commands.tree(view, limit=2)
        assert [c.name for c in cut.children] == ["a", "e"]
        assert (cut.more, cut.more_by_status) == (1, {"running": 1})
        cut = commands.tree(view, limit=1)
        assert [c.name for c in cut.children] == ["a"]
        assert (cut.more, cut.more_by_status) == (2, {"running": 2})
    finally:
        root.shutdown()
