"""The sweep of rows nobody will take (``store/postgres/sweep.py``), on a real
PostgreSQL: replies whose caller gave up (by the database's clock, after a grace),
link signals and monitors of node incarnations that are gone; bounded by its limit.
And `Sweeper`'s schedule, pure, one row per rule."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.postgres.sweep import REPLY_GRACE_S, Sweeper, Swept, sweep
from beamish.runtime.store.records import Reply


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PgStore]:
    """Cluster "c1" of a fresh database."""
    s = open_postgres_store(pg_dsn, "c1")
    yield s
    s.close()


def _db_now(dsn: str) -> float:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8").fetchone()
        assert row is not None
        return float(row[0])


def _count(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def test_replies_past_their_callers_deadline_and_the_grace_are_swept(
        store: PgStore, pg_dsn: str) -> None:
    now = _db_now(pg_dsn)  # the database's clock, not this process's
    replies = {
        b"old1": now - REPLY_GRACE_S - 100, b"old2": now - REPLY_GRACE_S - 5,
        b"old3": now - REPLY_GRACE_S - 1,
        b"grace": now - 10,  # its caller gave up, but a skewed clock may still wait
        b"future": now + 30,
    }

    def put(t):  # type: ignore[no-untyped-def]
        for msg_id, expires in replies.items():
            t.put_reply(msg_id, Reply(True, expires, b"v"))
        t.put_reply_packed(b"never", b"\x80")  # no expires: kept, as on LMDB
    store.write(put)
    # bounded: two at a time, and the caller is told to come back
    first = store.write(lambda t: sweep(t, limit=2))
    assert first.replies == 2 and first.full(2)
    second = store.write(lambda t: sweep(t, limit=2))
    assert second.replies == 1 and not second.full(2)
    assert store.write(lambda t: sweep(t, limit=2)).replies == 0
    left = {bytes(r[0]) for r in _count(pg_dsn, "SELECT msg_id FROM beamish_replies")}
    assert left == {b"grace", b"future", b"never"}
    # another cluster's rows are its own
    other = open_postgres_store(pg_dsn, "c2")
    try:
        other.write(lambda t: t.put_reply(b"x", Reply(True, now - 1000, b"v")))
        assert store.write(sweep).replies == 0
        assert other.write(sweep).replies == 1
    finally:
        other.close()


def test_link_rows_of_gone_node_incarnations_are_swept(store: PgStore, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO beamish_members (cluster, node, address, incarnation, "
                     "lease_expires) VALUES ('c1', 'n1', 'tcp://x:1', 2, now() + "
                     "interval '1 hour'), ('c1', 'n5', 'tcp://x:5', 1, now() - "
                     "interval '1 hour')")  # n1 live at 2; n5's lease ran out (fenced)
        for to_node, inc in [("n1", 1), ("n1", 2), ("n1", 3), ("n5", 1), ("n9", 1)]:
            conn.execute(
                "INSERT INTO beamish_link_signals (cluster, op, ref, to_node, "
                "to_incarnation, from_node, from_incarnation, name, target, reason, "
                "abnormal) VALUES ('c1', 'exit', 1, %s, %s, 'n2', 1, 'a', 'b', 'r', false)",
                (to_node, inc))
        for node, inc in [("n1", 1), ("n1", 2), ("n5", 1), ("n9", 1), ("", 0)]:
            conn.execute("INSERT INTO beamish_link_watches (cluster, target, node, "
                         "incarnation, name) VALUES ('c1', 't', %s, %s, 'w')", (node, inc))
    swept = store.write(sweep)
    assert (swept.signals, swept.watches) == (3, 3)
    assert sorted(_count(pg_dsn, "SELECT to_node, to_incarnation FROM "
                                 "beamish_link_signals")) == [("n1", 2), ("n1", 3)]
    # n1's live incarnation keeps its monitor; a replicated watcher's ('') is never swept
    assert sorted(_count(pg_dsn, "SELECT node, incarnation FROM beamish_link_watches")) \
        == [("", 0), ("n1", 2)]


@pytest.mark.parametrize(("swept", "next_in"), [
    (None, 30.0),  # it failed: the normal period
    (Swept(0, 0, 0), 30.0),
    (Swept(5, 0, 0), 30.0),
    (Swept(10, 0, 0), 0.0),  # hit the limit: again at the next round
    (Swept(0, 0, 10), 0.0),
])
def test_sweeper_schedule(swept: Swept | None, next_in: float) -> None:
    s = Sweeper(every=30.0, limit=10)
    assert not s.due(0.0)
    s.done(swept, 1000.0)
    assert s.due(1000.0 + next_in) and not s.due(1000.0 + next_in - 0.01)
