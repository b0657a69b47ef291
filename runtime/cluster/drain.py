"""A drain's progress, pure: the record a draining node answers ``{"op": "drain"}`` with
(`DrainStatus`), the rule that says where a drain is (`drain_phase`), and the lines
``beamish node drain`` prints (`progress_line`, `outcome_line`).

A drain (``node/cluster_drain.py`` runs it) is the membership's ordinary hand-off, shard
after shard, with the node claiming nothing: each shard's replicated agents stop after
their current group (their commits, replies included, are in PostgreSQL), the shard is
released, and the node the placement picks claims it at its next round, bumping the epoch,
and starts its agents from their committed state and mailbox. Once no shard is left the
node stops (``beamish node stop``'s path): it leaves the cluster, its front door lets the
requests still running end first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._types import WireMap


class DrainPhase(enum.Enum):
    """Where a drain is."""

    DRAINING = "draining"  # handing shards off
    DRAINED = "drained"  # every shard handed off: the node stops now
    # the timeout ran out first, or no node could take the shards for `STALL_GIVE_UP_S`:
    # the node stops all the same
    INCOMPLETE = "incomplete"


STALL_GIVE_UP_S = 10.0  # a drain stalled this long (no taker) ends without its timeout


FINAL = frozenset({DrainPhase.DRAINED, DrainPhase.INCOMPLETE})


@dataclass(frozen=True, slots=True)
class DrainStatus:
    """A drain's progress, as the node reports it.

    Attributes:
        node: the node's name in its cluster.
        cluster: the cluster's name.
        phase: where the drain is.
        shards_at_start: the shards the node held when the drain began.
        shards_left: the shards it holds now.
        replicated: its replicated agents still running.
        elapsed: seconds since the drain began.
        timeout: the drain's timeout (s).
        stalled: no other node can take its shards now (none alive and not draining).
    """

    node: str
    cluster: str
    phase: DrainPhase
    shards_at_start: int
    shards_left: int
    replicated: int
    elapsed: float
    timeout: float
    stalled: bool = False

    @property
    def final(self) -> bool:
        """Whether the drain is over (the node stops)."""
        return self.phase in FINAL

    def to_wire(self) -> WireMap:
        """The msgpack-ready form."""
        return {"node": self.node, "cluster": self.cluster, "phase": self.phase.value,
                "shards_at_start": self.shards_at_start, "shards_left": self.shards_left,
                "replicated": self.replicated, "elapsed": self.elapsed,
                "timeout": self.timeout, "stalled": self.stalled}

    @classmethod
    def from_wire(cls, data: WireMap) -> DrainStatus:
        """Read it back."""
        return cls(str(data["node"]), str(data["cluster"]), DrainPhase(data["phase"]),
                   int(data["shards_at_start"]), int(data["shards_left"]),
                   int(data["replicated"]), float(data["elapsed"]), float(data["timeout"]),
                   bool(data.get("stalled", False)))


def drain_phase(drained: bool, elapsed: float, timeout: float,
                stalled_for: float = 0.0) -> DrainPhase:
    """Where a drain is (pure): over once the membership says no shard is left (its last
    round found none owned in the table and it holds none), else timed out past
    ``timeout``, or given up once it has been `stalled` for ``stalled_for`` >=
    `STALL_GIVE_UP_S` (no node to take the shards: waiting out the timeout would only
    delay the same outcome), else still draining. A drain that finishes as its time
    runs out counts as done."""
    if drained:
        return DrainPhase.DRAINED
    if elapsed >= timeout or stalled_for >= STALL_GIVE_UP_S:
        return DrainPhase.INCOMPLETE
    return DrainPhase.DRAINING


def stalled(held: int, rounds: int, released: int, waiting: int) -> bool:
    """Whether a drain is stuck for want of a taker (pure): the node still holds shards,
    and a whole round ran since the drain began (``rounds`` >= 2: the first may have been
    planned before it) in which it released none and held none back for pacing, which
    the placement does only when no alive, not draining node can take them."""
    return held > 0 and rounds >= 2 and released == 0 and waiting == 0


def progress_line(st: DrainStatus) -> str:
    """The line ``beamish node drain`` prints as the drain goes (pure)."""
    line = (f"{st.elapsed:5.1f} s: {st.shards_left} of {st.shards_at_start} shard(s) left, "
            f"{st.replicated} replicated agent(s) running here")
    if st.stalled:
        line += ("; waiting: no other node alive and not draining can take them "
                 "(`beamish nodes`)")
    return line


def outcome_line(st: DrainStatus) -> str:
    """The line ``beamish node drain`` ends with (pure)."""
    who = f"node {st.node!r} of cluster {st.cluster!r}"
    if st.phase is DrainPhase.DRAINED:
        return (f"{who} drained: {st.shards_at_start} shard(s) handed off in "
                f"{st.elapsed:.1f} s; the node stops")
    if st.phase is DrainPhase.INCOMPLETE and st.stalled:
        return (f"{who} NOT drained: no other node alive and not draining could take its "
                f"{st.shards_left} shard(s) for {STALL_GIVE_UP_S:g} s (`beamish nodes`), so "
                "it did not wait out its timeout; the node stops all the same and releases "
                "them as it leaves (their messages stay in PostgreSQL for the next owner; "
                "calls to their agents wait until a node claims them)")
    if st.phase is DrainPhase.INCOMPLETE:
        return (f"{who} NOT drained within {st.timeout:g} s: {st.shards_left} shard(s) "
                "left; the node stops all the same and releases them as it leaves (their "
                "messages stay in PostgreSQL for the next owner; calls to their agents "
                "wait until a node claims them)")
    return f"{who} is draining"
