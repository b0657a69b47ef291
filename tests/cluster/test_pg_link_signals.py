"""The signals table of monitors and links across nodes (store/postgres/links.py) on a
real PostgreSQL: each signal is taken once, by its node's current incarnation, however
many threads take at once; a replicated agent's monitors turn into exit signals once."""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.links import LinkSignal, PgLinks, SignalOp

CLUSTER = "c1"


def _exit(ref: int, to: str = "n2", inc: int = 1) -> LinkSignal:
    return LinkSignal(SignalOp.EXIT, ref, to, inc, "n1", 1, f"a{ref}", "", "killed", True)


def test_each_signal_is_taken_once_by_its_nodes_incarnation(pg_dsn: str) -> None:
    open_postgres_store(pg_dsn, CLUSTER).close()  # the schema
    sender, takers = PgLinks(pg_dsn, CLUSTER), [PgLinks(pg_dsn, CLUSTER) for _ in range(4)]
    try:
        sender.send([_exit(ref) for ref in range(1, 201)])
        sender.send([_exit(1000, inc=0), _exit(1001, to="n3")])  # an old one; another node
        taken: list[list[LinkSignal]] = [[] for _ in takers]

        def take(i: int) -> None:
            for _ in range(20):
                taken[i] += takers[i].take("n2", 1)
        threads = [threading.Thread(target=take, args=(i,)) for i in range(len(takers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refs = sorted(s.ref for got in taken for s in got)
        assert refs == list(range(1, 201))  # once each; the old incarnation's dropped
        assert all([s.ref for s in got] == sorted(s.ref for s in got) for got in taken)
        assert takers[0].take("n2", 1) == []
        assert [s.ref for s in takers[0].take("n3", 1)] == [1001]
    finally:
        for links in (sender, *takers):
            links.close()


def test_a_request_is_answered_by_its_ref(pg_dsn: str) -> None:
    open_postgres_store(pg_dsn, CLUSTER).close()
    links = PgLinks(pg_dsn, CLUSTER)
    try:
        ref = links.request(LinkSignal(SignalOp.MONITOR, 0, "n2", 1, "n1", 1, "w", "x"))
        [got] = links.take("n2", 1)
        assert (got.op, got.ref, got.name, got.target) == (SignalOp.MONITOR, ref, "w", "x")
    finally:
        links.close()


def test_a_replicated_agents_monitors_fire_once(pg_dsn: str) -> None:
    open_postgres_store(pg_dsn, CLUSTER).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO beamish_agents (cluster, name, id, status, supervisor, "
                     "record) VALUES (%s, 'r', 1, 'running', 'root', '')", (CLUSTER,))
        conn.execute("INSERT INTO beamish_shards (cluster, shard, owner, epoch) VALUES "
                     "(%s, 5, 'n3', 2)", (CLUSTER,))
    links = PgLinks(pg_dsn, CLUSTER)
    try:
        assert links.watch("gone", ["running"], "n1", 1, "w") is None  # no such agent
        refs = [links.watch("r", ["running"], node, 1, "w") for node in ("n1", "n1", "n2")]
        assert None not in refs
        links.unwatch([refs[1]])  # its watcher exited
        # Not while another node owns its shard (it moved: its process ended with that).
        assert links.fire_watches("r", "abnormal: exit code 3", True, "n3", 7, 5, 1) == 0
        assert links.fire_watches("r", "abnormal: exit code 3", True, "n3", 7, 5, 2) == 2
        assert links.fire_watches("r", "abnormal: exit code 3", True, "n3", 7, 5, 2) == 0
        got = links.take("n1", 1) + links.take("n2", 1)
        assert sorted((s.ref, s.to_node, s.from_node, s.name, s.reason) for s in got) == \
            sorted([(refs[0], "n1", "n3", "r", "abnormal: exit code 3"),
                    (refs[2], "n2", "n3", "r", "abnormal: exit code 3")])
    finally:
        links.close()


def test_dead_names_the_peers_whose_lease_is_gone(pg_dsn: str) -> None:
    open_postgres_store(pg_dsn, CLUSTER).close()
    rows: list[tuple[Any, ...]] = [("a", 1, "1 hour"), ("b", 2, "-1 second")]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for node, inc, left in rows:
            conn.execute("INSERT INTO beamish_members (cluster, node, address, incarnation, "
                         "lease_expires) VALUES (%s, %s, '', %s, now() + %s::interval)",
                         (CLUSTER, node, inc, left))
    links = PgLinks(pg_dsn, CLUSTER)
    try:
        assert links.alive_incarnation("a") == 1 and links.alive_incarnation("b") is None
        assert links.dead({("a", 1), ("a", 0), ("b", 2), ("c", 1)}) == \
            {("a", 0), ("b", 2), ("c", 1)}
    finally:
        links.close()
