"""The membership shell on a real PostgreSQL, several nodes as threads of this process:
they converge to a full, disjoint assignment of the shards; a paused node's shards go to
the others after its lease expired, with higher epochs; a node cut off from the database
fences itself before its lease can expire, and comes back when the link does; a join
moves a paced subset; a drain hands every shard off."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from beamish.runtime.cluster.lease import LeaseTiming
from beamish.runtime.cluster.membership import Membership
from beamish.runtime.cluster.placement import owner_for
from beamish.runtime.store.postgres.cluster import ClusterTable, connect_cluster, open_cluster
from beamish.supervisor.testing import FakeClock
from tests.conftest import wait_until

SHARDS = 24
TIMING = LeaseTiming(ttl=3.0, margin=1.2)  # renew every 0.75 s, fence 1.8 s after a send


@dataclass
class Recorder:
    """A MembershipListener that keeps what it was told, with wall-clock times (the
    database runs on this machine, so its clock is the same)."""

    events: list[tuple[float, str, int, int]] = field(default_factory=list)
    owned: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_gained(self, shard: int, epoch: int) -> None:
        with self.lock:
            assert shard not in self.owned
            self.owned[shard] = epoch
            self.events.append((time.time(), "gained", shard, epoch))

    def on_lost(self, shard: int) -> None:
        with self.lock:
            self.owned.pop(shard)
            self.events.append((time.time(), "lost", shard, 0))

    def on_fenced(self) -> None:
        with self.lock:
            self.owned.clear()
            self.events.append((time.time(), "fenced", -1, 0))

    def times(self, kind: str) -> list[float]:
        with self.lock:
            return [t for t, k, _, _ in self.events if k == kind]


class Link:
    """A node's way to the database, which a test can cut: a cut terminates the node's
    connection and makes new ones fail (a closed port), as a dead link would."""

    def __init__(self, dsn: str, node: str) -> None:
        self.dsn, self.node, self.cut = dsn, node, False

    def connect(self) -> ClusterTable:
        sep = "&" if "?" in self.dsn else "?"
        dsn = self.dsn if not self.cut else "postgresql://postgres@127.0.0.1:1/none"
        return connect_cluster(f"{dsn}{sep}application_name={self.node}", "c", SHARDS)

    def sever(self, admin: psycopg.Connection) -> None:
        self.cut = True
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = %s", (self.node,))


@pytest.fixture
def cluster(pg_dsn) -> Iterator[Callable[..., tuple[Membership, Recorder, Link]]]:
    made: list[Membership] = []

    def node(name: str, start: bool = True, **kw) -> tuple[Membership, Recorder, Link]:
        rec, link = Recorder(), Link(pg_dsn, name)
        # Hand-offs unpaced unless a test asks (pacing has its own test): a node that
        # started first and claimed every shard gives them up in a round, not in one a
        # round.
        m = Membership(link.connect, name, f"tcp://{name}:7700", rec,
                       timing=kw.pop("timing", TIMING), max_moves=kw.pop("max_moves", SHARDS),
                       **kw)
        made.append(m)
        if start:
            m.start()
        return m, rec, link

    yield node
    for m in made:
        m.halt()


@pytest.fixture
def admin(pg_dsn) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        open_cluster(conn, "c", SHARDS)
        yield conn


def rows(admin) -> dict[int, tuple[str | None, int]]:
    return {s: (o, e) for s, o, e in admin.execute(
        "SELECT shard, owner, epoch FROM beamish_shards WHERE cluster = 'c' ORDER BY shard")}


def lease_expires(admin, node: str) -> float:
    (t,) = admin.execute("SELECT extract(epoch FROM lease_expires)::float8 FROM "
                         "beamish_members WHERE cluster = 'c' AND node = %s",
                         (node,)).fetchone()
    return float(t)


def settled(admin, nodes: dict[str, tuple[Membership, Recorder, Link]]) -> bool:
    """Every shard owned by its rendezvous owner among ``nodes``, which holds it at the
    table's epoch and was told so; nothing else held."""
    table = rows(admin)
    if len(table) != SHARDS:
        return False
    names = sorted(nodes)
    for s, (owner, epoch) in table.items():
        if owner != owner_for(s, names) or owner is None:
            return False
        m, rec, _ = nodes[owner]
        if m.held.get(s) != epoch or rec.owned.get(s) != epoch:
            return False
    held = sum(len(m.held) for m, _, _ in nodes.values())
    told = sum(len(r.owned) for _, r, _ in nodes.values())
    return held == told == SHARDS


def test_three_nodes_converge_to_a_full_disjoint_assignment(cluster, admin):
    nodes = {n: cluster(n) for n in ("n1", "n2", "n3")}
    wait_until(lambda: settled(admin, nodes), 30, "a full assignment", interval=0.05)
    for m, rec, _ in nodes.values():
        assert rec.times("fenced") == [] and not m.fenced


def test_a_paused_nodes_shards_go_to_the_others_after_its_lease_expired(cluster, admin):
    nodes = {n: cluster(n) for n in ("n1", "n2", "n3")}
    wait_until(lambda: settled(admin, nodes), 30, "a full assignment", interval=0.05)
    before = rows(admin)
    paused, _, _ = nodes.pop("n3")
    paused.halt()  # neither renews nor leaves, like a SIGSTOPped node
    expires = lease_expires(admin, "n3")
    wait_until(lambda: settled(admin, nodes), 30, "a takeover", interval=0.05)
    after = rows(admin)
    moved = {s for s in after if after[s][0] != before[s][0]}
    assert moved == {s for s in before if before[s][0] == "n3"} and moved
    assert all(after[s][1] == before[s][1] + 1 for s in moved)
    assert all(after[s] == before[s] for s in after if s not in moved)
    (first_move,) = admin.execute(
        "SELECT extract(epoch FROM min(moved))::float8 FROM beamish_shards "
        "WHERE cluster = 'c' AND shard = ANY(%s)", (sorted(moved),)).fetchone()
    assert first_move > expires  # by the database's clock


def test_a_node_cut_off_fences_itself_before_its_lease_expires_and_comes_back(cluster,
                                                                                admin):
    nodes = {n: cluster(n) for n in ("n1", "n2", "n3")}
    wait_until(lambda: settled(admin, nodes), 30, "a full assignment", interval=0.05)
    cut, rec, link = nodes["n3"]
    theirs = {s for s, (o, _) in rows(admin).items() if o == "n3"}
    link.sever(admin)
    wait_until(lambda: rec.times("fenced") != [], 30, "n3 fenced", interval=0.05)
    fenced_at = rec.times("fenced")[0]
    expires = lease_expires(admin, "n3")
    assert fenced_at < expires, (fenced_at, expires)
    assert rec.owned == {} and cut.held == {}
    others = {n: nodes[n] for n in ("n1", "n2")}
    wait_until(lambda: settled(admin, others), 30, "the others took n3's shards", interval=0.05)
    taken = rows(admin)
    assert all(taken[s][0] in ("n1", "n2") for s in theirs)
    (first_move,) = admin.execute(
        "SELECT extract(epoch FROM min(moved))::float8 FROM beamish_shards "
        "WHERE cluster = 'c' AND shard = ANY(%s)", (sorted(theirs),)).fetchone()
    assert fenced_at < expires < first_move
    # The link returns: n3 joins again (a new incarnation) and gets its shards back at
    # new epochs.
    link.cut = False
    wait_until(lambda: settled(admin, nodes), 30, "n3 back", interval=0.05)
    assert cut.incarnation == 2
    back = rows(admin)
    assert all(back[s][1] > taken[s][1] for s in theirs)


def test_a_join_moves_only_what_the_joiner_wins_a_paced_subset_a_round(cluster, admin):
    # Rounds driven by hand (step), so that "per round" is exact.
    slow = LeaseTiming(ttl=30.0, margin=5.0)
    nodes = {n: cluster(n, start=False, timing=slow, max_moves=2) for n in ("n1", "n2")}
    for _ in range(30):
        for m, _, _ in nodes.values():
            m.step()
        if settled(admin, nodes):
            break
    assert settled(admin, nodes)
    before = rows(admin)
    nodes["n3"] = cluster("n3", start=False, timing=slow, max_moves=2)
    wins = {s for s in before if owner_for(s, ["n1", "n2", "n3"]) == "n3"}
    assert len(wins) > 4  # more than one round's worth for the two old owners
    rounds = 0
    while not settled(admin, nodes):
        rounds += 1
        assert rounds < 50
        for m, _, _ in nodes.values():
            p = m.step()
            assert len(p.release) <= 2
    after = rows(admin)
    assert {s for s in after if after[s][0] != before[s][0]} == wins
    assert rounds >= len(wins) // 4


def test_drain_hands_every_shard_to_the_others(cluster, admin):
    nodes = {n: cluster(n, max_moves=3) for n in ("n1", "n2", "n3")}
    wait_until(lambda: settled(admin, nodes), 30, "a full assignment", interval=0.05)
    leaving, rec, _ = nodes["n2"]
    assert leaving.held
    leaving.drain()
    wait_until(lambda: leaving.drained, 30, "n2 drained", interval=0.05)
    assert rec.owned == {} and rec.times("fenced") == []
    table = rows(admin)
    assert all(o in ("n1", "n3") for o, _ in table.values())
    leaving.stop()  # leaves the cluster
    rest = {n: nodes[n] for n in ("n1", "n3")}
    wait_until(lambda: settled(admin, rest), 30, "the others hold every shard", interval=0.05)
    assert [n for (n,) in admin.execute(
        "SELECT node FROM beamish_members WHERE cluster = 'c' ORDER BY node")] == ["n1", "n3"]


def test_a_node_that_stops_releases_its_shards_at_once(cluster, admin):
    slow = LeaseTiming(ttl=60.0, margin=10.0, renew_every=0.5)
    nodes = {n: cluster(n, timing=slow) for n in ("n1", "n2")}
    wait_until(lambda: settled(admin, nodes), 30, "a full assignment", interval=0.05)
    m, rec, _ = nodes.pop("n2")
    m.stop()
    assert rec.owned == {}
    # well before its 60 s lease could have expired
    wait_until(lambda: settled(admin, nodes), 15, "n1 holds every shard", interval=0.05)


def test_renewals_follow_the_fake_clock(cluster, admin):
    clock = FakeClock(0.0)
    m, _, _ = cluster("n1", start=False, clock=clock)
    m.step()  # joins
    first = lease_expires(admin, "n1")
    clock.advance(TIMING.renew_period / 2)
    m.step()
    assert lease_expires(admin, "n1") == first  # not due: no renewal
    clock.advance(TIMING.renew_period / 2)
    m.step()
    assert lease_expires(admin, "n1") > first
    clock.advance(TIMING.fence_after)  # no round for that long: fenced, then renews
    m.step()
    assert m.watch.fences == 1
    assert not m.fenced  # the database still had the lease: it renewed and goes on
