"""The client side of the node's control socket: spawn, stop, info, tree, events, ...

Requests are `ControlRequest` s, ``{**args, "op": name}`` CALL envelopes on the wire; the
node answers ``{"ok": True, "value": ...}`` or ``{"ok": False, "error": {"type",
"message", "attrs"}}`` (an `Answer`, its error an `ErrorReply`). The ops themselves, their
arguments and their values are documented where the node registers them
(``node/commands.py`` ``COMMANDS``); the client's `Node` reads their values into the
public records (`AgentInfo`, `Event`, `NodeStatus`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio

from beamish.mailbox import (
    AsyncRequester,
    EncodeError,
    MailboxError,
    PayloadTooLarge,
    Requester,
    RequestTimeout,
)

from .._paths import NodePaths
from .._types import WireMap
from .._validation import check_timeout
from ..errors import BadMessage, ErrorReply, MessageTooLarge, NodeNotRunning
from .codec import CODEC_ERRORS, send_error
from .spawnargs import SpawnRequest

CommandArgs = Mapping[str, object]
"""A node command's keyword arguments by name: each op's own (``{"name"}``, ``{"since",
"wait"}``, ...), checked by the node against its command's signature."""


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A request to the node: run command ``op`` with ``args``."""

    op: str
    args: CommandArgs | SpawnRequest

    def to_wire(self) -> WireMap:
        """Return the request's wire form, ``{**args, "op": op}``."""
        args = self.args.to_wire() if isinstance(self.args, SpawnRequest) else self.args
        return {**args, "op": self.op}


@dataclass(frozen=True, slots=True)
class Answer:
    """The node's answer to a `ControlRequest`: the command's value, or the error it
    raised."""

    value: Any = None  # the command's value, by op (see node/commands.py)
    error: ErrorReply | None = None

    @classmethod
    def from_wire(cls, data: object) -> Answer:
        """Read an answer's wire form; one that is not a map is an error (the node never
        sends one)."""
        if not isinstance(data, dict):
            return cls(error=ErrorReply("BeamishInternalError",
                                        f"the node's answer is not a map: {data!r:.80}"))
        if data.get("ok"):
            return cls(value=data.get("value"))
        return cls(error=ErrorReply.from_wire(data.get("error", {})))


def _unsendable(op: str, exc: PayloadTooLarge | EncodeError) -> MessageTooLarge | BadMessage:
    """The public error for a request that cannot be encoded."""
    return send_error(exc, what=f"the {op!r} request", prefix=f"the {op!r} request: ")


def _unanswered(paths: NodePaths, alive: Callable[[], bool] | None, op: str,
                timeout: float) -> NodeNotRunning:
    """The error for a request the node did not answer: it died, or it is stuck."""
    if alive is not None and not alive():
        return NodeNotRunning(
            f"the node on {paths.dir!r} went away while answering {op!r} (it "
            f"was killed or crashed; see {paths.log}); start it again with "
            f"`beamish node start --dir {paths.dir}`")
    return NodeNotRunning(
        f"the node on {paths.dir!r} did not answer {op!r} within {timeout:g} s "
        "(is it running? `beamish node status`)")


def _value(data: object) -> Any:
    """The value of the node's answer ``data``, or the error it reported, raised."""
    answer = Answer.from_wire(data)
    if answer.error is not None:
        raise answer.error.error()
    return answer.value


class ControlClient:
    """Sends control requests to a node; safe from many threads (one socket per thread).

    Args:
        paths: the node's paths.
        ctx: the ZeroMQ context to use.
        alive: whether the node's process still lives; a request ends as soon as it does
            not (`NodeNotRunning`), not at its timeout.
    """

    def __init__(self, paths: NodePaths, ctx: zmq.Context[Any],
                 alive: Callable[[], bool] | None = None) -> None:
        self.paths = paths
        self.ctx = ctx
        self.alive = alive
        self._local = threading.local()
        self._all: weakref.WeakSet[Requester] = weakref.WeakSet()
        self._busy: set[Requester] = set()  # waiting for a reply now, on their own threads
        self._closed = False
        self._lock = threading.Lock()

    def _requester(self) -> Requester:
        """This thread's socket, marked busy (`_done` unmarks it)."""
        req: Requester | None = getattr(self._local, "req", None)
        with self._lock:
            if self._closed:
                raise NodeNotRunning(f"this connection to the node on {self.paths.dir!r} "
                                     "was closed; connect again")
            if req is None:
                req = self._connect()
                self._local.req = req
                self._all.add(req)
            self._busy.add(req)
        return req

    def _connect(self) -> Requester:
        """A new socket to the node's control socket (a remote client's goes over TCP)."""
        return Requester(self.ctx, self.paths.control)

    def _done(self, req: Requester) -> None:
        with self._lock:
            self._busy.discard(req)
            if self._closed:  # closed by another thread while we waited: ours to close
                req.close()
                self._local.req = None

    def request(self, op: str, args: CommandArgs | SpawnRequest | None = None, *,
                timeout: float = 30.0) -> Any:
        """Run control op ``op`` with ``args`` on the node and return its value (its wire
        form: a `Node` method reads it into its record).

        Raises:
            ConfigError: ``timeout`` is not a finite number > 0.
            BadMessage, MessageTooLarge: the request cannot be sent.
            NodeNotRunning: the node did not answer within ``timeout``.
            BeamishError: the error the node reported, rebuilt with its type.
        """
        timeout = check_timeout(timeout)
        req = self._requester()
        try:
            data = self._send(req, op, args, timeout)
        finally:
            self._done(req)
        return _value(data)

    def _send(self, req: Requester, op: str, args: CommandArgs | SpawnRequest | None,
              timeout: float) -> Any:
        try:
            return req.request(ControlRequest(op, args or {}).to_wire(), timeout, self.alive)
        except CODEC_ERRORS as exc:
            raise _unsendable(op, exc) from None
        except zmq.ZMQError as exc:
            if not self._closed:
                raise
            # Its context was destroyed under it (the client closed from another thread).
            raise NodeNotRunning(f"this connection to the node on {self.paths.dir!r} was "
                                 f"closed while {op!r} waited for its answer ({exc}); the "
                                 "request may or may not have been carried out: connect "
                                 "again and look") from None
        except RequestTimeout:
            # The socket may now hold a late reply; a fresh one keeps requests matched.
            req.close()
            self._local.req = None
            raise _unanswered(self.paths, self.alive, op, timeout) from None

    def dropped_frames(self) -> int:
        """How many invalid replies this client's sockets dropped."""
        with self._lock:
            return sum(req.dropped for req in self._all)

    def close(self) -> None:
        """Close every thread's socket: at once if idle, else by its own thread when its
        request ends (a ZeroMQ socket must not be closed under a thread using it). Later
        requests raise `NodeNotRunning`."""
        with self._lock:
            self._closed = True
            for req in list(self._all):
                if req not in self._busy:
                    req.close()


class AsyncControlClient:
    """`ControlClient` for the coroutines of one event loop: one DEALER (zmq.asyncio)
    carries all their requests at once, no thread waits for an answer.

    Args:
        paths: the node's paths.
        ctx: an asyncio ZeroMQ context.
        alive: as for `ControlClient`.
    """

    def __init__(self, paths: NodePaths, ctx: zmq.asyncio.Context,
                 alive: Callable[[], bool] | None = None) -> None:
        self.paths = paths
        self.ctx = ctx
        self.alive = alive
        self._req: AsyncRequester | None = None
        self.closed = False

    async def request(self, op: str, args: CommandArgs | SpawnRequest | None = None, *,
                      timeout: float = 30.0) -> Any:
        """`ControlClient.request` as a coroutine.

        Raises:
            As `ControlClient.request`; NodeNotRunning as well once this client is closed.
        """
        timeout = check_timeout(timeout)
        if self.closed:
            raise NodeNotRunning(f"this connection to the node on {self.paths.dir!r} is "
                                 "closed; connect() again")
        if self._req is None:
            self._req = AsyncRequester(self.ctx, self.paths.control)
        try:
            data = await self._req.request(ControlRequest(op, args or {}).to_wire(), timeout,
                                           self.alive)
        except CODEC_ERRORS as exc:
            raise _unsendable(op, exc) from None
        except RequestTimeout:
            # Late replies are told apart by msg_id: the socket stays in use.
            raise _unanswered(self.paths, self.alive, op, timeout) from None
        except MailboxError as exc:
            raise NodeNotRunning(f"the control socket of this connection to the node on "
                                 f"{self.paths.dir!r} failed ({exc}); connect() again") from exc
        return _value(data)

    def dropped_frames(self) -> int:
        """How many invalid replies this client's socket dropped."""
        return self._req.dropped if self._req is not None else 0

    def close(self) -> None:
        """Close the socket; requests still waiting end with `NodeNotRunning`."""
        self.closed = True
        if self._req is not None:
            self._req.close(NodeNotRunning(f"this connection to the node on "
                                           f"{self.paths.dir!r} was closed while the request "
                                           "waited"))
            self._req = None
