"""A cluster node's node-pinned agents (``durability`` process, fsync or memory): their
names routed in the cluster's PostgreSQL, and the requests for another node's pinned
agents forwarded there in one hop (``cluster/forward.py``).

* Names are cluster-wide: a spawn on this node routes its name here (one ``INSERT ... ON
  CONFLICT`` in PostgreSQL, refused when another node or a replicated agent holds it),
  a delete removes the route, a stop keeps it. At its start the node routes every agent
  and supervisor of its LMDB in one statement (a name held elsewhere is logged); so a
  spawn into a supervisor of another node goes to that node.
* A request for a name that is not one of this node's agents is looked up (one
  ``SELECT``, joined with the owner's lease and key): routed to another node, it goes
  there (`Forwarder`); while that node's lease is expired, it fails with `NodeDown` at
  once. A name with no route is a replicated agent's (or nobody's).
* This node publishes its public key in PostgreSQL at its start: the others connect to
  it with that key, if they authorized it.
* A route whose removal failed (a delete while PostgreSQL could not be reached), and at
  the start every route of this node whose name its LMDB no longer holds (a removal
  lost with the node), is removed again every `DROP_RETRY_S` once the node has joined
  (`retry_drops`, from the cluster worker), unless the name is this node's again.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from .._types import WireMap
from ..cluster.forward import Forwarder, Owner
from ..cluster.keys import authorized_keys, load_pair
from ..errors import (
    BeamishError,
    BeamishInternalError,
    ConfigError,
    ErrorReply,
    SpawnError,
    StoreError,
    error_from_wire,
)
from ..store.postgres.routes import REPLICATED, Route, RouteTable
from ..store.protocol import Store

log = logging.getLogger("beamish.cluster")

# Control requests that name an agent and are served by the node that holds it.
FORWARDED_OPS = frozenset({"stop", "delete", "info", "state", "sleep", "dead_letters",
                           "restart"})
DROP_RETRY_S = 2.0  # a route left by a failed removal is tried again this often


def owner_of(route: Route | None) -> Owner | None:
    """The forwarder's view of ``route`` (pure)."""
    if route is None:
        return None
    since = route.lease_expires.timestamp() \
        if route.lease_expires is not None and not route.alive else 0.0
    return Owner(route.node, route.address, route.public_key, route.alive, since)


class PinnedAgents:
    """This node's side of node-pinned agents in its cluster (see the module docstring).

    Args:
        node: this node's name in the cluster.
        dsn: the cluster's PostgreSQL.
        cluster: the cluster's name.
        keys_dir: this node's keys dir (``[cluster] keys``; None: it cannot forward).
        local_store: the node's LMDB store (its own agents).
        max_message_bytes: the node's message size limit.
    """

    def __init__(self, node: str, dsn: str, cluster: str, keys_dir: str | None,
                 local_store: Store, max_message_bytes: int) -> None:
        self.node = node
        self.keys_dir = keys_dir
        self.local_store = local_store
        self.routes = RouteTable(dsn, cluster)
        self._undropped: set[str] = set()  # routes to remove again (`retry_drops`)
        self._drops = threading.Lock()  # a retried removal against a claim of that name
        self._next_drop = 0.0
        self.forwarder: Forwarder | None = None
        if keys_dir is not None:
            pair = load_pair(keys_dir, "cluster.keys")
            self.forwarder = Forwarder(node, pair, self._authorized,
                                       self.routes.lease_left, max_message_bytes)

    def _authorized(self) -> frozenset[str]:
        assert self.keys_dir is not None
        return frozenset(k.key for k in authorized_keys(self.keys_dir))

    def start(self) -> None:
        """Publish this node's key and route every agent of its LMDB to it."""
        if self.forwarder is not None:
            self.routes.publish_key(self.node, self.forwarder.pair.public)
        names = self.local_store.read(
            lambda t: [r.name for r in t.agents()] + [s.name for s in t.sups() if s.name != "root"])
        for name, holder in self.routes.claim_all(names, self.node).items():
            log.error("agent %r of this node's store is routed to node %r in the cluster: "
                      "requests for it from other nodes go there; delete one of the two",
                      name, holder)
        with self._drops:
            self._undropped |= self.routes.names_of(self.node) - set(names)

    def close(self) -> None:
        """Close the forwarder's sockets and the route table's connection."""
        if self.forwarder is not None:
            self.forwarder.close()
        self.routes.close()

    def is_local(self, name: str) -> bool:
        """Whether ``name`` is one of this node's own agents (its LMDB)."""
        return self.local_store.read(lambda t: t.get_route(name)) is not None

    def new_name(self, cls: str) -> str:
        """A name for an unnamed spawn, unique in the cluster: the class's, this node's
        and a random part (a node's own counter would clash with another node's)."""
        return f"{cls.rpartition(':')[2].lower()}-{self.node}-{secrets.token_hex(4)}"

    def claim(self, name: str) -> None:
        """Route ``name`` to this node (a spawn).

        Raises:
            SpawnError: another node's agent or a replicated agent holds the name.
        """
        if name in self._undropped:  # its removal is pending: the claim goes first
            with self._drops:
                self._undropped.discard(name)
                holder = self.routes.claim(name, self.node)
        else:
            holder = self.routes.claim(name, self.node)
        if holder == REPLICATED:
            raise SpawnError(name, "the name is in use by a replicated agent of the "
                                   "cluster (names are cluster-wide)")
        if holder is not None:
            raise SpawnError(name, f"the name is in use by an agent on node {holder!r} "
                                   "(names are cluster-wide)")

    def drop(self, name: str) -> None:
        """Remove ``name``'s route (a delete, done already in LMDB): a failure is
        logged, not raised, as the agent is gone; the removal is tried again
        (`retry_drops`), and until then other nodes are refused the name."""
        try:
            self.routes.drop(name, self.node)
        except StoreError as exc:
            with self._drops:
                self._undropped.add(name)
            log.warning("agent %r was deleted, but its route in the cluster's PostgreSQL "
                        "was not removed (%s): tried again every %g s; other nodes are "
                        "refused its name until then", name, exc, DROP_RETRY_S)

    def _is_sup(self, name: str) -> bool:
        return self.local_store.read(lambda t: t.get_sup(name)) is not None

    def retry_drops(self, joined: bool) -> int:
        """Remove the routes whose removal is pending (module docstring), if ``joined``
        (the node holds its lease: no other node of its name runs) and `DROP_RETRY_S`
        has passed since the last try; return how many were removed. A name that is
        this node's agent or supervisor again keeps its route."""
        now = time.monotonic()
        if not self._undropped or not joined or now < self._next_drop:
            return 0
        self._next_drop = now + DROP_RETRY_S
        removed = 0
        with self._drops:
            for name in sorted(self._undropped):
                if self.is_local(name) or self._is_sup(name):
                    self._undropped.discard(name)
                    continue
                try:
                    self.routes.drop(name, self.node)
                except StoreError as exc:
                    log.warning("the route of deleted agent %r is still not removed (%s): "
                                "tried again in %g s", name, exc, DROP_RETRY_S)
                    return removed
                self._undropped.discard(name)
                removed += 1
        if removed:
            log.info("removed %d route(s) of deleted agents left in the cluster's "
                     "PostgreSQL", removed)
        return removed

    def remote(self, name: str) -> Owner | None:
        """The node that holds pinned agent ``name`` if it is another one (None: this
        node's, a replicated agent's, or nobody's)."""
        if self.is_local(name):
            return None
        owner = owner_of(self.routes.lookup(name))
        return None if owner is None or owner.node == self.node else owner

    def send(self, owner: Owner, name: str, req: WireMap) -> WireMap:
        """Forward control request ``req`` (with its ``op``) for agent ``name`` to
        ``owner``; return the owner's answer (wire form).

        Raises:
            NodeDown, ConfigError: see `Forwarder.send`.
        """
        if self.forwarder is None:
            raise ConfigError(f"agent {name!r} lives on node {owner.node!r}; this node "
                              "has no keys (`[cluster] keys`) to forward to it with")
        return self.forwarder.send(owner, name, req)

    def value(self, owner: Owner, name: str, req: WireMap) -> Any:
        """`send`, and the answer's value (its error raised)."""
        answer = self.send(owner, name, req)
        if answer.get("ok"):
            return answer.get("value")
        raise error_from_wire(answer.get("error"))

    def _pinned_spawn(self, req: dict[str, Any]) -> WireMap | None:
        """A spawn with ``node=`` (taken out of ``req``): served here when it names this
        node, else forwarded to that node.

        Raises:
            ConfigError: a replicated agent (placed by its name's shard), or no member
                has that name.
            NodeDown: that node's lease has run out.
        """
        pin = req.pop("node")
        if req.get("durability") is not None:
            raise ConfigError(f"node={pin!r}: a replicated agent runs on the node that "
                              "owns its name's shard and moves on failover; node= pins a "
                              "node-pinned agent (durability process, fsync or memory)")
        if pin == self.node:
            return None
        owner = owner_of(self.routes.member(str(pin)))
        if owner is None:
            raise ConfigError(f"node={pin!r}: no node of this cluster has that name "
                              "(`beamish nodes` lists them)")
        name = req.get("name")
        return self.send(owner, name if isinstance(name, str) else "(unnamed)",
                         {**req, "node": pin, "op": "spawn"})

    def forward_control(self, op: str, req: dict[str, Any]) -> WireMap | None:
        """Forward a control request for another node's pinned agent (``req`` without
        ``op``); None when this node serves it. A spawn goes to its supervisor's node."""
        if op == "spawn" and "node" in req:
            try:
                return self._pinned_spawn(req)
            except BeamishError as exc:
                return {"ok": False, "error": ErrorReply.of(exc).to_wire()}
        if op == "spawn":
            target = req.get("supervisor")
            if not isinstance(target, str) or target == "root" \
                    or req.get("durability") is not None:
                return None
            sup = target
            if self.local_store.read(lambda t: t.get_sup(sup)) is not None:
                return None
        elif op in FORWARDED_OPS:
            target = req.get("name")
        else:
            return None
        if not isinstance(target, str):
            return None
        try:
            owner = self.remote(target)
            if owner is None:
                return None
            answer = self.send(owner, target, {**req, "op": op})
            value = answer.get("value")
            if op == "info" and answer.get("ok") and isinstance(value, dict):
                # its node answered as of its own agent (no node): say which node it is
                answer = {**answer, "value": {**value, "node": owner.node}}
            return answer
        except BeamishError as exc:
            return {"ok": False, "error": ErrorReply.of(exc).to_wire()}
        except Exception as exc:  # the client gets an answer, never a silent wait
            log.exception("forwarding %s of %r failed", op, target)
            error = BeamishInternalError(f"forwarding {op} of agent {target!r} to its node "
                                         f"failed: {exc!r} (see this node's log)")
            return {"ok": False, "error": ErrorReply.of(error).to_wire()}


def open_pinned(node: str, dsn: str, cluster: str, keys_dir: str | None,
                local_store: Store, max_message_bytes: int) -> PinnedAgents:
    """Start a cluster node's `PinnedAgents` (see its Args): its key published, its
    agents routed.

    Raises:
        StoreUnavailable: PostgreSQL cannot be reached.
        ConfigError: the keys dir holds no valid pair.
    """
    pinned = PinnedAgents(node, dsn, cluster, keys_dir, local_store, max_message_bytes)
    try:
        pinned.start()
    except BaseException:
        pinned.close()
        raise
    return pinned
