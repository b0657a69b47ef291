"""A PgStore that fails to open (here: a schema newer than this beamish) leaves no
session open on the server: its connection is closed before the error is raised, not
left to the garbage collector."""

from __future__ import annotations

import psycopg
import pytest

from beamish.runtime.errors import SchemaTooNew
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.postgres.schema import SCHEMA_VERSION, ensure_schema
from tests.conftest import wait_until


def test_a_store_refused_at_open_closes_its_connection(pg_dsn):
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, application_name="refused_store")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute("UPDATE beamish_meta SET value = %s WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
        with pytest.raises(SchemaTooNew, match="upgrade beamish") as caught:
            PgStore(dsn, "prod")
        # The error (held here, with its traceback and the store) is still alive.
        assert caught.value.__traceback__ is not None
        # Closed: the server's backend ends soon after (asynchronously); left open, never.
        wait_until(lambda: conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'refused_store'").fetchone() == (0,),
            what="no session of the refused store")
