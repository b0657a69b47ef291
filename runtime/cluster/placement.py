"""Placement, pure: which shard a name falls in, which live node should own a shard, and
what this node should do about the shard table now (``plan``).

* ``shard_of(name, shards)``: blake2b of the name (never Python's salted ``hash()``), so
  every node and every run agree.
* ``owner_for(shard, nodes)``: rendezvous (highest-random-weight) hashing: each node's
  weight for a shard is a blake2b of (shard, node); the heaviest wins. When a node joins
  or leaves, only the shards it wins or held change hands.
* ``plan(shards, members, me, held, pins, max_moves)``: one round of this node's
  decisions from the shard table and the members as the database reported them. The
  rules, each with its own test in ``tests/unit/cluster/test_placement.py``:

  1. a node whose own lease is not alive does nothing (its shell fences it);
  2. a shard owned by this node at the epoch it holds is kept; one the table gives
     another owner, or an epoch it did not take, is *lost* (stop its agents);
  3. a shard whose owner is this node but which it does not hold (a restart under the
     same name) is claimed again, which bumps the epoch over the old incarnation;
  4. a shard that is unowned (never owned, or released), or owned by a member whose
     lease expired or that left, is claimed by its *desired* owner only: its pinned node
     if that one is alive and not draining, else the rendezvous owner among the alive,
     not draining members. Claims are not paced: they restore service;
  5. a shard this node holds whose desired owner is another node is released to it
     (a hand-off, e.g. to a node that joined), at most ``max_moves`` per round, so a
     join moves a paced trickle of shards and never stops the world (Dapr's lesson);
  6. a draining node claims nothing and releases its shards (held or not) the same
     paced way, but only while some alive, not draining node can take them over.

The shell applies a plan through conditional updates (``claim`` expects the owner and
epoch it saw), so two nodes acting on different views cannot both win a shard.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field


def _digest(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def shard_of(name: str, shards: int) -> int:
    """The shard (``0 <= shard < shards``) an agent's ``name`` falls in: a stable hash, the
    same on every node and every run."""
    if shards <= 0:
        raise ValueError(f"a cluster has at least one shard, not {shards}")
    return _digest(b"name\0" + name.encode()) % shards


def owner_for(shard: int, nodes: Collection[str]) -> str | None:
    """The rendezvous owner of ``shard`` among ``nodes`` (the one with the highest weight;
    ties, which blake2b makes vanishingly rare, go to the smaller name); None if there is
    no node."""
    best: tuple[int, str] | None = None
    for node in nodes:
        weight = _digest(f"shard\0{shard}\0{node}".encode())
        if best is None or weight > best[0] or (weight == best[0] and node < best[1]):
            best = (weight, node)
    return None if best is None else best[1]


class Lease(enum.Enum):
    """A member's lease as the database judged it (its clock, not ours)."""

    ALIVE = "alive"
    DRAINING = "draining"  # alive, but handing its shards off
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member as ``plan`` needs it: its name and its lease."""

    node: str
    lease: Lease


@dataclass(frozen=True, slots=True)
class ShardView:
    """A row of the shard table: its owner (None: unowned or released) and its epoch."""

    shard: int
    owner: str | None
    epoch: int


@dataclass(frozen=True, slots=True)
class Claim:
    """Take ``shard`` over, expecting it still has ``owner`` at ``epoch`` (the claim bumps
    the epoch)."""

    shard: int
    owner: str | None
    epoch: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What this node should do this round, in this order: drop what it lost (stop those
    agents), release its hand-offs (stop, flush, then release), then claim."""

    lost: tuple[int, ...] = ()
    release: tuple[ShardView, ...] = ()
    claim: tuple[Claim, ...] = ()
    waiting: tuple[int, ...] = field(default=())  # hand-offs held back by the pace

    @property
    def idle(self) -> bool:
        """Whether there is nothing to do (no move is pending either)."""
        return not (self.lost or self.release or self.claim or self.waiting)


def desired_owner(shard: int, takers: Collection[str],
                  pins: Mapping[int, str]) -> str | None:
    """Who should own ``shard``: its pinned node if that node can take shards, else the
    rendezvous owner among ``takers`` (alive, not draining members)."""
    pinned = pins.get(shard)
    if pinned is not None and pinned in takers:
        return pinned
    return owner_for(shard, takers)


def plan(shards: Sequence[ShardView], members: Sequence[MemberView], me: str,
         held: Mapping[int, int], pins: Mapping[int, str] | None = None,
         max_moves: int = 1) -> Plan:
    """This node's decisions for one round (the module docstring lists the rules).

    Args:
        shards: the shard table, one row per shard.
        members: every member row, with its lease as the database judged it.
        me: this node's name.
        held: the shards this node runs now, with the epoch it took each at.
        pins: shards pinned to a node (used while that node can take shards).
        max_moves: at most this many hand-offs (releases) per round.
    """
    if max_moves < 1:
        raise ValueError(f"max_moves must be at least 1, not {max_moves}")
    pins = pins or {}
    lease = {m.node: m.lease for m in members}
    mine = lease.get(me)
    lost = tuple(sorted(s.shard for s in shards
                        if s.shard in held and (s.owner != me or s.epoch != held[s.shard])))
    if mine is None or mine is Lease.EXPIRED:
        return Plan(lost=lost)
    takers = frozenset(node for node, state in lease.items() if state is Lease.ALIVE)
    release: list[ShardView] = []
    waiting: list[int] = []
    claim: list[Claim] = []
    for row in sorted(shards, key=lambda r: r.shard):
        want = desired_owner(row.shard, takers, pins)
        if row.owner == me:
            running = row.shard in held and row.epoch == held[row.shard]
            if not running and mine is Lease.ALIVE:
                claim.append(Claim(row.shard, row.owner, row.epoch))
            elif want is not None and want != me:
                if len(release) < max_moves:
                    release.append(row)
                else:
                    waiting.append(row.shard)
            continue
        owner_state = None if row.owner is None else lease.get(row.owner)
        free = row.owner is None or owner_state is None or owner_state is Lease.EXPIRED
        if free and mine is Lease.ALIVE and want == me:
            claim.append(Claim(row.shard, row.owner, row.epoch))
    return Plan(lost=lost, release=tuple(release), claim=tuple(claim),
                waiting=tuple(waiting))
