"""The PostgreSQL schema of a cluster (the table in the package docstring), created by
`ensure_schema`: idempotent, safe when several nodes start at once (an advisory lock
serialises them), and refusing a database whose schema is newer than this code."""

from __future__ import annotations

from typing import Any

from ...errors import SchemaTooNew as SchemaTooNew

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
    # The replicated agents' records (the store interface, `.agents.PgStore`): the
    # packed `to_wire` form of each record in a bytea, with the columns queries need
    # beside it. Names sort as bytes (COLLATE "C"), as LMDB's keys do. Tables updated in
    # place on every commit keep free room in their pages (fillfactor) so the update
    # stays on its page (a HOT update: no index write); the queues vacuum early.
    """CREATE TABLE IF NOT EXISTS beamish_counters (
           cluster text NOT NULL,
           name    text NOT NULL,
           value   bigint NOT NULL,
           PRIMARY KEY (cluster, name))""",
    """CREATE TABLE IF NOT EXISTS beamish_agents (
           cluster    text NOT NULL,
           name       text COLLATE "C" NOT NULL,
           id         bigint NOT NULL,
           status     text NOT NULL,
           supervisor text NOT NULL,
           record     bytea NOT NULL,
           PRIMARY KEY (cluster, name)) WITH (fillfactor = 80)""",
    """CREATE TABLE IF NOT EXISTS beamish_supervisors (
           cluster text NOT NULL,
           name    text COLLATE "C" NOT NULL,
           record  bytea NOT NULL,
           PRIMARY KEY (cluster, name))""",
    """CREATE TABLE IF NOT EXISTS beamish_mailbox (
           cluster  text NOT NULL,
           agent_id bigint NOT NULL,
           seq      bigint NOT NULL,
           message  bytea NOT NULL,
           PRIMARY KEY (cluster, agent_id, seq))
       WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000)""",
    """CREATE TABLE IF NOT EXISTS beamish_tails (
           cluster  text NOT NULL,
           agent_id bigint NOT NULL,
           next_seq bigint NOT NULL,
           PRIMARY KEY (cluster, agent_id)) WITH (fillfactor = 50)""",
    """CREATE TABLE IF NOT EXISTS beamish_state (
           cluster   text NOT NULL,
           agent_id  bigint NOT NULL,
           version   bigint NOT NULL,
           state     bytea NOT NULL,
           processed bigint NOT NULL,
           PRIMARY KEY (cluster, agent_id)) WITH (fillfactor = 50)""",
    """CREATE TABLE IF NOT EXISTS beamish_attempts (
           cluster  text NOT NULL,
           agent_id bigint NOT NULL,
           seq      bigint NOT NULL,
           n        integer NOT NULL,
           PRIMARY KEY (cluster, agent_id, seq))""",
    """CREATE TABLE IF NOT EXISTS beamish_replies (
           cluster text NOT NULL,
           msg_id  bytea NOT NULL,
           expires double precision,
           reply   bytea NOT NULL,
           PRIMARY KEY (cluster, msg_id))
       WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000)""",
    """CREATE INDEX IF NOT EXISTS beamish_replies_expires
           ON beamish_replies (cluster, expires)""",
    """CREATE TABLE IF NOT EXISTS beamish_dead (
           cluster  text NOT NULL,
           agent_id bigint NOT NULL,
           seq      bigint NOT NULL,
           entry    bytea NOT NULL,
           PRIMARY KEY (cluster, agent_id, seq))""",
    """CREATE TABLE IF NOT EXISTS beamish_failures (
           cluster  text NOT NULL,
           agent_id bigint NOT NULL,
           report   bytea NOT NULL,
           PRIMARY KEY (cluster, agent_id))""",
    """CREATE TABLE IF NOT EXISTS beamish_timers (
           cluster  text NOT NULL,
           agent_id bigint NOT NULL,
           seq      bigint NOT NULL,
           due_ns   bigint NOT NULL,
           timer    bytea NOT NULL,
           PRIMARY KEY (cluster, agent_id, seq))""",
    """CREATE INDEX IF NOT EXISTS beamish_timers_due
           ON beamish_timers (cluster, due_ns, agent_id, seq)""",
    """CREATE TABLE IF NOT EXISTS beamish_wakes (
           cluster  text NOT NULL,
           agent_id bigint NOT NULL,
           name     text NOT NULL,
           PRIMARY KEY (cluster, agent_id))""",
    """CREATE TABLE IF NOT EXISTS beamish_writers (
           cluster text NOT NULL,
           writer  bytea NOT NULL,
           commit  bigint NOT NULL,
           updated timestamptz NOT NULL DEFAULT now(),
           PRIMARY KEY (cluster, writer)) WITH (fillfactor = 50)""",
    """CREATE TABLE IF NOT EXISTS beamish_events (
           cluster text NOT NULL,
           seq     bigint NOT NULL,
           event   bytea NOT NULL,
           PRIMARY KEY (cluster, seq))""",
    # The owner's re-check (`.recheck`): agents that should run (a partial index: idle
    # agents are not in it), and agents by id (those with mail or a wake).
    # (named for its statuses: a changed list is a new index, as IF NOT EXISTS keeps an
    # old one of the same name unchanged)
    """CREATE INDEX IF NOT EXISTS beamish_agents_should_run_rsrb ON beamish_agents (cluster)
           WHERE status IN ('running', 'starting', 'restarting', 'backoff')""",
    """CREATE INDEX IF NOT EXISTS beamish_agents_id ON beamish_agents (cluster, id)""",
    # Node-pinned agents (``routes.py``): which node's LMDB holds each name, and each
    # node's public key for node-to-node forwarding over CURVE.
    """CREATE TABLE IF NOT EXISTS beamish_routes (
           cluster text NOT NULL,
           name    text COLLATE "C" NOT NULL,
           node    text NOT NULL,
           PRIMARY KEY (cluster, name))""",
    """CREATE TABLE IF NOT EXISTS beamish_node_keys (
           cluster    text NOT NULL,
           node       text NOT NULL,
           public_key text NOT NULL,
           PRIMARY KEY (cluster, node))""",
    # Monitors and links across nodes (`.links`): signals in flight between two nodes,
    # taken (deleted) by their receiver.
    """CREATE TABLE IF NOT EXISTS beamish_link_signals (
           id               bigserial PRIMARY KEY,
           cluster          text NOT NULL,
           op               text NOT NULL,
           ref              bigint NOT NULL,
           to_node          text NOT NULL,
           to_incarnation   bigint NOT NULL,
           from_node        text NOT NULL,
           from_incarnation bigint NOT NULL,
           name             text NOT NULL,
           target           text NOT NULL,
           reason           text NOT NULL,
           abnormal         boolean NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS beamish_link_signals_to
           ON beamish_link_signals (cluster, to_node)""",
    # ... and the monitors of replicated agents, kept by name wherever their owner is.
    """CREATE TABLE IF NOT EXISTS beamish_link_watches (
           ref         bigint PRIMARY KEY DEFAULT nextval('beamish_link_signals_id_seq'),
           cluster     text NOT NULL,
           target      text NOT NULL,
           node        text NOT NULL,
           incarnation bigint NOT NULL,
           name        text NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS beamish_link_watches_target
           ON beamish_link_watches (cluster, target)""",
    # ... the monitors held by replicated agents (node ''), by their watcher's name.
    """CREATE INDEX IF NOT EXISTS beamish_link_watches_replicated
           ON beamish_link_watches (cluster, name) WHERE node = ''""",
    # The replicated agents' events, whichever node emitted them (`.events`): numbered
    # in commit order cluster-wide, by agent name.
    """CREATE TABLE IF NOT EXISTS beamish_cluster_events (
           cluster text NOT NULL,
           seq     bigint NOT NULL,
           name    text COLLATE "C" NOT NULL,
           event   bytea NOT NULL,
           PRIMARY KEY (cluster, seq))""",
    """CREATE INDEX IF NOT EXISTS beamish_cluster_events_name
           ON beamish_cluster_events (cluster, name, seq)""",
)


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
                f"beamish's {SCHEMA_VERSION}: upgrade beamish on this machine")
