"""A cluster member as a process of its own, for the network fault tests: it runs a
`Membership` and prints each thing its listener hears as a JSON line on stdout
(``{"event": "gained"|"lost"|"fenced"|"joined", "shard", "epoch", "t": wall time}``);
SIGTERM stops it and leaves the cluster.

    python -m tests.cluster.member_proc DSN NODE SHARDS TTL MARGIN
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

from beamish.runtime.cluster.lease import LeaseTiming
from beamish.runtime.cluster.membership import Membership
from beamish.runtime.store.postgres.cluster import ClusterTable, connect_cluster

_out = threading.Lock()


def say(event: str, shard: int = -1, epoch: int = 0) -> None:
    """Print one event line."""
    with _out:
        print(json.dumps({"event": event, "shard": shard, "epoch": epoch,
                          "t": time.time()}), flush=True)


class Printer:
    """A MembershipListener that prints."""

    def on_gained(self, shard: int, epoch: int) -> None:
        say("gained", shard, epoch)

    def on_lost(self, shard: int) -> None:
        say("lost", shard)

    def on_fenced(self) -> None:
        say("fenced")


def main() -> None:
    dsn, node, shards, ttl, margin = sys.argv[1:6]

    def connect() -> ClusterTable:
        return connect_cluster(dsn, "c", int(shards))

    m = Membership(connect, node, f"tcp://{node}:7700", Printer(),
                   timing=LeaseTiming(ttl=float(ttl), margin=float(margin)), max_moves=4)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    m.start()
    say("started")
    done.wait()
    m.stop()
    say("stopped")


if __name__ == "__main__":
    main()
