"""Links and monitors, as in Erlang, between agent incarnations (a restart is a new process:
its links and monitors are gone, as in Erlang).

Pure bookkeeping: `LinkTable` says what must happen when an incarnation exits; the node
carries it out (deliver a `Down`/`Exit` message to an agent's mailbox, or kill a linked
agent that does not trap exits).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

NOPROC = "noproc"


class Named(Protocol):
    """What the table needs of an incarnation: its agent's name (and identity, to hash)."""

    @property
    def name(self) -> str:
        """The agent's name."""
        ...


Incn = TypeVar("Incn", bound=Named)  # the node's incarnation handle


@dataclass(frozen=True)
class Deliver(Generic[Incn]):
    """Append ``message`` (a `Down` or `Exit` as data) to ``to``'s mailbox."""

    to: Incn  # the receiving incarnation
    message: dict[str, str]


@dataclass(frozen=True)
class KillLinked(Generic[Incn]):
    """Kill ``target`` (it does not trap exits) because a linked agent exited abnormally."""

    target: Incn
    reason: str


def down_message(name: str, reason: str) -> dict[str, str]:
    """The data form of `Down(name, reason)` as it travels in a mailbox."""
    return {"__beamish__": "Down", "name": name, "reason": reason}


def exit_message(name: str, reason: str) -> dict[str, str]:
    """The data form of `Exit(name, reason)` as it travels in a mailbox."""
    return {"__beamish__": "Exit", "name": name, "reason": reason}


class LinkTable(Generic[Incn]):
    """Who monitors whom, and who is linked to whom. Keys are incarnation handles (one
    process each); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._monitors: dict[Incn, set[Incn]] = {}  # target incarnation -> watcher incarnations
        self._watching: dict[Incn, set[Incn]] = {}  # watcher -> its targets (the reverse)
        self._links: dict[Incn, set[Incn]] = {}  # incarnation -> linked incarnations
        # Told (outside the lock) of each incarnation an exit left with no link or monitor:
        # the node drops a handle it kept only for them (a sleeping agent's).
        self.on_released: Callable[[Incn], None] | None = None

    def monitor(self, watcher: Incn, target: Incn) -> None:
        """``watcher`` gets a Down when ``target`` exits (once)."""
        with self._lock:
            self._monitors.setdefault(target, set()).add(watcher)
            self._watching.setdefault(watcher, set()).add(target)

    def link(self, a: Incn, b: Incn) -> None:
        """Link ``a`` and ``b`` both ways (idempotent)."""
        if a is b:
            return
        with self._lock:
            self._links.setdefault(a, set()).add(b)
            self._links.setdefault(b, set()).add(a)

    def holds(self, incn: Incn) -> bool:
        """Whether any link or monitor (either way) involves ``incn``."""
        with self._lock:
            return self._holds(incn)

    def related(self, incn: Incn) -> set[Incn]:
        """Every incarnation that ``incn`` links to, monitors or is monitored by."""
        with self._lock:
            return {*self._links.get(incn, ()), *self._monitors.get(incn, ()),
                    *self._watching.get(incn, ())}

    def _holds(self, incn: Incn) -> bool:
        return incn in self._links or incn in self._monitors or incn in self._watching

    def rebind(self, old: Incn, new: Incn) -> None:
        """Move every link and monitor of ``old`` to ``new`` (a sleeping agent woke: its
        new process holds what its last one held)."""
        with self._lock:
            _move(self._monitors, self._watching, old, new)
            _move(self._watching, self._monitors, old, new)
            _move(self._links, self._links, old, new)

    def exited(self, incn: Incn, reason: str, abnormal: bool,
               traps: dict[Incn, bool]) -> list[Deliver[Incn] | KillLinked[Incn]]:
        """``incn`` exited: forget its links and monitors and return what must happen.

        Args:
            incn: the incarnation that exited (with a ``name``).
            reason: its exit reason, as text.
            abnormal: whether the exit was abnormal (only those kill linked agents that do
                not trap exits).
            traps: for each linked incarnation, whether it traps exits.
        """
        actions: list[Deliver[Incn] | KillLinked[Incn]] = []
        with self._lock:
            watchers = self._monitors.pop(incn, set())
            linked = self._links.pop(incn, set())
            touched = [*_drop(self._watching, watchers, incn),
                       *_drop(self._monitors, self._watching.pop(incn, set()), incn),
                       *_drop(self._links, linked, incn)]
            released = {i for i in touched if not self._holds(i)}
        for watcher in watchers:
            actions.append(Deliver(watcher, down_message(incn.name, reason)))
        for other in linked:
            # As in Erlang: a process that traps exits hears of every exit, normal ones
            # too; the others are taken down by abnormal exits only.
            if traps.get(other, False):
                actions.append(Deliver(other, exit_message(incn.name, reason)))
            elif abnormal:
                actions.append(KillLinked(other, f"linked agent {incn.name!r} exited: "
                                                 f"{reason}"))
        if self.on_released is not None:
            for other in released:
                self.on_released(other)
        return actions


def _drop(index: dict[Incn, set[Incn]], keys: set[Incn], gone: Incn) -> list[Incn]:
    """Take ``gone`` out of ``index[k]`` for each ``k`` of ``keys`` (emptied entries are
    deleted); return those ``k``."""
    for key in keys:
        rest = index.get(key)
        if rest is not None:
            rest.discard(gone)
            if not rest:
                del index[key]
    return list(keys)


def _move(index: dict[Incn, set[Incn]], reverse: dict[Incn, set[Incn]], old: Incn,
          new: Incn) -> None:
    """Re-key ``index[old]`` to ``new``, and replace ``old`` by ``new`` in the entries of
    ``reverse`` that name it (``reverse`` is ``index`` itself for the symmetric links)."""
    moved = index.pop(old, None)
    if not moved:
        return
    for other in moved:
        back = reverse.get(other)
        if back is not None:
            back.discard(old)
            if other is not new:
                back.add(new)
            elif not back:
                del reverse[other]
    moved.discard(new)  # nothing is linked to (or monitors) itself
    if moved:
        index.setdefault(new, set()).update(moved)
