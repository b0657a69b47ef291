"""Wake-ups between nodes through PostgreSQL's LISTEN/NOTIFY: a hint, never the message.

A sender on any node appends a replicated agent's message in PostgreSQL (that commit is
the acknowledgement), then `PgRinger.ring` notifies channel ``beamish_ring`` with the
cluster and the agent's name; every node's `PgRingListener` hears it and the owner of the
agent's shard rings (or starts) the agent. A lost notification costs latency only: the
owner re-checks its shards' mailboxes on a timer (``node/cluster_node.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from ...errors import StoreUnavailable
from .cluster import LINK_OPTIONS

log = logging.getLogger("beamish.cluster")
CHANNEL = "beamish_ring"
RECONNECT_S = 0.5  # a lost listening connection is opened again after this long


def _payload(cluster: str, name: str) -> str:
    return f"{cluster}\x1f{name}"


class PgRinger:
    """Sends wake-up notifications for cluster ``cluster`` on its own connection (one per
    process, shared by its threads)."""

    def __init__(self, dsn: str, cluster: str) -> None:
        self.dsn = dsn
        self.cluster = cluster
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def ring(self, name: str) -> None:
        """Notify every node that agent ``name`` has mail.

        Raises:
            StoreUnavailable: the server cannot be reached (the message is stored all the
                same: its owner finds it at its next re-check).
        """
        self.ring_many([name])

    def ring_many(self, names: Sequence[str]) -> None:
        """Notify every node that each of agents ``names`` has mail: one statement and one
        commit for them all (a notification each).

        Raises:
            StoreUnavailable: the server cannot be reached (the messages are stored all
                the same: their owners find them at their next re-check).
        """
        if not names:
            return
        with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = psycopg.connect(self.dsn, autocommit=True, **LINK_OPTIONS)
                self._conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                                   (CHANNEL, [_payload(self.cluster, n) for n in names]))
            except psycopg.Error as exc:
                self._close()
                shown = ", ".join(repr(n) for n in names[:3]) + (" ..." if len(names) > 3
                                                                  else "")
                raise StoreUnavailable(f"cannot notify the owner of agent(s) {shown}: "
                                       f"{exc}") from exc

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close its connection."""
        with self._lock:
            self._close()


class PgRingListener:
    """A thread that listens on ``beamish_ring`` and calls ``on_ring(name)`` for each
    notification of cluster ``cluster`` (and ``on_ring(None)`` after it (re)connected,
    since notifications sent meanwhile were lost: the owner should re-check)."""

    def __init__(self, dsn: str, cluster: str,
                 on_ring: Callable[[str | None], None]) -> None:
        self.dsn = dsn
        self.cluster = cluster
        self.on_ring = on_ring
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beamish-pg-listen",
                                        daemon=True)

    def start(self) -> None:
        """Start listening."""
        self._thread.start()

    def _run(self) -> None:
        prefix = self.cluster + "\x1f"
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, **LINK_OPTIONS) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.on_ring(None)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            if note.payload.startswith(prefix):
                                self._deliver(note.payload[len(prefix):])
            except psycopg.Error as exc:
                log.warning("listening for wake-ups failed (re-checks cover it; "
                            "reconnecting): %s", exc)
                self._stop.wait(RECONNECT_S)

    def _deliver(self, payload: str) -> None:
        # A handler's bug must not end the listener (the re-checks would be the only
        # wake-ups left, silently): logged, and the next notification is served.
        try:
            self.on_ring(payload)
        except Exception:
            log.exception("a wake-up (%r) could not be handled", payload)

    def stop(self) -> None:
        """Stop listening (waits up to a second for the thread)."""
        self._stop.set()
        self._thread.join(timeout=2.0)
