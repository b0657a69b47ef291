"""Membership across a real network: three member processes, each in its own network
namespace (or on its own loopback address), one PostgreSQL. A node whose link is cut
cannot even send its renewals (they hang in TCP, not fail): it still fences itself before
the database lets its lease expire, the others take its shards over after that, and when
the link returns it joins again and gets its shards back at new epochs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import psycopg
import pytest

from beamish.runtime.cluster.placement import owner_for
from beamish.runtime.store.postgres.cluster import open_cluster
from tests.conftest import REPO, wait_until

SHARDS = 16
TTL, MARGIN = 3.0, 1.2


class Member:
    """A member process and the events it printed."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO)
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def times(self, event: str) -> list[float]:
        return [e["t"] for e in list(self.events) if e["event"] == event]

    def held(self) -> dict[int, int]:
        held: dict[int, int] = {}
        for e in list(self.events):
            if e["event"] == "gained":
                held[e["shard"]] = e["epoch"]
            elif e["event"] == "lost":
                held.pop(e["shard"], None)
            elif e["event"] == "fenced":
                held.clear()
        return held

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)


@pytest.fixture
def members() -> Iterator[list[Member]]:
    made: list[Member] = []
    yield made
    for m in made:
        m.stop()


@pytest.mark.cluster_long
@pytest.mark.parametrize("kind", ["netns", "loopback"])
def test_a_node_cut_off_fences_before_its_lease_expires_then_rejoins(net, net_pg, members,
                                                                     kind):
    h = net(3, kind)
    server = net_pg(h)
    server.create_database("c")
    admin = psycopg.connect(server.dsn_for("c"), autocommit=True)
    try:
        open_cluster(admin, "c", SHARDS)
        names = [f"n{i}" for i in range(3)]
        for node, name in zip(h.nodes, names, strict=True):
            dsn = server.dsn_for("c", host=node.db_address)
            members.append(Member(node.argv([sys.executable, "-m", "tests.cluster.member_proc",
                                             dsn, name, str(SHARDS), str(TTL), str(MARGIN)])))

        def table() -> dict[int, tuple[str | None, int]]:
            return {s: (o, e) for s, o, e in admin.execute(
                "SELECT shard, owner, epoch FROM beamish_shards WHERE cluster = 'c'")}

        def settled(alive: list[int]) -> bool:
            rows = table()
            want = [names[i] for i in alive]
            return all(o == owner_for(s, want) and
                       members[names.index(o)].held().get(s) == e
                       for s, (o, e) in rows.items() if o is not None) and \
                all(o is not None for o, _ in rows.values())

        wait_until(lambda: settled([0, 1, 2]), 40, "a full assignment", interval=0.1)
        before = table()
        theirs = {s for s, (o, _) in before.items() if o == "n2"}
        assert theirs

        h.cut(2)
        wait_until(lambda: members[2].times("fenced"), 40, "n2 fenced", interval=0.1)
        fenced_at = members[2].times("fenced")[0]
        (expires,) = admin.execute(
            "SELECT extract(epoch FROM lease_expires)::float8 FROM beamish_members "
            "WHERE cluster = 'c' AND node = 'n2'").fetchone()
        assert fenced_at < expires, (fenced_at, expires)
        wait_until(lambda: settled([0, 1]), 40, "the others took n2's shards", interval=0.1)
        taken = table()
        assert all(taken[s][1] == before[s][1] + 1 for s in theirs)
        (first_move,) = admin.execute(
            "SELECT extract(epoch FROM min(moved))::float8 FROM beamish_shards "
            "WHERE cluster = 'c' AND shard = ANY(%s)", (sorted(theirs),)).fetchone()
        assert fenced_at < expires < first_move
        assert members[2].held() == {}

        h.restore(2)
        wait_until(lambda: settled([0, 1, 2]), 40, "n2 back with its shards", interval=0.1)
        back = table()
        assert all(back[s][0] == "n2" and back[s][1] > taken[s][1] for s in theirs)
        (inc,) = admin.execute("SELECT incarnation FROM beamish_members "
                               "WHERE cluster = 'c' AND node = 'n2'").fetchone()
        assert inc == 2
    finally:
        admin.close()
