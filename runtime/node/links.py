"""Links and monitors, as in Erlang, between agent incarnations (a restart is a new process:
its links and monitors are gone, as in Erlang).

Pure bookkeeping: `LinkTable` says what must happen when an incarnation exits; the node
carries it out (deliver a `Down`/`Exit` message to an agent's mailbox, or kill a linked
agent that does not trap exits).
"""

from __future__ import annotations

import threading
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
        self._links: dict[Incn, set[Incn]] = {}  # incarnation -> linked incarnations

    def monitor(self, watcher: Incn, target: Incn) -> None:
        """``watcher`` gets a Down when ``target`` exits (once)."""
        with self._lock:
            self._monitors.setdefault(target, set()).add(watcher)

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
            return incn in self._links or incn in self._monitors \
                or any(incn in w for w in self._monitors.values())

    def rebind(self, old: Incn, new: Incn) -> None:
        """Move every link and monitor of ``old`` to ``new`` (a sleeping agent woke: its
        new process holds what its last one held)."""
        with self._lock:
            if old in self._monitors:
                self._monitors.setdefault(new, set()).update(self._monitors.pop(old))
            for watchers in self._monitors.values():
                if old in watchers:
                    watchers.discard(old)
                    watchers.add(new)
            if old in self._links:
                self._links.setdefault(new, set()).update(self._links.pop(old))
            for linked in self._links.values():
                if old in linked:
                    linked.discard(old)
                    linked.add(new)

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
            for targets in self._monitors.values():
                targets.discard(incn)  # its own monitors die with it
            linked = self._links.pop(incn, set())
            for other in linked:
                self._links.get(other, set()).discard(incn)
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
        return actions
