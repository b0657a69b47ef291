"""store/postgres/cluster.py on a real PostgreSQL: the cluster row and its fixed shard
count, joins and incarnations, renewals, leaves, claims that bump the epoch and refuse
live owners, releases. Leases are judged by the database's clock, so the tests that need
one to expire use short ttls and wait for the database to say so."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from beamish.runtime.errors import (
    ConfigError,
    LeaseLost,
    NodeNameInUse,
    ShardCountMismatch,
    StoreError,
)
from beamish.runtime.store.postgres.cluster import (
    ClusterTable,
    connect_cluster,
    existing_cluster,
)


@pytest.fixture
def tables(pg_dsn):
    opened: list[ClusterTable] = []

    def open_(cluster: str = "c1", shards: int = 8) -> ClusterTable:
        t = connect_cluster(pg_dsn, cluster, shards)
        opened.append(t)
        return t

    yield open_
    for t in opened:
        t.close()


def _wait_expired(t: ClusterTable, node: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not next(m for m in t.members() if m.node == node).alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"{node}'s lease did not expire")


def test_the_cluster_is_created_once_with_its_shards_and_a_different_count_refused(tables):
    t = tables(shards=8)
    assert [(r.shard, r.owner, r.epoch) for r in t.shard_rows()] == \
        [(s, None, 0) for s in range(8)]
    assert tables(shards=8).shard_rows() == t.shard_rows()
    with pytest.raises(ShardCountMismatch, match="has 8 shards.*configured with 16") as e:
        tables(shards=16)
    assert (e.value.shards, e.value.configured) == (8, 16)
    # another cluster in the same database has its own count
    assert len(tables("c2", shards=3).shard_rows()) == 3


def test_existing_cluster_reads_without_creating(pg_dsn, tables):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(ConfigError, match="no cluster named 'c1'"):
            existing_cluster(conn, "c1")
        tables(shards=4)
        assert existing_cluster(conn, "c1").shards == 4


def test_join_gives_a_new_incarnation_and_refuses_a_second_live_node_of_one_name(tables):
    t = tables()
    first = t.join("n1", "tcp://a:1", ttl=30)
    assert first.incarnation == 1
    with pytest.raises(NodeNameInUse, match="'n1'"):
        t.join("n1", "tcp://b:1", ttl=30)
    again = t.join("n1", "tcp://a:1", ttl=30, previous=first.incarnation)  # its own rejoin
    assert again.incarnation == 2
    with pytest.raises(LeaseLost, match="superseded by 2"):
        t.renew("n1", first.incarnation, ttl=30)
    (m,) = t.members()
    assert (m.node, m.address, m.incarnation, m.draining, m.shards) == \
        ("n1", "tcp://a:1", 2, False, 0)
    assert 29 < m.lease_left <= 30 and m.alive


def test_a_name_whose_lease_expired_can_join_again(tables):
    t = tables()
    t.join("n1", "tcp://a:1", ttl=0.2)
    _wait_expired(t, "n1")
    assert t.join("n1", "tcp://a:2", ttl=30).incarnation == 2


def test_renew_extends_by_the_database_clock_and_never_revives_an_expired_lease(tables):
    t = tables()
    j = t.join("n1", "a", ttl=0.5)
    r = t.renew("n1", j.incarnation, ttl=60, agents=7)
    assert r.lease_expires > j.lease_expires
    (m,) = t.members()
    assert m.agents == 7 and m.lease_left > 50
    t.renew("n1", j.incarnation, ttl=0.2)
    _wait_expired(t, "n1")
    with pytest.raises(LeaseLost, match="expired"):
        t.renew("n1", j.incarnation, ttl=30)


def test_claim_bumps_the_epoch_and_expects_the_owner_and_epoch_it_saw(tables):
    t = tables()
    n1 = t.join("n1", "a", ttl=30).incarnation
    n2 = t.join("n2", "b", ttl=30).incarnation
    assert t.claim(0, "n1", n1, owner=None, epoch=0) == 1
    assert t.claim(0, "n2", n2, owner=None, epoch=0) is None      # stale view
    assert t.claim(0, "n2", n2, owner="n1", epoch=1) is None      # live owner
    assert t.claim(0, "n1", n1, owner="n1", epoch=1) == 2         # its own, again
    assert [(r.shard, r.epoch) for r in t.shards_of("n1")] == [(0, 2)]
    assert t.shards_of("n2") == []


def test_claim_takes_over_an_expired_owners_shard(tables):
    t = tables()
    old = t.join("old", "a", ttl=0.3).incarnation
    new = t.join("new", "b", ttl=30).incarnation
    assert t.claim(3, "old", old, None, 0) == 1
    assert t.claim(3, "new", new, "old", 1) is None
    _wait_expired(t, "old")
    assert t.claim(3, "new", new, "old", 1) == 2
    assert t.release(3, "old", 1) is False  # the old owner can no longer give it away


def test_a_claimer_must_hold_a_live_lease_and_not_be_draining(tables):
    t = tables()
    n1 = t.join("n1", "a", ttl=30).incarnation
    t.set_draining("n1", n1)
    assert t.claim(0, "n1", n1, None, 0) is None
    t.set_draining("n1", n1, draining=False)
    assert t.claim(0, "n1", n1 + 1, None, 0) is None  # not its incarnation
    assert t.claim(0, "n1", n1, None, 0) == 1
    short = t.join("n2", "b", ttl=0.2).incarnation
    _wait_expired(t, "n2")
    assert t.claim(1, "n2", short, None, 0) is None


def test_release_hands_a_shard_to_whoever_claims_it_next(tables):
    t = tables()
    n1 = t.join("n1", "a", ttl=30).incarnation
    n2 = t.join("n2", "b", ttl=30).incarnation
    e = t.claim(5, "n1", n1, None, 0)
    assert t.release(5, "n1", e + 1) is False  # not at that epoch
    assert t.release(5, "n1", e) is True
    assert t.claim(5, "n2", n2, None, e) == e + 1


def test_leave_removes_the_member_and_frees_its_shards(tables):
    t = tables()
    n1 = t.join("n1", "a", ttl=30).incarnation
    t.claim(0, "n1", n1, None, 0)
    t.claim(1, "n1", n1, None, 0)
    t.leave("n1", n1 + 1)  # a superseded incarnation removes nothing
    assert [m.node for m in t.members()] == ["n1"]
    t.leave("n1", n1)
    assert t.members() == []
    assert [(r.owner, r.epoch) for r in t.shard_rows()[:2]] == [(None, 1), (None, 1)]


def test_concurrent_claims_of_one_shard_have_one_winner(tables):
    t = tables()
    names = [f"n{i}" for i in range(6)]
    incs = {n: t.join(n, n, ttl=30).incarnation for n in names}
    won: list[tuple[str, int | None]] = []
    go = threading.Barrier(len(names))

    def claim(n: str) -> None:
        mine = tables()
        go.wait()
        won.append((n, mine.claim(0, n, incs[n], None, 0)))

    threads = [threading.Thread(target=claim, args=(n,)) for n in names]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    winners = [(n, e) for n, e in won if e is not None]
    assert len(winners) == 1 and winners[0][1] == 1
    assert t.shard_rows()[0].owner == winners[0][0]


def test_a_server_that_does_not_answer_is_a_store_error(pg_server):
    from pgserver import free_port
    with pytest.raises(StoreError, match="unavailable"):
        connect_cluster(f"postgresql://postgres@127.0.0.1:{free_port()}/x", "c1", 4)


def test_a_renewal_that_waited_for_a_claim_past_its_expiry_fails(pg_dsn, tables):
    # A renewal sent while the lease is alive, held up by a takeover's lock on the member
    # row until the lease expired, must not extend it: it is judged at the moment it
    # runs (clock_timestamp), not when its statement started (now()).
    t = tables()
    inc = t.join("old", "a", ttl=1.0).incarnation
    n2 = t.join("new", "b", ttl=30).incarnation
    assert t.claim(0, "old", inc, None, 0) == 1
    outcome: list[BaseException | None] = []
    claimer = connect_cluster(pg_dsn, "c1", 8)
    with claimer.conn.transaction():  # a takeover in flight: it holds the member row
        claimer.conn.execute("UPDATE beamish_members SET lease_expires = lease_expires "
                             "WHERE node = 'old'")

        def renew() -> None:
            try:
                tables().renew("old", inc, ttl=30)
                outcome.append(None)
            except LeaseLost as e:
                outcome.append(e)

        th = threading.Thread(target=renew)
        th.start()
        time.sleep(0.3)
        assert outcome == []  # waiting for the claimer
        _wait_expired(t, "old")
    th.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], LeaseLost)
    assert claimer.claim(0, "new", n2, "old", 1) == 2  # and the takeover goes through
    claimer.close()
