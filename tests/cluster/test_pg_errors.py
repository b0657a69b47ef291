"""psycopg errors never leave the cluster table raw: a DSN libpq cannot parse and a role
without CREATE rights are `ConfigError`s saying what to do, a newer schema is
`SchemaTooNew` (a `StoreError`), a statement the server refuses on a live connection is a
`StoreError` with its SQLSTATE (not "unavailable"); ``beamish nodes`` prints one line."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from beamish.runtime.errors import (
    BeamishError,
    ConfigError,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
)
from beamish.runtime.store.postgres.cluster import connect_cluster
from beamish.runtime.store.postgres.schema import SCHEMA_VERSION, ensure_schema
from tests.conftest import beamish


def test_nodes_with_a_dsn_libpq_cannot_parse_prints_one_line():
    proc = beamish("nodes", "--postgres", "host=127.0.0.1 port=1 bogus_option=1",
                   "--cluster", "x")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "DSN is not valid" in proc.stderr and "bogus_option" in proc.stderr
    with pytest.raises(ConfigError, match="DSN is not valid"):
        connect_cluster("host=127.0.0.1 port=1 bogus_option=1", "x", 4)


def test_a_role_without_create_rights_is_told_what_to_grant(pg_server, pg_dsn):
    db = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    role = "weak_" + uuid.uuid4().hex[:8]
    pg_server.psql(f"CREATE ROLE {role} LOGIN", database=db)
    pg_server.psql("REVOKE CREATE ON SCHEMA public FROM PUBLIC", database=db)
    try:
        weak = psycopg.conninfo.make_conninfo(pg_dsn, user=role)
        with pytest.raises(ConfigError, match="grant that role CREATE") as caught:
            connect_cluster(weak, "prod", 4)
        assert isinstance(caught.value.__cause__, psycopg.errors.InsufficientPrivilege)
    finally:
        pg_server.psql(f"DROP ROLE {role}", database=db)


def test_a_newer_schema_is_a_store_error(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute("UPDATE beamish_meta SET value = %s WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
    with pytest.raises(SchemaTooNew, match="upgrade beamish") as caught:
        connect_cluster(pg_dsn, "prod", 4)
    assert isinstance(caught.value, StoreError) and isinstance(caught.value, BeamishError)


def test_a_refusal_on_a_live_connection_is_a_store_error_not_unavailable(pg_dsn):
    t = connect_cluster(pg_dsn, "prod", 4)
    try:
        with psycopg.connect(pg_dsn) as holder:  # holds the members table's lock
            holder.execute("LOCK TABLE beamish_members IN ACCESS EXCLUSIVE MODE")
            t.conn.execute("SET lock_timeout = '50ms'")
            with pytest.raises(StoreError, match=r"\[55P03\]") as caught:
                t.join("n1", "tcp://10.0.0.1:7700", ttl=60)
            assert not isinstance(caught.value, StoreUnavailable)
            holder.rollback()
        t.conn.execute("SET lock_timeout = 0")
        assert t.join("n1", "tcp://10.0.0.1:7700", ttl=60).incarnation >= 1
    finally:
        t.close()
