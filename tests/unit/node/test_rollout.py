"""rollout.py: a hot code upgrade's pure decisions, one test per rule, table-driven where
the rule is a table (in the style of test_supervisor_policy.py)."""

from __future__ import annotations

import pytest

from beamish.runtime._types import AgentStatus
from beamish.runtime._upgrades import AgentSkipped
from beamish.runtime.node.rollout import (
    Candidate,
    EntryChange,
    Outcome,
    Verdict,
    after_move,
    asked_for,
    entry_change,
    module_of,
    not_reached,
    plan,
    supervisor_order,
)

RUNNING = AgentStatus.RUNNING


def agent(name: str, order: int, sup: str = "root", cls: str = "app.agents:A",
          status: AgentStatus = RUNNING) -> Candidate:
    return Candidate(name, sup, order, cls, status)


@pytest.mark.parametrize(("cls", "module"), [
    ("app.agents:Counter", "app.agents"),
    ("agents:A", "agents"),
    ("a.b.c:D", "a.b.c"),
])
def test_module_of_is_the_part_before_the_colon(cls, module):
    assert module_of(cls) == module


@pytest.mark.parametrize(("module", "asked", "expected"), [
    ("app.agents", [], True),                   # none asked: every module
    ("app.agents", ["app.agents"], True),       # itself
    ("app.agents", ["app"], True),              # inside a package asked
    ("app.agents2", ["app.agents"], False),     # a prefix of the name is not a package
    ("other", ["app", "app.agents"], False),
    ("app.agents.sub", ["app.agents"], True),
])
def test_asked_for_is_the_module_or_a_package_holding_it(module, asked, expected):
    assert asked_for(module, asked) is expected


def test_agents_move_per_supervisor_in_tree_order_then_start_order():
    agents = [agent("w2", 5, "workers"), agent("r2", 4), agent("w1", 2, "workers"),
              agent("r1", 1), agent("x", 3, "unknown")]
    p = plan(agents, ["root", "workers"], [])
    assert [a.name for a in p.moves] == ["r1", "r2", "w1", "w2", "x"]


@pytest.mark.parametrize(("status", "why"), [
    (AgentStatus.SLEEPING, "asleep: it wakes on the new code"),
    (AgentStatus.STARTING, "starting: its start uses the new code"),
    (AgentStatus.RESTARTING, "restarting: its restart uses the new code"),
    (AgentStatus.BACKOFF, "waiting to restart: its restart uses the new code"),
    (AgentStatus.FAILED, "failed: not running; a later start uses the new code"),
    (AgentStatus.STOPPED, "stopped: not running; a later start uses the new code"),
])
def test_only_running_agents_move_the_others_are_skipped_with_why(status, why):
    p = plan([agent("a", 1, status=status), agent("b", 2)], ["root"], [])
    assert [a.name for a in p.moves] == ["b"]
    assert p.skipped == (AgentSkipped("a", why),)


def test_agents_of_modules_not_asked_stay_where_they_are():
    p = plan([agent("a", 1, cls="app.agents:A"), agent("b", 2, cls="other:B")],
             ["root"], ["app"])
    assert [a.name for a in p.moves] == ["a"]
    assert p.skipped == (AgentSkipped("b", "its module is not among those asked"),)


def test_the_modules_checked_are_those_asked_and_those_of_the_moving_agents_once_each():
    agents = [agent("a", 1, cls="app.agents:A"), agent("b", 2, cls="app.agents:B"),
              agent("c", 3, cls="app.more:C"),
              agent("s", 4, cls="app.sleepy:S", status=AgentStatus.SLEEPING)]
    assert plan(agents, ["root"], ["app"]).modules == ("app", "app.agents", "app.more")
    assert plan(agents, ["root"], []).modules == ("app.agents", "app.more")


@pytest.mark.parametrize(("outcome", "verdict"), [
    (Outcome.MOVED, Verdict.NEXT),
    (Outcome.GONE, Verdict.NEXT),       # stopped or deleted meanwhile: nothing to move
    (Outcome.FAILED, Verdict.STOP),     # a new code that fails to start stops the rollout
    (Outcome.STOPPING, Verdict.STOP),   # so does a node that stops
])
def test_what_stops_the_rollout(outcome, verdict):
    assert after_move(outcome) is verdict


def test_agents_not_reached_are_skipped_with_why():
    assert not_reached([agent("b", 2), agent("c", 3)], "the upgrade stopped at agent 'a'") == (
        AgentSkipped("b", "not moved: the upgrade stopped at agent 'a'"),
        AgentSkipped("c", "not moved: the upgrade stopped at agent 'a'"))


@pytest.mark.parametrize(("sups", "expected"), [
    ([], ["root"]),
    ([("b", "root", 2), ("a", "root", 1)], ["root", "a", "b"]),             # start order
    ([("a", "root", 1), ("a1", "a", 3), ("b", "root", 2)], ["root", "a", "a1", "b"]),  # depth first
    ([("x", "gone", 1), ("a", "root", 2)], ["root", "a", "x"]),             # orphan last
])
def test_supervisor_order_is_the_tree_depth_first_by_start_order(sups, expected):
    assert supervisor_order(sups) == expected


def test_agents_whose_config_entry_changed_move_whatever_their_module():
    agents = [agent("a", 1, cls="app.agents:A"), agent("b", 2, cls="other:B"),
              agent("c", 3, cls="other:C")]
    assert [a.name for a in plan(agents, ["root"], ["app"], {"b"}).moves] == ["a", "b"]


def test_with_config_entries_and_no_module_only_the_changed_agents_move():
    agents = [agent("a", 1), agent("b", 2)]
    p = plan(agents, ["root"], [], {"b"}, config_only=True)
    assert [a.name for a in p.moves] == ["b"]
    assert p.skipped == (AgentSkipped("a", "its config entry did not change"),)


HAVE = {"cls": "m:A", "supervisor": "root", "args": {"x": 1}, "restart": "permanent",
        "shutdown": 5.0, "limits": {"memory_mb": 512}, "idle_timeout": None}


@pytest.mark.parametrize(("wanted", "change"), [
    ({}, EntryChange({}, ())),
    (HAVE, EntryChange({}, ())),
    ({**HAVE, "shutdown": 5}, EntryChange({}, ())),               # 5 == 5.0
    ({**HAVE, "args": {"x": 2}}, EntryChange({"args": {"x": 2}}, ())),
    ({**HAVE, "limits": {"memory_mb": 512, "handler_timeout": 1.0}, "restart": "transient"},
     EntryChange({"restart": "transient",
                  "limits": {"memory_mb": 512, "handler_timeout": 1.0}}, ())),
    ({**HAVE, "idle_timeout": 30.0}, EntryChange({"idle_timeout": 30.0}, ())),
    ({**HAVE, "cls": "m:B", "supervisor": "w"}, EntryChange({}, ("cls", "supervisor"))),
])
def test_an_entry_change_is_what_an_upgrade_can_set_and_what_it_cannot(wanted, change):
    assert entry_change(HAVE, wanted) == change
