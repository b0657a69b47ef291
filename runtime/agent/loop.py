"""The agent process: one message at a time from the durable mailbox (gen_server shape).

    node process (control plane, no user code)
      ├── root supervisor ─┬─ agent "c1"  ◀── forked by the zygote, runs this loop
      │                    └─ sup "workers" ── agent "w1"
      └── zygote (preloaded interpreter: forks agents; gc.freeze()'d)

    loop:  ┌─▶ peek mailbox (LMDB read) ──▶ decode ──▶ handle_call / handle_cast
           │        │ empty                              │
           │        ▼                                    ▼
           └── wait for RING / SYSTEM             txn: state + removal (+ reply, timers)
                                                         │
                                                         └─▶ ring the caller

A handler that raises is not papered over: the agent writes a failure report to LMDB
and exits (let it crash). The node restarts it, and the new process runs ``recover``
with the last committed state before taking any message.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import resource
import signal
import socket
import sys
import time
import traceback
from dataclasses import replace
from typing import Any

import zmq

from beamish.mailbox import EncodeError, Inbox, pack, unpack

from .._paths import NodePaths
from .._types import Down, Exit, Failure, LimitsMap, Stop, WireMap
from .._types import InFlight as InFlightMessage
from .._validation import pack_roundtrip
from ..errors import StateError
from ..messaging.control import ControlClient
from ..messaging.messenger import REPLY_GRACE_S, Messenger, SharedDoorbells, hint_node
from ..messaging.wire import (
    Report,
    ReportKind,
    Ring,
    StopRequest,
    idle_hint,
    parse_agent_inbox,
    ready_datagram,
    reply_frame,
    report_frames,
)
from ..store import open_postgres_store, open_store
from ..store.postgres.fencing import Fence
from ..store.protocol import Store, Txn
from ..store.records import (
    Boot,
    DeadLetter,
    FailureReport,
    Malformed,
    Message,
    NodeFields,
    ReplicaFence,
    Reply,
    ReplyError,
)
from ..store.writegate import WriteLane
from .base import Agent
from .context import AgentContext, TimerBook
from .inflight import InFlight
from .logfile import attach
from .nodestore import NodeStore
from .policy import (
    BATCH,
    RecoverExit,
    RecoverRaised,
    bad_return_value,
    commit_after,
    commit_before,
    plan_recover,
    short,
)

# An idle agent re-reads its mailbox this often even without a ring. Rings are dropped only
# when 100,000 are queued to one agent (which then re-reads anyway) or in flight when it
# dies (its successor reads at start), so this is a backstop; frequent wake-ups of a
# thousand idle agents would be noise for the busy ones (measured: noisy p99 3.1x idle).
IDLE_RECHECK_S = 30.0
# How long an agent waits for its next ring before it publishes its dropped-frame count.
PUBLISH_AFTER_IDLE_MS = 2
NORMAL_REASONS = ("normal", "shutdown")
# At most this many rings are read before the loop handles them (and looks at timers).
DRAIN_LIMIT = 10_000
# At most this many frames are read ahead between two groups of a batch (kept for the next
# drain), to find a stop request queued behind the batch's rings: ZeroMQ reads its
# senders' pipes in turn, so the node's request is among the first few.
READ_AHEAD = 16
# As plain ints: pyzmq's enum constants cost an enum operation per use on the hot path.
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)


# What a handler usually returns: types that are never awaitable.
_PLAIN_RESULTS = frozenset((dict, tuple, list, type(None), int, float, str, bool))
_MODEL_ATTRS = {"call": "CallMessage", "cast": "CastMessage"}


class _Exit(Exception):
    """Unwinds the loop to exit with a report already written."""


class _Group:
    """Messages handled since the last commit, committed together in one transaction: the
    state after the last of them, the removal of each, and their replies (group commit).

    A hard crash before the commit loses the group's state change and keeps its messages,
    so they are handled again: still exactly once for the state. The loop commits a group
    before the next handler when it holds a reply (a caller never waits for another
    message's handler), when it is ``GROUP_WINDOW_S`` old, and before anything else
    writes (a stop, a crash report, a skip); a message that failed before is
    committed alone. The rule is `policy.commit_before` / `policy.commit_after` (pure).
    """

    __slots__ = ("removals", "replies", "packed_state", "processed", "started")

    def __init__(self) -> None:
        self.removals: list[int] = []  # seqs
        self.replies: list[tuple[bytes, bytes, str]] = []  # (msg_id, packed record, caller)
        self.packed_state = b""
        self.processed = 0
        self.started = 0.0

    def add(self, seq: int, packed_state: bytes, processed: int, started: float) -> None:
        """Add a handled message and the state it left; ``started``: when its handler began
        (a group's age counts from its first handler's start, so a slow handler is
        committed before the next one runs)."""
        if not self.removals:
            self.started = started
        self.removals.append(seq)
        self.packed_state = packed_state
        self.processed = processed

    def due_before(self, seq: int, attempted: int | None, now: float | None = None) -> bool:
        """Whether the group must be committed before message ``seq`` is handled at
        ``now`` (``time.monotonic()``'s clock; read when None)."""
        return bool(self.removals) and commit_before(
            len(self.removals), bool(self.replies),
            (time.monotonic() if now is None else now) - self.started, seq,
            attempted) is not None


def load_class(path: str) -> type[Agent]:
    """Import ``"package.module:Class"`` and check it is an `Agent` subclass."""
    module_name, _, qual = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        dirs = [p for p in sys.path if os.path.isdir(p)]
        shown = os.pathsep.join(dirs[:4]) + (os.pathsep + "..." if len(dirs) > 4 else "")
        raise type(exc)(
            f"{exc}. The node imports agent classes with the directory and sys.path it was "
            f"started with (cwd {os.getcwd()!r}; sys.path {shown}): start the node from your "
            "project's directory or with PYTHONPATH naming it, or set BEAMISH_SYS_PATH "
            f"({os.pathsep}-separated dirs) for `beamish node start`; then spawn again",
            name=exc.name, path=exc.path) from exc
    for part in qual.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"{path}: module {module_name!r} has no class {qual!r} "
                                 "(check the name after the ':')") from None
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise TypeError(f"{path} is not a beamish.runtime.Agent subclass")
    return obj


def _failure_from_exc(exc: BaseException, in_flight: InFlightMessage | None) -> Failure:
    return Failure(kind="exception", exc_type=type(exc).__name__, message=str(exc),
                   traceback="".join(traceback.format_exception(exc)),
                   in_flight=in_flight)


class Prepared:
    """The setup a child does before it knows which agent it is: its own LMDB env and
    ZeroMQ context (opened here, after the fork, never inherited) and its wake-up pair.

    Args:
        node: the node's fields of a boot record.
    """

    def __init__(self, node: NodeFields, fence: ReplicaFence | None = None) -> None:
        self.node = node
        self.zctx: zmq.Context[Any] = zmq.Context()
        # libzmq starts its IO and reaper threads with the first socket: start them now.
        self.zctx.socket(zmq.PUSH).close(linger=0)
        self.store: Store
        if fence is not None:  # a replicated agent: its store is the cluster's PostgreSQL
            grant, dsn, cluster = Fence(fence.shard, fence.node, fence.epoch), node.store, \
                fence.cluster
            if fence.committer:  # through its node: no connection of its own
                self.store = NodeStore("ipc://" + fence.committer, grant, self.zctx,
                                       lambda: open_postgres_store(dsn, cluster, grant))
            else:
                self.store = open_postgres_store(dsn, cluster, grant)
        else:
            self.store = open_store(node.store, node.durability)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)

    def fits(self, boot: Boot) -> bool:
        """Whether this setup is for the node of ``boot``."""
        return boot.node == self.node and boot.fence is None

    def close(self) -> None:
        """Release it (a setup for another node)."""
        self.zctx.destroy(linger=0)
        self.store.close()
        self.wake_r.close()
        self.wake_w.close()


class AgentLoop:
    """Runs one agent in this (forked) process. Built from the boot record the node sent.

    Args:
        boot: the boot record (its ``ready_fd`` set when forked by the zygote).
    """

    def __init__(self, boot: Boot) -> None:
        self.boot = boot
        self.name: str = boot.name
        self.id: int = boot.id
        self.paths = NodePaths(boot.node.dir)
        self.stop_reason: str | None = None
        self.state: Any = None
        self.processed = 0  # messages handled, committed with the state
        self.next_seq: int | None = None  # the mailbox head, when known without reading
        self.attempted: int | None = None  # the seq with failed attempts on record
        self.agent: Agent | None = None
        self.aloop: asyncio.AbstractEventLoop | None = None
        self.group = _Group()
        self.ahead: list[Ring] = []  # rings read ahead during a batch, for the next drain
        # When it last handled a message (or started, or told the node it was idle).
        self.active_at = time.monotonic()

    # -- setup -------------------------------------------------------------------------------
    def run(self, prepared: Prepared | None = None) -> int:
        """Run until stopped; return the process exit code (the report is in LMDB).

        Args:
            prepared: the node-wide setup done before this process knew its agent (a warm
                zygote child); made here when None or for another node.
        """
        # Its title, and its output to its own log (logs/NAME.log), before any user code.
        attach(self.paths, self.name, self.boot.node.log_max_bytes, self.boot.node.log_keep)
        _apply_rlimits(self.boot.limits)
        if prepared is None or not prepared.fits(self.boot):
            if prepared is not None:
                prepared.close()
            prepared = Prepared(self.boot.node, self.boot.fence)
        self.store = prepared.store
        self.zctx: zmq.Context[Any] = prepared.zctx
        self.wake_r, self.wake_w = prepared.wake_r, prepared.wake_w
        self.inbox = Inbox(self.zctx, self.paths.agent_inbox(self.id))
        self.busy = InFlight(self.paths.agent_busy(self.id), self.boot.incarnation)
        self.messenger = Messenger(self.paths, self.store, self.boot.node.max_message_bytes,
                                   ctx=self.zctx)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            self._start()
            # After init/recover: an agent may point its stdio at a log file there.
            self.stdio = _stdio_identity()
            self._ready()
            self._serve()
        except _Exit:
            pass
        finally:
            self._close()
        return 0

    @property
    def doorbells(self) -> SharedDoorbells:
        """This process's doorbell sockets (the messenger's, shared by its threads)."""
        return self.messenger.doorbells

    def _ready(self) -> None:
        # The marker first: an exit the node hears before this report is still a started one.
        self.busy.set_ready()
        if self.agent is not None:
            self.agent.ctx._phase = None
        report = Report(ReportKind.READY, self.id, self.boot.incarnation, os.getpid(),
                        trap_exits=bool(self._cls.trap_exits))
        fd = self.boot.ready_fd
        if fd is None:
            self._send_report(report)
            return
        # The zygote's ready socket (a datagram per report, inherited): one system call
        # instead of a ZeroMQ socket's connect, send and lingering close.
        os.write(fd, ready_datagram(report))

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self.stop_reason is None:
            self.stop_reason = "shutdown"

    def _notify(self, ev: ReportKind, reason: str, seq: int | None = None) -> None:
        """Report ``ev`` (a failure that does not end this process) to the node."""
        self._send_report(Report(ev, self.id, self.boot.incarnation, os.getpid(),
                                 reason=reason, seq=seq))

    def _send_report(self, report: Report) -> None:
        # A connection per report, closed (lingering until sent) right after: a thousand
        # idle agents must not hold a thousand connections to the node (its fd limit).
        sock = self.zctx.socket(zmq.PUSH)
        try:
            sock.connect("ipc://" + self.paths.node_in)
            sock.send_multipart(report_frames(report))
        finally:
            sock.close(linger=2000)

    def _report_and_exit(self, report: FailureReport) -> None:
        self._flush()
        report = replace(report, inc=self.boot.incarnation)
        self.store.write(lambda t: t.put_failure(self.id, report))
        raise _Exit()

    def _publish_dropped(self) -> None:
        """Show the node how many invalid frames this process's sockets dropped (in the
        in-flight marker; published before each idle wait and at exit)."""
        ctx = getattr(self.agent, "ctx", None)
        control = ctx._control if isinstance(ctx, AgentContext) else None
        self.busy.set_dropped(self.inbox.dropped + self.messenger.dropped_frames()
                              + (control.dropped_frames() if control is not None else 0))

    def _close(self) -> None:
        self._publish_dropped()
        signal.set_wakeup_fd(-1)
        self.messenger.close()
        self.inbox.close()
        timers = getattr(self, "timers", None)
        if timers is not None:
            timers.close()
        self.zctx.destroy(linger=0)
        self.store.close()
        self.busy.close()

    def _call_user(self, fn: Any, *args: Any) -> Any:
        result = fn(*args)
        if type(result) in _PLAIN_RESULTS:
            return result  # the common case, without isawaitable's checks
        if inspect.isawaitable(result):
            if self.aloop is None:
                self.aloop = asyncio.new_event_loop()
            result = self.aloop.run_until_complete(result)
        return result

    def _pack_state(self, state: Any) -> bytes:
        # Checked to decode again: a state that packs but cannot be loaded (a tuple dict
        # key) would crash every restart of the agent once committed.
        try:
            return pack_roundtrip(state, where=f"the state of agent {self.name!r}")
        except EncodeError as exc:
            raise StateError(str(exc)) from None

    def _load_state(self, raw: tuple[int, bytes, int] | None) -> Any:
        assert self.agent is not None
        if raw is None:
            return None
        version, packed, self.processed = raw
        state = unpack(packed)
        model = self._cls.State
        if model is not None:
            state = model.model_validate(state)
        if version != self._cls.version:
            state = self._call_user(self.agent.code_change, version, state)
            self.timers.keep()  # committed with the migrated state
        return state

    def _start(self) -> None:
        try:
            cls = load_class(self.boot.cls)
            self.agent = cls()
            self.timers = TimerBook(self.id, self.boot.incarnation, self.store, self.paths,
                                    self.boot.node.max_message_bytes)
            self.agent.ctx = AgentContext(self.name, self.messenger,
                                          ControlClient(self.paths, self.zctx),
                                          self.boot.incarnation, bool(cls.trap_exits),
                                          self.timers)
            raw = self.store.read(lambda t: t.get_state(self.id))
            self.state = self._load_state(raw)
            failure = self.boot.failure
            self.agent.ctx._phase = "recover" if failure is not None else "init"
            if failure is not None:
                self._recover(failure, raw is not None)
            elif raw is None:
                self._init_state()
            elif raw[0] != cls.version:
                self._commit_state()
        except _Exit:
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure of user code is reported
            self._report_and_exit(FailureReport("init", failure=_failure_from_exc(exc, None)))

    def _init_state(self) -> None:
        assert self.agent is not None
        self.state = self._call_user(self.agent.init, dict(self.boot.args))
        self.timers.keep()
        self._commit_state()

    @property
    def _cls(self) -> type[Agent]:
        """The agent's class (only once it is loaded)."""
        assert self.agent is not None
        return type(self.agent)

    def _commit_state(self) -> None:
        packed = self._pack_state(self.state)
        version = self._cls.version
        n = self.processed

        def txn(t: Txn) -> None:
            t.put_state(self.id, version, packed, n)
            self.timers.write(t)
        self.store.write(txn)
        self.timers.committed()

    # -- semantic recovery ---------------------------------------------------------------------
    def _recover(self, failure: Failure, had_state: bool) -> None:
        assert self.agent is not None
        if not had_state:
            self._init_state()
        answer: object
        try:
            answer = self._call_user(self.agent.recover, failure, self.state)
            self.timers.keep()
        except Exception as exc:  # noqa: BLE001 - a raising recover is treated as Reset
            self.timers.drop()
            answer = RecoverRaised(exc)
        plan = plan_recover(answer, failure, self.state is not None,
                            self._cls.max_attempts, self.name)
        if plan.complaint is not None:
            self._notify(ReportKind.RECOVER_FAILED, plan.complaint)
        if plan.attempted is not None:
            self.attempted = plan.attempted
        if plan.adopt_state:
            self.state = plan.state
        elif plan.reinit:
            self._init_state()
        if plan.skip is not None:
            self._skip_message(plan.skip, failure)
        else:
            self._commit_state()
        if plan.exit is not None:
            self._ready()
            self._report_and_exit(
                FailureReport("recover", stop=plan.reason) if plan.exit is RecoverExit.STOP
                else FailureReport("recover", escalate=plan.reason))

    def _skip_message(self, seq: int, failure: Failure) -> None:
        packed = self._pack_state(self.state)
        version = self._cls.version
        ring: tuple[str, bytes, bytes] | None = None
        dead = False

        n = self.processed

        def txn(t: Txn) -> None:
            nonlocal ring, dead
            t.put_state(self.id, version, packed, n)
            self.timers.write(t)
            # Not always the head: a hard crash in a group leaves the group's earlier
            # messages in the mailbox, before the one that failed.
            msg = t.message(self.id, seq)
            if msg is None:
                return
            t.remove(self.id, seq)
            if isinstance(msg, Message) and msg.kind == "call":
                reply = Reply(False, msg.deadline + REPLY_GRACE_S, error=_remote_error(failure))
                packed_reply = pack(reply.to_wire())  # once: stored, and carried by the ring
                t.put_reply_packed(msg.msg_id, packed_reply)
                ring = (msg.reply_to, msg.msg_id, packed_reply)
            else:
                t.put_dead(self.id, seq, DeadLetter(msg, failure, time.time()))
                dead = True
        self.store.write(txn)
        self.timers.committed()
        if ring is not None:
            self.doorbells.ring(ring[0], reply_frame(ring[1], ring[2]))
        if dead:
            self._notify(ReportKind.DEAD_LETTERED,
                         f"{failure.kind}: {failure.exc_type or failure.message}", seq)

    # -- serving -------------------------------------------------------------------------------
    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.inbox.sock, zmq.POLLIN)
        poller.register(self.wake_r.fileno(), zmq.POLLIN)
        while True:
            # Rings carry no data (the mailbox is in LMDB); system requests can stop us.
            # Checked once per batch, and between its groups (a zmq call costs as much as
            # handling a message).
            rings = self._drain_inbox() if self.stop_reason is None else []
            if self.stop_reason is not None:
                self._stop(self.stop_reason)
            batch = self._inline_batch(rings)
            inline = batch is not None
            if batch is None:
                batch, tail = self.store.read(lambda t: (t.peek(self.id, BATCH), t.tail(self.id)))
                self.next_seq = batch[0][0] if batch else tail
            if batch:
                self.active_at = time.monotonic()
            for seq, record in batch:
                # "Now" is when the group's last handler returned (the marker read the
                # clock then, for its latency): only this loop's bookkeeping ran since.
                if self.group.due_before(seq, self.attempted, self.busy.returned_at * 1e-9):
                    self._flush()
                    # A stop (or sleep) takes effect here, ahead of the batch's rest and
                    # of the rings queued before it: those messages stay in the mailbox,
                    # for the next process (an upgrade's move, a node shutdown).
                    self._read_ahead()
                    if self.stop_reason is not None:
                        break
                self._handle(seq, record)
                if commit_after(seq, self.attempted):
                    # Committed alone, before and after: a hard crash of a later message in
                    # its group would otherwise run it once more than max_attempts allows.
                    self._flush()
                if self.stop_reason is not None:
                    break
            self._flush()
            if _stdio_identity() != self.stdio:
                self._stdio_lost()
            # After a read, look again (more may be queued than one batch). After an inline
            # batch, every later message comes with its own ring, so wait for it. A handler
            # that returned Stop is stopped at the top of the loop, without waiting.
            if (batch and not inline) or self.stop_reason is not None:
                continue
            wait = IDLE_RECHECK_S
            if self.ahead or self.inbox.pending():
                continue  # rings arrived while handling: no need to sleep
            idle_timeout = self.boot.idle_timeout
            if idle_timeout is not None:
                left = self.active_at + idle_timeout - time.monotonic()
                if left <= 0:
                    # Once per idle period (again after another, if it still runs); the
                    # node puts it to sleep (a stop frame), and it serves whatever comes
                    # meanwhile (the node's sleep transaction sees it).
                    hint_node(self.paths, idle_hint(self.id, self.boot.incarnation))
                    self.active_at = time.monotonic()
                    left = idle_timeout
                wait = min(wait, left)
            # The dropped-frame count is published once the agent has been idle for a
            # moment, not right after each reply ring: there it took the CPU that the
            # reply's delivery needs (a caller in a loop rings again well within it).
            events = dict(poller.poll(PUBLISH_AFTER_IDLE_MS))
            if not events:
                self._publish_dropped()
                events = dict(poller.poll(int(wait * 1000) + 1))
            if not events:
                self.next_seq = None  # idle: re-read the mailbox, in case a ring was dropped
            if self.wake_r.fileno() in events:
                try:
                    self.wake_r.recv(4096)
                except BlockingIOError:
                    pass

    def _stdio_lost(self) -> None:
        # A handler closed (or replaced) fd 0-2: the next file or socket opened would get
        # that number, and a print would write into it. Start afresh instead.
        failure = Failure(kind="exit", message="the agent closed or replaced its standard "
                          "streams (fd 0-2); restarted so that no write to them can land in "
                          "another file or socket")
        self._report_and_exit(FailureReport("handle", failure=failure))

    def _drain_inbox(self) -> list[Ring]:
        """Read queued rings and system requests; return the rings (each with its message
        inline, still packed), those read ahead first."""
        rings, self.ahead = self.ahead, []
        self._read_inbox(rings, DRAIN_LIMIT)
        return rings

    def _read_ahead(self) -> None:
        """Read a few more frames while a batch is handled (a stop request sets
        ``stop_reason``), keeping the rings for the next drain."""
        self._read_inbox(self.ahead, min(len(self.ahead) + READ_AHEAD, DRAIN_LIMIT))

    def _read_inbox(self, rings: list[Ring], limit: int) -> None:
        """Read queued frames until ``rings`` holds ``limit``: rings are appended, a stop
        request sets ``stop_reason``. Read from the socket here, not through
        `Inbox.drain`: the inline copy is compared as bytes, never decoded
        (`_inline_batch`)."""
        sock = self.inbox.sock
        while len(rings) < limit and sock.getsockopt(_EVENTS) & _POLLIN:
            got = parse_agent_inbox(sock.recv_multipart(_NOBLOCK))
            if isinstance(got, Ring):
                rings.append(got)
            elif isinstance(got, StopRequest):
                if self.stop_reason is None:
                    self.stop_reason = got.reason
            else:
                self.inbox.dropped += 1

    def _inline_batch(self, rings: list[Ring]) -> list[tuple[int, Message | Malformed]] | None:
        """The messages the rings carried, if they are exactly the next ones of the mailbox
        and the mailbox holds them as carried; None when LMDB must be read."""
        expected = self.next_seq
        if expected is None or not rings:
            return None
        batch: list[Ring] = []
        for ring in rings:
            seq = ring.seq
            if seq < expected:
                continue  # handled already, found by an earlier read
            if seq != expected or not ring.packed:
                return None  # a gap (a dropped ring) or a message too big to inline
            batch.append(ring)
            expected += 1
        if not batch:
            return None
        # A ring is only a hint, and any process of this user can send one: the durable
        # mailbox is the truth. Its bytes must be the ring's (one read, no cursor walk);
        # only then is the message decoded, once.
        agent_id = self.id
        stored = self.store.read(lambda t: [t.message_packed(agent_id, ring.seq)
                                            for ring in batch])
        out: list[tuple[int, Message | Malformed]] = []
        for raw, ring in zip(stored, batch, strict=True):
            if raw != ring.packed:
                self.inbox.dropped += 1  # a ring for a message the mailbox does not hold
                return None
            out.append((ring.seq, Message.from_packed(ring.packed)))
        return out

    def _stop(self, reason: str) -> None:
        assert self.agent is not None
        self._flush()
        try:
            self._call_user(self.agent.terminate, reason, self.state)
        except Exception as exc:  # noqa: BLE001 - reported, the stop goes on
            self._notify(ReportKind.TERMINATE_FAILED, f"{type(exc).__name__}: {exc}")
        self._report_and_exit(FailureReport("stop", stop=reason))

    def _crash(self, exc: BaseException, seq: int | None, record: Message | None) -> None:
        in_flight = None
        if seq is not None and record is not None:
            in_flight = {"seq": seq, "kind": record.kind}
        self._report_and_exit(FailureReport("handle", failure=_failure_from_exc(exc, in_flight)))

    def _handle(self, seq: int, record: Message | Malformed) -> None:
        assert self.agent is not None
        self.busy.mark(seq)
        started = self.busy.start * 1e-9  # the marker's clock read (time.monotonic's clock)
        try:
            record, msg = _open_record(record)
        except ValueError as exc:
            # Inside no handler's error handling: a crash here would repeat on every
            # restart. The sender's fault, so refused once, as an invalid message is.
            self._refuse(seq, record, Failure(
                kind="exception", exc_type="BadMessage",
                message=f"agent {self.name!r} cannot decode this message, so it was refused "
                        f"without being handled: {exc}"))
            return
        kind = record.kind
        invalid = self._validate(kind, msg)
        if invalid is not None:
            self._refuse(seq, record, invalid)
            return
        try:
            if kind == "call":
                result = self._call_user(self.agent.handle_call, msg, self.state)
                if isinstance(result, Stop):
                    reply, new_state = result.reply, self.state
                    self.stop_reason = result.reason
                elif isinstance(result, tuple) and len(result) == 2:
                    reply, new_state = result
                    _check_state("handle_call", self.name, new_state, self.state,
                                 "(reply, None)")
                else:
                    raise bad_return_value("handle_call", self.name, short(result),
                                           "(reply, new_state) or Stop")
            else:
                handler_name = "handle_info" if kind == "info" else "handle_cast"
                new_state = self._call_user(getattr(self.agent, handler_name),
                                            _info_value(msg) if kind == "info" else msg,
                                            self.state)
                reply = None
                if isinstance(new_state, Stop):
                    self.stop_reason = new_state.reason
                    new_state = self.state
                _check_state(handler_name, self.name, new_state, self.state, "None")
            packed_state = self._pack_state(new_state)
            packed_reply = pack_roundtrip(reply, where=f"the reply of agent {self.name!r}") \
                if kind == "call" else b""
        except Exception as exc:  # noqa: BLE001 - let it crash, with a report
            self.timers.drop()
            self._crash(exc, seq, record)
            return
        self.timers.keep()
        self.busy.returned()
        self.processed += 1
        self.group.add(seq, packed_state, self.processed, started)
        # A reply past its caller's deadline is dropped (the caller has given up), as in OTP.
        if kind == "call" and record.deadline > time.time():
            self.group.replies.append((record.msg_id, pack(
                Reply(True, record.deadline + REPLY_GRACE_S, packed_reply).to_wire()),
                record.reply_to))
        self.state = new_state
        self.next_seq = seq + 1

    def _flush(self) -> None:
        """Commit the group of handled messages (see `_Group`), then ring their callers."""
        group = self.group
        if not group.removals:
            return
        version = self._cls.version

        def txn(t: Txn) -> None:
            t.put_state(self.id, version, group.packed_state, group.processed)
            t.remove_many(self.id, group.removals)  # and their counts of failed attempts
            for msg_id, reply_rec, _ in group.replies:
                t.put_reply_packed(msg_id, reply_rec)
            self.timers.write(t)
        # A commit with a reply goes ahead of casts' under contention; one of casts only
        # yields to those (`WriteLane`).
        self.store.write_in_lane(txn, WriteLane.URGENT if group.replies else WriteLane.BULK)
        self.timers.committed()
        self.busy.committed()
        self.group = _Group()
        for msg_id, reply_rec, caller in group.replies:
            self.doorbells.ring(caller, reply_frame(msg_id, reply_rec))

    def _validate(self, kind: str, msg: Any) -> Failure | None:
        """Check a message against the agent's declared model (``CallMessage`` or
        ``CastMessage``, pydantic); a message that fails is refused, not handled."""
        model = getattr(type(self.agent), _MODEL_ATTRS.get(kind, ""), None)
        if model is None:
            return None
        try:
            model.model_validate(msg)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            return Failure(kind="exception", exc_type="ValidationError",
                           message=f"the message does not fit {model.__name__} of agent "
                                   f"{self.name!r}: {exc}")
        return None

    def _refuse(self, seq: int, record: Message | Malformed, failure: Failure) -> None:
        """Answer an invalid call with the error (a cast goes to the dead letters) and go on:
        a bad message is the sender's fault, so the agent does not crash."""
        in_flight = {"seq": seq, "kind": record.kind}
        failure = replace(failure, in_flight=in_flight, attempt=1)
        self._flush()
        self._skip_message(seq, failure)
        self.busy.clear()
        self.next_seq = seq + 1


def _check_state(handler: str, agent: str, new_state: Any, prior: Any, returned: str) -> None:
    """Refuse a None new state over a state that was not None: a handler that forgot its
    ``return`` (OTP's bad_return_value). An agent whose state is None may keep it None."""
    if new_state is None and prior is not None:
        raise bad_return_value(handler, agent, returned, "the new state (or Stop)"
                               if handler != "handle_call" else "(reply, new_state) or Stop")


def _stdio_identity() -> tuple[tuple[int, int] | None, ...]:
    """What fds 0, 1 and 2 are (device and inode; None if closed)."""
    out: list[tuple[int, int] | None] = []
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_dev, st.st_ino))
    return tuple(out)


def _open_record(record: Message | Malformed) -> tuple[Message, Any]:
    """A mailbox record, checked, and its decoded message.

    Raises:
        ValueError: the record is malformed or its message does not decode (a sender that
            skipped the client's checks).
    """
    if isinstance(record, Malformed):
        raise ValueError(record.why)
    return record, unpack(record.payload)


def _is_call(record: Message | Malformed | None) -> bool:
    """Whether ``record`` is a call whose caller can be answered."""
    return isinstance(record, Message) and record.kind == "call"


def _info_value(msg: Any) -> Any:
    """Turn the data form of a Down/Exit back into the value handle_info receives."""
    if isinstance(msg, dict) and msg.get("__beamish__") in ("Down", "Exit"):
        cls = Down if msg["__beamish__"] == "Down" else Exit
        return cls(str(msg["name"]), str(msg["reason"]))
    return msg


def _remote_error(failure: Failure) -> ReplyError:
    return ReplyError(failure.exc_type or failure.kind,
                      failure.message or f"the agent failed ({failure.kind})",
                      failure.traceback, failure)


# Headroom above memory_mb for the kernel's RLIMIT_DATA backstop: the node's RSS check is
# the limit; the rlimit only stops a bomb that outruns the check between two polls.
RLIMIT_DATA_HEADROOM = 256 * 1024 * 1024


def _apply_rlimits(limits: LimitsMap) -> None:
    cpu = limits.get("cpu_seconds")
    if cpu:
        # The kernel sends SIGXCPU at the soft limit; the node reports kind "cpu".
        soft = max(1, int(cpu + 0.999))
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    mem = limits.get("memory_mb")
    if mem and hasattr(resource, "RLIMIT_DATA"):
        cap = int(mem * 1024 * 1024) + RLIMIT_DATA_HEADROOM
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))


def agent_main(boot: WireMap, prepared: Prepared | None = None) -> int:
    """Entry point of a forked agent process (``boot``: a `Boot` record's wire form);
    returns its exit code."""
    record = Boot.from_wire(boot)
    sys.path[:0] = [p for p in record.sys_path if p not in sys.path]
    return AgentLoop(record).run(prepared)
