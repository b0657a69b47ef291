"""The store layer: the records (``records.py``), the store interface (``protocol.py``)
and its LMDB implementation (``lmdb.py``, the only module that imports lmdb); the
cluster's PostgreSQL implementation (``postgres/``, the only package that imports
psycopg) for ``durability="replicated"`` agents.

Outside ``store/``, code opens a store with `open_store` (or `open_postgres_store`) and
talks to it through the `Store`/`Txn` protocols and the records; none of it knows the
backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lmdb import DURABILITIES as DURABILITIES
from .lmdb import Store as _LmdbStore
from .lmdb import filesystem_full as filesystem_full
from .lmdb import full_disk_advice as full_disk_advice
from .lmdb import memory_path as memory_path
from .lmdb import wipe as wipe
from .protocol import Store

if TYPE_CHECKING:
    from .postgres.agents import PgStore
    from .postgres.fencing import Fence


def open_store(path: str, durability: str = "process") -> Store:
    """Open (creating it if needed) the node's store at ``path`` in this process.

    Args:
        path: the store's directory.
        durability: "process", "fsync" or "memory" (see `beamish.runtime.start_node`).

    Raises:
        StoreError: it cannot be opened, or ``durability`` is not one of those.
    """
    return _LmdbStore(path, durability)


def open_postgres_store(dsn: str, cluster: str, fence: Fence | None = None) -> PgStore:
    """Open the store of cluster ``cluster``'s replicated agents on the PostgreSQL at
    ``dsn`` (creating its tables if needed) in this process. psycopg is imported here,
    on first use: a node without a cluster never loads it.

    Args:
        dsn: the PostgreSQL DSN (``[cluster] postgres``).
        cluster: the cluster's name.
        fence: the fence every ``write`` checks (see `postgres.fencing.Fence`), or None.

    Raises:
        StoreUnavailable: the server cannot be reached.
        StoreError: its schema is newer than this beamish.
    """
    from .postgres.agents import PgStore
    return PgStore(dsn, cluster, fence)
