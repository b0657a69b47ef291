"""Hot code upgrade: load the agents' current code in a fresh zygote and move the agents
onto it one at a time, without losing a message or failing a call.

    upgrade(modules)
      1. plan (pure, ``rollout.plan``): the running agents of those modules, per
         supervisor in the tree's start order, each supervisor's in start order
      2. start a fresh zygote and, while it boots, check that the modules (and the
         agents' classes) import in a fresh interpreter with the agents' module path; one
         that fails stops here (the new zygote is stopped), nothing moved
      3. pin every live agent to the zygote that forked it, then make the new zygote
         current (node/zygotes.py): new spawns, restarts of unpinned agents and wakes of
         sleeping ones use the new code from now on
      4. for each agent: pin it to the new zygote, then ``Sessions.restart_in_place``: it
         finishes its current message, stops (``terminate("upgrade", state)``), and
         starts again from its committed state on the new code (``code_change`` runs when
         the stored version differs from the class's). Its messages wait in its durable
         mailbox meanwhile, so callers only wait. One ``upgraded`` event each.
      5. a new code that fails to start (``rollout.after_move``): the agent is pinned back
         to its old zygote and started again there from the same state (nothing was
         committed by the failed start), and the rollout stops; the report says which
         agents moved, which failed and why, and which were not reached.

What is not upgraded: the node daemon's own code (and beamish's), the config's tree, and
agents left on the old code (not among the modules asked, or not reached). The old
zygote is retired once no agent runs its code (``Zygotes.retire_idle``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from .._types import AgentStatus, Failure
from .._upgrades import (
    AgentMoved,
    AgentNotMoved,
    AgentSkipped,
    ImportFailure,
    UpgradeReport,
)
from ..errors import AgentNotFound
from ..store.protocol import Store, Txn
from .config import AgentSection
from .registry import ROOT, Emit
from .rollout import (
    Candidate,
    Outcome,
    Plan,
    Verdict,
    after_move,
    entry_change,
    not_reached,
    plan,
    supervisor_order,
)
from .sessions import Sessions
from .spawner import AgentSpawner
from .zygote_link import ZygoteLink
from .zygotes import Zygotes

log = logging.getLogger("beamish.node")
IMPORT_CHECK_TIMEOUT_S = 120.0

# Run in a fresh interpreter: import each ``module[:Class]`` given, write the failures
# as JSON ``[[target, "Type: message"], ...]`` to the file of fd ``argv[1]``: its own
# channel, which nothing a module prints (at import, at exit) can get into.
_CHECK = """\
import importlib, json, os, sys
answer = os.fdopen(int(sys.argv[1]), "w")
sys.path[:0] = [p for p in sys.argv[2].split(os.pathsep) if p and p not in sys.path]
out = []
for target in sys.argv[3:]:
    mod, _, cls = target.partition(":")
    try:
        m = importlib.import_module(mod)
    except BaseException as exc:
        out.append([mod, f"{type(exc).__name__}: {exc}"])
        continue
    if cls and not isinstance(getattr(m, cls, None), type):
        out.append([target, f"AttributeError: module {mod!r} has no class {cls!r}"])
json.dump(out, answer)
answer.close()
"""


def read_check_answer(raw: bytes) -> list[tuple[str, str]] | None:
    """The failures the import check wrote (``[[target, error], ...]``), or None when
    what it wrote is not a whole answer (it ended before, or something else wrote there)."""
    try:
        value = json.loads(raw)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None
    if not isinstance(value, list) or not all(
            isinstance(item, list) and len(item) == 2
            and all(isinstance(part, str) for part in item) for item in value):
        return None
    return [(target, error) for target, error in value]


def check_imports(sys_path: Sequence[str], targets: Sequence[str]) -> list[ImportFailure]:
    """Import each of ``targets`` (``module`` or ``module:Class``) in a fresh interpreter
    with the agents' module path, as a new zygote would; return those that fail (the
    check itself failing is one failure naming them all: never an exception)."""
    if not targets:
        return []
    everything = ", ".join(targets)
    with tempfile.TemporaryFile() as answer:
        try:
            done = subprocess.run(
                [sys.executable, "-c", _CHECK, str(answer.fileno()),
                 os.pathsep.join(sys_path), *targets],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True, errors="replace", timeout=IMPORT_CHECK_TIMEOUT_S,
                pass_fds=(answer.fileno(),))
        except subprocess.TimeoutExpired:
            return [ImportFailure(everything,
                                  f"importing took over {IMPORT_CHECK_TIMEOUT_S:g} s")]
        except OSError as exc:
            return [ImportFailure(everything, f"the import check could not run: {exc}")]
        answer.seek(0)
        failures = read_check_answer(answer.read())
    if failures is None:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return [ImportFailure(everything, f"importing them ended the process ({tail[0]})")]
    return [ImportFailure(t, e) for t, e in failures]


def _describe(outcome: tuple[object, Failure | None]) -> str:
    reason, failure = outcome
    if failure is None:
        return str(reason)
    return f"{failure.exc_type or failure.kind}: {failure.message}"


class Upgrader:
    """Runs upgrades (one at a time) for one node.

    Args:
        store: the node's store.
        spawner: the agents' processes.
        sessions: stops and starts agents in place.
        zygotes: the node's zygotes.
        emit: records an event.
        sys_path: the agents' module search path.
        stopping: set while the node stops.
    """

    def __init__(self, *, store: Store, spawner: AgentSpawner, sessions: Sessions,
                 zygotes: Zygotes, emit: Emit, sys_path: Sequence[str],
                 stopping: threading.Event) -> None:
        self.store = store
        self.spawner = spawner
        self.sessions = sessions
        self.zygotes = zygotes
        self.emit = emit
        self.sys_path = list(sys_path)
        self.stopping = stopping
        self._lock = threading.Lock()
        self.check: Callable[[Sequence[str], Sequence[str]], list[ImportFailure]] = \
            check_imports

    def upgrade(self, modules: Sequence[str],
                entries: Sequence[AgentSection] = ()) -> UpgradeReport:
        """Move the running agents of ``modules`` (none: all) onto their current code (see
        the module docstring), applying the config ``entries`` that changed (args,
        limits, restart, shutdown, idle_timeout) to their agents as they move; another
        upgrade waits for this one."""
        with self._lock:
            return self._upgrade(tuple(modules), entries)

    def _entry_changes(self, entries: Sequence[AgentSection]
                       ) -> tuple[dict[str, Mapping[str, object]], list[AgentSkipped]]:
        """What each config entry changes of its agent's record; the entries that cannot
        be applied by an upgrade, skipped with why."""
        recs = self.store.read(lambda t: {e.name: t.get_agent(e.name) for e in entries})
        changes: dict[str, Mapping[str, object]] = {}
        skipped: list[AgentSkipped] = []
        for entry in entries:
            rec = recs[entry.name]
            if rec is None:
                skipped.append(AgentSkipped(entry.name, "its config entry is not applied: the "
                                            "node has no such agent (a node start adds it)"))
                continue
            wanted = {"cls": entry.cls, "supervisor": entry.supervisor, "args": entry.args,
                      "restart": entry.restart, "shutdown": entry.shutdown,
                      "limits": {k: v for k, v in entry.limits.model_dump().items()
                                 if v is not None},
                      "idle_timeout": entry.idle_timeout}
            have = {k: getattr(rec, k) for k in wanted}
            have["limits"] = {k: v for k, v in (rec.limits or {}).items() if v is not None}
            change = entry_change(have, wanted)
            if change.fixed:
                skipped.append(AgentSkipped(entry.name, (
                    f"its config entry is not applied: its {' and '.join(change.fixed)} "
                    f"changed, which takes a new spawn (`beamish stop {entry.name}`, then "
                    "spawn it as the entry says)")))
            elif change.values:
                changes[entry.name] = change.values
        return changes, skipped

    def _candidates(self) -> tuple[list[Candidate], list[str]]:
        def read(t: Txn) -> tuple[list[Candidate], list[tuple[str, str, int]]]:
            agents = [Candidate(r.name, r.supervisor, r.order, r.cls, r.status)
                      for r in t.agents()]
            return agents, [(s.name, s.parent, s.order) for s in t.sups()]
        agents, sups = self.store.read(read)
        return agents, supervisor_order(sups, ROOT)

    def _upgrade(self, modules: tuple[str, ...],
                 entries: Sequence[AgentSection]) -> UpgradeReport:
        changes, refused = self._entry_changes(entries)
        agents, sups = self._candidates()
        # With config entries and no module: only the agents whose entry changed move.
        rollout = plan(agents, sups, modules, changes, config_only=bool(entries) and not modules)
        classes = dict.fromkeys([*rollout.modules, *(a.cls for a in rollout.moves)])
        new = self.zygotes.start_new()  # it boots while the check runs
        promoted = False
        try:
            failures = self.check(self.sys_path, list(classes))
            if failures:
                log.error("upgrade refused: %s", "; ".join(f"{f.module}: {f.error}"
                                                           for f in failures))
                return UpgradeReport(modules, skipped=(
                    *refused, *rollout.skipped,
                    *not_reached(rollout.moves, "a module fails to import")),
                    import_failures=tuple(failures))
            order = {a.name: a.order for a in agents}
            self.zygotes.upgrading = True
            try:
                self._pin_live(order)
                self.zygotes.promote(new)
                promoted = True
                return self._roll(modules, rollout, new, changes, refused)
            finally:
                self.zygotes.upgrading = False
        finally:
            if not promoted:
                self.zygotes.discard(new)  # refused, or failed: it forked nothing

    def _roll(self, modules: tuple[str, ...], rollout: Plan, new: ZygoteLink,
              changes: Mapping[str, Mapping[str, object]],
              refused: Sequence[AgentSkipped]) -> UpgradeReport:
        """Move the rollout's agents onto ``new`` (the current zygote now), one at a time,
        until one fails or the node stops."""
        log.info("upgrade of %s: moving %d agents onto the new code",
                 ", ".join(modules) or "every module", len(rollout.moves))
        moved: list[AgentMoved] = []
        failed: list[AgentNotMoved] = []
        skipped = [*refused, *rollout.skipped]
        for i, agent in enumerate(rollout.moves):
            outcome, result = self._move(agent, new, changes.get(agent.name, {}))
            if isinstance(result, AgentMoved):
                moved.append(result)
            elif isinstance(result, AgentNotMoved):
                failed.append(result)
            elif result is not None:
                skipped.append(result)
            if after_move(outcome) is Verdict.STOP:
                why = ("the node is stopping" if outcome is Outcome.STOPPING
                       else f"the upgrade stopped at agent {agent.name!r}")
                skipped += not_reached(rollout.moves[i + 1:], why)
                break
        return UpgradeReport(modules, tuple(moved), tuple(failed), tuple(skipped))

    def _pin_live(self, order: dict[str, int]) -> None:
        """Pin every live agent to the zygote that forked it (before a new one is
        current): a restart of one not moved stays on its code."""
        with self.spawner.lock:
            live = [(i.name, i.pid) for i in self.spawner.current.values()]
        for name, pid in live:
            link = self.zygotes.forked_by(pid)
            if link is not None and name in order:
                self.zygotes.pin(name, link, order[name])

    def _version(self, name: str) -> int | None:
        def read(t: Txn) -> int | None:
            rec = t.get_agent(name)
            state = t.get_state(rec.id) if rec is not None else None
            return None if state is None else state[0]
        return self.store.read(read)

    def _set(self, name: str, values: Mapping[str, object]) -> dict[str, object]:
        """Write ``values`` into agent ``name``'s record; return the ones they replaced."""
        if not values:
            return {}

        def txn(t: Txn) -> dict[str, object]:
            rec = t.get_agent(name)
            if rec is None:
                return {}
            t.put_agent(replace(rec, **values))  # type: ignore[arg-type]
            return {k: getattr(rec, k) for k in values}
        return self.store.write(txn)

    def _move(self, agent: Candidate, new: ZygoteLink, values: Mapping[str, object]
              ) -> tuple[Outcome, AgentMoved | AgentNotMoved | AgentSkipped | None]:
        """Move one agent onto ``new`` (with the config ``values`` in its record: its new
        process starts with them, and its supervisor takes it back with them); its outcome
        and what the report says of it."""
        name = agent.name
        if self.stopping.is_set():
            return Outcome.STOPPING, AgentSkipped(name, "not moved: the node is stopping")
        old = self.zygotes.link_for(name)
        if old is new:
            return Outcome.GONE, AgentSkipped(name, "it runs the new code already")
        old_version = self._version(name)
        errors: list[str] = []

        def retry(outcome: tuple[object, Failure | None]) -> bool:
            errors.append(_describe(outcome))
            log.error("agent %r failed to start on the new code (%s): back on its old code",
                      name, errors[-1])
            if not old.alive():
                return False  # nothing to go back to: its supervisor handles the crash
            self.zygotes.pin(name, old, agent.order)
            return True
        self.zygotes.pin(name, new, agent.order)
        before = self._set(name, values)
        try:
            self.sessions.restart_in_place(name, retry)
        except AgentNotFound as exc:
            self.zygotes.unpin(name)  # not running: its next start uses the new code
            return Outcome.GONE, AgentSkipped(name, f"not moved: {exc}")
        incn = self.spawner.incarnation(name)
        running = incn is not None and incn.ready.done() and incn.ready.result() is True
        if errors:
            self._set(name, before)  # for its next start; the process runs with the new
            return Outcome.FAILED, AgentNotMoved(name, agent.supervisor, errors[0],
                                                 running and self.zygotes.link_for(name) is old)
        self.zygotes.unpin(name)
        if not running:
            rec_status = self.store.read(lambda t: t.get_agent(name))
            status = rec_status.status if rec_status is not None else "deleted"
            if status != AgentStatus.SLEEPING:
                return Outcome.GONE, AgentSkipped(name, f"not moved: it is {status} now")
        new_version = self._version(name)
        moved = AgentMoved(name, agent.supervisor, old_version or 0,
                           new_version if new_version is not None else old_version or 0,
                           tuple(values))
        self.emit("upgraded", name, agent.supervisor,
                  f"version {moved.old_version} -> {moved.new_version}"
                  + (f"; config: {', '.join(values)}" if values else ""))
        return Outcome.MOVED, moved
