"""Monitors and links across nodes: the signals nodes send each other through PostgreSQL
(table ``beamish_link_signals``), woken by ``NOTIFY beamish_links``.

A signal is a row addressed to one incarnation of one node; the receiver takes its rows
with one ``DELETE ... RETURNING`` (in id order), so each is handled once by one thread of
one node, whatever the notifications and re-checks do. Three kinds (`SignalOp`):

    monitor / link   node F's agent ``name`` monitors (links to) the receiver's agent
                     ``target``; the row's id is the ``ref`` both nodes name it by
    attached         the answer to a request: the receiver's agent runs, ``ref`` holds
    exit             the other end of ``ref`` exited with ``reason`` (``abnormal``); also
                     the answer to a request whose target does not run (``noproc``)

``node/cluster_links.py`` is the node's side; the rows are in flight only between a send
and the receiver's next take, so the table stays small.

A monitor of a *replicated* agent is kept by the agent's name (``beamish_link_watches``),
not by a node, since its owner may change: whichever node owns it when its process exits
by itself turns the rows into exit signals, in one transaction (`PgLinks.fire_watches`).
A monitor *held by* a replicated agent is kept by its name too (``node`` is
`REPLICATED_WATCHER`): its Down is appended to its mailbox in that same transaction, so it
arrives once wherever the watcher runs then, and its rows go when it exits itself. The
rows of node incarnations that are gone are swept with the cluster's other leftovers
(`sweep.py`).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from ..._values import AgentStatus
from .cluster import LINK_OPTIONS, _as_store_error, _connect
from .ring import CHANNEL as RING_CHANNEL
from .ring import _payload as _ring_payload
from .txn import PgTxn

log = logging.getLogger("beamish.cluster")
CHANNEL = "beamish_links"
RECONNECT_S = 0.5  # a lost listening connection is opened again after this long
_THEN = "the node tries again at its next re-check"
# The ``node`` of a monitor (beamish_link_watches) whose watcher is itself a replicated
# agent, kept by its name alone (no node holds it: it moves): its Down goes to its mailbox.
REPLICATED_WATCHER = ""
SLEEPING = str(AgentStatus.SLEEPING)


class SignalOp(enum.StrEnum):
    """What a signal between nodes says."""

    MONITOR = "monitor"
    LINK = "link"
    ATTACHED = "attached"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class LinkSignal:
    """One signal from node ``from_node`` to node ``to_node`` (see the module docstring).

    Attributes:
        op: monitor, link, attached or exit.
        ref: the monitor's or link's number (the id of its request's row; 0 in a request
            not sent yet).
        to_node: the receiving node.
        to_incarnation: the receiver's incarnation the sender knew (a signal for an
            earlier incarnation is dropped: what it was about died with that one).
        from_node: the sending node.
        from_incarnation: the sender's incarnation.
        name: the sender's agent (the watcher in a request, the one that exited in an exit).
        target: the receiver's agent, in a request ("" in an exit).
        reason: the exit's reason ("" in a request).
        abnormal: whether the exit was abnormal.
    """

    op: SignalOp
    ref: int
    to_node: str
    to_incarnation: int
    from_node: str
    from_incarnation: int
    name: str
    target: str = ""
    reason: str = ""
    abnormal: bool = False


_COLUMNS = ("op, ref, to_node, to_incarnation, from_node, from_incarnation, name, target, "
            "reason, abnormal")


def _payload(cluster: str, node: str) -> str:
    return f"{cluster}\x1f{node}"


class PgLinks:
    """A node's signals table on its own connection (opened at first use and again after
    a loss; shared by the node's threads under a lock).

    Args:
        dsn: the cluster's PostgreSQL.
        cluster: the cluster's name.
    """

    def __init__(self, dsn: str, cluster: str) -> None:
        self.dsn = dsn
        self.cluster = cluster
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _run(self, what: str, body: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = _connect(self.dsn, _THEN)
            conn = self._conn
            try:
                with _as_store_error(what, _THEN, conn), conn.transaction():
                    return body(conn)
            finally:
                if conn.closed or conn.broken:
                    self._conn = None

    def alive_incarnation(self, node: str) -> int | None:
        """Node ``node``'s incarnation if its lease is alive by the database's clock now,
        else None.

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        row = self._run(f"reading node {node!r}'s lease", lambda c: c.execute(
            "SELECT incarnation FROM beamish_members WHERE cluster = %s AND node = %s "
            "AND lease_expires > clock_timestamp()", (self.cluster, node)).fetchone())
        return None if row is None else int(row[0])

    def request(self, signal: LinkSignal) -> int:
        """Send a monitor or link request; return its ref (its row's id).

        Raises:
            StoreUnavailable: the server cannot be reached (nothing was sent).
        """
        def send(c: psycopg.Connection[Any]) -> int:
            row = c.execute(
                f"INSERT INTO beamish_link_signals (cluster, {_COLUMNS}) VALUES "
                "(%s, %s, 0, %s, %s, %s, %s, %s, %s, '', false) RETURNING id",
                (self.cluster, str(signal.op), signal.to_node, signal.to_incarnation,
                 signal.from_node, signal.from_incarnation, signal.name,
                 signal.target)).fetchone()
            assert row is not None
            c.execute("SELECT pg_notify(%s, %s)", (CHANNEL,
                                                   _payload(self.cluster, signal.to_node)))
            return int(row[0])
        return int(self._run(f"asking node {signal.to_node!r} to watch agent "
                             f"{signal.target!r}", send))

    def send(self, signals: Iterable[LinkSignal]) -> None:
        """Send ``signals`` in one transaction, and wake their nodes.

        Raises:
            StoreUnavailable: the server cannot be reached (nothing was sent).
        """
        signals = list(signals)
        if signals:
            self._run("telling other nodes of an exit", lambda c: self._send(c, signals))

    def _send(self, c: psycopg.Connection[Any], signals: list[LinkSignal]) -> None:
        """Insert ``signals`` and notify their nodes, in ``c``'s transaction."""
        rows = [(self.cluster, str(s.op), s.ref, s.to_node, s.to_incarnation, s.from_node,
                 s.from_incarnation, s.name, s.target, s.reason, s.abnormal)
                for s in signals]
        if not rows:
            return
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO beamish_link_signals (cluster, {_COLUMNS}) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
        for node in sorted({r[3] for r in rows}):
            c.execute("SELECT pg_notify(%s, %s)", (CHANNEL, _payload(self.cluster, node)))

    def take(self, node: str, incarnation: int) -> list[LinkSignal]:
        """Remove and return the signals to ``node``'s ``incarnation``, oldest first
        (those to its earlier incarnations are removed and dropped; those to a later one,
        which a sender may address while this node rejoins, are left for it).

        Raises:
            StoreUnavailable: the server cannot be reached (nothing was taken).
        """
        def take(c: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return c.execute(
                f"DELETE FROM beamish_link_signals WHERE cluster = %s AND to_node = %s "
                f"AND to_incarnation <= %s RETURNING id, {_COLUMNS}",
                (self.cluster, node, incarnation)).fetchall()
        rows = sorted(self._run("taking this node's link signals", take))
        return [LinkSignal(SignalOp(r[1]), int(r[2]) or int(r[0]), r[3], int(r[4]), r[5],
                           int(r[6]), r[7], r[8], r[9], bool(r[10]))
                for r in rows if int(r[4]) == incarnation]

    def watch(self, target: str, statuses: list[str], node: str, incarnation: int,
              name: str) -> int | None:
        """Node ``node``'s agent ``name`` monitors replicated agent ``target``: return the
        monitor's ref, or None if no replicated agent of that name has one of
        ``statuses`` (it cannot run).

        Raises:
            StoreUnavailable: the server cannot be reached (nothing was recorded).
        """
        row = self._run(f"monitoring replicated agent {target!r}", lambda c: c.execute(
            "INSERT INTO beamish_link_watches (cluster, target, node, incarnation, name) "
            "SELECT %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM beamish_agents WHERE "
            "cluster = %s AND name = %s AND status = ANY(%s)) RETURNING ref",
            (self.cluster, target, node, incarnation, name, self.cluster, target,
             statuses)).fetchone())
        return None if row is None else int(row[0])

    def unwatch(self, refs: Iterable[int]) -> None:
        """Forget the monitors of replicated agents ``refs`` (their watchers exited).

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        refs = sorted(refs)
        if refs:
            self._run("forgetting monitors of replicated agents", lambda c: c.execute(
                "DELETE FROM beamish_link_watches WHERE cluster = %s AND ref = ANY(%s)",
                (self.cluster, refs)))

    def fire_watches(self, target: str, reason: str, abnormal: bool, node: str,
                     incarnation: int, shard: int, epoch: int, down: bytes = b"",
                     accepts: Sequence[str] = ()) -> int:
        """Replicated agent ``target`` exited on ``node``, which owns its ``shard`` at
        ``epoch``: in one transaction, if the shard row still says so (else the process
        ended because the shard moved: not an exit), end the monitors ``target`` held as
        a watcher (they belong to its process) and fire those of ``target``: an exit signal
        to each watcher's node, and for each replicated watcher (`REPLICATED_WATCHER`) the
        packed message record ``down`` appended to its mailbox if its status is one of
        ``accepts`` (a sleeping one marked to be woken), and its owner rung. Return how
        many monitors fired.

        Raises:
            StoreUnavailable: the server cannot be reached (nothing changed).
        """
        def fire(c: psycopg.Connection[Any]) -> int:
            if c.execute("SELECT 1 FROM beamish_shards WHERE cluster = %s AND shard = %s AND "
                         "owner = %s AND epoch = %s FOR SHARE",
                         (self.cluster, shard, node, epoch)).fetchone() is None:
                return 0
            c.execute("DELETE FROM beamish_link_watches WHERE cluster = %s AND node = %s "
                      "AND name = %s", (self.cluster, REPLICATED_WATCHER, target))
            rows = c.execute(
                "DELETE FROM beamish_link_watches WHERE cluster = %s AND target = %s "
                "RETURNING ref, node, incarnation, name", (self.cluster, target)).fetchall()
            self._send(c, [LinkSignal(SignalOp.EXIT, int(r[0]), r[1], int(r[2]), node,
                                      incarnation, target, "", reason, abnormal)
                           for r in rows if r[1] != REPLICATED_WATCHER])
            for r in rows:
                if r[1] == REPLICATED_WATCHER:
                    _deliver(c, self.cluster, r[3], down, accepts)
            return len(rows)
        return int(self._run(f"telling the watchers of replicated agent {target!r}", fire))

    def deliver(self, name: str, message: bytes, accepts: Sequence[str]) -> bool:
        """Append the packed message record ``message`` to replicated agent ``name``'s
        mailbox if its status is one of ``accepts`` (a sleeping one marked to be woken),
        and ring its owner; return whether it was appended.

        Raises:
            StoreUnavailable: the server cannot be reached (nothing was appended).
        """
        return bool(self._run(f"delivering to replicated agent {name!r}",
                              lambda c: _deliver(c, self.cluster, name, message, accepts)))

    def dead(self, peers: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of ``peers`` (node, incarnation) are gone: no row, another incarnation,
        or a lease expired by the database's clock.

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        peers = set(peers)
        if not peers:
            return set()
        nodes = sorted({n for n, _ in peers})
        rows = self._run("reading the leases of linked nodes", lambda c: c.execute(
            "SELECT node, incarnation FROM beamish_members WHERE cluster = %s AND "
            "node = ANY(%s) AND lease_expires > clock_timestamp()",
            (self.cluster, nodes)).fetchall())
        alive = {(r[0], int(r[1])) for r in rows}
        return peers - alive

    def close(self) -> None:
        """Close its connection."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _deliver(c: psycopg.Connection[Any], cluster: str, name: str, message: bytes,
             accepts: Sequence[str]) -> bool:
    """Append ``message`` to replicated agent ``name``'s mailbox in ``c``'s transaction if
    its status is one of ``accepts`` (a sleeping one marked to be woken: as
    ``messaging.append_routed``), and notify its owner on commit."""
    t = PgTxn(c.cursor(), cluster)
    route = t.get_route(name)
    if route is None or route[1] not in accepts:
        return False
    if route[1] == SLEEPING:
        t.put_wake(route[0], name)
    t.append_packed(route[0], message)
    c.execute("SELECT pg_notify(%s, %s)", (RING_CHANNEL, _ring_payload(cluster, name)))
    return True


class PgLinkListener:
    """A thread that listens on ``beamish_links`` and calls ``on_signal()`` when a signal
    for node ``node`` of cluster ``cluster`` was sent, and after each (re)connection
    (notifications sent meanwhile were lost: the node should take its signals)."""

    def __init__(self, dsn: str, cluster: str, node: str,
                 on_signal: Callable[[], None]) -> None:
        self.dsn = dsn
        self.payload = _payload(cluster, node)
        self.on_signal = on_signal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beamish-pg-links",
                                        daemon=True)

    def start(self) -> None:
        """Start listening."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, **LINK_OPTIONS) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.on_signal()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            if note.payload == self.payload:
                                self.on_signal()
            except psycopg.Error as exc:
                log.warning("listening for link signals failed (re-checks cover it; "
                            "reconnecting): %s", exc)
                self._stop.wait(RECONNECT_S)

    def stop(self) -> None:
        """Stop listening (waits up to two seconds for the thread)."""
        self._stop.set()
        self._thread.join(timeout=2.0)
