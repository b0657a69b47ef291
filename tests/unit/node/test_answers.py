"""The node's command answers: each record goes on the wire as the map the node sent before
it was typed, byte for byte (daemon.to_wire is the one place that makes the wire form), so
clients old and new read them the same."""

from __future__ import annotations

from typing import Any

import pytest

from beamish.mailbox import pack
from beamish.runtime import AgentInfo, DroppedFrames, Event, Failure
from beamish.runtime._types import AgentStatus
from beamish.runtime.errors import ConfigError, SpawnError
from beamish.runtime.node.commands import (
    AgentNode,
    DeadLetter,
    Deleted,
    Linked,
    Named,
    NameStatus,
    Ping,
    PsPage,
    Resent,
    ShuttingDown,
    Spawned,
    SupervisorNode,
    Watched,
)
from beamish.runtime.node.daemon import error_answer, to_wire, value_answer
from beamish.supervisor import ChildStatus

FAILURE = Failure(kind="exception", exc_type="ValueError", message="boom",
                  in_flight={"seq": 3, "kind": "cast"}, attempt=2)
DROPPED = DroppedFrames(control=1, reports=2, ready=3, agents=4)

CASES: list[tuple[Any, Any]] = [
    (Ping(11, "/d", "process", 1.5, 10, DROPPED, False, 7, 2),
     {"pid": 11, "dir": "/d", "durability": "process", "uptime": 1.5, "dropped_frames": 10,
      "dropped": {"control": 1, "reports": 2, "ready": 3, "agents": 4}, "strict": False,
      "awake": 7, "held": 2}),
    (Spawned("a", 12), {"name": "a", "pid": 12}),
    (Spawned("a", None), {"name": "a", "pid": None}),
    (NameStatus("a", AgentStatus.STOPPED), {"name": "a", "status": AgentStatus.STOPPED}),
    (NameStatus("s", ChildStatus.RUNNING), {"name": "s", "status": ChildStatus.RUNNING}),
    (Deleted("a"), {"name": "a", "deleted": True}),
    (Named("s"), {"name": "s"}),
    (Resent("a", 9), {"name": "a", "seq": 9}),
    (Watched("b", False), {"target": "b", "live": False}),
    (Linked("b"), {"target": "b"}),
    (ShuttingDown(11), {"pid": 11}),
    (AgentInfo("a", 12, "running", 1, 2, 3, 4096, 0.5, FAILURE, "root", "m:C"),
     {"name": "a", "pid": 12, "status": "running", "restarts": 1, "mailbox_depth": 2,
      "processed": 3, "rss_bytes": 4096, "cpu_seconds": 0.5,
      "last_failure": FAILURE.to_dict(), "supervisor": "root", "cls": "m:C"}),
    ([AgentInfo("a", None, "stopped", 0, 0, 0, 0, 0.0, None)],
     [{"name": "a", "pid": None, "status": "stopped", "restarts": 0, "mailbox_depth": 0,
       "processed": 0, "rss_bytes": 0, "cpu_seconds": 0.0, "last_failure": None,
       "supervisor": "root", "cls": ""}]),
    ([Event("exited", "a", "root", "killed", 2.5, 7)],
     [{"kind": "exited", "name": "a", "supervisor": "root", "reason": "killed", "time": 2.5,
       "seq": 7}]),
    ([DeadLetter(4, "cast", {"user": [1, b"x"]}, FAILURE, 3.5),
      DeadLetter(5, "cast", b"\xc1", None, None)],
     [{"seq": 4, "kind": "cast", "msg": {"user": [1, b"x"]}, "failure": FAILURE.to_dict(),
       "time": 3.5},
      {"seq": 5, "kind": "cast", "msg": b"\xc1", "failure": None, "time": None}]),
    (SupervisorNode("root", "one_for_one", "running", 0, 3, [
        AgentNode("a", "running", 1, 12, "m:C"),
        SupervisorNode("s", "", "failed", 2, 0, [])]),
     {"name": "root", "kind": "supervisor", "strategy": "one_for_one", "status": "running",
      "restarts": 0, "child_restarts": 3, "children": [
          {"name": "a", "kind": "agent", "status": "running", "restarts": 1, "pid": 12,
           "cls": "m:C"},
          {"name": "s", "kind": "supervisor", "strategy": "", "status": "failed",
           "restarts": 2, "child_restarts": 0, "children": [], "more": 0,
           "more_by_status": {}}], "more": 0, "more_by_status": {}}),
    (SupervisorNode("jobs", "one_for_one", "running", 0, 0, [], 3,
                    {"running": 1, "failed": 2}),
     {"name": "jobs", "kind": "supervisor", "strategy": "one_for_one", "status": "running",
      "restarts": 0, "child_restarts": 0, "children": [], "more": 3,
      "more_by_status": {"running": 1, "failed": 2}}),
    (PsPage([AgentInfo("a", None, "stopped", 0, 0, 0, 0, 0.0, None)], 5, "a"),
     {"rows": [{"name": "a", "pid": None, "status": "stopped", "restarts": 0,
                "mailbox_depth": 0, "processed": 0, "rss_bytes": 0, "cpu_seconds": 0.0,
                "last_failure": None, "supervisor": "root", "cls": ""}],
      "more": 5, "after": "a"}),
]


@pytest.mark.parametrize(("answer", "wire"), CASES)
def test_an_answer_goes_on_the_wire_as_the_map_it_was(answer: Any, wire: Any) -> None:
    assert pack(value_answer(answer)) == pack({"ok": True, "value": wire})


def test_user_data_in_an_answer_is_passed_as_it_is() -> None:
    msg = {"deep": [{"x": 1}]}
    assert to_wire(DeadLetter(1, "cast", msg, None, 0.0))["msg"] is msg


@pytest.mark.parametrize(("exc", "wire"), [
    (ConfigError("bad"), {"type": "ConfigError", "message": "bad", "attrs": {}}),
    (SpawnError("a", "it did not start", FAILURE),
     {"type": "SpawnError", "message": str(SpawnError("a", "it did not start")),
      "attrs": {"name": "a", "failure": FAILURE.to_dict()}}),
])
def test_an_error_goes_on_the_wire_with_its_type_message_and_attributes(
        exc: Exception, wire: Any) -> None:
    assert error_answer(exc) == {"ok": False, "error": wire}  # type: ignore[arg-type]
