"""The message path: a sender appends straight into the target's durable mailbox.

No broker hop: ``cast`` and ``call`` commit the message to the target's mailbox in LMDB
(the acknowledgement *is* that commit), then ring the agent's doorbell socket. The agent
commits its new state, the removal of the message and, for a call, the reply in one
transaction, then rings the caller's doorbell. ZeroMQ carries only these hints: a lost
ring costs latency (the caller and agent re-check LMDB on a timer), never a message.

    sender ──(1) LMDB txn: append to mailbox ──▶ [ LMDB ]
       │                                            ▲ (3) txn: state + removal + reply
       └──(2) RING ──────▶ agent ───────────────────┘
       ◀──(4) REPLY ring ── agent ;  (5) sender txn: take the reply
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from beamish.mailbox import (
    RING_LINGER_MS,
    Doorbells,
    Inbox,
    new_msg_id,
    pack,
    unpack,
)

from .._paths import NodePaths
from .._types import ACCEPTS_MESSAGES, AgentStatus
from .._validation import check_name, check_timeout, pack_roundtrip
from ..errors import (
    AgentNotFound,
    CallTimeout,
    CommitOutcomeUnknown,
    ConfigError,
    RemoteError,
    StoreError,
    StoreUnavailable,
)
from ..store.protocol import Store, Txn
from ..store.records import AgentRecord, Message, Reply, ReplyError
from ..store.writegate import WriteLane
from .codec import CODEC_ERRORS, send_error
from .wire import WAKE_HINT, parse_reply_ring, ring_frame

# How often a waiting caller re-reads LMDB in case a reply ring was lost (it never is in
# normal operation; this bounds the cost if one is).
REPLY_RECHECK_S = 0.2
REPLY_RECHECK_MS = round(REPLY_RECHECK_S * 1000)
# How long an unclaimed reply is kept after its caller's deadline before it is swept.
REPLY_GRACE_S = 60.0
# Messages up to this size travel inline in their ring as well as in LMDB.
INLINE_RING_BYTES = 64 * 1024
INBOX_PATHS_KEPT = 4096


def encode_message(msg: Any, limit: int, target: str) -> bytes:
    """Pack a user message, mapping codec errors to the public ones.

    Raises:
        MessageTooLarge: over ``limit`` bytes.
        BadMessage: a value msgpack cannot carry, or one it would not decode again
            (a tuple dict key).
    """
    try:
        # Checked to decode again: the agent could not read a message that does not.
        return pack_roundtrip(msg, where=f"a message to agent {target!r}", limit=limit)
    except CODEC_ERRORS as exc:
        raise send_error(exc, target=target) from None


def encode_batch(items: Iterable[tuple[str, Any]], limit: int) -> dict[str, list[bytes]]:
    """The packed mailbox records of a ``cast_many``, grouped by agent name (names in order
    of first appearance, each agent's messages in list order). Every item is checked
    here, before anything is written.

    Raises:
        ConfigError: ``items`` is not an iterable of ``(name, msg)`` pairs, or a name is
            not valid.
        MessageTooLarge, BadMessage: a message that cannot be sent (naming its item).
    """
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
        raise ConfigError(f"cast_many takes a list of (name, message) pairs, not "
                          f"{type(items).__name__}")
    now = time.time()
    by_name: dict[str, list[bytes]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigError(f"cast_many item {i} is {type(item).__name__}, not a "
                              "(name, message) pair")
        name, msg = item
        group = by_name.get(name) if type(name) is str else None
        if group is None:
            check_name(name, field=f"cast_many item {i}: name")
            group = by_name[name] = []
        try:
            payload = pack_roundtrip(msg, where="a message of cast_many", limit=limit)
        except CODEC_ERRORS as exc:
            item_of = f"cast_many item {i} (a message to agent {name!r})"
            raise send_error(exc, what=item_of, prefix=f"{item_of}: ") from None
        group.append(pack(Message("cast", payload, now).to_wire()))
    return by_name


_SLEEPING = str(AgentStatus.SLEEPING)

AppendBatch = Callable[[list[tuple[str, bytes]], list[bytes]],
                       list["tuple[int, int, bool] | AgentNotFound"]]
"""A store's own way to commit a group of appends in one go (a cluster node's one
statement: ``store/postgres/append.py``): given each message's ``(name, packed)`` and the
replies to delete, it returns per message ``(agent_id, seq, asleep)`` or its
`AgentNotFound`, durable when it returns; it raises if nothing was committed (or it is
not known)."""


def append_routed(t: Txn, name: str, route: tuple[int, str], packed: list[bytes]) -> int:
    """Append ``packed`` messages to agent ``name``'s mailbox (its ``route`` read in
    ``t``), marking it to be woken in the same transaction if it sleeps; return the
    first seq. The one place an append meets a sleeping agent: whoever appends (a sender,
    the node's Down/Exit, a timer) goes through here or does the same."""
    agent_id = route[0]
    if route[1] == _SLEEPING:
        t.put_wake(agent_id, name)
    if len(packed) == 1:
        return t.append_packed(agent_id, packed[0])
    return t.append_packed_many(agent_id, packed)


def hint_node(paths: NodePaths, frame: bytes = WAKE_HINT, wait: float = 0.0,
              sock: socket.socket | None = None) -> bool:
    """Send a hint to the node's sessions socket; return whether it went (best effort:
    the node scans its wakes every second anyway, so a lost wake hint costs latency,
    never a message). ``wait``: how long to wait while its queue is full (0: not at all).
    ``sock``: an unbound Unix datagram socket of the caller's, kept for many hints (a
    socket per hint costs more than the hint); None: one made for this hint."""
    if sock is not None:
        return _send_hint(sock, paths, frame, wait)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as own:
        return _send_hint(own, paths, frame, wait)


def _send_hint(sock: socket.socket, paths: NodePaths, frame: bytes, wait: float) -> bool:
    if wait > 0:
        sock.settimeout(wait)
    else:
        sock.setblocking(False)
    try:
        sock.sendto(frame, paths.sessions_poke)
        return True
    except OSError:
        return False  # no node listening, or its queue is full


def raise_reply_error(name: str, error: ReplyError) -> None:
    """Raise the `RemoteError` a reply record carries."""
    raise RemoteError(name, error.type, error.message, error.traceback, error.failure)


def raise_gone(name: str, rec: AgentRecord | None) -> None:
    """Raise for a call whose agent left the tree while the call waited."""
    if rec is None:
        raise AgentNotFound(name, "it was deleted while this call waited")
    failure = rec.last_failure
    why = f" after {failure.kind}: {failure.exc_type or failure.message}" if failure else ""
    raise RemoteError(name, f"Agent{rec.status.capitalize()}",
                      f"the agent is {rec.status}{why}; this call stays in its mailbox "
                      f"and is handled if the agent comes back (node.restart({name!r}))",
                      failure.traceback if failure else "", failure)


class SharedDoorbells:
    """One process's doorbell sockets, shared by its threads under a lock.

    One set per process, not per thread: ZeroMQ caps a context at 1,023 sockets, and
    `Doorbells` keeps up to 256 open, so a thread each ran out past four threads (a client
    calling thousands of sessions from eight threads; the node stopping hundreds of
    sleeping agents from its worker threads failed with "Too many open files"). A ring is
    one non-blocking send, so the lock is held for microseconds.
    """

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self._lock = threading.Lock()
        self._doorbells = Doorbells(ctx)

    def ring(self, path: str, frame: bytes) -> bool:
        """Send ``frame`` to the inbox at ``path`` without blocking (False: its pipe was
        full, the ring dropped and counted)."""
        with self._lock:
            return self._doorbells.ring(path, frame)

    @property
    def skipped(self) -> int:
        """Rings dropped because their peer's pipe was full."""
        return self._doorbells.skipped

    def close(self, linger_ms: int) -> None:
        """Close every socket, letting queued rings out for up to ``linger_ms``."""
        with self._lock:
            self._doorbells.close(linger_ms)


class _Port:
    """One thread's reply inbox (bound on first use) and its replies to delete."""

    def __init__(self, ctx: zmq.Context[Any], paths: NodePaths) -> None:
        self.inbox_path = paths.client_inbox(os.urandom(8).hex())
        self.inbox = _LazyInbox(ctx, self.inbox_path)
        # Replies already received inline in their ring, still to be deleted from LMDB:
        # deleted in this thread's next append transaction (no extra commit per call).
        self.taken: list[bytes] = []
        self._finalizer = weakref.finalize(self, self.inbox.close)

    def close(self) -> None:
        self._finalizer()


class _LazyInbox:
    """The reply inbox, bound on first use (an agent that only replies never needs one)."""

    def __init__(self, ctx: zmq.Context[Any], path: str) -> None:
        self.ctx = ctx
        self.path = path
        self.inbox: Inbox | None = None

    def bind(self) -> Inbox:
        if self.inbox is None:
            self.inbox = Inbox(self.ctx, self.path)
            self.inbox.sock.setsockopt(zmq.RCVTIMEO, REPLY_RECHECK_MS)
        return self.inbox

    def recv(self, timeout: float | None) -> Any:
        inbox = self.bind()
        if timeout == REPLY_RECHECK_S:
            # A caller's usual wait, as one blocking receive under the socket's timeout
            # (measured: ~4 µs of CPU less per call than a poll, then a receive).
            return inbox.recv_timed()
        return inbox.recv(timeout)

    def close(self) -> None:
        if self.inbox is not None:
            self.inbox.close()


class _Append:
    """One thread's message waiting in a `_GroupAppender`, and what became of it."""

    __slots__ = ("name", "packed", "taken", "urgent", "route", "error", "done", "asleep")

    def __init__(self, name: str, packed: bytes, taken: list[bytes], urgent: bool) -> None:
        self.name = name
        self.packed = packed
        self.taken = taken
        self.urgent = urgent  # a call: its caller waits on the commit
        self.route: tuple[int, int] | None = None  # (agent_id, seq) once committed
        self.error: BaseException | None = None  # AgentNotFound, or the commit's own error
        self.done = False
        self.asleep = False  # the agent slept: the append marked it to be woken


def _own_copy(exc: BaseException) -> BaseException:
    """The error one thread's commit raised, as this thread's own exception (one object
    raised in several threads at once would mix up their tracebacks)."""
    if isinstance(exc, AgentNotFound):
        return exc  # made for this message alone
    # The kinds whose meaning the sender must act on keep their type: nothing committed
    # (retry), or not known (do not retry blindly: it may be applied).
    if isinstance(exc, CommitOutcomeUnknown):
        unknown = CommitOutcomeUnknown(exc.commit, exc.detail)
        unknown.__cause__ = exc
        return unknown
    if isinstance(exc, StoreUnavailable):
        unavailable = StoreUnavailable(exc.detail)
        unavailable.__cause__ = exc
        return unavailable
    if isinstance(exc, Exception):
        copy = StoreError(f"the commit of this message failed: {type(exc).__name__}: {exc}")
        copy.__cause__ = exc
        return copy
    return exc


class _GroupAppender:
    """Appends from the threads of one process, committed together (group commit).

    A thread that finds no commit in progress commits its message and every message other
    threads queued meanwhile, in one transaction; the others wait for that commit, which
    is their acknowledgement. One thread alone pays one commit per message, as before;
    many threads share commits, which matters most with ``durability="fsync"``, where a
    commit is a disk flush. (The coroutines of one event loop share theirs the same way,
    one per turn of the loop: `amessenger.AsyncMessenger`.)
    """

    def __init__(self, store: Store, batch: AppendBatch | None = None) -> None:
        self.store = store
        self.batch = batch
        self.cond = threading.Condition()
        self.queue: list[_Append] = []
        self.committing = False

    def append(self, name: str, packed: bytes, taken: list[bytes], urgent: bool = False
               ) -> tuple[int, int, bool]:
        """Commit ``packed`` to ``name``'s mailbox (and delete the replies in ``taken``);
        return ``(agent_id, seq, asleep)`` (``asleep``: the agent sleeps and was marked to
        be woken). ``urgent``: a call (its commit goes ahead of casts' under contention:
        `WriteLane`).

        Raises:
            AgentNotFound: no agent ``name``, or it is not live.
        """
        mine = _Append(name, packed, taken, urgent)
        group: list[_Append] = []
        with self.cond:
            self.queue.append(mine)
            while self.committing and not mine.done:
                self.cond.wait()
            if not mine.done:
                try:
                    group, self.queue = self.queue, []
                    self.committing = True
                    # Under the condition, so that an interrupt (KeyboardInterrupt, a
                    # SystemExit from a signal handler) cannot leave `committing` set.
                    self.cond.release()
                    try:
                        lane = WriteLane.URGENT if any(i.urgent for i in group) \
                            else WriteLane.BULK
                        if self.batch is not None:
                            self._commit_batch(self.batch, group)
                        else:
                            self.store.write_in_lane(lambda t: self._commit(t, group), lane)
                    finally:
                        self.cond.acquire()
                except BaseException as exc:
                    # Nothing was committed: no waiting sender may take it as its ack.
                    for item in group:
                        item.route = None
                        item.error = exc
                    raise
                finally:
                    self.committing = False
                    for item in group:
                        item.done = True
                    self.cond.notify_all()
        if mine.error is not None:
            raise _own_copy(mine.error)
        assert mine.route is not None
        return mine.route[0], mine.route[1], mine.asleep

    @staticmethod
    def _commit_batch(batch: AppendBatch, group: list[_Append]) -> None:
        outcomes = batch([(item.name, item.packed) for item in group],
                         [msg_id for item in group for msg_id in item.taken])
        for item, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                item.route, item.error, item.asleep = None, outcome, False
            else:
                item.route, item.error, item.asleep = outcome[:2], None, outcome[2]

    @staticmethod
    def _commit(t: Txn, group: list[_Append]) -> None:
        # May run twice (after the map grows): every outcome is set afresh. The messages
        # to one agent take one route lookup and one append (consecutive seqs, in queue
        # order): on PostgreSQL each is a round trip.
        by_name: dict[str, list[_Append]] = {}
        for item in group:
            for msg_id in item.taken:
                t.delete_reply(msg_id)
            item.route, item.error, item.asleep = None, None, False
            by_name.setdefault(item.name, []).append(item)
        for name, items in by_name.items():
            route = t.get_route(name)
            if route is None or route[1] not in ACCEPTS_MESSAGES:
                for item in items:
                    item.error = AgentNotFound(name) if route is None else \
                        AgentNotFound(name, f"it is {route[1]}")
                continue
            first = append_routed(t, name, route, [item.packed for item in items])
            for k, item in enumerate(items):
                item.asleep = route[1] == _SLEEPING
                item.route = (route[0], first + k)


class Messenger:
    """Sends calls and casts to agents of one node. Safe to use from many threads (each
    thread gets its own sockets; LMDB transactions are serialized by the store).

    Args:
        paths: the node's paths.
        store: the node's store, opened in this process.
        max_message_bytes: the node's message size limit.
        on_append: called with an agent's name after each append to it committed.
        append_batch: commits its calls' and casts' appends instead of a transaction of
            ``store`` (`AppendBatch`).
    """

    def __init__(self, paths: NodePaths, store: Store, max_message_bytes: int,
                 ctx: zmq.Context[Any] | None = None,
                 on_append: Callable[[str], None] | None = None,
                 append_batch: AppendBatch | None = None) -> None:
        self.paths = paths
        # Told each agent name once its append committed (a replicated agent's owner may
        # run on another node: the cluster rings it there).
        self.on_append = on_append
        self.store = store
        self.limit = max_message_bytes
        self._own_ctx = ctx is None
        # A client process may cast and exit at once: its last rings must get out. An agent
        # or the node (which pass their context) must not wait on rings to dead peers when
        # they exit (a restart would pay it); their rings are only hints.
        self.ring_linger_ms = RING_LINGER_MS if self._own_ctx else 0
        self.ctx: zmq.Context[Any] = ctx if ctx is not None else zmq.Context()
        self._local = threading.local()
        self._ports: weakref.WeakSet[_Port] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._appender = _GroupAppender(store, append_batch)
        self.doorbells = SharedDoorbells(self.ctx)
        self._inboxes: dict[int, str] = {}  # agent id -> its inbox path (1.2 us to build)
        self.closed = False

    def _port(self) -> _Port:
        port: _Port | None = getattr(self._local, "port", None)
        if port is None:
            port = _Port(self.ctx, self.paths)
            self._local.port = port
            with self._lock:
                self._ports.add(port)
        return port

    def _inbox(self, agent_id: int) -> str:
        """Agent ``agent_id``'s inbox path, built once (bounded: cleared past 4,096 ids)."""
        path = self._inboxes.get(agent_id)
        if path is None:
            if len(self._inboxes) >= INBOX_PATHS_KEPT:
                self._inboxes.clear()
            path = self._inboxes[agent_id] = self.paths.agent_inbox(agent_id)
        return path

    def ring(self, path: str, frame: bytes) -> None:
        """Send a doorbell or system frame to the agent inbox at ``path`` (any thread)."""
        self.doorbells.ring(path, frame)

    def _append(self, name: str, message: Message, port: _Port, urgent: bool = False) -> None:
        """Commit ``message`` to ``name``'s mailbox, then ring the agent. The ring carries
        the message itself when it is small, so the agent need not read it back.
        ``urgent``: a call."""
        packed = pack(message.to_wire())
        try:
            agent_id, seq, asleep = self._appender.append(name, packed, port.taken, urgent)
        except AgentNotFound:
            port.taken.clear()  # their deletion was committed all the same
            raise
        port.taken.clear()
        if self.on_append is not None:
            self.on_append(name)
        if asleep:
            hint_node(self.paths)  # no process to ring: the node wakes it
            return
        inline = packed if len(packed) <= INLINE_RING_BYTES else b""
        self.doorbells.ring(self._inbox(agent_id), ring_frame(seq, inline))

    def cast(self, name: str, msg: Any) -> None:
        """Append ``msg`` to agent ``name``'s mailbox; return once it is committed.

        Raises:
            AgentNotFound, MessageTooLarge, BadMessage; ConfigError: not a valid name.
        """
        check_name(name)
        payload = encode_message(msg, self.limit, name)
        self._append(name, Message("cast", payload, time.time()), self._port())

    def cast_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """Append each ``(name, msg)`` of ``items`` to agent ``name``'s mailbox, all in one
        commit; return once it is committed. Each agent gets its messages in list order
        (consecutive in its mailbox) and one ring for them all. All or nothing: every
        item is checked before anything is written.

        Raises:
            AgentNotFound: a name that is not a live or restarting agent (none is sent).
            MessageTooLarge, BadMessage: a message that cannot be sent, naming its item
                (none is sent).
            ConfigError: ``items`` is not an iterable of ``(name, msg)`` pairs, or a name
                is not valid.
        """
        by_name = encode_batch(items, self.limit)
        if not by_name:
            return
        port = self._port()
        taken = list(port.taken)

        def txn(t: Txn) -> list[tuple[int, int, bool]]:
            for msg_id in taken:
                t.delete_reply(msg_id)
            routes: list[tuple[int, str]] = []
            for name in by_name:  # every name checked before anything is appended
                route = t.get_route(name)
                if route is None:
                    raise AgentNotFound(name, "so none of this cast_many was sent")
                if route[1] not in ACCEPTS_MESSAGES:
                    raise AgentNotFound(name, f"it is {route[1]}, so none of this cast_many "
                                              "was sent")
                routes.append(route)
            return [(route[0], append_routed(t, name, route, packed), route[1] == _SLEEPING)
                    for (name, packed), route in zip(by_name.items(), routes, strict=True)]
        firsts = self.store.write_in_lane(txn, WriteLane.BULK)
        del port.taken[:len(taken)]
        if self.on_append is not None:
            for name in by_name:
                self.on_append(name)
        woke = False
        for agent_id, first, asleep in firsts:
            if asleep:
                woke = True  # no process to ring: the node wakes it
                continue
            # One ring per agent, without its messages: the agent reads them from LMDB.
            self.doorbells.ring(self._inbox(agent_id), ring_frame(first))
        if woke:
            hint_node(self.paths)

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """Send ``msg`` to agent ``name`` and wait for the reply.

        Raises:
            CallTimeout: no reply within ``timeout`` (the message is still handled later).
            ConfigError: ``timeout`` is not a number > 0 (``math.inf`` waits forever).
            AgentNotFound, RemoteError, MessageTooLarge, BadMessage.
        """
        check_name(name)
        timeout = check_timeout(timeout, allow_inf=True)  # NaN spun forever, a write a turn
        payload = encode_message(msg, self.limit, name)
        port = self._port()
        port.inbox.bind()  # before the message is out: its reply ring must find us
        msg_id = new_msg_id()
        deadline = time.monotonic() + timeout
        wall_deadline = time.time() + timeout
        self._append(name, Message.call(payload, msg_id, port.inbox_path, wall_deadline,
                                        time=time.time()), port, urgent=True)
        while True:
            remaining = deadline - time.monotonic()
            got = port.inbox.recv(max(0.0, min(remaining, REPLY_RECHECK_S)))
            reply = None
            ring = parse_reply_ring(got[1]) if got is not None else None
            if ring is not None and ring.msg_id == msg_id:
                reply = Reply.from_wire(ring.reply)  # the committed reply, in its ring
                port.taken.append(msg_id)
            elif got is None:
                # No ring yet: the reply may be committed with its ring lost (the agent died
                # right after its commit). LMDB has the truth. And if the agent has since
                # left the tree (marked failed, stopped), say so now instead of at timeout.
                reply, rec = self.store.write(lambda t: (t.pop_reply(msg_id), t.get_agent(name)))
                if reply is None and (rec is None or rec.status not in ACCEPTS_MESSAGES):
                    raise_gone(name, rec)
            if reply is not None:
                if reply.ok:
                    return unpack(reply.value)
                raise_reply_error(name, reply.error or ReplyError("Error", ""))
            if time.monotonic() >= deadline:
                raise CallTimeout(name, timeout)

    def dropped_frames(self) -> int:
        """How many invalid frames the reply inboxes of this messenger's threads dropped."""
        with self._lock:
            return sum(p.inbox.inbox.dropped for p in self._ports if p.inbox.inbox is not None)

    def close(self) -> None:
        """Close every thread's sockets and the ZeroMQ context."""
        if self.closed:
            return
        self.closed = True
        with self._lock:
            for port in list(self._ports):
                port.close()
        self.doorbells.close(self.ring_linger_ms)
        if self._own_ctx:
            self.ctx.destroy(linger=0)
