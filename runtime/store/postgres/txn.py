"""The store interface's record operations in SQL (`PgTxn`, implements
`..protocol.Txn`): one cluster's rows of the tables in the package docstring, one
statement (one round trip) per operation. `.agents.PgStore` runs them in its
transactions; this module never commits, and knows nothing of fencing or connections.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import psycopg

from beamish.mailbox import ProtocolError, pack, unpack

from ..._events import EventFilter, EventPage, PageFiller
from ..._types import Event
from ..records import (
    AgentRecord,
    DeadLetter,
    FailureReport,
    Malformed,
    Message,
    Reply,
    SupervisorRecord,
    Timer,
    event_from_wire,
    event_to_wire,
)

# Events are read in batches of this many while a filtered page looks for its matches.
_EVENT_BATCH = 256


class PgTxn:
    """One PostgreSQL transaction's record operations for cluster ``cluster`` (implements
    `..protocol.Txn`). Valid only inside the ``read``/``write`` function it was passed to.
    """

    def __init__(self, cur: psycopg.Cursor[Any], cluster: str) -> None:
        self.cur = cur
        self.c = cluster

    def _one(self, sql: str, params: Sequence[Any]) -> Any:
        return self.cur.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self.cur.execute(sql, params).fetchall()

    def _run(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> int:
        """Execute a statement; return how many rows it touched."""
        return self.cur.execute(sql, params).rowcount

    # -- counters -----------------------------------------------------------------------
    def next_counter(self, name: str) -> int:
        """Increment and return the counter ``name`` (starts at 1; cluster-global)."""
        return int(self._one(
            "INSERT INTO beamish_counters (cluster, name, value) VALUES (%s, %s, 1) "
            "ON CONFLICT (cluster, name) DO UPDATE SET value = beamish_counters.value + 1 "
            "RETURNING value", (self.c, name))[0])

    # -- agents and their routes --------------------------------------------------------
    def get_agent(self, name: str) -> AgentRecord | None:
        """Return the agent record named ``name``, or None."""
        row = self._one("SELECT record FROM beamish_agents WHERE cluster = %s AND name = %s",
                        (self.c, name))
        return None if row is None else AgentRecord.from_wire(unpack(row[0]))

    def put_agent(self, record: AgentRecord) -> None:
        """Write an agent record and its route (the id and status columns)."""
        self._run(
            "INSERT INTO beamish_agents (cluster, name, id, status, supervisor, record) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (cluster, name) DO UPDATE SET "
            "id = excluded.id, status = excluded.status, supervisor = excluded.supervisor, "
            "record = excluded.record",
            (self.c, record.name, record.id, str(record.status), record.supervisor,
             pack(record.to_wire())))

    def get_route(self, name: str) -> tuple[int, str] | None:
        """Return ``(agent_id, status)`` of agent ``name``, or None (cheap: for senders)."""
        row = self._one("SELECT id, status FROM beamish_agents WHERE cluster = %s AND "
                        "name = %s", (self.c, name))
        return None if row is None else (int(row[0]), str(row[1]))

    def delete_agent(self, name: str) -> None:
        """Remove the agent record ``name`` and its route."""
        self._run("DELETE FROM beamish_agents WHERE cluster = %s AND name = %s",
                  (self.c, name))

    def agents(self) -> list[AgentRecord]:
        """Return every agent record, in name order."""
        return [AgentRecord.from_wire(unpack(r[0])) for r in self._all(
            "SELECT record FROM beamish_agents WHERE cluster = %s ORDER BY name", (self.c,))]

    def agents_page(self, after: str | None = None, limit: int | None = None,
                    status: str | None = None, supervisor: str | None = None
                    ) -> tuple[list[AgentRecord], int]:
        """Return up to ``limit`` agent records after name ``after`` in name order, with
        ``status`` and under ``supervisor`` when given, and how many more match (see
        `..protocol.Txn.agents_page`): one query, the count a window over the matches."""
        where = ["cluster = %s"]
        params: list[Any] = [self.c]
        for column, value in (("name >", after), ("status =", status),
                              ("supervisor =", supervisor)):
            if value is not None:
                where.append(f"{column} %s")
                params.append(value)
        params.append(limit)
        rows = self._all(
            f"SELECT record, count(*) OVER () FROM beamish_agents WHERE {' AND '.join(where)} "
            "ORDER BY name LIMIT %s", params)
        if not rows:
            return [], 0
        return [AgentRecord.from_wire(unpack(r[0])) for r in rows], int(rows[0][1]) - len(rows)

    def agents_by_supervisor(self, statuses: Collection[str], limit: int | None = None
                             ) -> dict[str, tuple[list[AgentRecord], dict[str, int]]]:
        """Return the agents with a status in ``statuses`` by supervisor: the first
        ``limit`` records of each, in name order, and the others' counts by status (see
        `..protocol.Txn.agents_by_supervisor`)."""
        out: dict[str, tuple[list[AgentRecord], dict[str, int]]] = {}
        if not statuses:
            return out
        for supervisor, status, record in self._all(
                "SELECT supervisor, status, record FROM beamish_agents WHERE cluster = %s "
                "AND status = ANY(%s) ORDER BY name", (self.c, list(statuses))):
            rows, more = out.setdefault(supervisor, ([], {}))
            if limit is None or len(rows) < limit:
                rows.append(AgentRecord.from_wire(unpack(record)))
            else:
                more[status] = more.get(status, 0) + 1
        return out

    def status_counts(self) -> dict[str, int]:
        """Return how many agents have each status (those with none are left out)."""
        return {str(s): int(n) for s, n in self._all(
            "SELECT status, count(*) FROM beamish_agents WHERE cluster = %s GROUP BY status",
            (self.c,))}

    # -- supervisors --------------------------------------------------------------------
    def get_sup(self, name: str) -> SupervisorRecord | None:
        """Return the supervisor record ``name``, or None."""
        row = self._one("SELECT record FROM beamish_supervisors WHERE cluster = %s AND "
                        "name = %s", (self.c, name))
        return None if row is None else SupervisorRecord.from_wire(unpack(row[0]))

    def put_sup(self, record: SupervisorRecord) -> None:
        """Write a supervisor record (keyed by its name)."""
        self._run("INSERT INTO beamish_supervisors (cluster, name, record) VALUES "
                  "(%s, %s, %s) ON CONFLICT (cluster, name) DO UPDATE SET "
                  "record = excluded.record", (self.c, record.name, pack(record.to_wire())))

    def delete_sup(self, name: str) -> None:
        """Remove the supervisor record ``name``."""
        self._run("DELETE FROM beamish_supervisors WHERE cluster = %s AND name = %s",
                  (self.c, name))

    def sups(self) -> list[SupervisorRecord]:
        """Return every supervisor record, in name order."""
        return [SupervisorRecord.from_wire(unpack(r[0])) for r in self._all(
            "SELECT record FROM beamish_supervisors WHERE cluster = %s ORDER BY name",
            (self.c,))]

    # -- mailboxes and attempts ---------------------------------------------------------
    def append(self, agent_id: int, message: Message | Malformed) -> int:
        """Append ``message`` to the agent's mailbox; return its sequence number."""
        return self.append_packed(agent_id, pack(message.to_wire()))

    def append_packed(self, agent_id: int, packed: bytes) -> int:
        """Append an already-packed message record; return its sequence number. One
        statement: the tail's row is bumped (and locked: appends to one mailbox queue
        behind each other) and the message inserted at the seq it had."""
        return int(self._one(
            "WITH t AS (INSERT INTO beamish_tails (cluster, agent_id, next_seq) "
            "VALUES (%s, %s, 2) ON CONFLICT (cluster, agent_id) DO UPDATE SET "
            "next_seq = beamish_tails.next_seq + 1 RETURNING next_seq - 1 AS seq) "
            "INSERT INTO beamish_mailbox (cluster, agent_id, seq, message) "
            "SELECT %s, %s, seq, %s FROM t RETURNING seq",
            (self.c, agent_id, self.c, agent_id, packed))[0])

    def append_packed_many(self, agent_id: int, packed: list[bytes]) -> int:
        """Append messages already packed, in list order (consecutive seqs); return the
        seq of the first (the next seq if ``packed`` is empty). One statement."""
        if not packed:
            return self.tail(agent_id)
        n = len(packed)
        return int(self._one(
            "WITH t AS (INSERT INTO beamish_tails (cluster, agent_id, next_seq) "
            "VALUES (%s, %s, %s) ON CONFLICT (cluster, agent_id) DO UPDATE SET "
            "next_seq = beamish_tails.next_seq + %s RETURNING next_seq - %s AS first), "
            "m AS (INSERT INTO beamish_mailbox (cluster, agent_id, seq, message) "
            "SELECT %s, %s, t.first + m.i - 1, m.message FROM t, "
            "unnest(%s::bytea[]) WITH ORDINALITY AS m(message, i)) "
            "SELECT first FROM t",
            (self.c, agent_id, 1 + n, n, n, self.c, agent_id, packed))[0])

    def peek(self, agent_id: int, limit: int = 64) -> list[tuple[int, Message | Malformed]]:
        """Return up to ``limit`` messages from the head of the agent's mailbox, in order."""
        return [(int(seq), Message.from_packed(raw)) for seq, raw in self._all(
            "SELECT seq, message FROM beamish_mailbox WHERE cluster = %s AND agent_id = %s "
            "ORDER BY seq LIMIT %s", (self.c, agent_id, limit))]

    def message(self, agent_id: int, seq: int) -> Message | Malformed | None:
        """Return message ``seq`` of the agent's mailbox, or None if it is not there."""
        raw = self.message_packed(agent_id, seq)
        return None if raw is None else Message.from_packed(raw)

    def message_packed(self, agent_id: int, seq: int) -> bytes | None:
        """Return message ``seq`` of the agent's mailbox as stored (packed), or None."""
        row = self._one("SELECT message FROM beamish_mailbox WHERE cluster = %s AND "
                        "agent_id = %s AND seq = %s", (self.c, agent_id, seq))
        return None if row is None else bytes(row[0])

    def kinds_between(self, agent_id: int, first: int, last: int) -> dict[int, str]:
        """Return ``{seq: kind}`` of the agent's messages from ``first`` to ``last``."""
        out: dict[int, str] = {}
        for seq, raw in self._all(
                "SELECT seq, message FROM beamish_mailbox WHERE cluster = %s AND "
                "agent_id = %s AND seq BETWEEN %s AND %s ORDER BY seq",
                (self.c, agent_id, first, last)):
            opened = Message.from_packed(raw)
            out[int(seq)] = str(opened.kind) if isinstance(opened, Message) else "malformed"
        return out

    def tail(self, agent_id: int) -> int:
        """Return the sequence number the next appended message will get."""
        row = self._one("SELECT next_seq FROM beamish_tails WHERE cluster = %s AND "
                        "agent_id = %s", (self.c, agent_id))
        return 1 if row is None else int(row[0])

    def remove(self, agent_id: int, seq: int, attempted: bool = True) -> None:
        """Remove message ``seq`` and, if ``attempted``, its count of failed attempts."""
        if not attempted:
            self._run("DELETE FROM beamish_mailbox WHERE cluster = %s AND agent_id = %s AND "
                      "seq = %s", (self.c, agent_id, seq))
            return
        self._run("WITH m AS (DELETE FROM beamish_mailbox WHERE cluster = %s AND "
                  "agent_id = %s AND seq = %s) DELETE FROM beamish_attempts WHERE "
                  "cluster = %s AND agent_id = %s AND seq = %s",
                  (self.c, agent_id, seq, self.c, agent_id, seq))

    def remove_many(self, agent_id: int, seqs: list[int]) -> None:
        """Remove messages ``seqs`` (a group handled and committed together) and their
        counts of failed attempts, if any: one statement."""
        if not seqs:
            return
        self._run("WITH m AS (DELETE FROM beamish_mailbox WHERE cluster = %s AND "
                  "agent_id = %s AND seq = ANY(%s)) DELETE FROM beamish_attempts WHERE "
                  "cluster = %s AND agent_id = %s AND seq = ANY(%s)",
                  (self.c, agent_id, seqs, self.c, agent_id, seqs))

    def depth(self, agent_id: int) -> int:
        """Return how many messages wait in the agent's mailbox."""
        return int(self._one("SELECT count(*) FROM beamish_mailbox WHERE cluster = %s AND "
                             "agent_id = %s", (self.c, agent_id))[0])

    def bump_attempts(self, agent_id: int, seq: int) -> int:
        """Count one more failed attempt at message ``seq``; return the new count."""
        return int(self._one(
            "INSERT INTO beamish_attempts (cluster, agent_id, seq, n) VALUES (%s, %s, %s, 1) "
            "ON CONFLICT (cluster, agent_id, seq) DO UPDATE SET n = beamish_attempts.n + 1 "
            "RETURNING n", (self.c, agent_id, seq))[0])

    def attempts(self, agent_id: int, seq: int) -> int:
        """Return how many attempts at message ``seq`` have failed."""
        row = self._one("SELECT n FROM beamish_attempts WHERE cluster = %s AND "
                        "agent_id = %s AND seq = %s", (self.c, agent_id, seq))
        return 0 if row is None else int(row[0])

    # -- state --------------------------------------------------------------------------
    def get_state(self, agent_id: int) -> tuple[int, bytes, int] | None:
        """Return ``(version, packed_state, processed)`` of the agent, or None."""
        row = self._one("SELECT version, state, processed FROM beamish_state WHERE "
                        "cluster = %s AND agent_id = %s", (self.c, agent_id))
        return None if row is None else (int(row[0]), bytes(row[1]), int(row[2]))

    def put_state(self, agent_id: int, version: int, packed: bytes, processed: int) -> None:
        """Store the agent's packed state with its class version and handled count."""
        self._run("INSERT INTO beamish_state (cluster, agent_id, version, state, processed) "
                  "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (cluster, agent_id) DO UPDATE SET "
                  "version = excluded.version, state = excluded.state, "
                  "processed = excluded.processed",
                  (self.c, agent_id, version, packed, processed))

    def processed(self, agent_id: int) -> int:
        """Return how many messages the agent has handled (committed)."""
        row = self._one("SELECT processed FROM beamish_state WHERE cluster = %s AND "
                        "agent_id = %s", (self.c, agent_id))
        return 0 if row is None else int(row[0])

    # -- replies ------------------------------------------------------------------------
    def put_reply(self, msg_id: bytes, reply: Reply) -> None:
        """Store the reply to call ``msg_id`` for its caller to take."""
        self._put_reply(msg_id, pack(reply.to_wire()), reply.expires)

    def put_reply_packed(self, msg_id: bytes, packed: bytes) -> None:
        """Store an already-packed reply record to call ``msg_id`` (its ``expires`` read
        from it: a record without one never expires, as on LMDB)."""
        try:
            data = unpack(packed)
        except ProtocolError:
            data = None
        expires = Reply.expires_of(data, 0.0) if isinstance(data, dict) and \
            "expires" in data else None
        self._put_reply(msg_id, packed, expires)

    def _put_reply(self, msg_id: bytes, packed: bytes, expires: float | None) -> None:
        self._run("INSERT INTO beamish_replies (cluster, msg_id, expires, reply) VALUES "
                  "(%s, %s, %s, %s) ON CONFLICT (cluster, msg_id) DO UPDATE SET "
                  "expires = excluded.expires, reply = excluded.reply",
                  (self.c, msg_id, expires, packed))

    def pop_reply(self, msg_id: bytes) -> Reply | None:
        """Take (read and delete) the reply to call ``msg_id``, or None if not there yet."""
        row = self._one("DELETE FROM beamish_replies WHERE cluster = %s AND msg_id = %s "
                        "RETURNING reply", (self.c, msg_id))
        return None if row is None else Reply.from_wire(unpack(row[0]))

    def expired_replies(self, now: float) -> list[bytes]:
        """Return the ids of replies nobody will take any more (expired before ``now``)."""
        return [bytes(r[0]) for r in self._all(
            "SELECT msg_id FROM beamish_replies WHERE cluster = %s AND expires < %s",
            (self.c, now))]

    def delete_reply(self, msg_id: bytes) -> None:
        """Drop the reply ``msg_id``."""
        self._run("DELETE FROM beamish_replies WHERE cluster = %s AND msg_id = %s",
                  (self.c, msg_id))

    # -- dead letters and failure reports -----------------------------------------------
    def put_dead(self, agent_id: int, seq: int, entry: DeadLetter) -> None:
        """Keep a message given up, with its failure."""
        self._run("INSERT INTO beamish_dead (cluster, agent_id, seq, entry) VALUES "
                  "(%s, %s, %s, %s) ON CONFLICT (cluster, agent_id, seq) DO UPDATE SET "
                  "entry = excluded.entry", (self.c, agent_id, seq, pack(entry.to_wire())))

    def dead(self, agent_id: int) -> list[tuple[int, DeadLetter]]:
        """Return the agent's dead letters, oldest first."""
        return [(int(seq), DeadLetter.from_wire(unpack(raw))) for seq, raw in self._all(
            "SELECT seq, entry FROM beamish_dead WHERE cluster = %s AND agent_id = %s "
            "ORDER BY seq", (self.c, agent_id))]

    def dead_count(self, agent_id: int) -> int:
        """Return how many dead letters the agent has (counted, none decoded)."""
        return int(self._one("SELECT count(*) FROM beamish_dead WHERE cluster = %s AND "
                             "agent_id = %s", (self.c, agent_id))[0])

    def delete_dead(self, agent_id: int, seq: int) -> bool:
        """Drop one dead letter; False if it was not there."""
        return self._run("DELETE FROM beamish_dead WHERE cluster = %s AND agent_id = %s AND "
                         "seq = %s", (self.c, agent_id, seq)) > 0

    def put_failure(self, agent_id: int, report: FailureReport) -> None:
        """Record a dying agent's own report of why it fails."""
        self._run("INSERT INTO beamish_failures (cluster, agent_id, report) VALUES "
                  "(%s, %s, %s) ON CONFLICT (cluster, agent_id) DO UPDATE SET "
                  "report = excluded.report", (self.c, agent_id, pack(report.to_wire())))

    def pop_failure(self, agent_id: int) -> FailureReport | None:
        """Take the agent's last failure report, if it wrote one."""
        row = self._one("DELETE FROM beamish_failures WHERE cluster = %s AND agent_id = %s "
                        "RETURNING report", (self.c, agent_id))
        return None if row is None else FailureReport.from_wire(unpack(row[0]))

    # -- durable timers -----------------------------------------------------------------
    def put_timer(self, timer: Timer) -> None:
        """Store a durable timer (replacing one with the same agent and seq)."""
        self._run("INSERT INTO beamish_timers (cluster, agent_id, seq, due_ns, timer) "
                  "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (cluster, agent_id, seq) DO "
                  "UPDATE SET due_ns = excluded.due_ns, timer = excluded.timer",
                  (self.c, timer.agent_id, timer.seq, timer.due_ns, pack(timer.to_wire())))

    def delete_timer(self, agent_id: int, seq: int) -> bool:
        """Remove timer ``seq`` of the agent (cancelled or fired); False if not there."""
        return self._run("DELETE FROM beamish_timers WHERE cluster = %s AND agent_id = %s "
                         "AND seq = %s", (self.c, agent_id, seq)) > 0

    def has_timer(self, agent_id: int, seq: int) -> bool:
        """Whether timer ``seq`` of the agent is pending."""
        return self._one("SELECT 1 FROM beamish_timers WHERE cluster = %s AND agent_id = %s "
                         "AND seq = %s", (self.c, agent_id, seq)) is not None

    def next_timer_due(self) -> int | None:
        """Return when the cluster's earliest pending timer is due (wall-clock ns), or
        None."""
        row = self._one("SELECT min(due_ns) FROM beamish_timers WHERE cluster = %s",
                        (self.c,))
        return None if row is None or row[0] is None else int(row[0])

    def due_timers(self, now_ns: int, limit: int = 256) -> list[Timer]:
        """Return up to ``limit`` timers due at or before ``now_ns``, earliest first."""
        rows = self._all("SELECT agent_id, seq, due_ns, timer FROM beamish_timers WHERE "
                         "cluster = %s AND due_ns <= %s ORDER BY due_ns, agent_id, seq "
                         "LIMIT %s", (self.c, now_ns, limit))
        return [t for t in (_open_timer(*row) for row in rows) if t is not None]

    def take_due_timers(self, now_ns: int, limit: int = 256) -> tuple[list[Timer], int]:
        """Remove and return up to ``limit`` timers due at or before ``now_ns`` (earliest
        first), and how many stored rows that were not timers were removed with them."""
        rows = self._all(
            "DELETE FROM beamish_timers WHERE cluster = %s AND (agent_id, seq) IN "
            "(SELECT agent_id, seq FROM beamish_timers WHERE cluster = %s AND due_ns <= %s "
            "ORDER BY due_ns, agent_id, seq LIMIT %s) RETURNING agent_id, seq, due_ns, timer",
            (self.c, self.c, now_ns, limit))
        rows.sort(key=lambda r: (r[2], r[0], r[1]))
        opened = [_open_timer(*row) for row in rows]
        taken = [t for t in opened if t is not None]
        return taken, len(opened) - len(taken)

    def timers(self, agent_id: int) -> list[Timer]:
        """Return the agent's pending timers, in the order they were set (by seq)."""
        rows = self._all("SELECT agent_id, seq, due_ns, timer FROM beamish_timers WHERE "
                         "cluster = %s AND agent_id = %s ORDER BY seq", (self.c, agent_id))
        return [t for t in (_open_timer(*row) for row in rows) if t is not None]

    # -- wakes --------------------------------------------------------------------------
    def put_wake(self, agent_id: int, name: str) -> None:
        """Mark sleeping agent ``name`` (id ``agent_id``) to be woken."""
        self._run("INSERT INTO beamish_wakes (cluster, agent_id, name) VALUES (%s, %s, %s) "
                  "ON CONFLICT (cluster, agent_id) DO UPDATE SET name = excluded.name",
                  (self.c, agent_id, name))

    def delete_wake(self, agent_id: int) -> bool:
        """Drop the agent's wake mark (it is awake, or gone); False if it had none."""
        return self._run("DELETE FROM beamish_wakes WHERE cluster = %s AND agent_id = %s",
                         (self.c, agent_id)) > 0

    def wakes(self, limit: int = 1024, after: int | None = None) -> list[tuple[int, str]]:
        """Return up to ``limit`` pending wakes as ``(agent_id, name)``, by agent id, those
        of ids above ``after`` only if given."""
        return [(int(i), str(n)) for i, n in self._all(
            "SELECT agent_id, name FROM beamish_wakes WHERE cluster = %s AND agent_id > %s "
            "ORDER BY agent_id LIMIT %s", (self.c, -1 if after is None else after, limit))]

    # -- the event log ------------------------------------------------------------------
    def put_events(self, events: Sequence[Event], kept: int) -> None:
        """Append ``events`` to the event log and drop the oldest beyond ``kept`` (see
        `..protocol.Txn.put_events`)."""
        if events:
            self._run("INSERT INTO beamish_events (cluster, seq, event) SELECT %s, s, e "
                      "FROM unnest(%s::bigint[], %s::bytea[]) AS u(s, e) "
                      "ON CONFLICT (cluster, seq) DO UPDATE SET event = excluded.event",
                      (self.c, [e.seq for e in events],
                       [pack(event_to_wire(e)) for e in events]))
        self._run("DELETE FROM beamish_events WHERE cluster = %s AND seq < "
                  "(SELECT max(seq) FROM beamish_events WHERE cluster = %s) - %s + 1",
                  (self.c, self.c, kept))

    def last_event_seq(self) -> int:
        """Return the seq of the latest stored event (0 if there is none)."""
        row = self._one("SELECT max(seq) FROM beamish_events WHERE cluster = %s", (self.c,))
        return 0 if row is None or row[0] is None else int(row[0])

    def events_page(self, after: int, flt: EventFilter, limit: int) -> EventPage:
        """Return up to ``limit`` stored events after seq ``after`` that pass ``flt``,
        oldest first (see `..protocol.Txn.events_page`): read in batches until the page
        is full and one more match is found, or to the log's end."""
        page = PageFiller(after, flt, limit)
        while True:
            rows = self._all("SELECT seq, event FROM beamish_events WHERE cluster = %s AND "
                             "seq > %s ORDER BY seq LIMIT %s",
                             (self.c, max(page.read, 0), _EVENT_BATCH))
            for seq, raw in rows:
                full = page.add(event_from_wire(int(seq), unpack(raw)))
                if full is not None:
                    return full
            if len(rows) < _EVENT_BATCH:
                return page.end()

    # -- whole agents -------------------------------------------------------------------
    def erase_agent_data(self, agent_id: int) -> None:
        """Erase the agent's state, mailbox, attempts, dead letters, timers, wake mark and
        failure report: one statement."""
        tables = ("beamish_state", "beamish_tails", "beamish_mailbox", "beamish_attempts",
                  "beamish_dead", "beamish_timers", "beamish_wakes")
        ctes = ", ".join(f"d{i} AS (DELETE FROM {t} WHERE cluster = %(c)s AND "
                         "agent_id = %(a)s)" for i, t in enumerate(tables))
        self._run(f"WITH {ctes} DELETE FROM beamish_failures WHERE cluster = %(c)s AND "
                  "agent_id = %(a)s", {"c": self.c, "a": agent_id})


def _open_timer(agent_id: int, seq: int, due_ns: int, raw: bytes) -> Timer | None:
    """A stored timer, or None for a row whose value no beamish process wrote (not a
    timer's record): the timer service removes those."""
    try:
        data = unpack(raw)
    except ProtocolError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("p"), bytes) \
            or not isinstance(data.get("t", 0.0), (int, float)):
        return None
    return Timer.from_wire(int(agent_id), int(seq), int(due_ns), data)
