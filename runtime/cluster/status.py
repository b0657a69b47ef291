"""A node's cluster state as ``beamish node status`` shows it (`ClusterStatus`): the
record the node answers the ``cluster`` control request with (``node/cluster_node.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from .._types import WireMap


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """What ``beamish node status`` shows of a node's cluster state.

    Attributes:
        cluster: the cluster's name.
        node: this node's name.
        incarnation: its membership's incarnation (None before it joined).
        fenced: whether it holds no lease it may act on.
        shards: the shards it owns, with their epochs.
        replicated: the replicated agents whose processes run here.
        lease_ttl: the lease's time to live (s).
    """

    cluster: str
    node: str
    incarnation: int | None
    fenced: bool
    shards: dict[int, int]
    replicated: int
    lease_ttl: float

    def to_wire(self) -> WireMap:
        """The msgpack-ready form (shard numbers as strings: msgpack map keys)."""
        return {"cluster": self.cluster, "node": self.node, "incarnation": self.incarnation,
                "fenced": self.fenced,
                "shards": {str(k): v for k, v in sorted(self.shards.items())},
                "replicated": self.replicated, "lease_ttl": self.lease_ttl}

    @classmethod
    def from_wire(cls, data: WireMap) -> ClusterStatus:
        """Read it back."""
        return cls(data["cluster"], data["node"], data.get("incarnation"),
                   bool(data["fenced"]),
                   {int(k): int(v) for k, v in dict(data.get("shards") or {}).items()},
                   int(data.get("replicated", 0)), float(data.get("lease_ttl", 0.0)))
