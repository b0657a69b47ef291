"""What the cluster benchmarks share (the ``cluster`` scenario, ``cluster_probe`` and
``cluster_recheck_probe``): their PostgreSQL server (`postgres`: the given DSN, or a
private server of the run's own, ``scripts/pgserver.py``: fsync off, 127.0.0.1 only,
stopped and removed at the end) and three nodes of one cluster on it (`ClusterNodes`)."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from beamish.runtime import BeamishError, Node, RemoteNode, connect, start_node
from beamish.runtime.cluster.keys import authorize, generate

ECHO = "beamish.benchmarks.agents:Echo"
NAMES = ("n1", "n2", "n3")


@contextmanager
def postgres(database: str, dsn: str | None = None) -> Iterator[str]:
    """Yield ``dsn`` if given, else the DSN of database ``database`` on a server started
    for the block (and destroyed after it, whatever happened)."""
    if dsn is not None:
        yield dsn
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from pgserver import PgServer  # noqa: PLC0415
    server = PgServer(tempfile.mkdtemp(prefix="beamish-pgbench-"))
    server.start()
    try:
        yield server.create_database(database)
    finally:
        server.destroy()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ClusterNodes:
    """Three nodes of cluster "bench" on ``dsn``, in ``base``."""

    def __init__(self, base: str, dsn: str) -> None:
        self.base = base
        self.node_keys, self.client_keys = os.path.join(base, "nk"), os.path.join(base, "ck")
        authorize(self.node_keys, generate(self.client_keys).public)
        authorize(self.client_keys, generate(self.node_keys).public)
        self.addresses = {n: f"tcp://127.0.0.1:{_free_port()}" for n in NAMES}
        self.locals: dict[str, Node] = {}
        for n in NAMES:
            config = os.path.join(base, f"{n}.toml")
            with open(config, "w") as fh:
                fh.write(f'[cluster]\nname = "bench"\nnode = "{n}"\npostgres = "{dsn}"\n'
                         f'listen = "{self.addresses[n]}"\nkeys = "{self.node_keys}"\n')
            self.locals[n] = start_node(os.path.join(base, n), config=config)

    def client(self, n: str) -> RemoteNode:
        return connect(self.addresses[n], keys=self.client_keys)

    def close(self) -> None:
        for node in self.locals.values():
            try:
                node.shutdown(timeout=60)
            except BeamishError:
                node.close()  # killed by the probe: its processes died with it
