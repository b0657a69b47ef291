"""The pure rules of replicated agents through the node's API: the owner's refusals of
stop/sleep/delete/restart (`cluster_node.refusal`), and ps/tree paging over the node's
own agents and the replicated ones (`cluster_commands.merge_pages`, `hidden_counts`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from beamish.runtime._types import AgentStatus
from beamish.runtime.node.cluster_commands import hidden_counts, merge_pages
from beamish.runtime.node.cluster_node import refusal
from beamish.runtime.store.records import AgentRecord

S = AgentStatus


def _rec(status: AgentStatus) -> AgentRecord:
    return AgentRecord("a", 1 << 40, "m:C", status=status)


@pytest.mark.parametrize(("op", "status", "expected"), [
    # stop and delete go ahead whatever the status (a stopped one stays stopped)
    ("stop", S.RUNNING, None), ("stop", S.STOPPED, None), ("stop", S.FAILED, None),
    ("delete", S.SLEEPING, None), ("delete", S.FAILED, None),
    # a sleep is for one that runs (or will run again by itself); one asleep stays so
    ("sleep", S.RUNNING, None), ("sleep", S.BACKOFF, None), ("sleep", S.SLEEPING, None),
    ("sleep", S.FAILED, ("AgentNotFound", "it is failed: only a running agent can be put "
                                          "to sleep")),
    ("sleep", S.STOPPED, ("AgentNotFound", "it is stopped: only a running agent can be "
                                           "put to sleep")),
    # a restart is for a failed, stopped or exited one
    ("restart", S.FAILED, None), ("restart", S.STOPPED, None), ("restart", S.EXITED, None),
    ("restart", S.RUNNING, ("AlreadyRunning", "running")),
    ("restart", S.SLEEPING, ("AlreadyRunning", "sleeping")),
    ("restart", S.BACKOFF, ("AlreadyRunning", "backoff")),
])
def test_refusal(op, status, expected):
    assert refusal(op, _rec(status)) == expected


@pytest.mark.parametrize(("op", "expected"), [
    ("stop", None), ("sleep", None), ("delete", None),   # gone already: done
    ("restart", ("AgentNotFound", "it was deleted meanwhile")),
])
def test_refusal_of_an_agent_deleted_meanwhile(op, expected):
    assert refusal(op, None) == expected


@dataclass(frozen=True)
class Row:
    name: str


def _rows(*names: str) -> list[Row]:
    return [Row(n) for n in names]


@pytest.mark.parametrize(("own", "own_more", "others", "others_more", "limit", "expected"), [
    # no limit: everything, by name
    (("b", "d"), 0, ("a", "c"), 0, None, (("a", "b", "c", "d"), 0)),
    # a limit keeps the first names of both; the rest of both is counted
    (("b", "d"), 3, ("a", "c"), 5, 2, (("a", "b"), 10)),
    (("x",), 0, ("a", "b"), 7, 2, (("a", "b"), 8)),
    # one side empty
    ((), 0, ("a", "b"), 1, 2, (("a", "b"), 1)),
    (("a",), 0, (), 0, 5, (("a",), 0)),
])
def test_merge_pages(own, own_more, others, others_more, limit, expected):
    rows, more = merge_pages(_rows(*own), own_more, _rows(*others), others_more, limit)
    assert (tuple(r.name for r in rows), more) == expected


@pytest.mark.parametrize(("counts", "shown", "expected"), [
    ({"running": 5, "sleeping": 2}, ["running", "running"], {"running": 3, "sleeping": 2}),
    ({"running": 2}, ["running", "running"], {}),   # all shown: nothing left
    ({}, [], {}),
])
def test_hidden_counts(counts, shown, expected):
    assert hidden_counts(counts, shown) == expected
