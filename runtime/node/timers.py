"""The node's timer service: fires durable timers (``send_after``) when they come due.

    agent handler ── send_after ──▶ committed with its transition (store ``timers``)
                                          │   poke (a datagram) if due soon
                                          ▼
    TimerService thread: earliest due? ──▶ txn: remove the timer + append an info message
                         sleep until then,        to the agent's mailbox   ──▶ ring it
                         a poke, or a recheck

The node fires timers, not the agent: the agent may be dead, restarting or asleep when
its timer comes due, and the mailbox append wakes (or waits for) it like any message.
Removal and append are one transaction, so each timer is delivered exactly once; a node
killed before it commits fires the timer at its next start (a late timer fires at once).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable

from beamish.mailbox import pack

from .._osproc import bind_datagram
from .._paths import NodePaths
from .._types import AgentStatus
from ..agent.context import TIMER_RECHECK_S
from ..errors import StoreError
from ..messaging.messenger import INLINE_RING_BYTES, hint_node
from ..messaging.wire import ring_frame
from ..store.protocol import Store, Txn

log = logging.getLogger("beamish.node.timers")
FIRE_BATCH = 256  # timers fired per transaction (more due: another right after)


def wait_seconds(next_due_ns: int | None, now_ns: int, recheck_s: float) -> float:
    """How long the service sleeps before it looks again: until the earliest timer is
    due, but never longer than ``recheck_s`` (a timer committed without a poke is found
    then); 0 when one is due already (pure)."""
    if next_due_ns is None:
        return recheck_s
    return max(0.0, min(recheck_s, (next_due_ns - now_ns) / 1e9))


class TimerService:
    """Fires the node's durable timers from a thread of its own.

    Args:
        store: the node's store.
        paths: the node's paths (the poke socket is ``paths.timers_poke``).
        ring: ``ring(inbox_path, frame)``: sends a doorbell to an agent (any thread).
        recheck_s: the longest it sleeps without looking at the earliest timer.
    """

    def __init__(self, store: Store, paths: NodePaths, ring: Callable[[str, bytes], None],
                 recheck_s: float = TIMER_RECHECK_S) -> None:
        self.store = store
        self.paths = paths
        self.ring = ring
        self.recheck_s = recheck_s
        self.fired = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        """Bind the poke socket and start firing (what is overdue fires at once)."""
        sock = bind_datagram(self.paths.timers_poke)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="beamish-timers", daemon=True)
        self._thread.start()

    def fire_due(self) -> float:
        """Fire every timer due now (append its message, ring its agent); return how long
        to sleep before the next one is due (capped at ``recheck_s``)."""
        while True:
            fired, dropped, woke = self.store.write(_fire_txn(time.time_ns()))
            if woke:
                hint_node(self.paths)  # a timer for a sleeping agent: the node wakes it
            if dropped:
                log.warning("removed %d entries of the store's timers that were not timers "
                            "(written by a process other than beamish)", dropped)
            self.fired += len(fired)
            for agent_id, seq, packed in fired:
                if agent_id in woke:
                    continue  # asleep: no process to ring
                # Carried in the ring when small, as a cast's is (the agent reads it otherwise).
                inline = packed if len(packed) <= INLINE_RING_BYTES else b""
                self.ring(self.paths.agent_inbox(agent_id), ring_frame(seq, inline))
            if len(fired) + dropped < FIRE_BATCH:
                break
        next_due = self.store.read(lambda t: t.next_timer_due())
        return wait_seconds(next_due, time.time_ns(), self.recheck_s)

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                wait = self.fire_due()
            except StoreError as exc:  # a full disk: tried again after the recheck
                log.warning("cannot fire due timers: %s", exc)
                wait = self.recheck_s
            except Exception:  # noqa: BLE001 - a bug must not stop every timer; it is logged
                log.exception("firing due timers failed; trying again in %g s", self.recheck_s)
                wait = self.recheck_s
            if wait > 0:
                select.select([self._sock], [], [], wait)
            self._drain()

    def _drain(self) -> None:
        assert self._sock is not None
        while True:
            try:
                self._sock.recv(64)
            except BlockingIOError:
                return

    def poke(self) -> None:
        """Make the service look at once (any thread)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            try:
                sock.sendto(b"t", self.paths.timers_poke)
            except BlockingIOError:
                pass  # its queue is full: it will look anyway

    def close(self) -> None:
        """Stop firing and release the socket (timers not due yet stay in the store)."""
        self._stop.set()
        if self._thread is not None:
            self.poke()
            self._thread.join(timeout=5.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self.paths.timers_poke)
            except FileNotFoundError:
                pass


_Fired = tuple[list[tuple[int, int, bytes]], int, set[int]]


def _fire_txn(now_ns: int) -> Callable[[Txn], _Fired]:
    """The transaction that fires up to `FIRE_BATCH` timers due at ``now_ns``: each timer
    removed and its message appended, together (a sleeping agent's marked to be woken in
    the same transaction); returns ``(agent_id, seq, packed)`` of each appended message
    (to ring), how many entries that were not timers it removed, and the ids of the
    sleeping agents it marked."""
    def txn(t: Txn) -> _Fired:
        fired = []
        woke: set[int] = set()
        timers, dropped = t.take_due_timers(now_ns, FIRE_BATCH)
        for timer in timers:
            packed = pack(timer.message(now_ns / 1e9).to_wire())
            fired.append((timer.agent_id, t.append_packed(timer.agent_id, packed), packed))
            name = timer.name or _name_of(t, timer.agent_id)
            route = t.get_route(name) if name else None
            if route is not None and route[0] == timer.agent_id \
                    and route[1] == AgentStatus.SLEEPING:
                t.put_wake(timer.agent_id, name)
                woke.add(timer.agent_id)
        return fired, dropped, woke
    return txn


def _name_of(t: Txn, agent_id: int) -> str:
    """The name of agent ``agent_id``, for a timer set by an older beamish (which did not
    store it): a walk over the agents, paid only for such timers."""
    return next((r.name for r in t.agents() if r.id == agent_id), "")
