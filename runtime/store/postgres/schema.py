"""The PostgreSQL schema of a cluster (the table in the package docstring), created by
`ensure_schema`: idempotent, safe when several nodes start at once (an advisory lock
serialises them), and refusing a database whose schema is newer than this code."""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1

# pg_advisory_xact_lock key: "beamish" as a number, so no other tool's lock collides.
_SCHEMA_LOCK = 0x6265616D697368

DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS beamish_meta (
           key   text PRIMARY KEY,
           value text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS beamish_cluster (
           cluster text PRIMARY KEY,
           shards  integer NOT NULL CHECK (shards > 0),
           created timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS beamish_members (
           cluster       text NOT NULL,
           node          text NOT NULL,
           address       text NOT NULL,
           incarnation   bigint NOT NULL,
           lease_expires timestamptz NOT NULL,
           joined        timestamptz NOT NULL DEFAULT now(),
           draining      boolean NOT NULL DEFAULT false,
           agents        integer NOT NULL DEFAULT 0,
           PRIMARY KEY (cluster, node))""",
    """CREATE TABLE IF NOT EXISTS beamish_shards (
           cluster text NOT NULL,
           shard   integer NOT NULL,
           owner   text,
           epoch   bigint NOT NULL DEFAULT 0,
           moved   timestamptz,
           PRIMARY KEY (cluster, shard))""",
)


class SchemaTooNew(RuntimeError):
    """The database holds a schema written by a newer beamish than this one."""


def ensure_schema(conn: Any) -> None:
    """Create the tables that do not exist yet on ``conn`` (a psycopg connection), in one
    transaction; raise `SchemaTooNew` if the database's schema is newer than this code."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for statement in DDL:
            conn.execute(statement)
        row = conn.execute(
            "SELECT value FROM beamish_meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO beamish_meta (key, value) VALUES "
                         "('schema_version', %s)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database's beamish schema is version {row[0]}, newer than this "
                f"beamish's {SCHEMA_VERSION}: upgrade beamish on this node")
