"""A node's appends to replicated agents' mailboxes in one statement (`PgAppender`).

The node's group appender (``messaging/messenger.py``) commits the calls and casts its
clients sent meanwhile together. Through `.agents.PgStore` that commit is a transaction of
``3 + 2 * agents`` round trips (BEGIN, the writer mark, a route lookup and an append per
agent, COMMIT); here it is one statement on an autocommit connection of its own: one round
trip, one implicit transaction, so every message of it is durable when it returns (the
acknowledgement) and none is if it fails. The same statement:

* takes the replies its senders received inline (``taken``: deleted, as the LMDB path does
  in its next append);
* looks up each name's agent, appends the messages of those that accept messages (each
  agent's in order, consecutive seqs) and marks the sleeping ones to be woken;
* notifies ``beamish_ring`` for the names given in ``ring`` (agents whose shard another
  node owns): a notification is delivered at commit, so the owner is rung exactly when the
  message is durable, with no round trip or thread of its own (`.ring`);
* sets this appender's row of ``beamish_writers`` to the statement's number, so that a
  statement cut off in flight (`CommitOutcomeUnknown`) is resolved as `.agents.PgStore`
  resolves its commits (`commit_outcome`).

With ``whole=True`` (a ``cast_many``) nothing is appended unless every name accepts
messages. Tails are locked in agent id order, so two nodes appending to the same agents
cannot deadlock each other; a statement PostgreSQL gives up anyway runs again.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from ...errors import AgentNotFound, CommitOutcomeUnknown, StoreUnavailable
from .agents import (
    _MARKED,
    _RETRIES,
    _RETRY_STATES,
    CONNECT_TIMEOUT,
    TCP_USER_TIMEOUT,
    _detail,
    _ms,
    _refused,
)
from .ring import CHANNEL

# A connection idle this long is checked (one round trip) before an append is sent on it.
IDLE_CHECK_S = 1.0

_MARK = """mark AS (
    INSERT INTO beamish_writers (cluster, writer, commit) VALUES (%(c)s, %(w)s, %(n)s)
    ON CONFLICT (cluster, writer) DO UPDATE SET commit = excluded.commit, updated = now())"""
_WAKE = """w AS (
    INSERT INTO beamish_wakes (cluster, agent_id, name)
    SELECT %(c)s, id, name FROM {live} WHERE status = {sleeping}
    ON CONFLICT (cluster, agent_id) DO UPDATE SET name = excluded.name)"""
# One message to one agent (a call, or a cast alone in its group): scalars only.
_ONE = """
a AS (SELECT id, status, name FROM beamish_agents WHERE cluster = %(c)s AND name = %(name)s),
live AS (SELECT * FROM a WHERE status IN ({accepts})),
t AS (
    INSERT INTO beamish_tails AS bt (cluster, agent_id, next_seq)
    SELECT %(c)s, id, 2 FROM live
    ON CONFLICT (cluster, agent_id) DO UPDATE SET next_seq = bt.next_seq + 1
    RETURNING bt.next_seq - 1 AS seq),
m AS (INSERT INTO beamish_mailbox (cluster, agent_id, seq, message)
      SELECT %(c)s, live.id, t.seq, %(msg)s FROM live, t),
{wake}
SELECT a.name, a.id, a.status, t.seq{notify} FROM a LEFT JOIN t ON true
"""
# Any number of messages to any number of agents (``whole``: all or none).
_MANY = """
req AS (
    SELECT u.name, u.message, u.i
    FROM unnest(%(names)s::text[], %(msgs)s::bytea[]) WITH ORDINALITY AS u(name, message, i)),
per AS (SELECT name, count(*) AS n, min(i) AS i FROM req GROUP BY name),
ag AS (
    SELECT per.name, a.id, a.status, per.n, per.i FROM per, LATERAL (
        SELECT id, status FROM beamish_agents WHERE cluster = %(c)s AND name = per.name) a),
live AS (
    SELECT * FROM ag WHERE status IN ({accepts})
    AND (NOT %(whole)s OR (SELECT count(*) FROM ag WHERE status IN ({accepts}))
                          = (SELECT count(*) FROM per))),
t AS (
    INSERT INTO beamish_tails AS bt (cluster, agent_id, next_seq)
    SELECT %(c)s, id, 1 + n FROM live ORDER BY id
    ON CONFLICT (cluster, agent_id) DO UPDATE SET next_seq = bt.next_seq + excluded.next_seq - 1
    RETURNING bt.agent_id, bt.next_seq),
m AS (
    INSERT INTO beamish_mailbox (cluster, agent_id, seq, message)
    SELECT %(c)s, live.id,
           t.next_seq - live.n - 1 + row_number() OVER (PARTITION BY req.name ORDER BY req.i),
           req.message
    FROM req JOIN live ON live.name = req.name JOIN t ON t.agent_id = live.id),
{wake}
SELECT per.name, ag.id, ag.status, t.next_seq - ag.n{notify}
FROM per LEFT JOIN ag ON ag.name = per.name LEFT JOIN t ON t.agent_id = ag.id
ORDER BY per.i
"""
_NOTIFY = (", CASE WHEN {seq} IS NOT NULL AND {name} = ANY(%(ring)s::text[]) "
           "THEN pg_notify('{channel}', %(c)s || chr(31) || {name}) END")
# Up to this many replies to delete are passed as scalars (more: one array).
_TAKEN_SCALARS = 4


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (statuses: letters only, checked)."""
    if not text.isalpha():
        raise ValueError(f"not a status: {text!r}")
    return f"'{text}'"


def append_sql(one: bool, taken: int, ring: bool, accepts: Collection[str],
               sleeping: str) -> str:
    """The append statement for one message (``one``) or many, deleting ``taken`` replies
    and notifying (``ring``) (pure). Each shape is its own text, so each is prepared
    once per connection and its scalars need no array conversion."""
    ctes = [_MARK]
    if 0 < taken <= _TAKEN_SCALARS:
        ids = ", ".join(f"%(t{k})s" for k in range(taken))
        ctes.append(f"gone AS (DELETE FROM beamish_replies WHERE cluster = %(c)s AND "
                    f"msg_id IN ({ids}))")
    elif taken:
        ctes.append("gone AS (DELETE FROM beamish_replies WHERE cluster = %(c)s AND "
                    "msg_id = ANY(%(taken)s::bytea[]))")
    body = _ONE if one else _MANY
    notify = "" if not ring else _NOTIFY.format(
        seq="t.seq" if one else "t.agent_id", name="a.name" if one else "per.name",
        channel=CHANNEL)
    text = body.format(accepts=", ".join(_literal(s) for s in sorted(accepts)),
                       wake=_WAKE.format(live="live", sleeping=_literal(sleeping)),
                       notify=notify)
    return "WITH " + ",\n".join(ctes) + "," + text


@dataclass(frozen=True, slots=True)
class Appended:
    """What became of one name's messages in an append.

    Attributes:
        name: the agent's name.
        agent_id: its id (None: no replicated agent has that name).
        status: its status (None: no such agent).
        first: the seq of its first message appended (None: nothing appended to it, as
            it does not accept messages, or a whole append found another that does not).
    """

    name: str
    agent_id: int | None
    status: str | None
    first: int | None


class PgAppender:
    """Appends messages to replicated agents' mailboxes, one statement per batch, on an
    autocommit connection of its own (serialised by a lock: safe from several threads).

    Args:
        dsn: the cluster's PostgreSQL.
        cluster: the cluster's name.
        accepts: the statuses of agents that take messages.
        sleeping: the status of a sleeping agent (an append marks it to be woken).
        link_timeout: seconds of unacknowledged sends after which the connection counts
            as lost (as `.agents.PgStore`'s).
    """

    def __init__(self, dsn: str, cluster: str, accepts: Collection[str], sleeping: str,
                 link_timeout: float = TCP_USER_TIMEOUT) -> None:
        self.dsn = dsn
        self.cluster = cluster
        self.accepts = sorted(accepts)
        self.sleeping = sleeping
        self.link_timeout = link_timeout
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._writer = uuid.uuid4().bytes
        self._statements = 0
        self._unknown: int | None = None
        self._outcomes: dict[int, bool] = {}
        self._used = 0.0  # time.monotonic() of the connection's last good round trip

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        try:
            self._conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, round(CONNECT_TIMEOUT)),
                keepalives=1, keepalives_idle=max(1, round(self.link_timeout / 2)),
                keepalives_interval=1, keepalives_count=3,
                tcp_user_timeout=_ms(self.link_timeout))
        except psycopg.Error as exc:
            raise StoreUnavailable(_detail(exc)) from exc
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def append(self, items: Sequence[tuple[str, bytes]], taken: Sequence[bytes] = (),
               ring: Collection[str] = (), whole: bool = False) -> list[Appended]:
        """Append each ``(name, packed message)`` of ``items`` (see the module docstring);
        return one `Appended` per distinct name, in order of first appearance. Durable
        when it returns.

        Raises:
            StoreUnavailable: the server could not be reached (nothing was appended).
            CommitOutcomeUnknown: the connection was lost with the statement in flight.
            StoreError: PostgreSQL refused the statement (nothing was appended).
        """
        one = len(items) == 1 and not whole
        params: dict[str, Any] = {"c": self.cluster, "w": self._writer}
        if one:
            params["name"], params["msg"] = items[0]
        else:
            params.update(names=[n for n, _ in items], msgs=[m for _, m in items],
                          whole=whole)
        if len(taken) <= _TAKEN_SCALARS:
            params.update((f"t{k}", msg_id) for k, msg_id in enumerate(taken))
        else:
            params["taken"] = list(taken)
        if ring:
            params["ring"] = list(ring)
        sql = append_sql(one, len(taken), bool(ring), self.accepts, self.sleeping)
        with self._lock:
            for attempt in range(1, _RETRIES + 1):
                conn = self._live_connection()
                if self._unknown is not None:
                    try:
                        self._resolve(conn)
                    except psycopg.Error as exc:
                        self._drop()
                        raise StoreUnavailable(_detail(exc)) from exc
                try:
                    self._statements += 1
                    params["n"] = self._statements
                    rows = conn.execute(sql, params).fetchall()
                except psycopg.Error as exc:
                    if conn.closed or conn.broken:
                        self._drop()
                        number = self._unknown = self._statements
                        if attempt == 1 and self._stored(number) is False:
                            continue  # nothing of it was stored: run it once more
                        raise CommitOutcomeUnknown(number, _detail(exc)) from exc
                    if exc.sqlstate in _RETRY_STATES and attempt < _RETRIES:
                        continue  # given up by the server (a deadlock): nothing stored
                    raise _refused(exc) from exc
                self._used = time.monotonic()
                if one and not rows:
                    return [Appended(items[0][0], None, None, None)]
                return [Appended(str(row[0]), None if row[1] is None else int(row[1]),
                                 None if row[2] is None else str(row[2]),
                                 None if row[3] is None else int(row[3])) for row in rows]
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _live_connection(self) -> psycopg.Connection[Any]:
        """The connection, checked by a round trip when it sat idle for `IDLE_CHECK_S`
        (a server restarted meanwhile closed it: found out before the append is sent, so
        that an append is in doubt only when the connection breaks under it)."""
        conn = self._connection()
        if time.monotonic() - self._used < IDLE_CHECK_S:
            return conn
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            self._drop()
            conn = self._connection()
        self._used = time.monotonic()
        return conn

    def _stored(self, number: int) -> bool | None:
        """Whether statement ``number``, cut off by its connection's loss, was stored,
        asked at once on a new connection (its writer row, read ``FOR UPDATE``); None if
        the server cannot be reached now. The usual case is a backend ended while the
        connection sat idle (a server restart, ``pg_terminate_backend``): the statement
        never ran, and is run again instead of being left in doubt."""
        try:
            self._resolve(self._connection())
        except (psycopg.Error, StoreUnavailable):
            self._drop()
            return None
        stored = self._outcomes.get(number)
        if stored is False:
            del self._outcomes[number]
        return stored

    def _resolve(self, conn: psycopg.Connection[Any]) -> None:
        """Settle the statement that was cut off (see `.agents.PgStore._resolve`)."""
        number = self._unknown
        assert number is not None
        with conn.transaction():
            row = conn.execute(_MARKED, (self.cluster, self._writer)).fetchone()
        self._outcomes[number] = row is not None and int(row[0]) == number
        self._unknown = None

    def commit_outcome(self, number: int) -> bool | None:
        """Whether statement ``number`` (of a `CommitOutcomeUnknown` this appender raised)
        is durable: True or False; None if it raised no such error for it (or it was
        asked already).

        Raises:
            StoreUnavailable: the server cannot be reached yet.
        """
        with self._lock:
            if number == self._unknown:
                try:
                    self._resolve(self._connection())
                except psycopg.Error as exc:
                    self._drop()
                    raise StoreUnavailable(_detail(exc)) from exc
            return self._outcomes.pop(number, None)

    def close(self) -> None:
        """Close its connection."""
        with self._lock:
            self._drop()



def item_outcomes(items: Sequence[tuple[str, bytes]], appended: Sequence[Appended],
                  accepts: Collection[str], sleeping: str
                  ) -> list[tuple[int, int, bool] | AgentNotFound]:
    """Each item's outcome from an append's rows (pure): ``(agent_id, seq, asleep)`` for
    a message appended (the k-th message to a name got its ``first + k``), else the
    `AgentNotFound` its sender gets (no such agent, or it does not accept messages)."""
    rows = {a.name: a for a in appended}
    taken: dict[str, int] = {}
    out: list[tuple[int, int, bool] | AgentNotFound] = []
    for name, _ in items:
        row = rows.get(name)
        if row is None or row.agent_id is None or row.status is None:
            out.append(AgentNotFound(name))
        elif row.first is None or row.status not in accepts:
            out.append(AgentNotFound(name, f"it is {row.status}"))
        else:
            k = taken.get(name, 0)
            taken[name] = k + 1
            out.append((row.agent_id, row.first + k, row.status == sleeping))
    return out
