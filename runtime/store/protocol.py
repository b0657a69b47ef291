"""The store interface: what the runtime asks of a durable store, in terms of the typed
records of `.records`. ``lmdb.py`` implements it (a PostgreSQL store can, later); nothing
outside ``store/`` knows which backend it talks to (`beamish.runtime.store.open_store`
picks it).

Transactions are explicit: ``store.read(fn)`` / ``store.write(fn)`` run ``fn(txn)`` in
one transaction, a write committed as one atomic unit when ``fn`` returns and undone if
it raises. A backend may run ``fn`` more than once (LMDB does, after growing its map), so
``fn`` must have no side effects outside the transaction.

Keys: agents and supervisors by name (one namespace); everything an agent owns by its
id; a message, its attempts and its dead letter by ``(agent id, seq)``; a reply by the
call's msg id; a timer by ``(due time, agent id, seq)``, found by ``(agent id, seq)``;
an event of the node's log by its seq.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol, TypeVar

from .._events import EventFilter, EventPage
from .._types import Event
from .records import (
    AgentRecord,
    DeadLetter,
    FailureReport,
    Malformed,
    Message,
    Reply,
    SupervisorRecord,
    Timer,
)
from .writegate import WriteLane

T = TypeVar("T")


class Txn(Protocol):
    """One transaction's record operations. Valid only inside the ``read``/``write``
    function it was passed to."""

    # -- counters -------------------------------------------------------------------------
    def next_counter(self, name: str) -> int:
        """Increment and return the counter ``name`` (starts at 1)."""
        ...

    # -- agents and their routes ----------------------------------------------------------
    def get_agent(self, name: str) -> AgentRecord | None:
        """Return the agent record named ``name``, or None."""
        ...

    def put_agent(self, record: AgentRecord) -> None:
        """Write an agent record and its route (id and status, what a sender reads)."""
        ...

    def get_route(self, name: str) -> tuple[int, str] | None:
        """Return ``(agent_id, status)`` of agent ``name``, or None (cheap: for senders)."""
        ...

    def delete_agent(self, name: str) -> None:
        """Remove the agent record ``name`` and its route."""
        ...

    def agents(self) -> list[AgentRecord]:
        """Return every agent record."""
        ...

    def agents_page(self, after: str | None = None, limit: int | None = None,
                    status: str | None = None, supervisor: str | None = None
                    ) -> tuple[list[AgentRecord], int]:
        """Return the agent records whose name sorts after ``after`` (all if None), in name
        order, that have ``status`` and belong to ``supervisor`` (when given): at most
        ``limit`` of them (all if None), and how many more match after the last one
        returned. A bounded read when nothing is filtered (a page costs its rows plus a
        count of the keys after it); a filter reads each remaining record's route or
        record, never building the records it does not return.
        """
        ...

    def agents_by_supervisor(self, statuses: Collection[str], limit: int | None = None
                             ) -> dict[str, tuple[list[AgentRecord], dict[str, int]]]:
        """Return the agents whose status is one of ``statuses``, grouped by supervisor:
        for each, its first ``limit`` records in name order (all if None) and how many
        more it has, by status. Reads every route and the records of those that match
        (the agents no supervisor shell holds, for ``tree``)."""
        ...

    def status_counts(self) -> dict[str, int]:
        """Return how many agents have each status (those with none are left out). Reads
        every route (two fields each), never a record: about 1 µs per agent."""
        ...

    # -- supervisors ----------------------------------------------------------------------
    def get_sup(self, name: str) -> SupervisorRecord | None:
        """Return the supervisor record ``name``, or None."""
        ...

    def put_sup(self, record: SupervisorRecord) -> None:
        """Write a supervisor record."""
        ...

    def delete_sup(self, name: str) -> None:
        """Remove the supervisor record ``name``."""
        ...

    def sups(self) -> list[SupervisorRecord]:
        """Return every supervisor record."""
        ...

    # -- mailboxes and attempts -------------------------------------------------------------
    def append(self, agent_id: int, message: Message | Malformed) -> int:
        """Append ``message`` to the agent's mailbox; return its sequence number."""
        ...

    def append_packed(self, agent_id: int, packed: bytes) -> int:
        """Append a message already packed (``pack(message.to_wire())``); return its seq."""
        ...

    def append_packed_many(self, agent_id: int, packed: list[bytes]) -> int:
        """Append messages already packed, in list order (consecutive seqs); return the
        seq of the first (the next seq if ``packed`` is empty)."""
        ...

    def peek(self, agent_id: int, limit: int = 64) -> list[tuple[int, Message | Malformed]]:
        """Return up to ``limit`` messages from the head of the agent's mailbox, in order."""
        ...

    def message(self, agent_id: int, seq: int) -> Message | Malformed | None:
        """Return message ``seq`` of the agent's mailbox, or None if it is not there."""
        ...

    def message_packed(self, agent_id: int, seq: int) -> bytes | None:
        """Return message ``seq`` of the agent's mailbox as stored (packed: what a ring
        carries inline, compared as bytes), or None if it is not there."""
        ...

    def kinds_between(self, agent_id: int, first: int, last: int) -> dict[int, str]:
        """Return ``{seq: kind}`` of the agent's messages from ``first`` to ``last``."""
        ...

    def tail(self, agent_id: int) -> int:
        """Return the sequence number the next appended message will get."""
        ...

    def remove(self, agent_id: int, seq: int, attempted: bool = True) -> None:
        """Remove message ``seq`` and, if ``attempted``, its count of failed attempts."""
        ...

    def remove_many(self, agent_id: int, seqs: list[int]) -> None:
        """Remove messages ``seqs`` (a group handled and committed together) and their
        counts of failed attempts, if any."""
        ...

    def depth(self, agent_id: int) -> int:
        """Return how many messages wait in the agent's mailbox."""
        ...

    def bump_attempts(self, agent_id: int, seq: int) -> int:
        """Count one more failed attempt at message ``seq``; return the new count."""
        ...

    def attempts(self, agent_id: int, seq: int) -> int:
        """Return how many attempts at message ``seq`` have failed."""
        ...

    # -- state ----------------------------------------------------------------------------
    def get_state(self, agent_id: int) -> tuple[int, bytes, int] | None:
        """Return ``(version, packed_state, processed)`` of the agent, or None."""
        ...

    def put_state(self, agent_id: int, version: int, packed: bytes, processed: int) -> None:
        """Store the agent's packed state with its class version and handled count."""
        ...

    def processed(self, agent_id: int) -> int:
        """Return how many messages the agent has handled (committed)."""
        ...

    # -- replies --------------------------------------------------------------------------
    def put_reply(self, msg_id: bytes, reply: Reply) -> None:
        """Store the reply to call ``msg_id`` for its caller to take."""
        ...

    def put_reply_packed(self, msg_id: bytes, packed: bytes) -> None:
        """Store a reply already packed (``pack(reply.to_wire())``)."""
        ...

    def pop_reply(self, msg_id: bytes) -> Reply | None:
        """Take (read and delete) the reply to call ``msg_id``, or None if not there yet."""
        ...

    def expired_replies(self, now: float) -> list[bytes]:
        """Return the ids of replies nobody will take any more (expired before ``now``)."""
        ...

    def delete_reply(self, msg_id: bytes) -> None:
        """Drop the reply ``msg_id``."""
        ...

    # -- dead letters and failure reports ---------------------------------------------------
    def put_dead(self, agent_id: int, seq: int, entry: DeadLetter) -> None:
        """Keep a message given up, with its failure."""
        ...

    def dead(self, agent_id: int) -> list[tuple[int, DeadLetter]]:
        """Return the agent's dead letters, oldest first."""
        ...

    def dead_count(self, agent_id: int) -> int:
        """Return how many dead letters the agent has (counted, none decoded)."""
        ...

    def delete_dead(self, agent_id: int, seq: int) -> bool:
        """Drop one dead letter; False if it was not there."""
        ...

    def put_failure(self, agent_id: int, report: FailureReport) -> None:
        """Record a dying agent's own report of why it fails."""
        ...

    def pop_failure(self, agent_id: int) -> FailureReport | None:
        """Take the agent's last failure report, if it wrote one."""
        ...

    # -- durable timers -------------------------------------------------------------------
    def put_timer(self, timer: Timer) -> None:
        """Store a durable timer (set in the transaction of the handler that set it)."""
        ...

    def delete_timer(self, agent_id: int, seq: int) -> bool:
        """Remove timer ``seq`` of the agent (cancelled or fired); False if not there."""
        ...

    def has_timer(self, agent_id: int, seq: int) -> bool:
        """Whether timer ``seq`` of the agent is pending."""
        ...

    def next_timer_due(self) -> int | None:
        """Return when the node's earliest pending timer is due (wall-clock ns), or None."""
        ...

    def due_timers(self, now_ns: int, limit: int = 256) -> list[Timer]:
        """Return up to ``limit`` timers due at or before ``now_ns``, earliest first."""
        ...

    def take_due_timers(self, now_ns: int, limit: int = 256) -> tuple[list[Timer], int]:
        """Remove and return up to ``limit`` timers due at or before ``now_ns`` (earliest
        first), and how many stored entries that were not timers were removed with them."""
        ...

    def timers(self, agent_id: int) -> list[Timer]:
        """Return the agent's pending timers."""
        ...

    # -- wakes (sleeping agents with something to handle) ---------------------------------
    def put_wake(self, agent_id: int, name: str) -> None:
        """Mark sleeping agent ``name`` (id ``agent_id``) to be woken: something waits for
        it. Written in the transaction of the append (or sleep) that found it so."""
        ...

    def delete_wake(self, agent_id: int) -> bool:
        """Drop the agent's wake mark (it is awake, or gone); False if it had none."""
        ...

    def wakes(self, limit: int = 1024, after: int | None = None) -> list[tuple[int, str]]:
        """Return up to ``limit`` pending wakes as ``(agent_id, name)``, by agent id, those
        of ids above ``after`` only if given (the next page: pass the last id read)."""
        ...

    # -- the node's event log ---------------------------------------------------------------
    def put_events(self, events: Sequence[Event], kept: int) -> None:
        """Append ``events`` (seqs above every stored one, in order) to the event log, then
        drop the oldest: only the events whose seq is within ``kept`` of the latest stay
        (all of them but the oldest beyond ``kept`` when the seqs have no gap).
        ``put_events([], kept)`` only drops."""
        ...

    def last_event_seq(self) -> int:
        """Return the seq of the latest stored event (0 if there is none)."""
        ...

    def events_page(self, after: int, flt: EventFilter, limit: int) -> EventPage:
        """Return the stored events with seq above ``after`` that pass ``flt``, oldest
        first: at most ``limit`` of them, whether more follow, and where the next page
        starts (`EventPage`). Reads the log from ``after`` until the page is full and one
        more match is found, or to its end."""
        ...

    # -- whole agents ---------------------------------------------------------------------
    def erase_agent_data(self, agent_id: int) -> None:
        """Erase the agent's state, mailbox, attempts, dead letters, timers, wake mark and
        failure report."""
        ...


class Store(Protocol):
    """An open store, shared by the threads of one process (each process opens its own,
    after any fork)."""

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn(txn)`` in a read-only transaction and return its result."""
        ...

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn(txn)`` in a write transaction: committed when ``fn`` returns, undone if
        it raises; ``fn`` may run more than once.

        Raises:
            StoreFullError: the store's disk is full (nothing was committed).
        """
        ...

    def write_in_lane(self, fn: Callable[[Txn], T], lane: WriteLane) -> T:
        """`write`, saying who waits on the commit (`.writegate.WriteLane`): a backend
        with one writer at a time lets an urgent commit go ahead of bulk ones."""
        ...

    def reader_check(self) -> int:
        """Housekeeping the node runs every second: release what dead processes held
        (LMDB: their reader slots); return how many were released."""
        ...

    def close(self) -> None:
        """Close it (this process's handle; the data stays)."""
        ...
