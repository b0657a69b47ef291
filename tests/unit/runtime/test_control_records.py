"""The control protocol's records (client side): each maps to the wire form the node has
always taken and sent, byte for byte, and back."""

from __future__ import annotations

import pytest

from beamish.mailbox import pack
from beamish.runtime._paths import NodeFile
from beamish.runtime._types import AgentInfo, DroppedFrames, Event, Failure, Limits, NodeStatus
from beamish.runtime.errors import (
    AgentNotFound,
    BeamishError,
    ErrorReply,
    MessageTooLarge,
    NodeNotRunning,
    SpawnError,
    error_from_wire,
)
from beamish.runtime.messaging.control import Answer, ControlRequest
from beamish.runtime.messaging.spawnargs import spawn_request

FAILURE = Failure("exception", "ValueError", "boom", "tb", in_flight={"seq": 3, "kind": "cast"},
                  attempt=2)


def test_a_request_is_its_args_then_its_op():
    # ``{**args, "op": op}``: the order (and so the bytes) the node has always been sent
    assert list(ControlRequest("stop", {"name": "a"}).to_wire().items()) == [
        ("name", "a"), ("op", "stop")]
    assert ControlRequest("ping", {}).to_wire() == {"op": "ping"}


@pytest.mark.parametrize("caller", [None, ("parent", "init")])
def test_a_spawn_request_packs_to_the_bytes_it_always_did(caller):
    request = spawn_request("m:C", {"k": [1]}, "a", limits=Limits(memory_mb=64), timeout=9)
    before = {"cls": "m:C", "args": {"k": [1]}, "name": "a", "supervisor": "root",
              "restart": "permanent", "shutdown": 5.0, "limits": {"memory_mb": 64.0},
              "timeout": 9.0}
    if caller is not None:
        from dataclasses import replace
        request = replace(request, caller=caller[0], caller_phase=caller[1])
        before.update(caller=caller[0], caller_phase=caller[1])
    assert pack({**before, "op": "spawn"}) == pack(ControlRequest("spawn", request).to_wire())


@pytest.mark.parametrize("wire, value, error", [
    ({"ok": True, "value": {"name": "a"}}, {"name": "a"}, None),
    ({"ok": True}, None, None),
    ({"ok": False, "error": {"type": "AgentNotFound", "message": "m", "attrs": {"name": "a"}}},
     None, ErrorReply("AgentNotFound", "m", {"name": "a"})),
    ({"ok": False}, None, ErrorReply("None", "", {})),  # as error_from_wire always read it
    ([1], None, ErrorReply("BeamishInternalError", "the node's answer is not a map: [1]")),
])
def test_an_answer_is_a_value_or_an_error(wire, value, error):
    assert Answer.from_wire(wire) == Answer(value, error)


@pytest.mark.parametrize("exc, cls, attrs", [
    (AgentNotFound("a"), AgentNotFound, {"name": "a"}),
    (MessageTooLarge(10, 5, "a"), MessageTooLarge, {"size": 10, "limit": 5}),
    (SpawnError("a", "init failed", FAILURE), SpawnError, {"name": "a", "failure": FAILURE}),
    (NodeNotRunning("gone"), NodeNotRunning, {}),
])
def test_an_error_reply_rebuilds_the_error_with_its_attributes(exc, cls, attrs):
    reply = ErrorReply.of(exc)
    back = ErrorReply.from_wire(reply.to_wire()).error()
    assert type(back) is cls and str(back) == str(exc)
    assert {k: getattr(back, k) for k in attrs} == attrs
    assert list(reply.to_wire()) == ["type", "message", "attrs"]


def test_an_unknown_error_type_rebuilds_as_a_beamish_error():
    back = error_from_wire({"type": "Nope", "message": "m", "attrs": {"x": 1}})
    assert type(back) is BeamishError and str(back) == "m" and back.x == 1  # type: ignore[attr-defined]


def test_agent_info_reads_and_writes_the_wire_form():
    wire = {"name": "a", "pid": 7, "status": "running", "restarts": 1, "mailbox_depth": 2,
            "processed": 3, "rss_bytes": 4, "cpu_seconds": 0.5,
            "last_failure": FAILURE.to_dict(), "supervisor": "root", "cls": "m:C"}
    info = AgentInfo.from_wire(wire)
    assert info.last_failure == FAILURE and info.pid == 7
    assert info.to_wire() == wire and list(info.to_wire()) == list(wire)


def test_node_status_reads_the_ping_answer():
    wire = {"pid": 1, "dir": "/d", "durability": "process", "uptime": 2.5, "dropped_frames": 3,
            "dropped": {"control": 1, "reports": 2, "ready": 0, "agents": 0}, "strict": False}
    assert NodeStatus.from_wire(wire) == NodeStatus(1, "/d", "process", 2.5, False,
                                                    DroppedFrames(1, 2, 0, 0))


def test_an_event_reads_its_wire_form():
    wire = {"kind": "spawned", "name": "a", "supervisor": "root", "reason": "", "time": 1.0,
            "seq": 4}
    assert Event.from_wire(wire) == Event("spawned", "a", "root", "", 1.0, 4)


@pytest.mark.parametrize("data, pid", [
    ({"pid": 5, "store": "/s", "durability": "fsync", "max_message_bytes": 10, "started": 1.0,
      "version": 1}, 5),
    ({"store": "/s", "durability": "fsync", "max_message_bytes": 10}, 0),
    ({"pid": 5, "durability": "fsync", "max_message_bytes": 10}, None),
    ({"pid": "x", "store": "/s", "durability": "fsync", "max_message_bytes": 10}, None),
    ([], None),
])
def test_node_json_reads_as_a_node_file_or_says_it_is_not_a_node(data, pid):
    if pid is None:
        with pytest.raises(NodeNotRunning, match="node.json in '/d' is not a running node's"):
            NodeFile.from_json(data, "/d")
    else:
        assert NodeFile.from_json(data, "/d") == NodeFile(pid, "/s", "fsync", 10)
