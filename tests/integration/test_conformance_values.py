"""Issue 9, input values and codecs: limits, states and messages that must round-trip,
timeouts, names and spawn args. Every bad value gets a clear, typed error at once (at the
client, and again at the node, which never trusts a client); the node keeps serving and
no agent crash-loops."""

from __future__ import annotations

import dataclasses
import math
import threading
import time

import msgpack
import pytest

from beamish.mailbox import new_msg_id
from beamish.runtime import Limits, RemoteError, SpawnError
from beamish.runtime.errors import BadMessage, BeamishError, ConfigError, MessageTooLarge
from beamish.runtime.store.records import Message
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

ECHO = "tests.agents.basic:Echo"
COUNTER = "tests.agents.basic:Counter"
PAIRS = "tests.agents.values_agents:PairKeys"
PROBER = "tests.agents.values_agents:Prober"


def _raw_spawn(node, **fields):
    """A spawn request straight on the control socket, as a client that skips the
    client-side checks (any local process may) would send it."""
    request = {"cls": ECHO, "args": {}, "name": "raw", "supervisor": "root",
               "restart": "permanent", "shutdown": 5.0, "limits": {}, "timeout": 30.0,
               **fields}
    return node._control.request("spawn", request, timeout=35.0)


def _still_serving(node):
    assert node._control.request("ping")["pid"] == node.pid
    assert {a.name for a in node.ps()} >= {"e"}


# -- 1. Limits ---------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["memory_mb", "handler_timeout", "cpu_seconds"])
@pytest.mark.parametrize("value", ["1", -1, 0, math.nan, math.inf, True, 1e12])
def test_limits_refuse_bad_values_at_construction(field, value):
    with pytest.raises(ConfigError) as err:
        Limits(**{field: value})
    assert field in str(err.value) and repr(value) in str(err.value)
    assert "expected" in str(err.value)


def test_bad_limits_are_refused_at_spawn_by_client_and_node(node):
    node.spawn(ECHO, name="e")
    with pytest.raises(ConfigError, match="handler_timeout='1'"):
        node.spawn(ECHO, name="s1", limits={"handler_timeout": "1"})
    # The node checks again: a client that skips the checks gets the same answer, and
    # the node goes on serving (before: the string reached the node's limit check and
    # killed the node as soon as the agent was busy).
    for limits in ({"handler_timeout": "1"}, {"memory_mb": -5}, {"cpu_seconds": math.nan},
                   {"handler_timeout": math.inf}, {"nosuch": 1}, ["handler_timeout"]):
        with pytest.raises(ConfigError, match="limits"):
            _raw_spawn(node, limits=limits)
        assert "raw" not in {a.name for a in node.ps()}
    _still_serving(node)
    assert node.call("e", "still here") == "still here"
    ok = node.spawn(ECHO, name="ok", limits=Limits(handler_timeout=30, memory_mb=512))
    assert ok.call("x") == "x"


def test_a_stored_agent_with_bad_limits_is_not_started(node_dir):
    # An agent stored by a beamish that did not check limits: a node start must not run it
    # (its handler_timeout='1' would kill the node as soon as it got busy).
    from beamish.runtime import start_node
    from beamish.runtime.store.lmdb import Store
    from tests.conftest import shutdown_quietly
    n = start_node(node_dir)
    try:
        n.spawn(ECHO, name="legacy")
        n.spawn(ECHO, name="e")
        store_path = n._store_path
    finally:
        shutdown_quietly(n)
    store = Store(store_path, "process")
    try:
        store.write(lambda t: t.put_agent(dataclasses.replace(
            t.get_agent("legacy"), limits={"handler_timeout": "1"})))
    finally:
        store.close()
    n = start_node(node_dir)
    try:
        assert n.info("legacy").status == "failed"
        assert any(e.kind == "failed" and e.name == "legacy" and "handler_timeout" in e.reason
                   for e in n.events())
        assert n.call("e", "hi") == "hi"
        # `restart` goes through the same check (it once restarted the record's bad limits,
        # and the node died at the agent's first busy moment).
        with pytest.raises(SpawnError, match="stored limits are invalid"):
            n.restart("legacy")
        assert n.info("legacy").status == "failed"
        assert n.call("e", "hi") == "hi"
    finally:
        shutdown_quietly(n)


# -- 2. A state must round-trip ----------------------------------------------------------------
def test_a_state_that_would_not_load_is_refused_at_commit(node):
    ref = node.spawn(PAIRS, name="pk")
    assert ref.call("incr") == 1
    with pytest.raises(RemoteError) as err:
        ref.call("bad_state")
    assert err.value.type == "StateError"
    assert "'pk'" in err.value.message and "(1, 2)" in err.value.message
    assert "tuple" in err.value.message
    # The committed state is untouched and loads: the agent serves on, not crash-looping.
    assert ref.call("get") == {"count": 1}
    ref.cast("bad_state")  # a frozenset key, from handle_cast
    entries = wait_until(lambda: node.dead_letters("pk"), what="the cast in the dead letters")
    assert entries[0]["failure"].exc_type == "StateError"
    assert "frozenset" in entries[0]["failure"].message
    assert ref.call("incr") == 2
    info = node.info("pk")
    assert info.status == "running" and info.last_failure.exc_type == "StateError"


def test_a_reply_that_would_not_decode_is_a_clean_failure(node):
    ref = node.spawn(PAIRS, name="pk")
    with pytest.raises(RemoteError) as err:
        ref.call("bad_reply")
    assert "tuple" in err.value.message and "'pk'" in err.value.message
    assert ref.call("incr") == 1


# -- 3. Messages must round-trip ---------------------------------------------------------------
def test_an_undecodable_message_is_refused_at_the_sender(node):
    ref = node.spawn(PAIRS, name="pk")
    for send in (lambda: ref.cast({(1, 2): 3}), lambda: ref.call({"k": {(1, 2): 3}})):
        with pytest.raises(BadMessage) as err:
            send()
        assert "(1, 2)" in str(err.value) and "'pk'" in str(err.value)
    assert node.info("pk").mailbox_depth == 0
    # From inside an agent too.
    node.spawn(PROBER, name="probe")
    out = node.call("probe", {"op": "cast_pairs", "name": "pk"})
    assert out["raised"] == "BadMessage"
    assert ref.call("incr") == 1 and node.info("pk").restarts == 0


def test_an_undecodable_message_in_the_mailbox_is_refused_once_not_a_crash_loop(node):
    # A sender that skips the checks (an old client, a hostile local process) commits a
    # message the agent cannot decode. Before: the agent crashed on it three times.
    ref = node.spawn(PAIRS, name="pk")
    pid = node.info("pk").pid
    messenger = node._messenger
    port = messenger._port()
    port.inbox.bind()
    raw = msgpack.packb({(1, 2): 3})
    messenger._append("pk", Message("cast", raw, time.time()), port)
    msg_id = new_msg_id()
    deadline = time.time() + 60
    messenger._append("pk", Message.call(raw, msg_id, port.inbox_path, deadline, time.time()),
                      port)
    reply = wait_until(lambda: node._store.write(lambda t: t.pop_reply(msg_id)), timeout=30,
                       what="the refused call's error reply")
    assert reply.ok is False and reply.error.type == "BadMessage"
    assert "'pk'" in reply.error.message
    entries = wait_until(lambda: node.dead_letters("pk"), what="the cast in the dead letters")
    assert len(entries) == 1 and entries[0]["failure"].exc_type == "BadMessage"
    assert ref.call("incr") == 1
    info = node.info("pk")
    assert info.pid == pid and info.restarts == 0 and info.status == "running"


def test_a_mailbox_entry_that_is_not_msgpack_is_refused_once_not_a_crash_loop(node):
    # Bytes written straight into the agent's mailbox by another process of the user (not
    # through a sender): the agent dead-letters the entry once and goes on serving.
    ref = node.spawn(COUNTER, name="c")
    pid = node.info("c").pid
    agent_id = node._store.read(lambda t: t.get_agent("c")).id
    node._store.write(lambda t: t.append_packed(agent_id, b"\xc1 not msgpack"))
    assert ref.call("incr") == 1  # the next message wakes it; the garbage went first
    entries = wait_until(lambda: node.dead_letters("c"), what="the garbage in the dead letters")
    assert len(entries) == 1
    info = node.info("c")
    assert info.pid == pid and info.restarts == 0 and info.status == "running"
    assert info.mailbox_depth == 0


# -- 4. Timeouts -------------------------------------------------------------------------------
def _returns(fn, what):
    """Run ``fn`` in a thread and return what it raised (it must not hang: before the fix,
    call(timeout=nan) never returned)."""
    result = {}

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["exc"] = exc
        else:
            result["exc"] = None
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), f"{what} did not return"
    return result["exc"]


@pytest.mark.parametrize("timeout", [math.nan, -1, 0, "5", True, None])
def test_bad_call_timeouts_raise_at_once(node, timeout):
    node.spawn(ECHO, name="e")
    exc = _returns(lambda: node.call("e", "hi", timeout=timeout), f"call(timeout={timeout!r})")
    assert isinstance(exc, ConfigError) and "timeout=" in str(exc), exc
    assert node.info("e").mailbox_depth == 0


def test_bad_timeouts_everywhere_raise_config_error(node):
    node.spawn(ECHO, name="e")
    node.spawn(PROBER, name="probe")
    for what, fn in [
        ("ref.call", lambda: node.ref("e").call("hi", timeout=math.nan)),
        ("spawn", lambda: node.spawn(ECHO, name="x", timeout=math.nan)),
        ("stop", lambda: node.stop("e", timeout=-1)),
        ("delete", lambda: node.delete("e", timeout=math.inf)),
        ("restart", lambda: node.restart("e", timeout="1")),
        ("shutdown", lambda: node.shutdown(timeout=math.nan)),
    ]:
        exc = _returns(fn, what)
        assert isinstance(exc, ConfigError) and "timeout" in str(exc), (what, exc)
    out = node.call("probe", {"op": "call_nan", "name": "e"})
    assert out["raised"] == "ConfigError" and "timeout" in out["message"]
    # The node checks what reaches it too: an events wait of NaN, a spawn timeout of -1.
    with pytest.raises(ConfigError, match="wait"):
        node._control.request("events", {"after": 0, "wait": math.nan})
    with pytest.raises(ConfigError, match="timeout"):
        _raw_spawn(node, timeout=-1.0)
    assert node.call("e", "hi", timeout=math.inf) == "hi"  # OTP's infinity
    assert node.info("e").status == "running"


# -- 5. Names ----------------------------------------------------------------------------------
BAD_NAMES = ["", "a b", "a/b", "tab\there", "nl\n", "nul\x00", "\udc80", "\U0001F600" * 130,
             "-flag", "\u200b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_with_the_rule(node, name):
    with pytest.raises(ConfigError) as err:
        node.spawn(ECHO, name=name)
    assert "not a valid name" in str(err.value) and "1 to 200 bytes" in str(err.value)
    for fn in (lambda: node.call(name, "hi"), lambda: node.cast(name, "hi"),
               lambda: node.add_supervisor(name)):
        with pytest.raises(ConfigError, match="not a valid name"):
            fn()
    for fn in (lambda: node.info(name), lambda: node.stop(name)):
        with pytest.raises(BeamishError):  # AgentNotFound or ConfigError, never a raw error
            fn()
    assert node.ps() == []


def test_the_node_refuses_bad_names_from_any_client(node):
    node.spawn(ECHO, name="e")
    node.spawn(PROBER, name="probe")
    for name in ("a b", "a/b", "x\x1b[2J", ""):
        with pytest.raises(ConfigError, match="not a valid name"):
            _raw_spawn(node, name=name)
        with pytest.raises(ConfigError, match="not a valid name"):
            node._control.request("add_supervisor", {"name": name})
        for op in ("spawn", "call", "cast", "monitor", "link"):
            out = node.call("probe", {"op": op, "name": name})
            assert out["raised"] == "ConfigError" and "not a valid name" in out["message"], \
                (op, name, out)
    # The node checks what a client that skips the checks sends to monitor and link.
    for op in ("monitor", "link"):
        with pytest.raises(ConfigError, match="not a valid name"):
            node._control.request(op, {"watcher": "probe", "inc": 1, "target": "a b"})
    with pytest.raises(ConfigError, match="supervisor="):
        _raw_spawn(node, supervisor="a b")
    assert sorted(a.name for a in node.ps()) == ["e", "probe"]
    # What the rule allows: any printable, non-space UTF-8 (dots, colons, accents, emoji).
    for name in ("worker-1", "chat.alice", "ünïcode", "k:v", "\U0001F600" * 50):
        assert node.spawn(ECHO, name=name).call(name) == name


# -- 6. Spawn args -----------------------------------------------------------------------------
def test_bad_spawn_args_raise_beamish_errors(node):
    with pytest.raises(BadMessage, match="args"):
        node.spawn(ECHO, name="x", args={"f": object()})
    with pytest.raises(BadMessage, match=r"\(1, 2\)"):
        node.spawn(ECHO, name="x", args={"pairs": {(1, 2): 3}})
    limit = 16 * 1024 * 1024
    with pytest.raises(MessageTooLarge) as err:
        node.spawn(ECHO, name="x", args={"blob": b"x" * limit})
    assert err.value.limit == limit and "args" in str(err.value)
    with pytest.raises(ConfigError, match="args"):
        _raw_spawn(node, name="x", args=["not", "a", "dict"])
    node.spawn(PROBER, name="probe")
    out = node.call("probe", {"op": "spawn", "name": "y", "args": {"ok": [1]}})
    assert out["raised"] is None
    assert sorted(a.name for a in node.ps()) == ["probe", "y"]
