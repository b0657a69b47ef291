"""The only module that imports lmdb: the LMDB implementation of the store interface
(`.protocol`; open one with `beamish.runtime.store.open_store`).

One LMDB environment per node holds, in named databases, msgpack values (each record's
``to_wire`` form, `.records`):

    agents      name -> AgentRecord                           (the registry)
    routes      name -> [id, status]    (the small part of the record a sender reads)
    sups        name -> SupervisorRecord                      (the persisted tree)
    mailbox     agent_id(8) + seq(8) -> Message               (the durable mailboxes)
    tails       agent_id(8) -> next seq(8)
    state       agent_id(8) -> AgentState                     (state + messages handled)
    replies     msg_id -> Reply                 (a call's answer, taken by the caller)
    dead        agent_id(8) + seq(8) -> DeadLetter            (messages given up)
    attempts    agent_id(8) + seq(8) -> int                   (failed tries of one message)
    failures    agent_id(8) -> FailureReport                  (what a dying agent wrote)
    timers      due_ns(8) + agent_id(8) + seq(8) -> Timer     (durable timers, earliest
                                                               due first; wall clock ns)
    timer_ids   agent_id(8) + seq(8) -> due_ns(8)             (a timer's key, for cancel)
    wakes       agent_id(8) -> name (utf-8)     (a sleeping agent with something to
                                                   handle: written with the append that
                                                   found it sleeping, deleted once awake)
    events      seq(8) -> Event               (the node's event log, oldest first;
                                                   the latest ``[node] events_kept`` kept)
    meta        key -> int                                    (counters: agent_id, order)

Rules (py-lmdb docs): every process opens its own environment after any fork; a
transaction is never held across a socket receive; read-only unless writing. The map
starts small and grows on demand: ``MapFullError`` and ``MapResizedError`` never reach a
user, because `Store.write` runs its function again in a new transaction after growing the
map (the re-run contract: a write function has no side effects outside its transaction).
One process-wide lock guards transactions because resizing needs no live transaction in
the process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, Literal, TypeVar, cast

import lmdb

from beamish.mailbox import ProtocolError, pack, unpack

from .._events import EventFilter, EventPage, PageFiller
from .._types import Event
from ..errors import StoreError, StoreFullError
from .records import (
    AgentRecord,
    AgentState,
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
from .writegate import GateStep, WriteGate, WriteLane

# py-lmdb 3 imports this helper at the first environment opened in a process: in every
# agent, then (a .pyc found and read at each spawn, ~0.4 ms of CPU). Imported here, the
# zygote has it before it forks. Older py-lmdb releases have no such module.
with contextlib.suppress(ModuleNotFoundError):
    import lmdb._envid  # noqa: F401

Durability = Literal["process", "fsync", "memory"]
DURABILITIES: tuple[str, ...] = ("process", "fsync", "memory")
INITIAL_MAP_SIZE = 64 * 1024 * 1024
MAX_READERS = 4096
_DBS = ("agents", "routes", "sups", "mailbox", "tails", "state", "replies", "dead", "attempts",
        "failures", "meta", "timers", "timer_ids", "wakes", "events")
_U64 = struct.Struct(">Q")
T = TypeVar("T")
# Less free space than this (or no free inode) on a filesystem after a failed write: full.
FULL_BELOW_BYTES = 1024 * 1024


def filesystem_full(path: str) -> str | None:
    """Say so if the filesystem holding ``path`` is (nearly) full; None if it is not (or
    cannot be checked). LMDB reports a write that ran out of space as EIO or ENOSPC, and
    a write to a full tmpfs through a shared mapping as SIGBUS: asking the filesystem is
    the one test that covers them all."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if free >= FULL_BELOW_BYTES and (st.f_files == 0 or st.f_favail > 0):
        return None
    size = st.f_blocks * st.f_frsize
    what = f"{free // 1024} KiB free of {size // 1024} KiB" if st.f_favail or not st.f_files \
        else "no free inode"
    return f"the filesystem holding {path!r} is full ({what})"


def full_disk_advice(durability: str) -> str:
    """What to do about a full store filesystem."""
    where = "/dev/shm (durability 'memory' keeps the store there)" \
        if durability == "memory" else "that filesystem"
    return (f"free space on {where}, or move the node dir to a larger filesystem "
            "(`--dir`), then `beamish restart NAME` for each agent marked failed")


def _id(agent_id: int) -> bytes:
    return _U64.pack(agent_id)


def _key(agent_id: int, seq: int) -> bytes:
    return _U64.pack(agent_id) + _U64.pack(seq)


def memory_path(node_dir: str) -> str:
    """Where a ``durability="memory"`` node keeps its LMDB: tmpfs when there is one."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else os.path.join(node_dir, "tmp")
    tag = f"{os.stat(node_dir).st_ino:x}-{os.getuid()}"
    return os.path.join(base, f"beamish-{tag}")


class Txn:
    """One LMDB transaction with beamish's record operations (implements
    `.protocol.Txn`). Get one from `Store.read` or `Store.write`; never keep it after the
    function returns."""

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, lmdb._Database]) -> None:
        self.txn = txn
        self.dbs = dbs

    # -- raw helpers -----------------------------------------------------------------------
    # The environment is opened without ``buffers=True``: lmdb hands out bytes, never the
    # memoryviews its stubs also allow, hence the casts below.
    def _raw(self, db: str, key: bytes, pop: bool = False) -> bytes | None:
        got = self.txn.pop(key, db=self.dbs[db]) if pop else self.txn.get(key, db=self.dbs[db])
        return cast("bytes | None", got)

    def _get(self, db: str, key: bytes) -> Any:
        raw = self._raw(db, key)
        return None if raw is None else unpack(raw)

    def _put(self, db: str, key: bytes, value: Any) -> None:
        self.txn.put(key, pack(value), db=self.dbs[db])

    def _delete(self, db: str, key: bytes) -> bool:
        return bool(self.txn.delete(key, db=self.dbs[db]))

    def _prefix(self, db: str, prefix: bytes, limit: int | None = None
                ) -> Iterator[tuple[bytes, bytes]]:
        cur = self.txn.cursor(db=self.dbs[db])
        if not cur.set_range(prefix):
            return
        for n, (key, value) in enumerate(cast("Iterator[tuple[bytes, bytes]]", cur)):
            if not key.startswith(prefix) or (limit is not None and n >= limit):
                return
            yield key, value

    # -- meta --------------------------------------------------------------------------------
    def next_counter(self, name: str) -> int:
        """Increment and return the counter ``name`` (starts at 1)."""
        value = int(self._get("meta", name.encode()) or 0) + 1
        self._put("meta", name.encode(), value)
        return value

    # -- agents and supervisors ----------------------------------------------------------------
    def get_agent(self, name: str) -> AgentRecord | None:
        """Return the agent record named ``name``, or None."""
        raw = self._get("agents", name.encode())
        return None if raw is None else AgentRecord.from_wire(raw)

    def put_agent(self, record: AgentRecord) -> None:
        """Write an agent record (keyed by its name) and its route."""
        key = record.name.encode()
        self._put("agents", key, record.to_wire())
        self._put("routes", key, [record.id, str(record.status)])

    def get_route(self, name: str) -> tuple[int, str] | None:
        """Return ``(agent_id, status)`` of agent ``name``, or None (cheap: for senders)."""
        route = self._get("routes", name.encode())
        return None if route is None else (int(route[0]), str(route[1]))

    def delete_agent(self, name: str) -> None:
        """Remove the agent record ``name`` and its route."""
        self._delete("agents", name.encode())
        self._delete("routes", name.encode())

    def agents(self) -> list[AgentRecord]:
        """Return every agent record."""
        return [AgentRecord.from_wire(unpack(v)) for _, v in self._prefix("agents", b"")]

    def agents_page(self, after: str | None = None, limit: int | None = None,
                    status: str | None = None, supervisor: str | None = None
                    ) -> tuple[list[AgentRecord], int]:
        """Return up to ``limit`` agent records after name ``after`` in name order, with
        ``status`` and under ``supervisor`` when given, and how many more match (see
        `.protocol.Txn.agents_page`)."""
        # Filtering by status alone reads the routes (two fields) and only the records
        # it returns; by supervisor it reads each record's map without building it.
        db = "routes" if supervisor is None else "agents"
        cur = self.txn.cursor(db=self.dbs[db])
        start = b"" if after is None else after.encode()
        if not cur.set_range(start):
            return [], 0
        if after is not None and cur.key() == start and not cur.next():
            return [], 0
        rows: list[AgentRecord] = []
        more = 0
        if status is None and supervisor is None:
            for key in cast("Iterator[bytes]", cur.iternext(values=False)):
                if limit is None or len(rows) < limit:
                    rows.append(self._agent_at(key))
                elif after is None:  # the first page: the rest is the count minus the page
                    entries = int(self.txn.stat(self.dbs["routes"])["entries"])
                    return rows, entries - len(rows)
                else:
                    more += 1
            return rows, more
        for key, value in cast("Iterator[tuple[bytes, bytes]]", cur):
            if supervisor is None:
                if str(unpack(value)[1]) != status:
                    continue
            else:
                data = unpack(value)
                if str(data.get("supervisor", "root")) != supervisor or (
                        status is not None and str(data.get("status")) != status):
                    continue
            if limit is None or len(rows) < limit:
                rows.append(self._agent_at(key) if supervisor is None
                            else AgentRecord.from_wire(data))
            else:
                more += 1
        return rows, more

    def agents_by_supervisor(self, statuses: Collection[str], limit: int | None = None
                             ) -> dict[str, tuple[list[AgentRecord], dict[str, int]]]:
        """Return the agents with a status in ``statuses`` by supervisor: the first
        ``limit`` records of each and the others' counts by status (see
        `.protocol.Txn.agents_by_supervisor`)."""
        out: dict[str, tuple[list[AgentRecord], dict[str, int]]] = {}
        wanted = frozenset(statuses)
        if not wanted:
            return out
        for key, value in self._prefix("routes", b""):
            status = str(unpack(value)[1])
            if status not in wanted:
                continue
            raw = self._raw("agents", key)
            if raw is None:  # a route without its record: written together, so never
                raise KeyError(f"agent {key.decode(errors='replace')!r} has a route but "
                               "no record")
            data = unpack(raw)
            rows, more = out.setdefault(str(data.get("supervisor", "root")), ([], {}))
            if limit is None or len(rows) < limit:
                rows.append(AgentRecord.from_wire(data))
            else:
                more[status] = more.get(status, 0) + 1
        return out

    def status_counts(self) -> dict[str, int]:
        """Return how many agents have each status (see `.protocol.Txn.status_counts`)."""
        counts: dict[str, int] = {}
        cur = self.txn.cursor(db=self.dbs["routes"])
        for value in cast("Iterator[bytes]", cur.iternext(keys=False)):
            status = str(unpack(value)[1])
            counts[status] = counts.get(status, 0) + 1
        return counts

    def _agent_at(self, key: bytes) -> AgentRecord:
        raw = self._get("agents", key)
        if raw is None:  # a route without its record: written together, so never
            raise KeyError(f"agent {key.decode(errors='replace')!r} has a route but no record")
        return AgentRecord.from_wire(raw)

    def get_sup(self, name: str) -> SupervisorRecord | None:
        """Return the supervisor record ``name``, or None."""
        raw = self._get("sups", name.encode())
        return None if raw is None else SupervisorRecord.from_wire(raw)

    def put_sup(self, record: SupervisorRecord) -> None:
        """Write a supervisor record (keyed by its name)."""
        self._put("sups", record.name.encode(), record.to_wire())

    def delete_sup(self, name: str) -> None:
        """Remove the supervisor record ``name``."""
        self._delete("sups", name.encode())

    def sups(self) -> list[SupervisorRecord]:
        """Return every supervisor record."""
        return [SupervisorRecord.from_wire(unpack(v)) for _, v in self._prefix("sups", b"")]

    # -- mailboxes ------------------------------------------------------------------------------
    def append(self, agent_id: int, message: Message | Malformed) -> int:
        """Append ``message`` to the agent's mailbox; return its sequence number."""
        return self.append_packed(agent_id, pack(message.to_wire()))

    def append_packed(self, agent_id: int, packed: bytes) -> int:
        """Append an already-packed message record; return its sequence number."""
        tail_key = _id(agent_id)
        raw = self.txn.get(tail_key, db=self.dbs["tails"])
        seq = _U64.unpack(raw)[0] if raw else 1
        self.txn.put(tail_key, _U64.pack(seq + 1), db=self.dbs["tails"])
        self.txn.put(_key(agent_id, seq), packed, db=self.dbs["mailbox"])
        return seq

    def append_packed_many(self, agent_id: int, packed: list[bytes]) -> int:
        """Append messages already packed, in list order (consecutive seqs); return the
        seq of the first (the next seq if ``packed`` is empty). The tail is read and
        written once for the whole list."""
        tail_key = _id(agent_id)
        raw = self.txn.get(tail_key, db=self.dbs["tails"])
        first = _U64.unpack(raw)[0] if raw else 1
        if not packed:
            return first
        put, mailbox, pack_u64 = self.txn.put, self.dbs["mailbox"], _U64.pack
        for seq, record in enumerate(packed, first):
            put(tail_key + pack_u64(seq), record, db=mailbox)
        self.txn.put(tail_key, pack_u64(first + len(packed)), db=self.dbs["tails"])
        return first

    def peek(self, agent_id: int, limit: int = 64) -> list[tuple[int, Message | Malformed]]:
        """Return up to ``limit`` messages from the head of the agent's mailbox, in order."""
        return [(_U64.unpack(k[8:])[0], Message.from_packed(v))
                for k, v in self._prefix("mailbox", _id(agent_id), limit)]

    def message(self, agent_id: int, seq: int) -> Message | Malformed | None:
        """Return message ``seq`` of the agent's mailbox, or None if it is not there."""
        raw = self._raw("mailbox", _key(agent_id, seq))
        return None if raw is None else Message.from_packed(raw)

    def message_packed(self, agent_id: int, seq: int) -> bytes | None:
        """Return message ``seq`` of the agent's mailbox as stored (packed), or None."""
        return cast("bytes | None", self.txn.get(_U64.pack(agent_id) + _U64.pack(seq),
                                                 db=self.dbs["mailbox"]))

    def kinds_between(self, agent_id: int, first: int, last: int) -> dict[int, str]:
        """Return ``{seq: kind}`` of the agent's messages from ``first`` to ``last``."""
        cur = self.txn.cursor(db=self.dbs["mailbox"])
        out: dict[int, str] = {}
        if first > last or not cur.set_range(_key(agent_id, first)):
            return out
        end = _key(agent_id, last)
        for key, value in cast("Iterator[tuple[bytes, bytes]]", cur):
            if key > end:
                break
            opened = Message.from_packed(value)
            out[_U64.unpack(key[8:])[0]] = str(opened.kind) if isinstance(opened, Message) \
                else "malformed"
        return out

    def tail(self, agent_id: int) -> int:
        """Return the sequence number the next appended message will get."""
        raw = self.txn.get(_id(agent_id), db=self.dbs["tails"])
        return _U64.unpack(raw)[0] if raw else 1

    def remove(self, agent_id: int, seq: int, attempted: bool = True) -> None:
        """Remove message ``seq`` (handled, skipped or dead-lettered) and, if it had failed
        attempts (``attempted``), their count."""
        self._delete("mailbox", _key(agent_id, seq))
        if attempted:
            self._delete("attempts", _key(agent_id, seq))

    def remove_many(self, agent_id: int, seqs: list[int]) -> None:
        """Remove messages ``seqs`` (a group handled and committed together) and their
        counts of failed attempts, if any (looked for once: an agent rarely has any)."""
        prefix, pack_u64, delete = _id(agent_id), _U64.pack, self.txn.delete
        mailbox = self.dbs["mailbox"]
        for seq in seqs:
            delete(prefix + pack_u64(seq), db=mailbox)
        attempts = self.dbs["attempts"]
        cur = self.txn.cursor(db=attempts)
        if cur.set_range(prefix) and cast(bytes, cur.key()).startswith(prefix):
            for seq in seqs:
                delete(prefix + pack_u64(seq), db=attempts)

    def depth(self, agent_id: int) -> int:
        """Return how many messages wait in the agent's mailbox."""
        return sum(1 for _ in self._prefix("mailbox", _id(agent_id)))

    def bump_attempts(self, agent_id: int, seq: int) -> int:
        """Count one more failed attempt at message ``seq``; return the new count."""
        n = int(self._get("attempts", _key(agent_id, seq)) or 0) + 1
        self._put("attempts", _key(agent_id, seq), n)
        return n

    def attempts(self, agent_id: int, seq: int) -> int:
        """Return how many attempts at message ``seq`` have failed."""
        return int(self._get("attempts", _key(agent_id, seq)) or 0)

    # -- state ----------------------------------------------------------------------------------
    def get_state(self, agent_id: int) -> tuple[int, bytes, int] | None:
        """Return ``(version, packed_state, processed)`` of the agent, or None if it has
        no state."""
        raw = self._get("state", _id(agent_id))
        if raw is None:
            return None
        state = AgentState.from_wire(raw)
        return state.version, state.packed, state.processed

    def put_state(self, agent_id: int, version: int, packed: bytes, processed: int) -> None:
        """Store the agent's packed state with its class version and handled count."""
        self._put("state", _id(agent_id), AgentState(version, packed, processed).to_wire())

    # -- replies --------------------------------------------------------------------------------
    def put_reply(self, msg_id: bytes, reply: Reply) -> None:
        """Store the reply to call ``msg_id`` for its caller to take."""
        self._put("replies", msg_id, reply.to_wire())

    def put_reply_packed(self, msg_id: bytes, packed: bytes) -> None:
        """Store an already-packed reply record to call ``msg_id``."""
        self.txn.put(msg_id, packed, db=self.dbs["replies"])

    def pop_reply(self, msg_id: bytes) -> Reply | None:
        """Take (read and delete) the reply to call ``msg_id``, or None if not there yet."""
        raw = self._raw("replies", msg_id, pop=True)
        return None if raw is None else Reply.from_wire(unpack(raw))

    def expired_replies(self, now: float) -> list[bytes]:
        """Return the ids of replies whose caller's deadline passed long ago."""
        return [k for k, v in self._prefix("replies", b"")
                if Reply.expires_of(unpack(v), now) < now]

    def delete_reply(self, msg_id: bytes) -> None:
        """Drop the reply ``msg_id``."""
        self._delete("replies", msg_id)

    # -- dead letters, failures, stats ------------------------------------------------------------
    def put_dead(self, agent_id: int, seq: int, entry: DeadLetter) -> None:
        """Keep a skipped message with its failure."""
        self._put("dead", _key(agent_id, seq), entry.to_wire())

    def dead(self, agent_id: int) -> list[tuple[int, DeadLetter]]:
        """Return the agent's dead letters, oldest first."""
        return [(_U64.unpack(k[8:])[0], DeadLetter.from_wire(unpack(v)))
                for k, v in self._prefix("dead", _id(agent_id))]

    def dead_count(self, agent_id: int) -> int:
        """Return how many dead letters the agent has (keys counted, none decoded)."""
        prefix = _id(agent_id)
        cur = self.txn.cursor(db=self.dbs["dead"])
        if not cur.set_range(prefix):
            return 0
        n = 0
        for key in cast("Iterator[bytes]", cur.iternext(values=False)):
            if not key.startswith(prefix):
                break
            n += 1
        return n

    def delete_dead(self, agent_id: int, seq: int) -> bool:
        """Drop one dead letter; False if it was not there."""
        return self._delete("dead", _key(agent_id, seq))

    def put_failure(self, agent_id: int, report: FailureReport) -> None:
        """Record a dying agent's own report of why it fails."""
        self._put("failures", _id(agent_id), report.to_wire())

    def pop_failure(self, agent_id: int) -> FailureReport | None:
        """Take the agent's last failure report, if it wrote one."""
        raw = self._raw("failures", _id(agent_id), pop=True)
        return None if raw is None else FailureReport.from_wire(unpack(raw))

    def processed(self, agent_id: int) -> int:
        """Return how many messages the agent has handled (committed)."""
        raw = self._get("state", _id(agent_id))
        return 0 if raw is None else AgentState.from_wire(raw).processed

    # -- timers --------------------------------------------------------------------------------
    def put_timer(self, timer: Timer) -> None:
        """Store a durable timer (replacing one with the same agent and seq)."""
        self.delete_timer(timer.agent_id, timer.seq)
        ident = _key(timer.agent_id, timer.seq)
        self._put("timers", _U64.pack(timer.due_ns) + ident, timer.to_wire())
        self.txn.put(ident, _U64.pack(timer.due_ns), db=self.dbs["timer_ids"])

    def delete_timer(self, agent_id: int, seq: int) -> bool:
        """Remove timer ``seq`` of the agent (cancelled or fired); False if it was not
        there."""
        ident = _key(agent_id, seq)
        due = self._raw("timer_ids", ident, pop=True)
        if due is None:
            return False
        self._delete("timers", due + ident)
        return True

    def has_timer(self, agent_id: int, seq: int) -> bool:
        """Whether timer ``seq`` of the agent is pending."""
        return self._raw("timer_ids", _key(agent_id, seq)) is not None

    def next_timer_due(self) -> int | None:
        """Return when the earliest pending timer of the node is due (ns), or None."""
        cur = self.txn.cursor(db=self.dbs["timers"])
        if not cur.first():
            return None
        key = cast("bytes", cur.key())
        # An entry too short to be a timer's is due at once: the service removes it.
        return int(_U64.unpack(key[:8])[0]) if len(key) >= 8 else 0

    def _due_entries(self, now_ns: int, limit: int) -> list[tuple[bytes, Timer | None]]:
        out: list[tuple[bytes, Timer | None]] = []
        for key, value in self._prefix("timers", b"", limit):
            if len(key) >= 8 and _U64.unpack(key[:8])[0] > now_ns:
                break
            out.append((key, _open_timer(key, value)))
        return out

    def due_timers(self, now_ns: int, limit: int = 256) -> list[Timer]:
        """Return up to ``limit`` timers due at or before ``now_ns``, earliest first."""
        return [timer for _, timer in self._due_entries(now_ns, limit) if timer is not None]

    def take_due_timers(self, now_ns: int, limit: int = 256) -> tuple[list[Timer], int]:
        """Remove and return up to ``limit`` timers due at or before ``now_ns``, earliest
        first, with how many entries that were not timers (written into the store by some
        other process) were removed with them."""
        taken: list[Timer] = []
        dropped = 0
        for key, timer in self._due_entries(now_ns, limit):
            self._delete("timers", key)
            if timer is None:
                dropped += 1
                continue
            self._delete("timer_ids", key[8:])
            taken.append(timer)
        return taken, dropped

    def timers(self, agent_id: int) -> list[Timer]:
        """Return the agent's pending timers, in the order they were set."""
        out: list[Timer] = []
        for ident, due in list(self._prefix("timer_ids", _id(agent_id))):
            raw = self._raw("timers", due + ident)
            timer = None if raw is None else _open_timer(due + ident, raw)
            if timer is not None:
                out.append(timer)
        return out

    # -- wakes -----------------------------------------------------------------------------------
    def put_wake(self, agent_id: int, name: str) -> None:
        """Mark sleeping agent ``name`` (id ``agent_id``) to be woken: something waits for it."""
        self.txn.put(_id(agent_id), name.encode(), db=self.dbs["wakes"])

    def delete_wake(self, agent_id: int) -> bool:
        """Drop the agent's wake mark (it is awake, or gone); False if it had none."""
        return self._delete("wakes", _id(agent_id))

    def wakes(self, limit: int = 1024, after: int | None = None) -> list[tuple[int, str]]:
        """Return up to ``limit`` pending wakes as ``(agent_id, name)``, by agent id, those
        of ids above ``after`` only if given (the next page: pass the last id read)."""
        cur = self.txn.cursor(db=self.dbs["wakes"])
        if after is not None and after >= 2 ** 64 - 1:
            return []
        if not cur.set_range(b"" if after is None else _id(after + 1)):
            return []
        out: list[tuple[int, str]] = []
        for key, value in cast("Iterator[tuple[bytes, bytes]]", cur):
            if len(out) >= limit:
                break
            if len(key) == 8:
                out.append((_U64.unpack(key)[0], value.decode(errors="replace")))
        return out

    # -- the node's event log ----------------------------------------------------------------
    def put_events(self, events: Sequence[Event], kept: int) -> None:
        """Append ``events`` to the event log and drop the oldest beyond ``kept`` (see
        `.protocol.Txn.put_events`)."""
        db = self.dbs["events"]
        cur = self.txn.cursor(db=db)
        for event in events:
            # Seqs grow: each key goes after the last, the cheap way (a B-tree append);
            # one that does not (never expected) is put the ordinary way.
            key, value = _U64.pack(event.seq), pack(event_to_wire(event))
            if not cur.put(key, value, append=True):
                self.txn.put(key, value, db=db)
        if not cur.last():
            return
        first_kept = _U64.unpack(cast("bytes", cur.key()))[0] - kept + 1
        if first_kept <= 1 or not cur.first():
            return
        bound = _U64.pack(first_kept)
        while cast("bytes", cur.key()) < bound:
            if not cur.delete():  # deleting moves the cursor to the next entry
                return

    def last_event_seq(self) -> int:
        """Return the seq of the latest stored event (0 if there is none)."""
        cur = self.txn.cursor(db=self.dbs["events"])
        return int(_U64.unpack(cast("bytes", cur.key()))[0]) if cur.last() else 0

    def events_page(self, after: int, flt: EventFilter, limit: int) -> EventPage:
        """Return up to ``limit`` stored events after seq ``after`` that pass ``flt``,
        oldest first (see `.protocol.Txn.events_page`)."""
        cur = self.txn.cursor(db=self.dbs["events"])
        if after >= 2 ** 64 - 1 or not cur.set_range(_U64.pack(max(after, 0) + 1)):
            return EventPage([], after, False)
        page = PageFiller(after, flt, limit)
        for key, value in cast("Iterator[tuple[bytes, bytes]]", cur):
            full = page.add(event_from_wire(_U64.unpack(key)[0], unpack(value)))
            if full is not None:
                return full
        return page.end()

    def erase_agent_data(self, agent_id: int) -> None:
        """Erase the agent's state, mailbox, dead letters, timers, wake mark and stats (for
        `Node.delete`)."""
        prefix = _id(agent_id)
        self._delete("wakes", prefix)
        for ident, due in list(self._prefix("timer_ids", prefix)):
            self._delete("timers", due + ident)
            self._delete("timer_ids", ident)
        for db in ("mailbox", "dead", "attempts"):
            for key in [k for k, _ in self._prefix(db, prefix)]:
                self._delete(db, key)
        for db in ("state", "tails", "failures"):
            self._delete(db, prefix)


class Store:
    """An open LMDB environment with retrying transactions (implements `.protocol.Store`).

    Args:
        path: the environment directory.
        durability: "process" (no fsync; survives any process crash), "fsync" (survives
            power loss) or "memory" (tmpfs; survives agent crashes, not a node restart).
    """

    def __init__(self, path: str, durability: str = "process") -> None:
        if durability not in DURABILITIES:
            raise StoreError(f"durability {durability!r} is not one of {DURABILITIES}")
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.path = path
        self.durability = durability
        sync = durability == "fsync"
        try:
            self.env = lmdb.open(path, map_size=INITIAL_MAP_SIZE, max_dbs=len(_DBS) + 2,
                                 max_readers=MAX_READERS, sync=sync, metasync=sync,
                                 readahead=False, max_spare_txns=4)
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the LMDB store at {path!r}: {exc}") from exc
        self.lock = threading.RLock()
        # One transaction for all the named databases (each open_db would commit its own).
        with self.env.begin(write=True) as txn:
            self.dbs = {name: self.env.open_db(name.encode(), txn=txn) for name in _DBS}
        self.resizes = 0
        self.write_gate = WriteGate(path)

    def _run(self, fn: Callable[[Txn], T], write: bool) -> T:
        with self.lock:
            while True:
                try:
                    if write:  # timed: the write lanes see whether the writer lock is contended
                        asked = time.monotonic()
                        txn = self.env.begin(write=True)
                        now = time.monotonic()
                        self.write_gate.saw_wait(now - asked, now)
                    else:
                        txn = self.env.begin()
                    with txn:
                        return fn(Txn(txn, self.dbs))
                except lmdb.MapResizedError:
                    self.env.set_mapsize(0)  # another process grew the map: adopt its size
                except lmdb.MapFullError:
                    self.env.set_mapsize(self.env.info()["map_size"] * 2)
                    self.resizes += 1
                except lmdb.Error as exc:
                    full = filesystem_full(self.path) if write else None
                    if full is None:
                        raise
                    raise StoreFullError(
                        f"cannot commit to the store: {full} (LMDB: {exc}); nothing was "
                        f"committed. What to do: {full_disk_advice(self.durability)}") from exc

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn(txn)`` in a read-only transaction and return its result."""
        return self._run(fn, write=False)

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn(txn)`` in a write transaction, committed when ``fn`` returns and aborted
        if it raises. ``fn`` may run more than once (after the map grows): keep it free of
        side effects outside the transaction."""
        return self._run(fn, write=True)

    def write_in_lane(self, fn: Callable[[Txn], T], lane: WriteLane) -> T:
        """`write` in ``lane``: while the writer lock is contended, an urgent commit goes
        ahead of bulk ones (`.writegate`)."""
        step = self.write_gate.step(lane)
        if step is GateStep.SHARE:
            self.write_gate.share()
            try:
                return self.write(fn)
            finally:
                self.write_gate.release()
        if step is GateStep.YIELD:
            self.write_gate.yield_to_urgent()
        return self.write(fn)

    def map_size(self) -> int:
        """Return the current map size in bytes."""
        return int(self.env.info()["map_size"])

    def reader_check(self) -> int:
        """Clear reader slots left by dead processes; return how many were cleared."""
        with self.lock:
            return int(self.env.reader_check())

    def close(self) -> None:
        """Close the environment."""
        with self.lock:
            self.env.close()
            self.write_gate.close()


def wipe(path: str) -> None:
    """Remove an environment directory (a memory-durability node starting afresh)."""
    shutil.rmtree(path, ignore_errors=True)


def _open_timer(key: bytes, raw: bytes) -> Timer | None:
    """A stored timer, or None for an entry no beamish process wrote (a key of the wrong
    size, a value that is not a timer's): the timer service removes those."""
    if len(key) != 24:
        return None
    try:
        data = unpack(raw)
    except ProtocolError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("p"), bytes) \
            or not isinstance(data.get("t", 0.0), (int, float)):
        return None
    due, agent_id, seq = struct.unpack(">QQQ", key)
    return Timer.from_wire(agent_id, seq, due, data)

