"""The shard owner's re-check with many registered, idle replicated agents
(``python -m benchmarks.cluster_recheck_probe [--agents 100000] [--dsn DSN]``).

It registers ``--agents`` sleeping agents with empty mailboxes, then times, in
alternating rounds, one re-check read as the node does it (`recheck.due_agents`: only the
agents that should run, have mail or a wake) against the read it replaced (every agent
record, and a mailbox count for each agent of the node's shards), for one node owning a
third of 64 shards. Without ``--dsn`` it starts a PostgreSQL of its own
(``scripts/pgserver.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from beamish.runtime.cluster.placement import shard_of
from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.postgres.recheck import due_agents
from beamish.runtime.store.protocol import Txn
from beamish.runtime.store.records import AgentRecord

from ._clusterkit import postgres

SHARDS = 64
OWNED = frozenset(range(0, SHARDS, 3))


def _every_record(store: PgStore) -> Any:
    """The re-check's read before `due_agents`."""
    def scan(t: Txn) -> Any:
        recs = [r for r in t.agents() if shard_of(r.name, SHARDS) in OWNED]
        woken = {a for a, _ in t.wakes()}
        return recs, woken, [(r.id, t.depth(r.id)) for r in recs]
    return store.read(scan)


def _indexed(store: PgStore) -> Any:
    return [d for d in due_agents(store) if shard_of(d.record.name, SHARDS) in OWNED]


def measure(dsn: str, agents: int, rounds: int) -> dict[str, float]:
    """Register ``agents`` idle agents on ``dsn``; the median ms of each read."""
    store = open_postgres_store(dsn, "probe")
    try:
        for lo in range(0, agents, 5000):
            def fill(t: Txn, lo: int = lo) -> None:
                for i in range(lo, min(agents, lo + 5000)):
                    t.put_agent(AgentRecord(f"s{i}", (1 << 40) + i, status="sleeping"))
            store.write(fill)
        times: dict[str, list[float]] = {"every record": [], "indexed": []}
        reads: dict[str, Callable[[PgStore], Any]] = {"every record": _every_record,
                                                      "indexed": _indexed}
        for _ in range(rounds):
            for label, read in reads.items():
                t0 = time.perf_counter()
                read(store)
                times[label].append(time.perf_counter() - t0)
        return {k: statistics.median(v) * 1000 for k, v in times.items()}
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Run the probe and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="a PostgreSQL to use (default: start one)")
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with postgres("recheck", args.dsn) as dsn:
        res = measure(dsn, args.agents, args.rounds)
    for label, ms in res.items():
        print(f"re-check, {args.agents:,} idle agents registered, {label:12}: "
              f"median {ms:10.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
