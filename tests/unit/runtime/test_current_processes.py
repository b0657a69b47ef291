"""CurrentProcesses (node/spawner.py): each agent's current process by name, and its two
indexes (by agent id; those with limits), which must say exactly what a walk over every
current process would say, through spawns, restarts, exits, deletes and stale exits.
Pure bookkeeping: no process runs."""

from __future__ import annotations

import pytest

from beamish.runtime import Limits
from beamish.runtime.node.spawner import CurrentProcesses, Incarnation


def proc(name: str, id: int, inc: int = 1, limits: Limits | None = None) -> Incarnation:
    """One incarnation handle (a process); never started."""
    return Incarnation(name, id=id, inc=inc, pid=0, create_time=None, limits=limits or Limits())


def assert_indexes_match(live: CurrentProcesses) -> None:
    """The indexes hold what a walk over every current process finds, and nothing else."""
    assert live.by_id == {i.id: i for i in live.by_name.values()}
    assert live.limited == {n: i for n, i in live.by_name.items() if i.limited}


A1 = proc("a", 1)
A2 = proc("a", 1, inc=2)  # a's restart
A3 = proc("a", 1, inc=3, limits=Limits(memory_mb=64.0))  # respawned with a limit
B1 = proc("b", 2, limits=Limits(handler_timeout=1.0))
B2 = proc("b", 2, inc=2)  # b's restart, its limit dropped by a new spawn
C1 = proc("c", 3)
C_NEW = proc("c", 7)  # c deleted, then spawned again: a new record, a new id

# Each case: the operations in order ("put" or "drop" an incarnation), then what is current.
CASES = {
    "spawns": ([("put", A1), ("put", B1), ("put", C1)], {"a": A1, "b": B1, "c": C1}),
    "an exit": ([("put", A1), ("put", B1), ("drop", B1)], {"a": A1}),
    "a restart after its exit": ([("put", A1), ("drop", A1), ("put", A2)], {"a": A2}),
    "a stale exit after the restart is ignored":
        ([("put", A1), ("put", A2), ("drop", A1)], {"a": A2}),
    "a restart that gains a limit": ([("put", A1), ("drop", A1), ("put", A3)], {"a": A3}),
    "a restart that loses its limit": ([("put", B1), ("put", B2)], {"b": B2}),
    "the limited one exits": ([("put", A1), ("put", B1), ("drop", B1)], {"a": A1}),
    "delete, then a spawn of the name with a new id":
        ([("put", C1), ("drop", C1), ("put", C_NEW)], {"c": C_NEW}),
    "the old id's late exit does not touch the new id":
        ([("put", C1), ("put", C_NEW), ("drop", C1)], {"c": C_NEW}),
    "dropping one never registered": ([("put", A1), ("drop", C1)], {"a": A1}),
}


@pytest.mark.parametrize("ops,current", list(CASES.values()), ids=list(CASES))
def test_the_indexes_follow_every_change(ops: list[tuple[str, Incarnation]],
                                         current: dict[str, Incarnation]) -> None:
    live = CurrentProcesses()
    for op, incn in ops:
        live.put(incn) if op == "put" else live.drop(incn)
        assert_indexes_match(live)
    assert live.by_name == current


def test_a_report_sender_is_named_by_id_only_while_current() -> None:
    live = CurrentProcesses()
    live.put(C1)
    assert live.by_id[3] is C1
    live.drop(C1)
    live.put(C_NEW)
    assert 3 not in live.by_id and live.by_id[7] is C_NEW
