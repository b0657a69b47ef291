"""A hot code upgrade's decisions, pure: which agents move and in what order (`plan`),
and whether the rollout goes on after each move (`after_move`). ``node/upgrade.py`` runs
them against real processes.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from .._types import AgentStatus
from .._upgrades import AgentSkipped


@dataclass(frozen=True, slots=True)
class Candidate:
    """An agent as the rollout sees it.

    Attributes:
        name: the agent.
        supervisor: its supervisor.
        order: its start order (the node's counter at its spawn).
        cls: its class path, ``module:Class``.
        status: its status.
    """

    name: str
    supervisor: str
    order: int
    cls: str
    status: AgentStatus


@dataclass(frozen=True, slots=True)
class Plan:
    """What a rollout does.

    Attributes:
        moves: the agents to move, one at a time in this order.
        skipped: the agents left where they are, with why.
        modules: the modules whose current code must import before anything moves.
    """

    moves: tuple[Candidate, ...]
    skipped: tuple[AgentSkipped, ...]
    modules: tuple[str, ...]


def module_of(cls: str) -> str:
    """The module of a class path (``app.agents:Counter`` -> ``app.agents``)."""
    return cls.partition(":")[0]


def asked_for(module: str, asked: Sequence[str]) -> bool:
    """Whether ``module`` is one of ``asked`` or inside one of them (a package); every
    module when none is asked."""
    return not asked or any(module == a or module.startswith(a + ".") for a in asked)


_NOT_RUNNING = {
    AgentStatus.SLEEPING: "asleep: it wakes on the new code",
    AgentStatus.STARTING: "starting: its start uses the new code",
    AgentStatus.RESTARTING: "restarting: its restart uses the new code",
    AgentStatus.BACKOFF: "waiting to restart: its restart uses the new code",
}


def plan(agents: Sequence[Candidate], supervisors: Sequence[str],
         asked: Sequence[str], reconfigured: Collection[str] = (),
         config_only: bool = False) -> Plan:
    """The rollout of an upgrade of modules ``asked`` (none: every agent's module, unless
    ``config_only``: none), and of the agents ``reconfigured`` (their config entry
    changed), whatever their module.

    Running agents of those modules move, per supervisor in ``supervisors`` order (the
    tree's, root first) and in start order within each; a supervisor not listed comes
    after those listed. The others are skipped, with why: not among the modules asked,
    asleep (a wake starts the new code), starting or restarting (so does their start),
    failed or stopped (not running: a later start uses the new code). The modules to
    check are the moving agents' and those asked.
    """
    rank = {s: i for i, s in enumerate(supervisors)}
    moves: list[Candidate] = []
    skipped: list[AgentSkipped] = []
    for a in sorted(agents, key=lambda a: (rank.get(a.supervisor, len(rank)), a.order)):
        if a.name not in reconfigured and (config_only
                                           or not asked_for(module_of(a.cls), asked)):
            skipped.append(AgentSkipped(a.name, "its config entry did not change"
                                        if config_only else
                                        "its module is not among those asked"))
        elif a.status == AgentStatus.RUNNING:
            moves.append(a)
        else:
            skipped.append(AgentSkipped(a.name, _NOT_RUNNING.get(
                a.status, f"{a.status}: not running; a later start uses the new code")))
    modules = dict.fromkeys([*asked, *(module_of(a.cls) for a in moves)])
    return Plan(tuple(moves), tuple(skipped), tuple(modules))


class Outcome(enum.StrEnum):
    """How one agent's move ended."""

    MOVED = "moved"
    """It runs the new code."""
    GONE = "gone"
    """It was not running at its turn (stopped, deleted, restarting, put to sleep)."""
    FAILED = "failed"
    """Its new code failed to start; it was brought back on its old code."""
    STOPPING = "stopping"
    """The node is stopping."""


class Verdict(enum.StrEnum):
    """What the rollout does after a move."""

    NEXT = "next"
    """Go on with the next agent."""
    STOP = "stop"
    """Stop: the agents not moved yet stay on the old code."""


def after_move(outcome: Outcome) -> Verdict:
    """Whether the rollout goes on after a move that ended with ``outcome``: a new code
    that fails to start stops it (the next agents would most likely fail the same way),
    and so does a node that stops; an agent that was not there to move does not."""
    if outcome in (Outcome.FAILED, Outcome.STOPPING):
        return Verdict.STOP
    return Verdict.NEXT


def not_reached(rest: Sequence[Candidate], why: str) -> tuple[AgentSkipped, ...]:
    """The agents a stopped rollout did not reach, skipped with ``why``."""
    return tuple(AgentSkipped(a.name, f"not moved: {why}") for a in rest)


def supervisor_order(sups: Sequence[tuple[str, str, int]], root: str = "root") -> list[str]:
    """The supervisors in the tree's start order, depth first from ``root`` (each
    ``(name, parent, order)``; children by start order). One whose parent is unknown comes
    last, by start order."""
    children: dict[str, list[tuple[int, str]]] = {}
    for name, parent, order in sups:
        children.setdefault(parent, []).append((order, name))
    out: list[str] = []
    stack = [root]
    while stack:
        name = stack.pop()
        out.append(name)
        stack.extend(n for _, n in sorted(children.get(name, []), reverse=True))
    seen = set(out)
    out += [n for _, n in sorted((o, n) for n, _, o in sups if n not in seen)]
    return out


SETTABLE = ("args", "restart", "shutdown", "limits", "idle_timeout")
"""The fields of an agent's config entry an upgrade applies to the running agent."""
FIXED = ("cls", "supervisor")
"""The fields it does not: a new class or supervisor is a new spawn."""


@dataclass(frozen=True, slots=True)
class EntryChange:
    """How an agent's config entry differs from its record.

    Attributes:
        values: the settable fields that differ, with the entry's values.
        fixed: the fields that differ and an upgrade cannot apply (class, supervisor).
    """

    values: Mapping[str, object]
    fixed: tuple[str, ...]


def entry_change(have: Mapping[str, object], wanted: Mapping[str, object]) -> EntryChange:
    """Compare an agent's record (``have``) with its config entry (``wanted``), field by
    field over `SETTABLE` and `FIXED` (a field missing from ``wanted`` is not compared)."""
    values = {k: wanted[k] for k in SETTABLE if k in wanted and wanted[k] != have.get(k)}
    fixed = tuple(k for k in FIXED if k in wanted and wanted[k] != have.get(k))
    return EntryChange(values, fixed)
