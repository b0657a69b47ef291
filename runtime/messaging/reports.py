"""Reports from agents to the node (ready, dead_lettered, ...), parsed before use.

An agent process runs user code, so every field of every report it sends is untrusted:
`parse_report` turns a decoded payload into a frozen `Report` or a `Rejected` saying why,
and only a `Report` ever reaches the node's loop or its spawner. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ReportKind = Literal["ready", "dead_lettered", "recover_failed", "terminate_failed"]
REPORT_KINDS: frozenset[str] = frozenset(
    ("ready", "dead_lettered", "recover_failed", "terminate_failed"))
# Linux pids are at most 2**22 (pid_max); ids, incarnations and seqs are LMDB u64 keys.
MAX_PID = 1 << 22
MAX_U63 = (1 << 63) - 1
MAX_REASON_CHARS = 4096
_FIELDS = frozenset(("ev", "id", "inc", "pid", "trap_exits", "reason", "seq"))


@dataclass(frozen=True)
class Report:
    """One valid report from an agent process.

    Attributes:
        ev: what it reports.
        id: the agent's id.
        inc: its incarnation number.
        pid: the reporting process.
        trap_exits: (ready) whether the agent traps exits.
        reason: (the failure reports) what happened, as text.
        seq: (dead_lettered) the message's sequence number.
    """

    ev: ReportKind
    id: int
    inc: int
    pid: int
    trap_exits: bool = False
    reason: str = ""
    seq: int | None = None


@dataclass(frozen=True)
class Rejected:
    """A payload that is not a valid report, and why (for the log; it is dropped)."""

    why: str


def worth_logging(count: int) -> bool:
    """Whether the ``count``-th dropped frame is logged: the first ten, then one in a
    thousand, so that a flood of garbage cannot flood the log (all are counted)."""
    return count <= 10 or count % 1000 == 0


def _int_field(payload: dict[Any, Any], key: str, low: int, high: int) -> int | str:
    value = payload.get(key)
    # bool is an int subclass; a float or a string is never a pid or an id.
    if type(value) is not int or not low <= value <= high:
        return f"field {key!r} is {_show(value)}, not an integer in [{low}, {high}]"
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_report(payload: Any) -> Report | Rejected:
    """Validate a decoded report payload.

    Returns:
        The `Report`, or a `Rejected` naming the first field that does not fit.
    """
    if not isinstance(payload, dict):
        return Rejected(f"a report is a map, not {type(payload).__name__}")
    extra = [k for k in payload if k not in _FIELDS]
    if extra:
        return Rejected(f"unknown fields {_show(extra)}")
    ev = payload.get("ev")
    if not isinstance(ev, str) or ev not in REPORT_KINDS:
        return Rejected(f"unknown report kind {_show(ev)}")
    ints: dict[str, int] = {}
    for key, low, high in (("id", 1, MAX_U63), ("inc", 1, MAX_U63), ("pid", 1, MAX_PID)):
        got = _int_field(payload, key, low, high)
        if isinstance(got, str):
            return Rejected(got)
        ints[key] = got
    trap_exits = payload.get("trap_exits", False)
    if type(trap_exits) is not bool:
        return Rejected(f"field 'trap_exits' is {_show(trap_exits)}, not a bool")
    reason = payload.get("reason", "")
    if not isinstance(reason, str):
        return Rejected(f"field 'reason' is {_show(reason)}, not a string")
    seq: int | None = None
    if "seq" in payload:
        got = _int_field(payload, "seq", 1, MAX_U63)
        if isinstance(got, str):
            return Rejected(got)
        seq = got
    return Report(ev, ints["id"], ints["inc"], ints["pid"], trap_exits,  # type: ignore[arg-type]
                  reason[:MAX_REASON_CHARS], seq)
