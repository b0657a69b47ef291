"""The store layer: the records (``records.py``), the store interface (``protocol.py``)
and its LMDB implementation (``lmdb.py``, the only module that imports lmdb).

Outside ``store/``, code opens a store with `open_store` and talks to it through the
`Store`/`Txn` protocols and the records; none of it knows the backend.
"""

from __future__ import annotations

from .lmdb import DURABILITIES as DURABILITIES
from .lmdb import Store as _LmdbStore
from .lmdb import filesystem_full as filesystem_full
from .lmdb import full_disk_advice as full_disk_advice
from .lmdb import memory_path as memory_path
from .lmdb import wipe as wipe
from .protocol import Store


def open_store(path: str, durability: str = "process") -> Store:
    """Open (creating it if needed) the node's store at ``path`` in this process.

    Args:
        path: the store's directory.
        durability: "process", "fsync" or "memory" (see `beamish.runtime.start_node`).

    Raises:
        StoreError: it cannot be opened, or ``durability`` is not one of those.
    """
    return _LmdbStore(path, durability)
