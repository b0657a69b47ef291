"""One hop to a node-pinned agent's node: a request for an agent whose LMDB is on another
node of the cluster is sent, unchanged, to that node's TCP front door (CURVE), and its
answer comes back as that node gave it.

    client ─▶ node A (the route says n2) ══CURVE/TCP══▶ n2's front door ─▶ its agent

* Keys, both ways: A connects as a CURVE client with A's own pair (``[cluster] keys``),
  trusting the key n2 published in the cluster's PostgreSQL only if it is also among
  A's authorized keys; n2 admits A's key only if it is among its own. In a cluster every
  node's ``authorized/`` holds the other nodes' public keys (`beamish keys authorize`).
* A request is sent only while the owner's lease is alive (by the database's clock);
  while it waits for the answer, the lease is checked again every half second
  (`LEASE_CHECK_S`): once it has run out, the wait ends with `NodeDown` (``sent=True``: the request may have been
  carried out), never a hang. A socket that gave up is closed at once (linger 0): a
  queued request is dropped, never delivered late.
* The link itself is watched (``reach.py``: ZMTP heartbeats and a socket monitor): a
  node whose lease lives but that cannot be reached from this one (a cut between the
  two only) ends the wait within about 3 s with `NodeDown`, ``sent=False`` when the
  request never left this node.
* Casts are acknowledged by the owner's front door once its LMDB committed them: the
  answer relayed here is that acknowledgement (no ack without that commit).

`forward_step` is the decision (pure); `Forwarder` the sockets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import zmq

from beamish.mailbox import CurveClient, RequestTimeout

from .._types import WireMap
from ..errors import ConfigError, NodeDown, StoreError
from ..messaging.spawnargs import SpawnRequest
from .frontdoor import REQUEST_ROOM
from .keys import KeyPair
from .reach import Verdict, WatchedRequester

log = logging.getLogger("beamish.cluster")
ANSWER_MARGIN_S = 2.0  # how much longer than a call's timeout a forward waits
CAST_WAIT_S = 10.0  # how long a forwarded non-call request waits while the owner lives
# Requests that wait on an agent's own shutdown or start, as long as the client's defaults
# for them (client/api.py): a forward must not call a live, slow owner down.
CONTROL_WAIT_S = {"stop": 120.0, "delete": 120.0, "sleep": 120.0, "restart": 60.0}
LEASE_CHECK_S = 0.5  # a lease read is reused for this long by the waiting threads


class Step(Enum):
    """What to do with a request for a pinned agent (`forward_step`)."""

    LOCAL = "local"  # this node holds it (or nobody does): serve it here
    DOWN = "down"  # its node's lease ran out, or it left: NodeDown
    NO_ADDRESS = "no_address"  # its node advertises no address: ConfigError
    UNTRUSTED = "untrusted"  # its node's key is not authorized here: ConfigError
    FORWARD = "forward"  # one hop to its node's front door


@dataclass(frozen=True, slots=True)
class Owner:
    """A pinned agent's node as the route table reported it (see ``store/postgres/
    routes.Route``).

    Attributes:
        node: its name.
        address: its advertised address ("" if none).
        public_key: its published key ("" if none).
        alive: whether its lease was alive at the lookup.
        since: when its lease expired (Unix time; 0.0 if alive or unknown).
    """

    node: str
    address: str
    public_key: str
    alive: bool
    since: float = 0.0


def forward_step(owner: Owner | None, me: str, authorized: frozenset[str]) -> Step:
    """Decide what happens to a request for an agent routed to ``owner`` (None: no pinned
    route) on node ``me``, whose authorized keys are ``authorized`` (pure)."""
    if owner is None or owner.node == me:
        return Step.LOCAL
    if not owner.alive:
        return Step.DOWN
    if not owner.address:
        return Step.NO_ADDRESS
    if not owner.public_key or owner.public_key not in authorized:
        return Step.UNTRUSTED
    return Step.FORWARD


def pinned_spawn(request: SpawnRequest, node: str | None) -> SpawnRequest | WireMap:
    """A spawn's control request with its ``node=`` pin (pure): the request as it is
    without one, else its wire form with ``"node"`` (the node that receives it forwards
    it there, or serves it when it is that node).

    Raises:
        ConfigError: ``node`` is not a string.
    """
    if node is None:
        return request
    if not isinstance(node, str) or not node:
        raise ConfigError(f"node={node!r}: give a node's name in the cluster (see "
                          "`beamish nodes`)")
    return {**request.to_wire(), "node": node}


def answer_wait(op: str, req: WireMap) -> float:
    """How long a forwarded ``op`` waits for its answer while the owner's lease lives
    (pure): a call its own timeout plus `ANSWER_MARGIN_S` (the owner answers CallTimeout
    at the timeout), a spawn its timeout plus the margin, a stop, delete, sleep or
    restart the client's own default for it (`CONTROL_WAIT_S`) plus the margin, anything
    else `CAST_WAIT_S`."""
    if op in ("call", "spawn"):
        timeout = req.get("timeout", 5.0 if op == "call" else 30.0)
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            return float(timeout) + ANSWER_MARGIN_S
    if op in CONTROL_WAIT_S:
        return CONTROL_WAIT_S[op] + ANSWER_MARGIN_S
    return CAST_WAIT_S


class Forwarder:
    """Sends requests to other nodes' front doors (see the module docstring). Safe from
    several threads: each request takes an idle socket to its node, or opens one.

    Args:
        me: this node's name.
        pair: this node's keys (it connects with them).
        authorized: returns the keys this node admits now (the peers it trusts).
        lease_left: seconds left on a node's lease by the database's clock (None: it is
            not a member).
        limit: the largest request, in bytes.
    """

    def __init__(self, me: str, pair: KeyPair, authorized: Callable[[], frozenset[str]],
                 lease_left: Callable[[str], float | None], limit: int) -> None:
        self.me = me
        self.pair = pair
        self.authorized = authorized
        self.lease_left = lease_left
        self.limit = limit
        self.ctx: zmq.Context[Any] = zmq.Context(io_threads=1)
        self._idle: dict[tuple[str, str], list[WatchedRequester]] = {}
        self._leases: dict[str, tuple[float, bool]] = {}  # node -> (read at, alive)
        self._lock = threading.Lock()
        self._closed = False

    def _alive(self, node: str) -> bool:
        now = time.monotonic()
        with self._lock:
            seen = self._leases.get(node)
        if seen is not None and now - seen[0] < LEASE_CHECK_S:
            return seen[1]
        try:
            left = self.lease_left(node)
        except StoreError as exc:  # unknown: keep waiting; the wait itself is bounded
            log.warning("cannot read node %r's lease while a request to it waits (%s)",
                        node, exc)
            return True
        alive = left is not None and left > 0
        with self._lock:
            self._leases[node] = (now, alive)
        return alive

    def send(self, owner: Owner, agent: str, req: WireMap) -> WireMap:
        """Send control request ``req`` (its ``op`` included) for ``agent`` to ``owner``'s
        front door and return its answer's wire form (``{"ok", "value"}`` or ``{"ok":
        False, "error"}``).

        Raises:
            NodeDown: the owner's lease is not alive, or ran out while this waited.
            ConfigError: the owner advertises no address, or its key is not authorized.
        """
        step = forward_step(owner, self.me, self.authorized())
        if step is Step.DOWN:
            raise NodeDown(owner.node, "its lease has run out", agent, owner.since)
        if step is Step.NO_ADDRESS:
            raise ConfigError(f"agent {agent!r} lives on node {owner.node!r}, which "
                              "advertises no address: set `[cluster] listen` (and "
                              "`advertise`) on that node")
        if step is Step.UNTRUSTED:
            raise ConfigError(
                f"agent {agent!r} lives on node {owner.node!r}, whose key "
                f"{owner.public_key or '(none published)'} is not authorized on node "
                f"{self.me!r}: run `beamish keys authorize THIS_NODE_KEYS_DIR "
                f"{owner.public_key or 'ITS_PUBLIC_KEY'}` here, and authorize this node's "
                "key there")
        assert step is Step.FORWARD
        key = (owner.address, owner.public_key)
        sock = self._take(key)
        wait = answer_wait(str(req.get("op")), req)
        sock.queued()
        try:
            answer = sock.request(req, wait, alive=lambda: (
                sock.verdict() is Verdict.WAIT and self._alive(owner.node)))
        except RequestTimeout:
            verdict = sock.verdict()
            sock.close()  # drops what it still queues: never delivered late
            if verdict is not Verdict.WAIT:  # a cut between this node and its node
                raise NodeDown(owner.node, f"it cannot be reached from node {self.me!r} "
                               "(its lease is alive, but its front door answers no "
                               "heartbeat: a network cut between the two?)", agent,
                               sent=verdict is Verdict.CUT_SENT) from None
            if not self._alive(owner.node):
                raise NodeDown(owner.node, "its lease ran out while this request waited",
                               agent, time.time(), sent=True) from None
            raise NodeDown(owner.node, f"it did not answer within {wait:g} s (unreachable "
                           f"from node {self.me!r}?)", agent, sent=True) from None
        except BaseException:
            sock.close()
            raise
        self._give(key, sock)
        if not isinstance(answer, dict):
            raise ConfigError(f"node {owner.node!r} sent a malformed answer for agent "
                              f"{agent!r}: {answer!r:.80}")
        return answer

    def _take(self, key: tuple[str, str]) -> WatchedRequester:
        with self._lock:
            if self._closed:
                raise NodeDown(self.me, "this node is stopping")
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
        curve = CurveClient(self.pair.public.encode(), self.pair.secret.encode(),
                            key[1].encode())
        return WatchedRequester(self.ctx, key[0], self.limit + REQUEST_ROOM, curve)

    def _give(self, key: tuple[str, str], sock: WatchedRequester) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(key, []).append(sock)
                return
        sock.close()

    def close(self) -> None:
        """Close the idle sockets and the context (requests still waiting end)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for socks in idle.values():
            for sock in socks:
                sock.close()
        self.ctx.destroy(linger=0)
