"""placement: shard_of, owner_for and plan(); one test per rule of plan() (the module
docstring numbers them), then properties over random memberships (hypothesis)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beamish.runtime.cluster.placement import (
    Claim,
    Lease,
    MemberView,
    Plan,
    ShardView,
    owner_for,
    plan,
    shard_of,
)

A, D, E = Lease.ALIVE, Lease.DRAINING, Lease.EXPIRED


def members(**states: Lease) -> list[MemberView]:
    return [MemberView(node, state) for node, state in states.items()]


def table(*owners: str | None, epoch: int = 1) -> list[ShardView]:
    return [ShardView(i, owner, epoch if owner else 0) for i, owner in enumerate(owners)]


def shard_won_by(node: str, among: list[str], not_: int = -1) -> int:
    """A shard whose rendezvous owner among ``among`` is ``node``."""
    return next(s for s in range(1000) if s != not_ and owner_for(s, among) == node)


# -- hashing ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,shards,expected", [
    # Fixed values: a change of hash would move every agent of every cluster.
    ("chat-alice", 64, shard_of("chat-alice", 64)),
    ("", 1, 0),
    ("x", 1, 0),
])
def test_shard_of_is_in_range_and_stable(name, shards, expected):
    assert 0 <= shard_of(name, shards) < shards
    assert shard_of(name, shards) == expected


def test_shard_of_does_not_use_pythons_salted_hash():
    import subprocess
    import sys
    code = ("from beamish.runtime.cluster.placement import shard_of;"
            "print([shard_of(f'a{i}', 64) for i in range(20)])")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": seed}, check=True).stdout
            for seed in ("1", "2")}
    assert len(runs) == 1


def test_shard_of_spreads_names():
    counts = Counter(shard_of(f"agent-{i}", 16) for i in range(16_000))
    assert len(counts) == 16 and min(counts.values()) > 800


@pytest.mark.parametrize("shards", [0, -1])
def test_shard_of_refuses_no_shards(shards):
    with pytest.raises(ValueError, match="at least one shard"):
        shard_of("a", shards)


def test_owner_for_no_nodes_is_none():
    assert owner_for(3, []) is None


def test_owner_for_ignores_the_order_of_nodes():
    assert all(owner_for(s, ["a", "b", "c"]) == owner_for(s, ["c", "a", "b"])
               for s in range(100))


def test_owner_for_moves_only_the_shards_of_a_node_that_leaves():
    before = {s: owner_for(s, ["a", "b", "c"]) for s in range(200)}
    after = {s: owner_for(s, ["a", "b"]) for s in range(200)}
    assert {s for s in before if before[s] != after[s]} == \
        {s for s in before if before[s] == "c"}


# -- plan: one test per rule -----------------------------------------------------------

def test_rule1_a_node_whose_lease_expired_does_nothing_but_drop():
    rows = table("me", None)
    got = plan(rows, members(me=E, b=A), "me", held={0: 1})
    assert got == Plan()
    assert plan(rows, members(b=A), "me", held={}) == Plan()  # not a member at all


@pytest.mark.parametrize("row,held,lost", [
    (ShardView(0, "me", 3), {0: 3}, ()),     # kept
    (ShardView(0, "b", 4), {0: 3}, (0,)),    # taken over by another node
    (ShardView(0, None, 3), {0: 3}, (0,)),   # released under us (e.g. by an operator)
    (ShardView(0, "me", 4), {0: 3}, (0,)),   # an epoch we did not take
])
def test_rule2_held_shards_are_kept_or_lost(row, held, lost):
    got = plan([row], members(me=A, b=A), "me", held=held)
    assert got.lost == lost
    assert got.release == () or lost == ()


def test_rule3_an_owned_shard_not_held_is_claimed_again_with_a_bump():
    s = shard_won_by("me", ["me", "b"])
    got = plan([ShardView(s, "me", 7)], members(me=A, b=A), "me", held={})
    assert got.claim == (Claim(s, "me", 7),)


@pytest.mark.parametrize("owner,owner_lease", [
    (None, None),          # never owned, or released
    ("c", E),              # its owner's lease expired
    ("gone", None),        # its owner left (no member row)
])
def test_rule4_a_free_shard_is_claimed_by_its_desired_owner_only(owner, owner_lease):
    alive = ["me", "b"]
    ours, theirs = shard_won_by("me", alive), shard_won_by("b", alive)
    view = members(me=A, b=A, **({owner: owner_lease} if owner and owner_lease else {}))
    rows = [ShardView(ours, owner, 5), ShardView(theirs, owner, 5)]
    got = plan(rows, view, "me", held={})
    assert got.claim == (Claim(ours, owner, 5),)


def test_rule4_a_live_owners_shard_is_never_claimed():
    s = shard_won_by("me", ["me", "b"])
    for lease in (A, D):
        assert plan([ShardView(s, "b", 2)], members(me=A, b=lease), "me", held={}).claim == ()


def test_rule4_a_pin_wins_over_rendezvous_while_its_node_takes_shards():
    s = shard_won_by("b", ["me", "b"])
    rows = [ShardView(s, None, 0)]
    assert plan(rows, members(me=A, b=A), "me", {}, pins={s: "me"}).claim == \
        (Claim(s, None, 0),)
    assert plan(rows, members(me=A, b=A), "b", {}, pins={s: "me"}).claim == ()
    # the pinned node is draining or gone: rendezvous decides again
    s2 = shard_won_by("me", ["me", "b"])
    assert plan([ShardView(s2, None, 0)], members(me=A, b=A), "me", {},
                pins={s2: "c"}).claim == (Claim(s2, None, 0),)


def test_rule5_hand_offs_to_a_joined_node_are_paced():
    alive = ["me", "b"]
    theirs = [s for s in range(64) if owner_for(s, alive) == "b"]
    rows = [ShardView(s, "me", 1) for s in range(64)]
    held = {s: 1 for s in range(64)}
    got = plan(rows, members(me=A, b=A), "me", held, max_moves=2)
    assert [r.shard for r in got.release] == theirs[:2]
    assert got.waiting == tuple(theirs[2:])
    assert got.claim == () and got.lost == ()
    # the joined node does not take them before they are released
    assert plan(rows, members(me=A, b=A), "b", {}).claim == ()


def test_rule5_max_moves_must_be_positive():
    with pytest.raises(ValueError, match="max_moves"):
        plan([], members(me=A), "me", {}, max_moves=0)


def test_rule6_a_draining_node_releases_its_shards_paced_and_claims_nothing():
    rows = [ShardView(0, "me", 1), ShardView(1, "me", 1), ShardView(2, None, 0),
            ShardView(3, "me", 4)]
    got = plan(rows, members(me=D, b=A), "me", held={0: 1, 1: 1}, max_moves=2)
    assert [r.shard for r in got.release] == [0, 1]
    assert got.waiting == (3,)  # owned but not held: released too, when its turn comes
    assert got.claim == ()


def test_rule6_a_draining_node_keeps_its_shards_while_nobody_can_take_them():
    rows = [ShardView(0, "me", 1)]
    for view in (members(me=D), members(me=D, b=D), members(me=D, b=E)):
        assert plan(rows, view, "me", held={0: 1}) == Plan()


# -- properties ------------------------------------------------------------------------

def _settle(rows: dict[int, ShardView], view: dict[str, Lease],
            held: dict[str, dict[int, int]], max_moves: int,
            moves: Counter[str] | None = None) -> int:
    """Run rounds of every live node's plan against an in-memory table with the
    database's conditional updates, until nobody has anything to do; return the rounds."""
    for rounds in range(1, 500):
        busy = False
        for node in sorted(view):
            if view[node] is E:
                continue
            mine = held.setdefault(node, {})
            p = plan(list(rows.values()), [MemberView(n, s) for n, s in view.items()],
                     node, mine, max_moves=max_moves)
            assert len(p.release) <= max_moves
            busy |= not p.idle
            for s in p.lost:
                del mine[s]
            for r in p.release:
                if rows[r.shard] == r:
                    rows[r.shard] = ShardView(r.shard, None, r.epoch)
                    mine.pop(r.shard, None)
                    if moves is not None:
                        moves[node] += 1
            for c in p.claim:
                row = rows[c.shard]
                if (row.owner, row.epoch) == (c.owner, c.epoch):
                    rows[c.shard] = ShardView(c.shard, node, c.epoch + 1)
                    mine[c.shard] = c.epoch + 1
        if not busy:
            return rounds
    raise AssertionError("no fixpoint")


def _check_full_and_disjoint(rows, view, held):
    alive = [n for n, s in view.items() if s is A]
    for s, row in rows.items():
        assert row.owner == owner_for(s, alive)
        assert held[row.owner].get(s) == row.epoch
    holders = Counter(s for n in alive for s in held.get(n, {}))
    assert all(c == 1 for c in holders.values()) and len(holders) == len(rows)


nodes_st = st.lists(st.sampled_from([f"n{i}" for i in range(8)]), min_size=2, max_size=6,
                    unique=True)


@settings(max_examples=60, deadline=None)
@given(nodes=nodes_st, shards=st.integers(1, 48), max_moves=st.integers(1, 4),
       leaver=st.integers(0, 5))
def test_property_a_departure_moves_only_the_departed_nodes_shards(nodes, shards,
                                                                   max_moves, leaver):
    view = {n: A for n in nodes}
    rows = {s: ShardView(s, None, 0) for s in range(shards)}
    held: dict[str, dict[int, int]] = {}
    _settle(rows, view, held, max_moves)
    _check_full_and_disjoint(rows, view, held)
    gone = nodes[leaver % len(nodes)]
    before = dict(rows)
    view[gone] = E
    held[gone] = {}
    _settle(rows, view, held, max_moves)
    _check_full_and_disjoint(rows, view, held)
    moved = {s for s in rows if rows[s].owner != before[s].owner}
    assert moved == {s for s in rows if before[s].owner == gone}
    assert all(rows[s].epoch == before[s].epoch + 1 for s in moved)
    assert all(rows[s] == before[s] for s in rows if s not in moved)


@settings(max_examples=60, deadline=None)
@given(nodes=nodes_st, shards=st.integers(1, 48), max_moves=st.integers(1, 4))
def test_property_a_join_moves_only_what_the_joiner_wins_paced(nodes, shards, max_moves):
    first, joiner = nodes[:-1], nodes[-1]
    view = {n: A for n in first}
    rows = {s: ShardView(s, None, 0) for s in range(shards)}
    held: dict[str, dict[int, int]] = {}
    _settle(rows, view, held, max_moves)
    before = dict(rows)
    view[joiner] = A
    moves: Counter[str] = Counter()
    rounds = _settle(rows, view, held, max_moves, moves)
    _check_full_and_disjoint(rows, view, held)
    moved = {s for s in rows if rows[s].owner != before[s].owner}
    assert moved == {s for s in rows if owner_for(s, nodes) == joiner}
    # paced: each old owner handed off at most max_moves a round
    assert all(moves[n] <= max_moves * rounds for n in first)
    assert sum(moves.values()) == len(moved)
