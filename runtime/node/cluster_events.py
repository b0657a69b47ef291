"""The events of replicated agents, gathered cluster-wide: a replicated agent moves
between nodes, and ``beamish events --name N`` asked on any node shows all its events,
whichever node emitted them.

Each node emits its replicated agents' events as before, into its own log (the node's
history: ``beamish events`` without a name, on that node), and also queues them for the
cluster's log in PostgreSQL (``store/postgres/events.py``), which a writer thread
commits in batches (at most every `FLUSH_S`, as the node's own log). An ``events``
request that names an agent this node has no record of (not one of its own agents or
supervisors) is served from the cluster's log when PostgreSQL knows that name (a
replicated agent's record, or events about it), else from the node's own log (an agent
deleted here); its ``after`` cursor is then the cluster log's seq. It runs on a command
thread, not the node's main loop (it reads PostgreSQL; a follower's wait polls every
`POLL_S`).
"""

from __future__ import annotations

import logging
import threading
import time

from .._events import EventFilter, EventPage
from .._types import Event
from ..errors import StoreError
from ..store.postgres.agents import PgStore
from ..store.postgres.events import append_events, events_page, known
from ..store.protocol import Store
from .eventlog import FLUSH_S, PAGE_MAX, EventLog
from .registry import Emit

log = logging.getLogger("beamish.cluster")

POLL_S = 0.25  # a follower of the cluster's log looks for news this often
# The longest one such request waits for news (a follower asks again): each waits on a
# command thread of the node, not parked on its main loop as the node's own log's are.
WAIT_MAX_S = 5.0


class ClusterEvents:
    """This node's side of the cluster's event log (see the module docstring).

    Args:
        store: the cluster's PostgreSQL store.
        kept: how many of the latest events the cluster's log keeps.
        local: the node's own event log (every event goes there too).
    """

    def __init__(self, store: PgStore, kept: int, local: EventLog) -> None:
        self.store = store
        self.kept = kept
        self.local = local
        self._cond = threading.Condition()
        self._pending: list[Event] = []
        self._flush_lock = threading.Lock()
        self._closed = threading.Event()
        self._writer = threading.Thread(target=self._run, name="beamish-cluster-events",
                                        daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._writer.start()

    @property
    def emit(self) -> Emit:
        """The emit of replicated agents' events: into the node's log and the cluster's."""
        return self._emit

    def _emit(self, kind: str, name: str, supervisor: str, reason: str = "") -> None:
        self.local.emit(kind, name, supervisor, reason)
        with self._cond:
            self._pending.append(Event(kind, name, supervisor, reason, time.time()))
            if len(self._pending) > self.kept:  # PostgreSQL has been away for long
                del self._pending[0]
            self._cond.notify()

    def flush(self) -> None:
        """Commit the events queued so far, in one transaction.

        Raises:
            StoreError: PostgreSQL refused or cannot be reached: they stay queued.
        """
        with self._flush_lock:
            with self._cond:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self.store.write(append_events(batch, self.kept))
            except StoreError:
                with self._cond:
                    self._pending = (batch + self._pending)[-self.kept:]
                raise

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._cond:
                while not self._pending and not self._closed.is_set():
                    self._cond.wait()
            try:
                self.flush()
            except StoreError as exc:
                log.warning("cannot write %d events of replicated agents to the cluster's "
                            "log, tried again in %g s: %s", len(self._pending), FLUSH_S, exc)
            except Exception:  # noqa: BLE001 - a bug must not stop the log; it is logged
                log.exception("cannot write events to the cluster's log")
            self._closed.wait(FLUSH_S)

    def close(self) -> None:
        """Stop the writer and commit what is left (before the store closes)."""
        self._closed.set()
        with self._cond:
            self._cond.notify()
        if self._writer.is_alive():
            self._writer.join()
        try:
            self.flush()
        except StoreError as exc:
            log.error("lost %d events of replicated agents: cannot write them to the "
                      "cluster's log: %s", len(self._pending), exc)

    # -- readers ---------------------------------------------------------------------------
    @staticmethod
    def serves(local_store: Store, name: object) -> bool:
        """Whether an ``events`` request for ``name`` is this module's to serve (on a
        command thread): a name this node has no agent or supervisor of."""
        if not isinstance(name, str):
            return False
        return local_store.read(
            lambda t: t.get_agent(name) is None and t.get_sup(name) is None)

    def page(self, after: int, flt: EventFilter, limit: int, wait: float) -> EventPage:
        """The events after ``after`` that pass ``flt`` (which names an agent), from the
        cluster's log if PostgreSQL knows the name, else from the node's own log; with
        ``wait`` > 0, looking again every `POLL_S` for up to ``wait`` seconds (at most
        `WAIT_MAX_S`) until one comes.

        Raises:
            StoreUnavailable: PostgreSQL cannot be reached.
        """
        assert flt.name is not None
        limit = min(limit, PAGE_MAX)
        try:
            self.flush()  # this node's own, so a reader here sees them all
        except StoreError as exc:
            log.warning("cannot commit the latest events of replicated agents before a "
                        "read: %s", exc)
        cluster = self.store.read(known(flt.name))
        if not cluster:
            self.local.flush_before_read()
        deadline = time.monotonic() + min(wait, WAIT_MAX_S)
        while True:
            page = self.store.read(events_page(after, flt, limit)) if cluster \
                else self.local.page(after, flt, limit)
            if page.events or time.monotonic() >= deadline:
                return page
            after = page.after
            time.sleep(POLL_S)
