"""Whether another node's front door can be reached over the link a forward waits on:
a node that still renews its lease but is cut from this one (a cut between two nodes
only) is found out within seconds, not when the forward's wait runs out.

* Each forwarding socket sends ZMTP heartbeats (``ZMQ_HEARTBEAT_IVL``): the peer's
  libzmq answers them in its I/O thread, busy or not, and a connection that carries no
  traffic for `HEARTBEAT_TIMEOUT_MS` is closed (the cut is found). A socket monitor
  reports each CURVE handshake that succeeded and each disconnection.
* `link_verdict` (pure) judges a waiting request from that: a link that is up, or was
  lost for less than `DOWN_GRACE_S`, waits; a socket that never connected within
  `CONNECT_WAIT_S`, or a link lost for longer, is *cut*. ``sent`` tells whether the link
  was up at any time since the request was queued: a CURVE socket writes nothing before
  its handshake, so a request that only ever saw a link down never left this node (its
  socket is closed with linger 0: never delivered late).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from beamish.mailbox import CurveClient, Requester

HEARTBEAT_IVL_MS = 500  # a PING this often on an idle link
HEARTBEAT_TIMEOUT_MS = 2500  # no traffic for this long after a PING: the link is closed
CONNECT_WAIT_S = 3.0  # a new socket not connected by then: the peer is unreachable
DOWN_GRACE_S = 0.5  # a lost link not back by then: the peer is unreachable

_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class Verdict(Enum):
    """What a waiting forward makes of its link (`link_verdict`)."""

    WAIT = "wait"  # up, or not yet judged: keep waiting
    CUT_UNSENT = "cut_unsent"  # unreachable; the request never left this node
    CUT_SENT = "cut_sent"  # unreachable; the request may have reached the peer


@dataclass(frozen=True, slots=True)
class LinkState:
    """A forwarding socket's link as its monitor reported it (monotonic times).

    Attributes:
        up: whether it is connected (handshake done) now.
        ever_up: whether it ever connected.
        opened: when the socket was created.
        changed: when ``up`` last changed (``opened`` if it never did).
        up_since_send: whether it was up at any time since the request was queued.
    """

    up: bool
    ever_up: bool
    opened: float
    changed: float
    up_since_send: bool


def link_verdict(state: LinkState, now: float) -> Verdict:
    """Judge a forward waiting on a link in ``state`` at monotonic time ``now`` (pure)."""
    if state.up:
        return Verdict.WAIT
    if not state.ever_up:
        if now - state.opened < CONNECT_WAIT_S:
            return Verdict.WAIT
    elif now - state.changed < DOWN_GRACE_S:
        return Verdict.WAIT
    return Verdict.CUT_SENT if state.up_since_send else Verdict.CUT_UNSENT


class WatchedRequester(Requester):
    """A `Requester` to another node's front door whose link is watched: heartbeats on
    it, and its connection's state from a socket monitor (see the module docstring).
    Not thread-safe, as a `Requester`."""

    def __init__(self, ctx: zmq.Context[Any], address: str, limit: int,
                 curve: CurveClient) -> None:
        self._mon: zmq.Socket[Any] | None = None
        self._up = False
        self._ever_up = False
        self._opened = self._changed = time.monotonic()
        self._up_since_send = False
        super().__init__(ctx, address, limit, curve=curve, prepare=self._prepare)

    def _prepare(self, sock: zmq.Socket[Any]) -> None:
        # before the connect: heartbeats apply to the connections made after they are
        # set, and the monitor must see the first handshake
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        self._mon = sock.get_monitor_socket(_EVENTS)

    def _drain(self) -> None:
        """Take the monitor's events so far."""
        assert self._mon is not None
        while True:
            try:
                frames = self._mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = parse_monitor_message(frames)["event"]
            up = event == zmq.EVENT_HANDSHAKE_SUCCEEDED
            if up != self._up:
                self._up, self._changed = up, time.monotonic()
            if up:
                self._ever_up = self._up_since_send = True

    def queued(self) -> None:
        """Note that a request is about to be queued on this socket."""
        self._drain()
        self._up_since_send = self._up

    def state(self) -> LinkState:
        """The link's state now."""
        self._drain()
        return LinkState(self._up, self._ever_up, self._opened, self._changed,
                         self._up_since_send)

    def verdict(self) -> Verdict:
        """`link_verdict` of the link now."""
        return link_verdict(self.state(), time.monotonic())

    def close(self) -> None:
        """Close the socket and its monitor."""
        if self._mon is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:  # the context is being destroyed: nothing to stop
                pass
            self._mon.close(linger=0)
            self._mon = None
        super().close()
