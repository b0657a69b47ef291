"""Fencing on a real PostgreSQL: a commit under a stale epoch commits nothing and raises
StaleEpoch; a takeover racing a writer (two real connections, two threads, ordered by
what the server says each backend waits for, never by sleeps) lets the writer commit
before it or refuses it after it; a group commit rolls back only its stale or failing
items. The shard rows are set with plain SQL, as a takeover would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from beamish.runtime.errors import StaleEpoch, StoreError, StoreUnavailable
from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.postgres.fencing import Fence, GroupItem
from beamish.runtime.store.records import Message
from tests.conftest import wait_until

CLUSTER = "c1"


def _cast(payload: bytes) -> Message:
    return Message("cast", payload, 0.0)


@pytest.fixture
def admin(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection that sets shard rows as a takeover would."""
    open_postgres_store(pg_dsn, CLUSTER).close()  # the schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO beamish_shards (cluster, shard, owner, epoch) VALUES "
                     "(%s, 3, 'n1', 5), (%s, 4, 'n1', 2)", (CLUSTER, CLUSTER))
        yield conn


def _named(dsn: str, name: str) -> str:
    return f"{dsn}?application_name={name}"


def _waits_on_a_lock(admin: psycopg.Connection[Any], name: str) -> bool:
    row = admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE "
                        "application_name = %s", (name,)).fetchone()
    return row is not None and row[0] == "Lock"


def _takeover(conn: psycopg.Connection[Any], shard: int, node: str) -> int:
    row = conn.execute("UPDATE beamish_shards SET owner = %s, epoch = epoch + 1 WHERE "
                       "cluster = %s AND shard = %s RETURNING epoch",
                       (node, CLUSTER, shard)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_write_under_a_stale_epoch_commits_nothing_and_says_so(pg_dsn, admin):
    store = open_postgres_store(pg_dsn, CLUSTER, Fence(3, "n1", 5))
    try:
        assert store.write(lambda t: t.append(1, _cast(b"a"))) == 1
        _takeover(admin, 3, "n2")
        with pytest.raises(StaleEpoch) as err:
            store.write(lambda t: t.append(1, _cast(b"b")))
        assert (err.value.shard, err.value.node, err.value.epoch, err.value.owner,
                err.value.current) == (3, "n1", 5, "n2", 6)
        # A released shard, a shard with no row, a fence under another fence's epoch:
        admin.execute("UPDATE beamish_shards SET owner = NULL WHERE shard = 4")
        for fences in ([Fence(4, "n1", 2)], [Fence(9, "n1", 0)],
                       [Fence(3, "n2", 6), Fence(4, "n1", 2)]):
            with pytest.raises(StaleEpoch):
                store.write_fenced(lambda t: t.append(1, _cast(b"c")), fences)
        assert store.read(lambda t: ([m.payload for _, m in t.peek(1)], t.tail(1))) == \
            ([b"a"], 2)
        # The new owner's fence holds; an unfenced write is not checked.
        assert store.write_fenced(lambda t: t.append(1, _cast(b"d")), [Fence(3, "n2", 6)]) == 2
        assert store.write_fenced(lambda t: t.append(1, _cast(b"e")), []) == 3
    finally:
        store.close()


def test_a_writer_holding_the_shard_commits_before_the_takeover_which_waits(pg_dsn, admin):
    store = open_postgres_store(_named(pg_dsn, "writer"), CLUSTER, Fence(3, "n1", 5))
    inside, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def write(t):  # type: ignore[no-untyped-def]
        seq = t.append(1, _cast(b"before"))
        inside.set()  # the shard row is read FOR SHARE: held until the commit
        assert release.wait(30)
        return seq

    def writer() -> None:
        try:
            outcome["writer"] = store.write(write)
        except Exception as exc:  # the assertion below reports it
            outcome["writer"] = exc

    def takeover() -> None:
        with psycopg.connect(_named(pg_dsn, "takeover")) as conn:
            outcome["epoch"] = _takeover(conn, 3, "n2")
            conn.commit()

    threads = [threading.Thread(target=writer), threading.Thread(target=takeover)]
    try:
        threads[0].start()
        assert inside.wait(30)
        threads[1].start()
        wait_until(lambda: _waits_on_a_lock(admin, "takeover"), what="the takeover to wait")
        assert "epoch" not in outcome  # it waits for the writer's commit
        release.set()
        for t in threads:
            t.join(30)
        assert outcome == {"writer": 1, "epoch": 6}
        assert store.read(lambda t: [m.payload for _, m in t.peek(1)]) == [b"before"]
        with pytest.raises(StaleEpoch):  # and after the takeover, nothing more
            store.write(lambda t: t.append(1, _cast(b"after")))
        assert store.read(lambda t: t.depth(1)) == 1
    finally:
        release.set()
        store.close()


def test_a_writer_after_the_takeover_is_refused_once_the_takeover_commits(pg_dsn, admin):
    store = open_postgres_store(_named(pg_dsn, "writer"), CLUSTER, Fence(3, "n1", 5))
    outcome: dict[str, Any] = {}

    def writer() -> None:
        try:
            outcome["writer"] = store.write(lambda t: t.append(1, _cast(b"late")))
        except Exception as exc:  # the assertion below checks which
            outcome["writer"] = exc

    thread = threading.Thread(target=writer)
    try:
        with psycopg.connect(pg_dsn) as conn:
            assert _takeover(conn, 3, "n2") == 6  # not committed yet: the row is locked
            thread.start()
            wait_until(lambda: _waits_on_a_lock(admin, "writer"),
                       what="the writer's fence read to wait for the takeover")
            conn.commit()
        thread.join(30)
        assert isinstance(outcome["writer"], StaleEpoch)
        assert (outcome["writer"].owner, outcome["writer"].current) == ("n2", 6)
        assert store.read(lambda t: (t.depth(1), t.tail(1))) == (0, 1)
    finally:
        store.close()


def test_a_writer_stalled_inside_its_transaction_holds_a_takeover_up_only_briefly(pg_dsn,
                                                                                  admin):
    """A node paused (or cut off) in the middle of a commit holds its shard rows FOR
    SHARE: the server ends its idle transaction after ``idle_timeout``, so the takeover
    goes through; the stalled writer, resumed, commits nothing and is told so."""
    store = PgStore(_named(pg_dsn, "writer"), CLUSTER, Fence(3, "n1", 5), idle_timeout=1.0)
    inside, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def write(t):  # type: ignore[no-untyped-def]
        seq = t.append(1, _cast(b"stalled"))
        inside.set()
        assert release.wait(30)
        return seq

    def writer() -> None:
        try:
            outcome["writer"] = store.write(write)
        except Exception as exc:  # checked below
            outcome["writer"] = exc

    thread = threading.Thread(target=writer)
    try:
        thread.start()
        assert inside.wait(30)
        with psycopg.connect(pg_dsn) as conn:
            assert _takeover(conn, 3, "n2") == 6  # waited for the server to end the writer
            conn.commit()
        release.set()
        thread.join(30)
        assert isinstance(outcome["writer"], StoreUnavailable), outcome
        assert "idle" in str(outcome["writer"])
        with pytest.raises(StaleEpoch):
            store.write(lambda t: t.append(1, _cast(b"again")))
        assert store.read(lambda t: (t.depth(1), t.tail(1))) == (0, 1)
    finally:
        release.set()
        store.close()


@pytest.mark.parametrize("round_", range(3))
def test_no_commit_of_the_old_owner_lands_after_the_new_owners_first(pg_dsn, admin, round_):
    """A writer appends under n1's fence as fast as it can; another thread takes the shard
    over and appends a marker as n2. Every append acknowledged to n1 is stored, and every
    stored n1 append comes before the marker (seqs follow commit order: the tail's row is
    locked until the commit)."""
    old = open_postgres_store(pg_dsn, CLUSTER, Fence(3, "n1", 5))
    new = open_postgres_store(pg_dsn, CLUSTER)
    acked: list[bytes] = []
    refused: list[bytes] = []
    going = threading.Event()

    def writer() -> None:
        for i in range(100_000):
            payload = b"n1-%d" % i
            try:
                old.write(lambda t, p=payload: t.append(1, _cast(p)))
            except StaleEpoch:
                refused.append(payload)
                return
            acked.append(payload)
            if i == 20 + 10 * round_:
                going.set()

    thread = threading.Thread(target=writer)
    try:
        thread.start()
        assert going.wait(30)
        with psycopg.connect(pg_dsn) as conn:
            epoch = _takeover(conn, 3, "n2")
            conn.commit()
        marker = new.write_fenced(lambda t: t.append(1, _cast(b"n2")), [Fence(3, "n2", epoch)])
        thread.join(30)
        stored = new.read(lambda t: t.peek(1, 1_000_000))
        n1 = [(seq, m.payload) for seq, m in stored if m.payload != b"n2"]
        assert [p for _, p in n1] == acked and len(refused) == 1
        assert all(seq < marker for seq, _ in n1)
    finally:
        old.close()
        new.close()


def test_a_group_commits_its_good_items_and_rolls_back_each_bad_one_alone(pg_dsn, admin):
    store = open_postgres_store(pg_dsn, CLUSTER)
    _takeover(admin, 4, "n2")  # n1's epoch 2 of shard 4 is stale now: epoch 3, owner n2

    def boom(t):  # type: ignore[no-untyped-def]
        t.append(5, _cast(b"half"))
        raise ValueError("the handler's own error")

    def refused(t):  # type: ignore[no-untyped-def]
        t.append(6, _cast(b"half"))
        t.put_state(6, 2 ** 70, b"", 0)  # out of bigint's range: PostgreSQL refuses it

    good, stale = (Fence(3, "n1", 5),), (Fence(4, "n1", 2),)
    items = [GroupItem(lambda t: t.append(1, _cast(b"a")), good),
             GroupItem(lambda t: t.append(2, _cast(b"stale")), stale),
             GroupItem(boom, good),
             GroupItem(lambda t: t.append(3, _cast(b"b")), good),
             GroupItem(refused, ()),
             GroupItem(lambda t: (t.append(4, _cast(b"c")), t.next_counter("x"))),
             GroupItem(lambda t: t.append(2, _cast(b"stale too")), good + stale)]
    try:
        results = store.write_group(items)
        assert [r.ok for r in results] == [True, False, False, True, False, True, False]
        assert [r.value for r in results if r.ok] == [1, 1, (1, 1)]
        assert isinstance(results[1].error, StaleEpoch) and results[1].error.owner == "n2"
        assert isinstance(results[2].error, ValueError)
        assert isinstance(results[4].error, StoreError) and "22003" in str(results[4].error)
        assert isinstance(results[6].error, StaleEpoch)
        assert store.read(lambda t: {a: [m.payload for _, m in t.peek(a)]
                                     for a in range(1, 7)}) == {
            1: [b"a"], 2: [], 3: [b"b"], 4: [b"c"], 5: [], 6: []}
        assert store.write_group([]) == []
    finally:
        store.close()


def test_a_group_that_fails_as_a_whole_runs_again_or_commits_nothing(pg_dsn, admin):
    """A group commit is one transaction: what stops it before its commit (here, the
    server refusing a statement at the commit: a deferred constraint) leaves nothing."""
    store: PgStore = open_postgres_store(pg_dsn, CLUSTER)
    admin.execute("CREATE TABLE t_check (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    items = [GroupItem(lambda t: t.append(1, _cast(b"a"))),
             GroupItem(lambda t: t.cur.execute("INSERT INTO t_check VALUES (1), (1)"))]
    try:
        with pytest.raises(StoreError, match="23505"):
            store.write_group(items)
        assert store.read(lambda t: t.depth(1)) == 0
        assert store.write(lambda t: t.append(1, _cast(b"b"))) == 1  # the store goes on
    finally:
        store.close()
