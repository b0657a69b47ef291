"""The replicated store's probe: PostgreSQL (`PgStore`) beside LMDB, in one run.

    python -m benchmarks.pg_store [--dsn DSN] [--rounds 5] [--n 300]

Without ``--dsn`` it starts a PostgreSQL of its own (``scripts/pgserver.py``, from a
checkout) and measures it twice: as the test server runs (``fsync = off``) and with
``fsync = on`` (what a real deployment has), beside LMDB with durability ``process``
and ``fsync`` respectively. Measured, in rounds that alternate the stores (the machine
is shared: compare the ratios):

- ``commit``: one fenced commit of an agent's transition (its state, the handled
  message's removal, a reply), latency p50/p99; LMDB: the same write, unfenced.
- ``append``: one fenced commit of one append, p50/p99.
- ``group100``: ``write_group`` of 100 items, each one fenced append to its own agent's
  mailbox (a node's committer gathering 100 agents' casts): appends per second; LMDB:
  one write of the same 100 appends. ``one_txn100``: PostgreSQL, the 100 appends in one
  plain fenced write (what the savepoints cost).

Measured here (2 cores shared with other work, load ~4; 5 rounds of 300; medians):
PostgreSQL 15 on 127.0.0.1 with fsync off: fenced transition commit p50 274 µs (LMDB
process: 12 µs), fenced append p50 188 µs, write_group of 100 fenced appends 23k
appends/s (one plain transaction: 22k; LMDB: 467k). With fsync on: transition p50
620 µs (LMDB fsync: 163 µs), write_group 10.8k appends/s (LMDB fsync: 106k).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beamish.runtime.store import open_store
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.postgres.fencing import Fence, GroupItem
from beamish.runtime.store.protocol import Store, Txn
from beamish.runtime.store.records import Message, Reply

from ._stats import latency_summary, median

FENCE = Fence(0, "n1", 1)
PAYLOAD = Message("cast", b"x" * 100, 0.0).packed()
STATE = b"\x81\xa1n" + b"\xcd\x01\x00" + b"y" * 200


def _transition(agent_id: int, i: int) -> Callable[[Txn], None]:
    def fn(t: Txn) -> None:
        t.put_state(agent_id, 1, STATE, i)
        t.remove(agent_id, i)
        t.put_reply(b"m%d" % i, Reply(True, 1e12, b"\x01"))
    return fn


def _timed(store: Store, fns: list[Callable[[Txn], Any]]) -> list[int]:
    out = []
    for fn in fns:
        start = time.perf_counter_ns()
        store.write(fn)
        out.append(time.perf_counter_ns() - start)
    return out


def _round(pg: PgStore, lmdb: Store, n: int, base: int) -> dict[str, Any]:
    """One round of every measurement on both stores; ``base`` keeps ids apart."""
    got: dict[str, Any] = {}
    for name, store in (("pg", pg), ("lmdb", lmdb)):
        store.write(lambda t: t.append_packed_many(base, [PAYLOAD] * n))
        got[f"{name}_commit"] = _timed(store, [_transition(base, i + 1) for i in range(n)])
        got[f"{name}_append"] = _timed(
            store, [lambda t, i=i: t.append_packed(base + 1, PAYLOAD) for i in range(n)])
    groups = max(3, n // 30)
    for name, store in (("pg", pg), ("lmdb", lmdb)):
        start = time.perf_counter()
        for _ in range(groups):
            if name == "pg":
                results = pg.write_group([GroupItem(
                    lambda t, a=base + 1000 + k: t.append_packed(a, PAYLOAD), (FENCE,))
                    for k in range(100)])
                assert all(r.ok for r in results)
            else:
                store.write(lambda t: [t.append_packed(base + 1000 + k, PAYLOAD)
                                       for k in range(100)])
        got[f"{name}_group100"] = groups * 100 / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(groups):
        pg.write(lambda t: [t.append_packed(base + 2000 + k, PAYLOAD) for k in range(100)])
    got["pg_one_txn100"] = groups * 100 / (time.perf_counter() - start)
    return got


def measure(dsn: str, rounds: int, n: int, lmdb_durability: str = "process"
            ) -> dict[str, Any]:
    """Every figure, the rounds' latencies pooled and their rates' median; LMDB with
    ``lmdb_durability``."""
    pg = PgStore(dsn, "bench", FENCE)
    import psycopg  # noqa: PLC0415  (the probe sets its shard row as a takeover would)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO beamish_shards (cluster, shard, owner, epoch) VALUES "
                     "('bench', 0, 'n1', 1) ON CONFLICT DO NOTHING")
    with tempfile.TemporaryDirectory() as tmp:
        lmdb = open_store(str(Path(tmp) / "s"), lmdb_durability)
        pooled: dict[str, list[Any]] = {}
        for r in range(rounds):
            for key, value in _round(pg, lmdb, n, (r + 1) * 10_000).items():
                pooled.setdefault(key, []).append(value)
        lmdb.close()
    pg.close()
    out: dict[str, Any] = {}
    for key, values in pooled.items():
        if isinstance(values[0], list):
            summary = latency_summary([x for v in values for x in v])
            out[key] = {"p50_us": round(summary["p50_us"], 1),
                        "p99_us": round(summary["p99_us"], 1)}
        else:
            out[key] = {"per_s": round(median(values)), "rounds": [round(v) for v in values]}
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the probe; print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="a PostgreSQL to measure (default: start one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=300, help="commits timed per round")
    args = parser.parse_args(argv)
    if args.dsn:
        print(json.dumps({"given": measure(args.dsn, args.rounds, args.n)}, indent=1))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from pgserver import PgServer  # noqa: PLC0415
    server = PgServer(tempfile.mkdtemp(prefix="beamish-pgbench-"))
    server.start()
    try:
        results = {}
        for fsync in ("off", "on"):
            server.psql(f"ALTER SYSTEM SET fsync = {fsync}")
            server.psql("SELECT pg_reload_conf()")
            db = f"bench_fsync_{fsync}"
            results[f"fsync_{fsync}"] = measure(server.create_database(db), args.rounds,
                                                args.n, "fsync" if fsync == "on" else "process")
        print(json.dumps(results, indent=1))
    finally:
        server.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
