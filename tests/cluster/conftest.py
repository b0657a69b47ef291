"""A real PostgreSQL server for the cluster tests: one per test session, started from the
binaries ``scripts/system-deps`` installs (``scripts/pgserver.py``), and a fresh database
per test, dropped after it."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from pgserver import PgServer  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (stopped and removed at the end)."""
    server = PgServer(tempfile.mkdtemp(prefix="beamish-pg-"))
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """The DSN of an empty database of this test's own."""
    name = "t_" + uuid.uuid4().hex[:12]
    if not pg_server.running():  # a test that stopped the server and failed before restart
        pg_server.start()
    dsn = pg_server.create_database(name)
    try:
        yield dsn
    finally:
        if not pg_server.running():
            pg_server.start()
        pg_server.drop_database(name)
