"""Table tests of the one-hop forwarding rules of node-pinned agents (pure): what a node
does with a request for a pinned agent (`forward_step`), how long a forward waits
(`answer_wait`), the forwarder's view of a route (`owner_of`) and `NodeDown`'s message."""

from __future__ import annotations

import datetime as dt

import pytest

from beamish.runtime.cluster.forward import (
    ANSWER_MARGIN_S,
    CAST_WAIT_S,
    Owner,
    Step,
    answer_wait,
    forward_step,
)
from beamish.runtime.errors import ErrorReply, NodeDown, error_from_wire
from beamish.runtime.node.cluster_routes import owner_of
from beamish.runtime.store.postgres.routes import Route

KEY = "k" * 40
LIVE = Owner("n2", "tcp://10.0.0.2:7700", KEY, True)


@pytest.mark.parametrize(("owner", "authorized", "step"), [
    # no pinned route (a replicated agent's name, or nobody's): served here
    (None, frozenset({KEY}), Step.LOCAL),
    # routed to this very node: served here (never a hop to itself)
    (Owner("n1", "tcp://10.0.0.1:7700", KEY, True), frozenset({KEY}), Step.LOCAL),
    # ... even while the database says its own lease ran out
    (Owner("n1", "tcp://10.0.0.1:7700", KEY, False), frozenset(), Step.LOCAL),
    # another node whose lease ran out (or that left): NodeDown, nothing sent
    (Owner("n2", "tcp://10.0.0.2:7700", KEY, False), frozenset({KEY}), Step.DOWN),
    # down wins over a missing address or key: the caller learns the node is down
    (Owner("n2", "", "", False), frozenset(), Step.DOWN),
    # alive but advertising no address: a config error to fix on that node
    (Owner("n2", "", KEY, True), frozenset({KEY}), Step.NO_ADDRESS),
    # its published key is not authorized here: never connect to an untrusted key
    (LIVE, frozenset(), Step.UNTRUSTED),
    (LIVE, frozenset({"x" * 40}), Step.UNTRUSTED),
    (Owner("n2", "tcp://10.0.0.2:7700", "", True), frozenset({KEY}), Step.UNTRUSTED),
    # alive, reachable, trusted: one hop
    (LIVE, frozenset({KEY, "x" * 40}), Step.FORWARD),
])
def test_forward_step(owner, authorized, step):
    assert forward_step(owner, "n1", authorized) is step


@pytest.mark.parametrize(("op", "req", "wait"), [
    ("call", {"timeout": 7.0}, 7.0 + ANSWER_MARGIN_S),
    ("call", {}, 5.0 + ANSWER_MARGIN_S),  # a call's default timeout
    ("spawn", {"timeout": 60}, 60 + ANSWER_MARGIN_S),
    ("spawn", {}, 30.0 + ANSWER_MARGIN_S),
    ("call", {"timeout": True}, CAST_WAIT_S),  # not a number: the plain wait
    ("call", {"timeout": "9"}, CAST_WAIT_S),
    ("cast", {"timeout": 99.0}, CAST_WAIT_S),  # a cast has no timeout of its own
    ("cast_many", {}, CAST_WAIT_S),
    ("info", {}, CAST_WAIT_S),
    ("stop", {}, 122.0),  # waits on the agent's shutdown: the client's default + margin
    ("delete", {}, 122.0),
    ("sleep", {}, 122.0),
    ("restart", {}, 62.0),  # waits on its init
])
def test_answer_wait(op, req, wait):
    assert answer_wait(op, req) == wait


EXPIRED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(("route", "owner"), [
    (None, None),
    (Route("a", "n2", "tcp://h:1", KEY, 2.5, EXPIRED), Owner("n2", "tcp://h:1", KEY, True)),
    # expired: since when, by the database's clock
    (Route("a", "n2", "tcp://h:1", KEY, -3.0, EXPIRED),
     Owner("n2", "tcp://h:1", KEY, False, EXPIRED.timestamp())),
    # not a member (it left): down, since unknown
    (Route("a", "n2", "", "", None, None), Owner("n2", "", "", False, 0.0)),
    (Route("a", "n2", "tcp://h:1", KEY, 0.0, EXPIRED),
     Owner("n2", "tcp://h:1", KEY, False, EXPIRED.timestamp())),
])
def test_owner_of(route, owner):
    assert owner_of(route) == owner


@pytest.mark.parametrize(("kwargs", "says", "never"), [
    ({"agent": "chat", "since": EXPIRED.timestamp()},
     ["'chat'", "'n2'", "since 00:00:00 UTC", "was not carried out", "retry"], ["may have"]),
    ({"agent": "chat", "sent": True}, ["'chat'", "may have been carried out"],
     ["since", "was not carried out"]),
    ({}, ["node 'n2' is down", "retry"], ["agent '"]),
])
def test_node_down_says_which_agent_node_since_and_what_to_do(kwargs, says, never):
    err = NodeDown("n2", "", **kwargs)
    for text in says:
        assert text in str(err)
    for text in never:
        assert text not in str(err)
    back = error_from_wire(ErrorReply.of(err).to_wire())  # as a client gets it
    assert isinstance(back, NodeDown) and str(back) == str(err)
    assert (back.node, back.agent, back.since, back.sent) == \
        ("n2", kwargs.get("agent", ""), kwargs.get("since", 0.0), kwargs.get("sent", False))
