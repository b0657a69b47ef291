"""`AgentContext`: what a handler reaches through ``self.ctx``."""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import replace
from typing import Any

from .._paths import NodePaths
from .._types import UserData
from .._validation import check_name, check_timeout
from ..errors import ConfigError
from ..messaging.control import ControlClient
from ..messaging.messenger import Messenger, encode_message
from ..messaging.spawnargs import spawn_request
from ..store.protocol import Store, Txn
from ..store.records import Timer

# The node's timer service looks at the earliest timer at least every TIMER_RECHECK_S; an
# agent pokes it only for a timer due sooner than TIMER_POKE_WITHIN_S (so most timers of
# a busy agent cost no system call), with margin for a recheck that comes late.
TIMER_RECHECK_S = 1.0
TIMER_POKE_WITHIN_S = 2.0 * TIMER_RECHECK_S
# Far enough for any real use; keeps a due time in 64 bits of nanoseconds.
TIMER_MAX_S = 1e9


def timer_id(agent_id: int, seq: int) -> str:
    """The opaque id `AgentContext.send_after` returns for timer ``seq`` of an agent."""
    return f"{agent_id:x}.{seq:x}"


def parse_timer_id(ident: object, agent_id: int) -> int | None:
    """The seq of timer ``ident`` if it is one of agent ``agent_id``'s ids, else None (an
    id of another agent, or not an id at all, names no timer of this one).

    Raises:
        ConfigError: ``ident`` is not a string.
    """
    if not isinstance(ident, str):
        raise ConfigError(f"cancel_timer({ident!r}): a timer id is the string send_after "
                          f"returned, not a {type(ident).__name__}")
    owner, dot, seq = ident.partition(".")
    if not dot or not owner or not seq:
        return None
    try:
        if int(owner, 16) != agent_id:
            return None
        n = int(seq, 16)
    except ValueError:
        return None
    return n if 0 <= n < 1 << 64 else None


def due_ns(now_ns: int, seconds: float) -> int:
    """When a timer set at ``now_ns`` for ``seconds`` is due (wall-clock ns)."""
    return now_ns + round(seconds * 1e9)


class TimerBook:
    """The timers a running agent set and cancelled that are not committed yet.

    A handler's operations are held apart (``current``) until it returns: `keep` moves
    them to the ones its loop commits with the next transition (`write`, in the same
    transaction as the state; `committed` after it); a handler that raised is `drop`ped.
    So a timer whose handler's transition did not commit never fires, and a cancel takes
    effect only with the commit.

    Args:
        agent_id: the agent's id.
        incarnation: its process's incarnation (a timer's seq is ``incarnation << 32 | n``:
            unique among the agent's timers without a store write).
        store: the node's store (a cancel asks it whether a timer is pending).
        paths: the node's paths (the timer service's poke socket).
        limit: the node's message size limit.
    """

    def __init__(self, agent_id: int, incarnation: int, store: Store, paths: NodePaths,
                 limit: int) -> None:
        self.agent_id = agent_id
        self._base = incarnation << 32
        self._count = itertools.count(1)
        self._store = store
        self._paths = paths
        self._limit = limit
        self.kept: list[Timer | int] = []  # a Timer is set, an int (its seq) cancelled
        self.current: list[Timer | int] = []
        self._poke_sock: socket.socket | None = None

    def set(self, seconds: object, msg: Any, who: str) -> str:
        """Stage a timer (see `AgentContext.send_after`); return its id."""
        secs = check_timeout(seconds, "send_after seconds", allow_zero=True)
        if secs > TIMER_MAX_S:
            raise ConfigError(f"send_after seconds={secs!r}: expected at most {TIMER_MAX_S:g} "
                              "seconds (31 years)")
        payload = encode_message(msg, self._limit, who)
        seq = self._base | next(self._count)
        now = time.time_ns()
        self.current.append(Timer(self.agent_id, seq, due_ns(now, secs), payload, now / 1e9,
                                  name=who))
        return timer_id(self.agent_id, seq)

    def cancel(self, ident: object) -> bool:
        """Stage the cancel of timer ``ident``; return whether it was pending."""
        seq = parse_timer_id(ident, self.agent_id)
        if seq is None:
            return False
        pending: bool | None = None
        for op in (*self.kept, *self.current):
            if isinstance(op, Timer):
                if op.seq == seq:
                    pending = True
            elif op == seq:
                pending = False
        if pending is None:
            pending = self._store.read(lambda t: t.has_timer(self.agent_id, seq))
        if pending:
            self.current.append(seq)
        return pending

    def keep(self) -> None:
        """The running handler returned: its operations commit with the next transition."""
        if self.current:
            self.kept.extend(self.current)
            self.current = []

    def drop(self) -> None:
        """The running handler raised: its operations never take effect."""
        self.current = []

    def write(self, t: Txn) -> None:
        """Apply the kept operations in transaction ``t`` (idempotent: ``t`` may rerun)."""
        for op in self.kept:
            if isinstance(op, Timer):
                t.put_timer(op)
            else:
                t.delete_timer(self.agent_id, op)

    def committed(self) -> None:
        """The transaction that `write` wrote to committed: forget the operations, and poke
        the node if a timer is due before it would look by itself."""
        if not self.kept:
            return
        soon = time.time_ns() + int(TIMER_POKE_WITHIN_S * 1e9)
        poke = any(isinstance(op, Timer) and op.due_ns <= soon for op in self.kept)
        self.kept = []
        if poke:
            self._poke()

    def _poke(self) -> None:
        if self._poke_sock is None:
            self._poke_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._poke_sock.setblocking(False)
        try:
            self._poke_sock.sendto(b"t", self._paths.timers_poke)
        except OSError:
            # No node listening (it is restarting: it fires what is due when it starts), or
            # its queue is full (it has been poked already). A poke is only a hint: the
            # service looks again within TIMER_RECHECK_S anyway.
            pass

    def close(self) -> None:
        """Release the poke socket."""
        if self._poke_sock is not None:
            self._poke_sock.close()
            self._poke_sock = None


class AgentContext:
    """The running agent's view of its node. Available in handlers, ``init`` and ``recover``.

    Attributes:
        name: this agent's name.
    """

    def __init__(self, name: str, messenger: Messenger, control: ControlClient,
                 incarnation: int = 0, trap_exits: bool = False,
                 timers: TimerBook | None = None) -> None:
        self.name = name
        self._incarnation = incarnation
        self._trap_exits = trap_exits
        self._messenger = messenger
        self._control = control
        # "init" or "recover" while the agent's start runs (its supervisor waits for it
        # then), None once it is ready: the node refuses a spawn that would deadlock.
        self._phase: str | None = None
        self._timers = timers

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """Call agent ``name`` and wait for its reply (see `AgentRef.call`)."""
        return self._messenger.call(name, msg, timeout)

    def cast(self, name: str, msg: Any) -> None:
        """Cast ``msg`` to agent ``name``; returns once it is durably in its mailbox."""
        self._messenger.cast(name, msg)

    def spawn(self, cls: type | str, args: UserData | None = None, name: str | None = None,
              **options: Any) -> str:
        """Spawn another agent (same arguments as `Node.spawn`); return its name.

        From ``init`` or ``recover``, a spawn into this agent's own supervisor (or into an
        ancestor that is starting this agent's branch) is refused at once with
        `SpawnError`: that supervisor waits for this start to finish, so the spawn could
        never be served. Spawn such a child once started (e.g. ``self.ctx.send_after(0,
        "spawn")`` in ``init``, then spawn in ``handle_info``) or into another supervisor.
        """
        request = replace(spawn_request(cls, args, name, **options, max_bytes=self._messenger.limit),
                          caller=self.name, caller_phase=self._phase)
        value = self._control.request("spawn", request, timeout=request.timeout + 5)
        return str(value["name"])

    def monitor(self, name: str, node: str | None = None) -> None:
        """Get ``Down(name, reason)`` in ``handle_info`` when agent ``name``'s process exits
        (reason "noproc" at once if it is not running). Like Erlang, a monitor belongs to
        this process: a restart of this agent drops it (monitor again in ``init`` or
        ``recover``). ``node``: ``name`` is an agent of that node of the cluster (Erlang's
        ``monitor(process, {Name, Node})``); ``Down(name, "noconnection")`` if that node
        is lost (docs/cluster.md). Without ``node``, a name that another node of the
        cluster holds is found in its route table."""
        check_name(name)
        self._control.request("monitor", {"watcher": self.name, "inc": self._incarnation,
                                          "target": name,
                                          **({} if node is None else {"at": node})})

    def link(self, name: str, node: str | None = None) -> None:
        """Link this agent's process and agent ``name``'s both ways: an abnormal exit of one
        kills the other, unless it sets ``trap_exits = True`` and then receives
        ``Exit(name, reason)`` in ``handle_info``. Normal exits do not propagate.
        ``node``: ``name`` is an agent of that node of the cluster; a loss of that node is
        an abnormal exit ``noconnection``, and a target that does not run answers with
        exit ``noproc`` (as in Erlang: both arrive after this returns; docs/cluster.md).

        Raises:
            AgentNotFound: ``name`` is not running (on this node).
        """
        check_name(name)
        self._control.request("link", {"watcher": self.name, "inc": self._incarnation,
                                       "target": name, "trap_exits": self._trap_exits,
                                       **({} if node is None else {"at": node})})

    def send_after(self, seconds: float, msg: Any) -> str:
        """Deliver ``msg`` to this agent's ``handle_info`` after ``seconds``; return the
        timer's id (an opaque string, for `cancel_timer`).

        The timer is durable: it is committed with this handler's transition (its new
        state) and fires into this agent's mailbox even if the agent crashed or the node
        restarted meanwhile (a timer whose time passed while the node was down fires when
        it starts). A timer set by a handler that raises, or whose process dies before its
        transition commits, never fires. Timers keep wall-clock time.

        Raises:
            ConfigError: ``seconds`` is not a finite number from 0 to 1e9.
            BadMessage: ``msg`` is not msgpack data (or would not decode again).
            MessageTooLarge: ``msg`` is over the node's message size limit.
        """
        return self._book().set(seconds, msg, self.name)

    def cancel_timer(self, timer_id: str) -> bool:
        """Cancel the timer ``timer_id`` (an id `send_after` returned); return whether it
        was pending. Cancelling a timer that fired already, or an unknown id, is not an
        error (it returns False). Like a timer, the cancel takes effect when this handler's
        transition commits; a timer that comes due while this handler runs may already be
        in the mailbox, and is then delivered.

        Raises:
            ConfigError: ``timer_id`` is not a string.
        """
        return self._book().cancel(timer_id)

    def _book(self) -> TimerBook:
        if self._timers is None:
            raise ConfigError(f"agent {self.name!r}: timers are only available in a running "
                              "agent's handlers, init and recover")
        return self._timers
