"""The dashboard's pure rules, one table each: who may read it (the token, the Host
header), where a token is needed, how a status is painted, what the page lists; and the
`state` answer's wire form. The server and page themselves are tested in Chromium
(tests/integration/test_dashboard.py)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from beamish.runtime._types import AgentStatus
from beamish.runtime.node.commands import AgentState
from beamish.runtime.node.config import NodeSection
from beamish.runtime.node.daemon import to_wire
from beamish.runtime.node.dashboard import (
    Access,
    Look,
    authorize,
    host_allowed,
    is_loopback,
    look_of,
    new_token,
    recent_events,
    to_json,
)

T = "s3cret-token-0123456789"


@pytest.mark.parametrize(("expected", "path", "bearer", "access"), [
    # The page's shell has no data: open, so that its script can read the fragment.
    (T, "/", None, Access.OPEN),
    (T, "/index.html", "wrong", Access.OPEN),
    # A token set: the API needs it, nothing offered or a wrong one is denied.
    (T, "/api/tree", None, Access.DENIED),
    (T, "/api/agent", "wrong", Access.DENIED),
    (T, "/api/tree", "", Access.DENIED),
    (T, "/api/tree", T[:-1], Access.DENIED),
    (T, "/api/tree", T + "x", Access.DENIED),
    (T, "/index.htm", None, Access.DENIED),  # anything but the shell's exact paths
    (T, "/nothing", None, Access.DENIED),    # an unknown path says nothing either
    # The bearer header grants it.
    (T, "/api/tree", T, Access.GRANTED),
    (T, "/api/resend", T, Access.GRANTED),
])
def test_authorize(expected, path, bearer, access):
    assert authorize(expected, path, bearer) is access


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("127.255.255.254", True), ("::1", True),
    ("localhost", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("192.168.1.2", False),
    ("fe80::1", False), ("example.com", False), ("", False),
])
def test_what_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("host_header", "any_host", "allowed"), [
    ("127.0.0.1:8470", False, True),
    ("127.0.0.1", False, True),
    ("localhost:8470", False, True),
    ("[::1]:8470", False, True),
    ("[::1]", False, True),
    # DNS rebinding: another site's name that now points at 127.0.0.1.
    ("evil.example:8470", False, False),
    ("evil.example", False, False),
    ("10.0.0.5:8470", False, False),
    (None, False, False),
    ("", False, False),
    # Bound beyond loopback: any name the user reaches it by (the token guards it).
    ("evil.example:8470", True, True),
    ("myhost:8470", True, True),
    (None, True, True),
])
def test_host_allowed(host_header, any_host, allowed):
    assert host_allowed(host_header, any_host) is allowed


@pytest.mark.parametrize(("status", "look"), [
    (AgentStatus.RUNNING, Look.UP),
    (AgentStatus.SLEEPING, Look.ASLEEP),
    (AgentStatus.STARTING, Look.MOVING),
    (AgentStatus.RESTARTING, Look.MOVING),
    (AgentStatus.BACKOFF, Look.MOVING),
    (AgentStatus.STOPPED, Look.DOWN),
    (AgentStatus.EXITED, Look.DOWN),
    (AgentStatus.FAILED, Look.FAILED),
    ("something new", Look.UNKNOWN),
])
def test_how_a_status_is_painted(status, look):
    assert look_of(str(status)) is look


def test_every_agent_status_has_a_look():
    assert all(look_of(str(s)) is not Look.UNKNOWN for s in AgentStatus)


@pytest.mark.parametrize(("events", "n", "shown"), [
    ([], 3, []),
    ([1, 2, 3, 4, 5], 3, [5, 4, 3]),
    ([1, 2], 3, [2, 1]),
    ([1, 2], 0, []),
])
def test_recent_events_newest_first(events, n, shown):
    wrapped = [{"seq": e} for e in events]
    assert recent_events(wrapped, n) == [{"seq": e} for e in shown]


def test_user_data_that_json_lacks_is_shown_not_lost():
    out = json.loads(to_json({"raw": b"\x00\xff", "n": 1, "t": (1, 2), 7: "int key",
                              "text": "é"}))
    assert out == {"raw": "<2 bytes: 00ff>", "n": 1, "t": [1, 2], "7": "int key",
                   "text": "é"}
    long = json.loads(to_json(b"x" * 100))
    assert long.startswith("<100 bytes: ") and long.endswith("...>")


def test_tokens_are_fresh_and_long():
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20 and all(len(t) >= 32 for t in tokens)


@pytest.mark.parametrize(("value", "ok"), [
    ("127.0.0.1:8470", True), ("0.0.0.0:8470", True), ("[::1]:8470", True), ("8470", True),
    ("example.com:8470", False), ("127.0.0.1:99999", False), ("nope", False),
])
def test_the_dashboard_address_is_checked_with_the_config(value, ok):
    if ok:
        assert NodeSection(dashboard=value).dashboard == value
    else:
        with pytest.raises(ValidationError, match="dashboard"):
            NodeSection(dashboard=value)


def test_a_short_dashboard_token_is_refused():
    with pytest.raises(ValidationError, match="dashboard_token"):
        NodeSection(dashboard="0.0.0.0:8470", dashboard_token="short")
    assert NodeSection().dashboard is None  # off by default


@pytest.mark.parametrize("state", [None, {"n": 1}, [1, "a"], b"\x01raw"])
def test_the_state_answer_goes_and_comes_back(state):
    answer = AgentState("a", 2, state, 5)
    wire = to_wire(answer)
    assert wire == {"name": "a", "version": 2, "state": state, "processed": 5}
    assert AgentState.from_wire(wire) == answer
