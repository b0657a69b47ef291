"""The node's event log (``beamish events``), kept in the store: it survives node restarts.

Events are emitted from many threads (the supervisor shells, the spawner's exit reader,
commands, the sessions service) in the middle of what they report, most of it on hot
paths (a spawn, a restart). Emitting only numbers the event and queues it; one writer
thread commits what is queued in one transaction, at once when the node is quiet and at
most once every ``flush_s`` under a burst: no path that emits gains a commit of its own.
A reader (the ``events`` command) commits what is queued before it reads, and readers
see only committed events: an event anyone was shown is in the store. What a ``kill -9``
of the node can lose is what was queued and not yet committed: the events of at most the
last ``flush_s`` (0.05 s) before it, which no reader had seen.

The store keeps the latest ``kept`` events (``[node] events_kept``): each commit drops the
oldest beyond that.
"""

from __future__ import annotations

import logging
import threading
import time

from .._events import EventFilter, EventPage
from .._types import Event
from ..errors import StoreError
from ..store.protocol import Store

log = logging.getLogger("beamish.node")

EVENTS_KEPT = 100_000
"""The default of ``[node] events_kept``: about 9 MB of store (an event takes ~90 bytes
with LMDB's overhead, measured), at no cost in memory (the node holds none of it); ten
times what the node kept in memory before, so a burst (a crash loop, 100,000 lazy
sessions registered) pushes out less of the history before it, and a filtered read of
a full log still takes well under a second."""
FLUSH_S = 0.05
"""The writer commits at most this often (seconds): the most a kill -9 can lose."""
PAGE_MAX = 1000
"""The most events one ``events`` answer carries (a client asks for the next page)."""


class EventLog:
    """The node's events, numbered from 1 on (on from the stored log's latest after a
    restart); thread-safe. Start its writer with `start`; `close` commits what is left.

    Args:
        store: the node's store (its events db holds the log).
        kept: how many of the latest events the store keeps.
        flush_s: the writer commits at most this often.
    """

    def __init__(self, store: Store, kept: int, flush_s: float = FLUSH_S) -> None:
        self._store = store
        self._kept = kept
        self._flush_s = flush_s
        self._cond = threading.Condition()
        self._pending: list[Event] = []  # emitted, not committed; under _cond
        self._flush_lock = threading.Lock()  # one commit at a time, in seq order
        self._closed = threading.Event()
        self._seq = self._committed = store.read(lambda t: t.last_event_seq())
        self._writer = threading.Thread(target=self._run, name="beamish-events", daemon=True)

    @property
    def seq(self) -> int:
        """The number of the latest event emitted (0 before the first)."""
        return self._seq

    @property
    def committed(self) -> int:
        """The number of the latest event committed: readers see up to there."""
        return self._committed

    def start(self) -> None:
        """Start the writer thread."""
        self._writer.start()

    def emit(self, kind: str, name: str, supervisor: str, reason: str = "") -> None:
        """Record an event (any thread; no store access): it is logged, and committed by
        the writer soon."""
        with self._cond:
            self._seq += 1
            self._pending.append(Event(kind, name, supervisor, reason, time.time(), self._seq))
            if len(self._pending) > self._kept:  # the store cannot take them (full disk)
                del self._pending[0]
            self._cond.notify()
        log.info("event %s %s (%s) %s", kind, name, supervisor, reason)

    def flush(self) -> None:
        """Commit the events emitted so far, in one transaction (any thread).

        Raises:
            StoreError: the store refused the write (its disk is full): the events stay
                queued for the next try (the latest ``kept`` of them).
        """
        with self._flush_lock:
            with self._cond:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self._store.write(lambda t: t.put_events(batch, self._kept))
            except StoreError:
                with self._cond:
                    self._pending = (batch + self._pending)[-self._kept:]
                raise
            self._committed = batch[-1].seq

    def flush_before_read(self) -> None:
        """`flush`, for a reader about to read: a store that refuses the write is logged,
        and the reader reads what is committed."""
        try:
            self.flush()
        except StoreError as exc:
            log.warning("cannot commit the latest %d events before a read: %s",
                        len(self._pending), exc)

    def page(self, after: int, flt: EventFilter, limit: int = PAGE_MAX) -> EventPage:
        """Return the committed events after seq ``after`` that pass ``flt``, at most
        ``limit`` (and `PAGE_MAX`) of them, oldest first (one read transaction)."""
        return self._store.read(lambda t: t.events_page(after, flt, min(limit, PAGE_MAX)))

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._cond:
                while not self._pending and not self._closed.is_set():
                    self._cond.wait()
            try:
                self.flush()
            except StoreError as exc:
                log.warning("cannot write %d events to the store, tried again in %g s: %s",
                            len(self._pending), self._flush_s, exc)
            except Exception:  # noqa: BLE001 - a bug must not stop the log; it is logged
                log.exception("cannot write events to the store")
            self._closed.wait(self._flush_s)  # what comes meanwhile goes in the next batch

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
            log.error("lost the node's last %d events: cannot write them to the store: %s",
                      len(self._pending), exc)
