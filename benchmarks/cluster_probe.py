"""A probe of replicated agents on three nodes of one machine sharing one PostgreSQL
(``python -m benchmarks.cluster_probe [--samples N] [--blocks B] [--kills K]``).

    owner call        a remote client's call through the front door of the node that runs
                      the agent: appended in PostgreSQL, the agent rung on its inbox, the
                      reply committed with its state and rung back
    cross-node call   the same through another node's front door: appended there in
                      PostgreSQL, the owner rung by NOTIFY, the reply taken by the asking
                      node (rung: one machine here; else its 0.2 s re-check)
    failover          kill -9 of the node that owns an agent -> that agent answers a call
                      again through another node (its lease of 4 s must run out first)

Without ``--dsn`` it starts a PostgreSQL of its own (``scripts/pgserver.py``, which
runs it with fsync off). Blocks alternate owner and cross-node calls so that a noisy machine's drift
lands on both. It prints one line per figure and a JSON object last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from typing import Any

from beamish.runtime import BeamishError, RemoteNode

from ._clusterkit import ECHO, NAMES, ClusterNodes, postgres
from ._stats import latency_summary


def _calls(client: RemoteNode, name: str, n: int, out: list[int]) -> None:
    for _ in range(n):
        t0 = time.perf_counter_ns()
        client.call(name, "x")
        out.append(time.perf_counter_ns() - t0)


def _failover(cluster: ClusterNodes, alive: list[str], name: str) -> tuple[float, str]:
    owner = cluster.client(alive[0]).info(name).node
    assert owner is not None
    other = next(n for n in alive if n != owner)
    pid = cluster.locals[owner].pid
    with cluster.client(other) as client:
        client.call(name, "x", timeout=30)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while True:
            try:
                client.call(name, "x", timeout=1.0)
                return time.monotonic() - t0, owner
            except BeamishError:
                if time.monotonic() - t0 > 120:
                    raise


def measure(dsn: str, samples: int, blocks: int, kills: int) -> dict[str, Any]:
    """Start the three nodes on ``dsn``, measure, stop them."""
    base = tempfile.mkdtemp(prefix="bmc-", dir="/tmp")
    cluster = ClusterNodes(base, dsn)
    try:
        time.sleep(8)  # the shards spread over the three nodes (8 moves a round)
        with cluster.client("n1") as n1:
            n1.spawn(ECHO, name="echo", durability="replicated")
            owner = n1.info("echo").node
        assert owner is not None
        other = next(n for n in NAMES if n != owner)
        ns: dict[str, list[int]] = {"owner call": [], "cross-node call": []}
        with cluster.client(owner) as on_owner, cluster.client(other) as on_other:
            for who in (on_owner, on_other):
                _calls(who, "echo", 100, [])  # warm-up
            per = max(1, samples // blocks)
            for block in range(blocks):
                order = [("owner call", on_owner), ("cross-node call", on_other)]
                if block % 2:
                    order.reverse()
                for label, who in order:
                    _calls(who, "echo", per, ns[label])
        out: dict[str, Any] = {k: latency_summary(v) for k, v in ns.items()}
        out["cross_over_owner_p50"] = (out["cross-node call"]["p50_us"]
                                       / out["owner call"]["p50_us"])
        alive = list(NAMES)
        times = []
        for i in range(kills):
            if len(alive) < 2:
                break
            with cluster.client(alive[0]) as c:
                c.spawn(ECHO, name=f"victim{i}", durability="replicated")
            took, killed = _failover(cluster, alive, f"victim{i}")
            times.append(took)
            alive.remove(killed)
        out["failover_s"] = {"runs": [round(t, 2) for t in times],
                             "p50": statistics.median(times) if times else None,
                             "max": max(times) if times else None}
        return out
    finally:
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the probe and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="a PostgreSQL to use (default: start one)")
    parser.add_argument("--samples", type=int, default=1000, help="calls per side")
    parser.add_argument("--blocks", type=int, default=8, help="alternating blocks")
    parser.add_argument("--kills", type=int, default=1, help="failovers to time (<= 2)")
    args = parser.parse_args(argv)
    with postgres("bench_cluster", args.dsn) as dsn:
        res = measure(dsn, args.samples, args.blocks, args.kills)
    for key in ("owner call", "cross-node call"):
        s = res[key]
        print(f"{key:16} p50 {s['p50_us']:8.1f} us  p99 {s['p99_us']:8.1f} us  (n={s['n']})")
    print(f"cross-node p50 / owner p50: {res['cross_over_owner_p50']:.2f}")
    print(f"failover (kill -9 -> answering again): {res['failover_s']}")
    json.dump(res, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
