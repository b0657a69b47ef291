"""The store's records: each maps to the wire form beamish has always stored, and back."""

from __future__ import annotations

import pytest

from beamish.runtime._types import (
    ACCEPTS_MESSAGES,
    HAD_PROCESS,
    IN_TREE,
    AgentStatus,
    Failure,
    agent_status,
)
from beamish.runtime.store.records import (
    AgentRecord,
    AgentState,
    Boot,
    ChildTemplate,
    DeadLetter,
    FailureReport,
    Malformed,
    Message,
    NodeFields,
    Reply,
    ReplyError,
    Spawning,
    SupervisorRecord,
)
from beamish.supervisor import ChildStatus

FAILURE = Failure(kind="exception", exc_type="KeyError", message="k", in_flight={"seq": 3,
                                                                                 "kind": "cast"})

# A record as a node dir written before the records were typed holds it.
STORED_AGENT = {"name": "c", "id": 7, "incarnation": 2, "restarts": 1, "created": 1.5,
                "last_failure": FAILURE.to_dict(), "cls": "m:C", "args": {"a": 1},
                "supervisor": "root", "restart": "transient", "shutdown": "brutal_kill",
                "limits": {"memory_mb": 64.0}, "status": "restarting", "pid": None,
                "order": 4, "recover_pending": True}


@pytest.mark.parametrize("record", [
    AgentRecord("a", 1),
    AgentRecord("a", 1, status=AgentStatus.RUNNING, pid=42, fresh=True,
                spawning=Spawning(None)),
    AgentRecord("a", 1, spawning=Spawning(AgentStatus.STOPPED), last_failure=FAILURE,
                recover_pending=True, limits={"cpu_seconds": 1.0}),
    SupervisorRecord("s"),
    SupervisorRecord("s", "simple_one_for_one", 5, 2.0, "root", "temporary", (0.5, 2.0),
                     ChildTemplate("transient", "infinity"), ChildStatus.FAILED, 3),
    AgentState(3, b"\x80", 12),
    Reply(True, 9.0, b"\x01"),
    Reply(False, 9.0, error=ReplyError("KeyError", "k", "tb", FAILURE)),
    DeadLetter(Message("cast", b"p", 1.0), FAILURE, 2.0),
    FailureReport("handle", 3, failure=FAILURE),
    FailureReport("stop", 1, stop="normal"),
    FailureReport("recover", 2, escalate="why"),
    Boot(NodeFields("/d", "/d/store", "process", 1024), 7, "c", "m:C", {"a": 1}, 3,
         FAILURE, ["/x"], {"memory_mb": 64.0}, ready_fd=5),
])
def test_every_record_round_trips_through_its_wire_form(record):
    assert type(record).from_wire(record.to_wire()) == record


def test_an_agent_record_stored_before_the_records_were_typed_loads_unchanged():
    rec = AgentRecord.from_wire(STORED_AGENT)
    assert rec.status is AgentStatus.RESTARTING and rec.recover_pending
    assert rec.last_failure == FAILURE and rec.fresh is False and rec.spawning is None
    assert rec.to_wire() == STORED_AGENT


def test_agent_flags_are_stored_only_when_set():
    wire = AgentRecord("a", 1).to_wire()
    assert not {"fresh", "spawning", "recover_pending"} & set(wire)
    wire = AgentRecord("a", 1, fresh=True, spawning=Spawning(None)).to_wire()
    assert wire["fresh"] is True and wire["spawning"] == {"prev": None}


def test_a_message_keeps_its_one_letter_wire_form():
    assert Message("cast", b"p", 1.0).to_wire() == {"k": "cast", "p": b"p", "t": 1.0}
    call = Message.call(b"p", b"i" * 16, "/in", 9.0, time=1.0)
    assert call.to_wire() == {"k": "call", "p": b"p", "t": 1.0, "id": b"i" * 16, "r": "/in",
                              "d": 9.0}
    assert Message.from_wire(call.to_wire()) == call


@pytest.mark.parametrize(("raw", "why"), [
    (None, "malformed"),
    ([], "malformed"),
    ({"k": "cast"}, "malformed"),
    ({"k": "nope", "p": b""}, "malformed"),
    ({"k": "cast", "p": "str"}, "malformed"),
    ({"k": "call", "p": b""}, "reply address"),
    ({"k": "call", "p": b"", "id": "str-id", "r": "x", "d": 1.0}, "reply address"),
])
def test_a_mailbox_entry_that_is_not_a_message_is_malformed_not_an_error(raw, why):
    got = Message.from_wire(raw)
    assert isinstance(got, Malformed) and why in got.why and got.to_wire() is raw


def test_a_dead_letter_keeps_a_malformed_message_as_stored():
    entry = DeadLetter(Malformed({"k": "cast", "p": 5}, "x"), FAILURE, 2.0)
    back = DeadLetter.from_wire(entry.to_wire())
    assert back.message.to_wire() == {"k": "cast", "p": 5} and back.message.kind == "cast"


def test_every_child_status_maps_to_the_agent_status_of_the_same_word():
    for child in ChildStatus:
        assert agent_status(child) == child.value


def test_the_status_sets_nest_as_their_names_say():
    assert HAD_PROCESS < ACCEPTS_MESSAGES < IN_TREE
    assert set(IN_TREE).difference(ACCEPTS_MESSAGES) == {AgentStatus.FAILED}
    assert AgentStatus.STOPPED not in IN_TREE and AgentStatus.EXITED not in IN_TREE
