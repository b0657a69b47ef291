"""Replicated agents' reads and commits through their node (``node/cluster_commits.py``,
``agent/nodestore.py``): the committer's rules as tables; its grouping against a real
PostgreSQL (one failing set rolls back alone, a stale grant commits nothing, a fenced
node's queued sets are neither committed nor answered); and a real node whose agents,
however many, add no connection to the server and load no database driver."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import zmq

from beamish.runtime import start_node
from beamish.runtime.agent.nodestore import NodeStore, _Later, _resolve
from beamish.runtime.cluster.commits import Decision, SetFence, Unknown, after_unknown, decide
from beamish.runtime.errors import StaleEpoch, StoreError
from beamish.runtime.node.cluster_commits import NodeCommitter, _Request
from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.fencing import Fence
from beamish.runtime.store.records import Message
from beamish.runtime.store.shipped import Op, WriteSet, dumps, loads
from tests.cluster.conftest import PgServer
from tests.conftest import shutdown_quietly, wait_until

CLUSTER = "nc"


# -- the rules (pure) ----------------------------------------------------------------------
@pytest.mark.parametrize(("fence", "granted", "fenced", "expected"), [
    (SetFence(3, "n1", 5), 5, False, Decision.COMMIT),      # the grant it was made under
    (SetFence(3, "n1", 5), 6, False, Decision.STALE),       # the node holds a newer grant
    (SetFence(3, "n1", 5), None, False, Decision.STALE),    # lost (a hand-off, a takeover)
    (SetFence(3, "n2", 5), 5, False, Decision.STALE),       # another node's grant
    (SetFence(3, "n1", 5), 5, True, Decision.DROP),         # fenced: nothing answered
    (SetFence(3, "n1", 5), None, True, Decision.DROP),      # fenced and lost: the same
])
def test_decide(fence: SetFence, granted: int | None, fenced: bool, expected: Decision):
    assert decide(fence, "n1", granted, fenced) is expected


@pytest.mark.parametrize(("outcome", "item_failed", "expected"), [
    (True, False, Unknown.COMMITTED),       # the writer row holds the cut-off commit
    (True, True, Unknown.NOT_COMMITTED),    # committed, but its own item rolled back
    (False, False, Unknown.NOT_COMMITTED),  # nothing of the group was stored
    (False, True, Unknown.NOT_COMMITTED),
    (None, False, Unknown.IN_DOUBT),        # the server did not come back in time
    (None, True, Unknown.NOT_COMMITTED),    # its item committed nothing either way
])
def test_after_unknown(outcome: bool | None, item_failed: bool, expected: Unknown):
    assert after_unknown(outcome, item_failed) is expected


@pytest.mark.parametrize(("value", "results", "expected"), [
    (_Later(0), [7], (7, True)),
    ((_Later(1), _Later(0)), ["a", "b"], (("b", "a"), True)),
    ([_Later(0), [_Later(1)]], [1, 2], ([1, [2]], True)),
    ((_Later(0), None), [1], ((1, None), False)),   # a leaf of its own: run call by call
    (False, [1], (False, False)),
], ids=["one-call", "a-tuple", "nested", "a-leaf-of-its-own", "no-call"])
def test_a_deferred_value_is_resolved_only_when_built_of_calls_alone(value: Any,
                                                                     results: list[Any],
                                                                     expected: Any):
    assert _resolve(value, results) == expected


def test_the_wire_names_no_callable_but_records():
    ws = WriteSet(3, "n1", 5, (Op("put_state", (1, 1, b"s", 1)),))
    assert loads(dumps(ws)) == ws
    assert loads(dumps([Message("cast", b"x", 1.0)])) == [Message("cast", b"x", 1.0)]
    with pytest.raises(StoreError, match="may not name"):
        loads(dumps(os.system))


# -- the committer on a real PostgreSQL ---------------------------------------------------
class _Grants:
    def __init__(self) -> None:
        self.epochs = {3: 5, 4: 2}
        self.fenced = False


@pytest.fixture
def committer(pg_dsn: str, tmp_path: Any) -> Iterator[tuple[NodeCommitter, _Grants]]:
    open_postgres_store(pg_dsn, CLUSTER).close()  # the schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO beamish_shards (cluster, shard, owner, epoch) VALUES "
                     "(%s, 3, 'n1', 5), (%s, 4, 'n1', 2)", (CLUSTER, CLUSTER))
    grants = _Grants()
    path = os.path.join(tempfile.mkdtemp(prefix="bmc-", dir="/tmp"), "c.sock")
    c = NodeCommitter(path, lambda: open_postgres_store(pg_dsn, CLUSTER), "n1",
                      grants.epochs.get, lambda: grants.fenced)
    c.start()
    try:
        yield c, grants
    finally:
        c.close()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _set(shard: int, epoch: int, *ops: Op) -> _Request:
    return _Request(b"id", b"r", WriteSet(shard, "n1", epoch, ops))


def _answer(frames: list[bytes]) -> Any:
    body = loads(frames[3])
    return body if frames[2] == b"1" else body[0]


def test_one_sets_failure_rolls_back_that_set_alone(committer: Any, pg_dsn: str):
    c, _ = committer
    store = open_postgres_store(pg_dsn, CLUSTER)
    try:
        answers = c.commit_group([
            _set(3, 5, Op("put_state", (1, 1, b"one", 1))),
            _set(3, 5, Op("put_state", (2, 1, b"two", 1)),
                 Op("put_state", (2, 2 ** 70, b"", 0))),  # refused by the server
            _set(4, 2, Op("put_state", (3, 1, b"three", 1)), Op("remove_many", (3, [1]))),
            _set(4, 1, Op("put_state", (4, 1, b"stale", 1))),  # not this node's grant
        ])
        assert [_answer(a) for a in answers] == ["StaleEpoch", [None], "StoreError",
                                                 [None, None]]
        assert store.read(lambda t: [t.get_state(i) for i in (1, 2, 3, 4)]) == [
            (1, b"one", 1), None, (1, b"three", 1), None]
        assert c.groups == 1 and c.sets == 2
    finally:
        store.close()


def test_a_grant_the_database_no_longer_holds_commits_nothing(committer: Any, pg_dsn: str):
    c, _ = committer
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a takeover the node missed
        conn.execute("UPDATE beamish_shards SET owner = 'n2', epoch = 6 WHERE cluster = %s "
                     "AND shard = 3", (CLUSTER,))
    answers = c.commit_group([_set(3, 5, Op("put_state", (9, 1, b"x", 1))),
                              _set(4, 2, Op("put_state", (8, 1, b"y", 1)))])
    assert [_answer(a) for a in answers] == ["StaleEpoch", [None]]
    store = open_postgres_store(pg_dsn, CLUSTER)
    try:
        assert store.read(lambda t: (t.get_state(9), t.get_state(8))) == (None, (1, b"y", 1))
    finally:
        store.close()


def test_a_fenced_nodes_queued_sets_are_neither_committed_nor_answered(committer: Any,
                                                                       pg_dsn: str):
    c, grants = committer
    ctx: zmq.Context[Any] = zmq.Context()
    agent = NodeStore(c.address, Fence(3, "n1", 5), ctx, lambda: pytest.fail("no fallback"))
    try:
        agent.write(lambda t: t.put_state(1, 1, b"before", 1))  # answered: committed
        grants.fenced = True
        c.fence()
        sock = ctx.socket(zmq.DEALER)
        sock.connect(c.address)
        ws = WriteSet(3, "n1", 5, (Op("put_state", (1, 1, b"after", 2)),))
        sock.send_multipart([b"W", b"1", dumps(ws)])
        assert not sock.poll(1500)  # no answer: its agent is being killed
        sock.close(linger=0)
        grants.fenced = False
        assert agent.read(lambda t: t.get_state(1)) == (1, b"before", 1)
        assert not agent.has_own_connection
    finally:
        agent.close()
        ctx.destroy(linger=0)


def test_an_agents_store_through_the_node_reads_in_one_snapshot_and_falls_back(
        committer: Any, pg_dsn: str):
    c, grants = committer
    ctx: zmq.Context[Any] = zmq.Context()
    opened: list[Any] = []

    def own() -> Any:
        opened.append(open_postgres_store(pg_dsn, CLUSTER, Fence(3, "n1", 5)))
        return opened[-1]
    agent = NodeStore(c.address, Fence(3, "n1", 5), ctx, own)
    try:
        agent.write(lambda t: t.put_state(5, 1, b"s", 3))
        assert agent.read(lambda t: (t.get_state(5), t.tail(5), t.peek(5))) == (
            (1, b"s", 3), 1, [])
        assert agent.read(lambda t: t.get_state(5) is not None)  # looks: call by call
        assert not opened
        seq = agent.write(lambda t: t.append(5, Message("cast", b"m", 1.0)))  # a value
        assert seq == 1 and len(opened) == 1 and agent.has_own_connection
        assert agent.read(lambda t: [m.payload for _, m in t.peek(5)]) == [b"m"]
        grants.epochs[3] = 6  # the node lost the grant (and got a newer one)
        with pytest.raises(StaleEpoch):
            agent.write(lambda t: t.put_state(5, 1, b"late", 4))
    finally:
        agent.close()
        ctx.destroy(linger=0)


# -- a real node --------------------------------------------------------------------------
def _backends(pg_server: PgServer, role: str) -> int:
    out = pg_server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'")
    return int(str(out).strip().splitlines()[-1].strip())


def _maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as fh:
        return fh.read()


def test_a_nodes_agents_share_its_connections_and_load_no_driver(pg_server: PgServer,
                                                                 pg_dsn: str):
    role = f"bm{uuid.uuid4().hex[:8]}_n1"
    pg_server.psql(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    base = tempfile.mkdtemp(prefix="bmn-", dir="/tmp")
    cfg = os.path.join(base, "n1.toml")
    dsn = pg_dsn.replace("//postgres@", f"//{role}@", 1)
    with open(cfg, "w") as fh:
        fh.write(f'[cluster]\nname = "nc1"\nnode = "n1"\npostgres = "{dsn}"\n')
    node = start_node(os.path.join(base, "n1"), config=cfg)
    try:
        wait_until(lambda: len(node.cluster().shards) == 64, timeout=60)  # type: ignore[union-attr]
        node.spawn("examples.agents:Counter", name="c0", durability="replicated")
        assert node.call("c0", "incr") == 1
        time.sleep(0.5)
        one = _backends(pg_server, role)
        names = [f"c{i}" for i in range(1, 8)]
        for n in names:
            node.spawn("examples.agents:Counter", name=n, durability="replicated")
        for n in names:
            node.cast(n, "incr")
            assert node.call(n, "incr") == 2
        assert _backends(pg_server, role) == one  # eight agents awake, no more backends
        for n in ["c0", *names]:
            pid = node.info(n).pid
            assert pid is not None
            maps = _maps(pid)
            assert "libpq" not in maps and "psycopg" not in maps, n
    finally:
        shutdown_quietly(node)
        shutil.rmtree(base, ignore_errors=True)
