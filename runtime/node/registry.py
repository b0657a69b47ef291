"""The node's registry: the one owner of agent and supervisor records' status transitions.

The spawner (a process started, ready, exited), the supervisor shells (an event: failed,
backoff, removed) and the commands (stop, restart) change an agent's status only through
a `Registry`, which writes the record in one transaction and emits the events that go
with the change into the node's event log (`.eventlog.EventLog`, what ``beamish events``
reads). Reads of the tree (``ps``, ``info``) go to the store directly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from beamish.supervisor import ChildStatus, EventKind

from .._types import HAD_PROCESS, AgentStatus, Failure, agent_status
from ..store.protocol import Store, Txn
from ..store.records import AgentRecord

log = logging.getLogger("beamish.node")
ROOT = "root"
Emit = Callable[[str, str, str, str], None]
"""``emit(kind, name, supervisor, reason)``: record an event for ``beamish events``."""

# The supervisor events that set the status of the agent or supervisor they are about.
_CHILD_STATUS_OF_EVENT: dict[str, ChildStatus] = {EventKind.FAILED: ChildStatus.FAILED,
                                                   EventKind.BACKOFF: ChildStatus.BACKOFF}


class Registry:
    """Agent and supervisor records, and the status transitions of the tree.

    Args:
        store: the node's store.
        emit: records an event (thread-safe).
        stopping: set while the node stops (what runs then stays recorded as running,
            so a node restarted on the dir brings it back).
    """

    def __init__(self, store: Store, emit: Emit, stopping: threading.Event) -> None:
        self.store = store
        self.emit = emit
        self.stopping = stopping
        self._removing: set[str] = set()  # agents a stop command is taking out of the tree

    # -- reads ------------------------------------------------------------------------------
    def get(self, name: str) -> AgentRecord | None:
        """Return agent ``name``'s record, or None."""
        return self.store.read(lambda t: t.get_agent(name))

    def supervisor_of(self, name: str) -> str:
        """Return the supervisor of agent ``name`` (root if it has no record)."""
        rec = self.get(name)
        return rec.supervisor if rec else ROOT

    def name_of(self, agent_id: int) -> str | None:
        """Return the name of the agent with id ``agent_id``, or None."""
        names = self.store.read(lambda t: [r.name for r in t.agents() if r.id == agent_id])
        return names[0] if names else None

    # -- transitions ----------------------------------------------------------------------
    def set_status(self, name: str, status: AgentStatus, pid: int | None = None,
                   failure: Failure | None = None, recover_pending: bool | None = None) -> None:
        """Update an agent's record: status, pid, last failure, and whether that failure
        still waits for a start that runs ``recover`` (None: leave it as it is)."""
        def txn(t: Txn) -> None:
            rec = t.get_agent(name)
            if rec is None:
                return
            t.put_agent(replace(
                rec, status=status, pid=pid,
                last_failure=rec.last_failure if failure is None else failure,
                recover_pending=rec.recover_pending if recover_pending is None
                else recover_pending))
        self.store.write(txn)

    def set_sup_status(self, name: str, status: ChildStatus) -> None:
        """Record a nested supervisor's status (failed, running, backoff)."""
        def txn(t: Txn) -> None:
            rec = t.get_sup(name)
            if rec is not None and rec.status != status:
                t.put_sup(replace(rec, status=status))
        self.store.write(txn)

    @contextmanager
    def removing(self, name: str) -> Iterator[None]:
        """While a stop or delete takes agent ``name`` out of the tree: its supervisor's
        ``removed`` event does not mark it exited (the command sets its status itself)."""
        self._removing.add(name)
        try:
            yield
        finally:
            self._removing.discard(name)

    def on_supervisor_event(self, kind: str, name: str, supervisor: str, reason: str) -> None:
        """A supervisor shell's event: emit it, then apply the status it implies (a child
        failed or waits out a backoff; one that left the tree by itself has exited)."""
        # The event first: whoever sees the new status can then find the event too.
        self.emit(str(kind), name, supervisor, reason)
        status = _CHILD_STATUS_OF_EVENT.get(str(kind))
        if status is not None:
            self.set_status(name, agent_status(status), pid=None)
            self.set_sup_status(name, status)
        elif kind == EventKind.REMOVED:
            self._mark_exited(name)

    def _mark_exited(self, name: str) -> None:
        # A child that left the tree after exiting by itself (temporary; transient after a
        # normal exit), or a temporary one stopped as a one_for_all/rest_for_one bystander
        # or with its supervisor (still "running" here: the supervisor stopped it): its
        # state stays, and a later spawn of the name resumes it. Not while the node stops:
        # a node restarted on the dir brings back what was running.
        if self.stopping.is_set() or name in self._removing:
            return  # (a stop or delete sets the status itself)

        def txn(t: Txn) -> None:
            rec = t.get_agent(name)
            # Not "starting": a spawn that failed undoes its own reservation.
            if rec is not None and rec.status in HAD_PROCESS:
                t.put_agent(replace(rec, status=AgentStatus.EXITED, pid=None))
        self.store.write(txn)
