"""What a shard owner's re-check reads (`due_agents`): only the replicated agents that
need it, by indexed queries, so that registered agents that sleep with an empty mailbox
cost nothing however many there are.

An agent needs the re-check when it should run (status running, starting, backoff or
restarting: a partial index holds only those), when its mailbox holds a message, or when
it is marked to be woken (``beamish_wakes``). Agents with mail are found by a skip scan of
the mailbox's primary key (one index probe per such agent, never a pass over every
message), then their records by id (``beamish_agents_id``). Three statements in one read
snapshot; their cost grows with the agents that need the re-check, not with the agents
registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from beamish.mailbox import unpack

from ..records import AgentRecord
from .agents import PgStore
from .txn import PgTxn

# The distinct agent ids of the mailbox, one index probe each (PostgreSQL has no skip
# scan of its own: a recursive query walks the (cluster, agent_id, seq) key).
_WITH_MAIL = (
    "WITH RECURSIVE m(agent_id) AS ("
    " (SELECT agent_id FROM beamish_mailbox WHERE cluster = %(c)s ORDER BY agent_id LIMIT 1)"
    " UNION ALL SELECT (SELECT b.agent_id FROM beamish_mailbox b WHERE b.cluster = %(c)s"
    " AND b.agent_id > m.agent_id ORDER BY b.agent_id LIMIT 1) FROM m"
    " WHERE m.agent_id IS NOT NULL) "
    "SELECT agent_id FROM m WHERE agent_id IS NOT NULL")
_WOKEN = "SELECT agent_id FROM beamish_wakes WHERE cluster = %(c)s"
# Agents that should run (a crashed one waits in backoff for its restart), as the partial
# index beamish_agents_should_run_rsrb holds them (the statuses are literals in both, so
# the planner can use the index).
SHOULD_RUN_STATUSES = ("running", "starting", "restarting", "backoff")
_RUNNING = "status IN ('running', 'starting', 'restarting', 'backoff')"
_RECORDS = (f"SELECT record FROM beamish_agents WHERE cluster = %(c)s AND {_RUNNING} "
            "UNION ALL SELECT record FROM beamish_agents WHERE cluster = %(c)s AND "
            f"id = ANY(%(ids)s::bigint[]) AND NOT ({_RUNNING})")


@dataclass(frozen=True, slots=True)
class Due:
    """An agent the re-check must look at.

    Attributes:
        record: its record.
        has_mail: its mailbox holds at least one message.
        woken: it is marked to be woken.
    """

    record: AgentRecord
    has_mail: bool
    woken: bool


def due_agents(store: PgStore) -> list[Due]:
    """The replicated agents of ``store``'s cluster that should run (a status in
    `SHOULD_RUN_STATUSES`), have mail, or are marked to be woken, read in one snapshot.

    Raises:
        StoreUnavailable: the server cannot be reached.
    """
    return store.read(lambda t: _scan(cast(PgTxn, t)))


def _scan(t: PgTxn) -> list[Due]:
    params: dict[str, object] = {"c": t.c}
    mail = {int(r[0]) for r in t.cur.execute(_WITH_MAIL, params).fetchall()}
    woken = {int(r[0]) for r in t.cur.execute(_WOKEN, params).fetchall()}
    rows = t.cur.execute(_RECORDS, {**params, "ids": sorted(mail | woken)}).fetchall()
    out = []
    for (raw,) in rows:
        rec = AgentRecord.from_wire(unpack(raw))
        out.append(Due(rec, rec.id in mail, rec.id in woken))
    return out

