"""The node's appends in one statement (`PgAppender`, ``store/postgres/append.py``):
messages appended in order with consecutive seqs, sleeping agents marked to be woken,
unknown or stopped agents refused, a ``whole`` append all or nothing, taken replies
deleted, and the notifications of the agents owned elsewhere delivered at the commit.
Against a real PostgreSQL; `item_outcomes` and `append_sql` are pure (table tests)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from beamish.runtime.errors import AgentNotFound
from beamish.runtime.node.cluster_append import ACCEPTING, SLEEPING, NotReplicated, outcomes
from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.postgres.append import (
    Appended,
    PgAppender,
    append_sql,
    item_outcomes,
)
from beamish.runtime.store.postgres.ring import CHANNEL
from beamish.runtime.store.records import AgentRecord, Reply


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PgStore]:
    s = open_postgres_store(pg_dsn, "c1")
    s.write(lambda t: [t.put_agent(AgentRecord("run", 11, status="running")),
                       t.put_agent(AgentRecord("nap", 12, status="sleeping")),
                       t.put_agent(AgentRecord("off", 13, status="stopped"))])
    yield s
    s.close()


@pytest.fixture
def appender(pg_dsn: str, store: PgStore) -> Iterator[PgAppender]:
    a = PgAppender(pg_dsn, "c1", ACCEPTING, SLEEPING)
    yield a
    a.close()


def _mail(store: PgStore, agent_id: int) -> list[tuple[int, bytes | None]]:
    return store.read(lambda t: [(seq, t.message_packed(agent_id, seq))
                                 for seq, _ in t.peek(agent_id)])


def test_one_message_then_a_group_keep_order_and_seqs(store: PgStore, appender: PgAppender):
    assert appender.append([("run", b"a")]) == [Appended("run", 11, "running", 1)]
    rows = appender.append([("run", b"b"), ("nap", b"c"), ("run", b"d")])
    assert rows == [Appended("run", 11, "running", 2), Appended("nap", 12, "sleeping", 1)]
    assert _mail(store, 11) == [(1, b"a"), (2, b"b"), (3, b"d")]
    assert _mail(store, 12) == [(1, b"c")]
    assert store.read(lambda t: t.wakes()) == [(12, "nap")]
    assert store.read(lambda t: t.tail(11)) == 4


def test_unknown_and_stopped_agents_get_nothing(store: PgStore, appender: PgAppender):
    assert appender.append([("ghost", b"x")]) == [Appended("ghost", None, None, None)]
    assert appender.append([("off", b"x")]) == [Appended("off", 13, "stopped", None)]
    rows = appender.append([("off", b"x"), ("run", b"y"), ("ghost", b"z")])
    assert rows == [Appended("off", 13, "stopped", None), Appended("run", 11, "running", 1),
                    Appended("ghost", None, None, None)]
    assert _mail(store, 13) == [] and _mail(store, 11) == [(1, b"y")]


def test_a_whole_append_is_all_or_nothing(store: PgStore, appender: PgAppender):
    rows = appender.append([("run", b"a"), ("off", b"b")], whole=True)
    assert [r.first for r in rows] == [None, None]
    assert _mail(store, 11) == []
    rows = appender.append([("run", b"a"), ("nap", b"b")], whole=True)
    assert [r.first for r in rows] == [1, 1]


@pytest.mark.parametrize("taken", [1, 4, 6])  # scalars up to 4, then one array
def test_taken_replies_are_deleted_in_the_same_statement(store: PgStore,
                                                         appender: PgAppender, taken: int):
    ids = [bytes([k]) * 16 for k in range(taken)]
    store.write(lambda t: [t.put_reply(i, Reply(True, 0.0)) for i in ids])
    appender.append([("run", b"a")], taken=ids)
    assert store.read(lambda t: t.expired_replies(1e12)) == []


def test_only_the_agents_rung_elsewhere_are_notified_at_the_commit(
        pg_dsn: str, store: PgStore, appender: PgAppender):
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        appender.append([("run", b"a")], ring={"run"})
        appender.append([("nap", b"b"), ("run", b"c"), ("ghost", b"d")],
                        ring={"nap", "ghost"})
        appender.append([("run", b"e")])
        got = [n.payload for n in listener.notifies(timeout=1.0, stop_after=3)]
    assert got == ["c1\x1frun", "c1\x1fnap"]


def test_item_outcomes():
    rows = [Appended("a", 1, "running", 5), Appended("s", 2, "sleeping", 1),
            Appended("x", 3, "stopped", None), Appended("g", None, None, None)]
    items = [("a", b""), ("s", b""), ("a", b""), ("x", b""), ("g", b"")]
    out = item_outcomes(items, rows, ACCEPTING, SLEEPING)
    assert out[:3] == [(1, 5, False), (2, 1, True), (1, 6, False)]
    assert isinstance(out[3], AgentNotFound) and "stopped" in str(out[3])
    assert type(out[4]) is AgentNotFound
    # the node's view: a name no replicated agent has may be another node's pinned agent
    marked = outcomes(items, rows)
    assert type(marked[4]) is NotReplicated and type(marked[3]) is AgentNotFound


# one, taken, ring -> fragments the statement has, and has not
SQL_CASES = [
    (True, 0, False, ["name = %(name)s"], ["gone", "pg_notify", "unnest"]),
    (True, 2, True, ["msg_id IN (%(t0)s, %(t1)s)", "pg_notify('beamish_ring'"], ["unnest"]),
    (False, 5, False, ["msg_id = ANY(%(taken)s::bytea[])", "unnest"], ["pg_notify"]),
    (False, 0, True, ["unnest", "pg_notify"], ["gone"]),
]


@pytest.mark.parametrize(("one", "taken", "ring", "has", "lacks"), SQL_CASES)
def test_append_sql(one: bool, taken: int, ring: bool, has: list[str], lacks: list[str]):
    sql = append_sql(one, taken, ring, ACCEPTING, SLEEPING)
    assert all(h in sql for h in has), sql
    assert not any(x in sql for x in lacks), sql
    assert "'running'" in sql and "'sleeping'" in sql


def test_append_sql_refuses_a_status_that_is_not_a_word():
    with pytest.raises(ValueError):
        append_sql(True, 0, False, ["running'; DROP TABLE x; --"], SLEEPING)


def test_a_connection_ended_while_idle_costs_no_doubt(pg_dsn: str, store: PgStore,
                                                       appender: PgAppender):
    """A backend ended between two appends (a server restart, pg_terminate_backend): the
    next append finds out, sees from its writer row that nothing of it was stored, and
    runs once more (before: CommitOutcomeUnknown for a statement that never ran)."""
    appender.append([("run", b"a")])
    db = pg_dsn.rsplit("/", 1)[1]
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                      "datname = %s AND pid <> pg_backend_pid()", (db,))
    assert appender.append([("run", b"b")]) == [Appended("run", 11, "running", 2)]
    assert _mail(store, 11) == [(1, b"a"), (2, b"b")]
