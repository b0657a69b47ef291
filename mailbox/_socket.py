"""ZeroMQ sockets for beamish: inboxes (bound), doorbells (connected), request/reply.

Every socket closes with ``linger=0``; every blocking receive takes a timeout. Frames are
built and parsed only by `._protocol`. A malformed frame is dropped and counted, never
raised into the loop that owns the socket.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from ._errors import MailboxError, PayloadTooLarge, ProtocolError
from ._protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Envelope,
    Kind,
    decode,
    encode,
    encode_ring,
    new_msg_id,
)

# How long closing doorbells waits for queued rings (term() of the context waits for them).
RING_LINGER_MS = 200
# Plain ints: pyzmq's enum wrappers cost ~3 us per check on the per-message path.
EVENTS, POLLIN, NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)

# ipc:// paths are limited by sockaddr_un.sun_path (108 bytes on Linux, 104 on macOS).
MAX_IPC_PATH = 100


def zmq_size_ceiling(limit: int) -> int:
    """The frame size past which ZeroMQ itself closes the connection (``ZMQ_MAXMSGSIZE``).

    Twice the payload limit (and 64 KiB more): a frame over the limit, but under this,
    reaches our decoder, which drops and counts it; only a frame past this closes the
    connection unseen (libzmq reports that as an ordinary disconnect), a guard against
    a peer that would make us buffer gigabytes.
    """
    return 2 * limit + 65536


class RequestTimeout(MailboxError, TimeoutError):
    """No reply arrived within the timeout."""


def ipc_address(path: str) -> str:
    """Return the ``ipc://`` address of a socket file, checking the path length.

    Raises:
        MailboxError: the path is too long for a Unix socket.
    """
    if len(path) > MAX_IPC_PATH:
        raise MailboxError(
            f"socket path {path!r} is {len(path)} characters, over the {MAX_IPC_PATH} a Unix "
            "socket allows: use a shorter node dir"
        )
    return "ipc://" + path


def bind_private(sock: zmq.Socket[Any], path: str) -> None:
    """Bind ``sock`` (sync or asyncio) to the socket file ``path``, readable by its owner
    only (0600). A file already there is a stale one of a dead process (the caller holds
    the node dir's lock, or picked a random path): it is removed first.

    Raises:
        MailboxError: the path is too long for a Unix socket.
    """
    if os.path.exists(path):
        os.unlink(path)
    sock.bind(ipc_address(path))
    os.chmod(path, 0o600)


def new_context() -> zmq.Context[Any]:
    """Create a ZeroMQ context (one per process, always created after any fork)."""
    return zmq.Context()


class Inbox:
    """A bound PULL or ROUTER socket that yields decoded envelopes.

    Args:
        ctx: the process's ZeroMQ context.
        path: the socket file to bind (made 0600).
        router: bind a ROUTER (replies routed back by identity) instead of a PULL.
        limit: the largest accepted payload in bytes.
    """

    def __init__(
        self, ctx: zmq.Context[Any], path: str, *, router: bool = False,
        limit: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.router = router
        self.limit = limit
        self.dropped = 0  # malformed or oversized frames seen and dropped
        self.path = path
        self.sock = ctx.socket(zmq.ROUTER if router else zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, zmq_size_ceiling(limit))
        if router:
            self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        bind_private(self.sock, path)

    def recv(self, timeout: float | None) -> tuple[bytes, Envelope] | None:
        """Receive one valid envelope, waiting at most ``timeout`` seconds (None: forever).

        Returns:
            ``(routing_id, envelope)`` (routing_id is empty for a PULL inbox), or None on
            timeout. Invalid messages are dropped, counted in ``dropped``, and do not end the
            wait early.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.sock.poll(None if remaining is None else int(remaining * 1000)):
                return None
            got = self.recv_nowait()
            if got is not None:
                return got
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def recv_timed(self) -> tuple[bytes, Envelope] | None:
        """Receive one envelope, waiting at most the socket's own receive timeout
        (``zmq.RCVTIMEO``, set once by its owner): one blocking call, without the poller
        that `recv` builds per wait. None on timeout, or for an invalid message (dropped
        and counted)."""
        try:
            frames = self.sock.recv_multipart(copy=True)
        except zmq.Again:
            return None
        return self._decode(frames)

    def recv_nowait(self) -> tuple[bytes, Envelope] | None:
        """Receive one envelope if one is ready; drop and count an invalid one (returns None)."""
        try:
            frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=True)
        except zmq.Again:
            return None
        return self._decode(frames)

    def pending(self) -> bool:
        """Whether a message is queued (received without blocking)."""
        return bool(self.sock.getsockopt(EVENTS) & POLLIN)

    def drain(self, limit: int = 10_000) -> list[tuple[bytes, Envelope]]:
        """Receive every envelope already queued (at most ``limit``), without blocking.

        Invalid messages are dropped and counted in ``dropped``.
        """
        got: list[tuple[bytes, Envelope]] = []
        sock = self.sock
        # Checking EVENTS is far cheaper than letting recv raise zmq.Again at the end.
        while len(got) < limit and sock.getsockopt(EVENTS) & POLLIN:
            item = self._decode(sock.recv_multipart(NOBLOCK, copy=True))
            if item is not None:
                got.append(item)
        return got

    def _decode(self, frames: list[bytes]) -> tuple[bytes, Envelope] | None:
        ident = b""
        if self.router:
            if len(frames) < 2:
                self.dropped += 1
                return None
            ident, frames = frames[0], frames[1:]
        try:
            return ident, decode(frames, limit=self.limit)
        except (ProtocolError, PayloadTooLarge):
            self.dropped += 1
            return None

    def reply(self, ident: bytes, env: Envelope) -> bool:
        """Send ``env`` back to ``ident`` on a ROUTER inbox; False if that peer is gone."""
        try:
            self.sock.send_multipart([ident, *encode(env)], zmq.NOBLOCK)
            return True
        except (zmq.Again, zmq.error.ZMQError):
            return False

    def close(self) -> None:
        """Close the socket and remove its file."""
        self.sock.close(linger=0)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Doorbells:
    """Connected PUSH sockets, one per address, for fire-and-forget hints.

    A doorbell is only a hint that a durable mailbox changed: if the peer's pipe is full it
    already has work pending, so a full pipe drops the ring (counted), never blocks.

    Args:
        ctx: the process's ZeroMQ context.
        max_open: how many peer sockets to keep; the least recently used are closed.
    """

    def __init__(self, ctx: zmq.Context[Any], max_open: int = 256) -> None:
        self.ctx = ctx
        self.max_open = max_open
        self.socks: collections.OrderedDict[str, zmq.Socket[Any]] = collections.OrderedDict()
        self.skipped = 0

    def _sock(self, path: str) -> zmq.Socket[Any]:
        cached = self.socks.get(path)
        if cached is not None:
            self.socks.move_to_end(path)
            return cached
        sock: zmq.Socket[Any] = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        # Deep enough that a ring is dropped only when its agent is far behind anyway.
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RECONNECT_IVL, 5)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 100)
        sock.connect(ipc_address(path))
        self.socks[path] = sock
        while len(self.socks) > self.max_open:
            _, old = self.socks.popitem(last=False)
            old.close(linger=0)
        return sock

    def ring(self, path: str, frame: bytes = encode_ring(Kind.RING)) -> bool:
        """Send a compact ``frame`` (`encode_ring`; a bare RING by default) to the inbox at
        ``path`` without blocking."""
        try:
            self._sock(path).send(frame, NOBLOCK)
            return True
        except zmq.Again:
            self.skipped += 1
            return False

    def forget(self, path: str) -> None:
        """Close the socket to ``path`` (its owner is gone for good)."""
        sock = self.socks.pop(path, None)
        if sock is not None:
            sock.close(linger=0)

    def close(self, linger_ms: int = RING_LINGER_MS) -> None:
        """Close every socket, letting rings still queued go out for up to ``linger_ms``
        (a process that casts and exits must not leave its ring behind: the agent would
        find the message only at its next idle re-read)."""
        for sock in self.socks.values():
            sock.close(linger=linger_ms)
        self.socks.clear()


ALIVE_CHECK_S = 0.25  # how often a waiting Requester checks its peer is alive


@dataclass(frozen=True, slots=True)
class CurveClient:
    """The CURVE keys of a client socket (Z85, 40 bytes each).

    Attributes:
        public: the client's public key.
        secret: the client's secret key.
        server: the public key of the server it trusts.
    """

    public: bytes
    secret: bytes
    server: bytes

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` (not yet connected) a CURVE client with these keys."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


class Requester:
    """A DEALER connected to a ROUTER inbox: request/reply matched by msg_id.

    Not thread-safe: give each thread its own.

    Args:
        path: the inbox's socket file, or a ``tcp://HOST:PORT`` address.
        curve: the CURVE keys to connect with (a TCP server requires them).
        prepare: called with the socket before it connects (more options, a monitor).
    """

    def __init__(self, ctx: zmq.Context[Any], path: str,
                 limit: int = DEFAULT_MAX_MESSAGE_BYTES, curve: CurveClient | None = None,
                 prepare: Callable[[zmq.Socket[Any]], None] | None = None) -> None:
        self.limit = limit
        self.dropped = 0  # malformed or oversized replies seen and dropped
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 10)
        if curve is not None:
            curve.apply(self.sock)
        if path.startswith("tcp://["):
            self.sock.setsockopt(zmq.IPV6, 1)  # libzmq refuses an IPv6 address without it
        if prepare is not None:
            prepare(self.sock)
        self.sock.connect(path if path.startswith("tcp://") else ipc_address(path))

    def request(self, payload: Any, timeout: float,
                alive: Callable[[], bool] | None = None) -> Any:
        """Send ``payload`` as a CALL and return the payload of its REPLY.

        Args:
            alive: checked every `ALIVE_CHECK_S` while waiting: a peer known dead ends the
                wait at once (with `RequestTimeout`) instead of at ``timeout``.

        Raises:
            RequestTimeout: no reply within ``timeout`` seconds, or ``alive()`` said no.
        """
        msg_id = new_msg_id()
        self.sock.send_multipart(encode(Envelope(Kind.CALL, msg_id, b"", payload), limit=self.limit))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeout(f"no reply within {timeout:g} s")
            step = remaining if alive is None else min(remaining, ALIVE_CHECK_S)
            if not self.sock.poll(int(step * 1000) + 1):
                if alive is not None and not alive():
                    raise RequestTimeout("the peer went away")
                continue
            frames = self.sock.recv_multipart()
            try:
                env = decode(frames, limit=self.limit)
            except (ProtocolError, PayloadTooLarge):
                self.dropped += 1
                continue
            if env.kind is Kind.REPLY and env.msg_id == msg_id:
                return env.payload
            # a late reply to an earlier, timed-out request: dropped

    def close(self) -> None:
        """Close the socket."""
        self.sock.close(linger=0)
