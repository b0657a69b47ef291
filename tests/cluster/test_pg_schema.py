"""The cluster's schema on a real PostgreSQL server: created once, idempotent, concurrent
starts safe, a newer schema refused."""

from __future__ import annotations

import threading

import psycopg
import pytest

from beamish.runtime.store.postgres.schema import SCHEMA_VERSION, SchemaTooNew, ensure_schema


def _tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'beamish_%'")
    return {r[0] for r in rows}


def test_ensure_schema_creates_the_tables_once(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        ensure_schema(conn)
        ensure_schema(conn)
        assert {"beamish_meta", "beamish_cluster", "beamish_members",
                "beamish_shards", "beamish_mailbox", "beamish_state"} <= _tables(conn)
        version = conn.execute(
            "SELECT value FROM beamish_meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)


def test_nodes_starting_at_once_each_get_the_schema(pg_dsn):
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with psycopg.connect(pg_dsn) as conn:
                ensure_schema(conn)
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_newer_schema_is_refused(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        ensure_schema(conn)
        conn.execute("UPDATE beamish_meta SET value = %s WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
        conn.commit()
        with pytest.raises(SchemaTooNew, match="newer"):
            ensure_schema(conn)
