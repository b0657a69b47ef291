"""What a hot code upgrade answers (``node.upgrade``, ``beamish upgrade``): which agents
moved onto the new code, which did not and why, and which were left where they were.

Plain frozen records with their wire form (the node sends the map of their fields); the
node builds them in ``node/upgrade.py``, the client reads them back (`UpgradeReport.from_wire`)
and raises `errors.UpgradeFailed` when the rollout stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._values import WireMap


@dataclass(frozen=True, slots=True)
class AgentMoved:
    """An agent that now runs the new code, from its committed state.

    Attributes:
        name: the agent.
        supervisor: its supervisor.
        old_version: the class ``version`` its state was committed with before the move.
        new_version: the version of its state now (differs when ``code_change`` ran).
        config: the fields of its config entry applied as it moved (``args``,
            ``limits``, ``restart``, ``shutdown``, ``idle_timeout``).
    """

    name: str
    supervisor: str
    old_version: int
    new_version: int
    config: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentNotMoved:
    """An agent whose start on the new code failed (``code_change`` or ``init`` raised, its
    class is gone...): it was brought back on its old code, its state untouched, and the
    rollout stopped there.

    Attributes:
        name: the agent.
        supervisor: its supervisor.
        error: why the new code did not start (the exception's type and message).
        restored: whether it runs again on its old code (False: its old code failed to
            start too, and its supervisor handles that as a crash).
    """

    name: str
    supervisor: str
    error: str
    restored: bool


@dataclass(frozen=True, slots=True)
class AgentSkipped:
    """An agent the rollout did not move, and why (asleep: it wakes on the new code; not
    among the modules asked; not reached because the rollout stopped; ...).

    Attributes:
        name: the agent.
        why: why it was not moved.
    """

    name: str
    why: str


@dataclass(frozen=True, slots=True)
class ImportFailure:
    """A module that fails to import in its current version: nothing was moved.

    Attributes:
        module: the module (or ``module:Class`` whose class is missing).
        error: the import's exception, type and message (its traceback's last line).
    """

    module: str
    error: str


@dataclass(frozen=True, slots=True)
class UpgradeReport:
    """The answer to an upgrade.

    Attributes:
        modules: the modules asked for (empty: every agent's module).
        moved: the agents moved onto the new code, in the order they moved.
        failed: the agent whose new code failed to start (the rollout stops at the first).
        skipped: the agents left where they were, with why.
        import_failures: modules that fail to import (then nothing moved).
    """

    modules: tuple[str, ...] = ()
    moved: tuple[AgentMoved, ...] = ()
    failed: tuple[AgentNotMoved, ...] = ()
    skipped: tuple[AgentSkipped, ...] = ()
    import_failures: tuple[ImportFailure, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the rollout went to its end (nothing failed to import or to start)."""
        return not self.failed and not self.import_failures

    def to_wire(self) -> WireMap:
        """The msgpack-ready form."""
        return {"modules": list(self.modules),
                "moved": [[m.name, m.supervisor, m.old_version, m.new_version,
                           list(m.config)] for m in self.moved],
                "failed": [[f.name, f.supervisor, f.error, f.restored] for f in self.failed],
                "skipped": [[s.name, s.why] for s in self.skipped],
                "import_failures": [[i.module, i.error] for i in self.import_failures]}

    @classmethod
    def from_wire(cls, value: Any) -> UpgradeReport:
        """Read the wire form (`to_wire`)."""
        return cls(tuple(str(m) for m in value["modules"]),
                   tuple(AgentMoved(str(n), str(s), int(o), int(v), tuple(map(str, c)))
                         for n, s, o, v, c in value["moved"]),
                   tuple(AgentNotMoved(str(n), str(s), str(e), bool(r))
                         for n, s, e, r in value["failed"]),
                   tuple(AgentSkipped(str(n), str(w)) for n, w in value["skipped"]),
                   tuple(ImportFailure(str(m), str(e)) for m, e in value["import_failures"]))

    def lines(self) -> list[str]:
        """The report as the CLI prints it, one line each."""
        out = [f"import failed: {i.module}: {i.error}" for i in self.import_failures]
        out += [f"moved    {m.name} ({m.supervisor}) version {m.old_version} -> "
                f"{m.new_version}" + (f"; config: {', '.join(m.config)}" if m.config else "")
                for m in self.moved]
        out += [f"FAILED   {f.name} ({f.supervisor}): {f.error}; "
                + ("back on its old code, state untouched" if f.restored
                   else "its old code failed to start too: its supervisor restarts it")
                for f in self.failed]
        out += [f"skipped  {s.name}: {s.why}" for s in self.skipped]
        verdict = "upgrade complete" if self.ok else "upgrade stopped"
        out.append(f"{verdict}: {len(self.moved)} moved, {len(self.failed)} failed, "
                   f"{len(self.skipped)} skipped")
        return out
