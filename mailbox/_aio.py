"""The sockets of `._socket` for asyncio code, on ``zmq.asyncio``: waiting for a reply is a
coroutine, so one event loop has many requests in flight on one socket, without a thread
each.

`AsyncReplies` is the shared part: it routes the REPLY envelopes one socket receives to
the coroutines waiting for their ``msg_id``, through a receive future pending only while
someone waits (no task of its own).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any, cast

import zmq
import zmq.asyncio

from ._errors import MailboxError, PayloadTooLarge, ProtocolError
from ._protocol import DEFAULT_MAX_MESSAGE_BYTES, Envelope, Kind, decode, encode, new_msg_id
from ._socket import (
    ALIVE_CHECK_S,
    EVENTS,
    NOBLOCK,
    POLLIN,
    RequestTimeout,
    bind_private,
    ipc_address,
    zmq_size_ceiling,
)


class AsyncReplies:
    """The REPLY envelopes of one ``zmq.asyncio`` socket, each handed to the coroutine
    waiting for its ``msg_id`` (`expect`). Replies no one waits for (late ones, after a
    timeout or a cancellation) are dropped, their ids kept in ``unclaimed`` for whoever
    owns what they refer to; invalid frames are dropped and counted in ``dropped``.

    No task reads the socket: while anyone waits, one receive future is pending on it,
    whose callback hands out what arrived (and whatever else is queued) and arms the next.
    A receive cancelled after its message arrived still hands it out: none is lost.
    Used from one event loop at a time; it does not own the socket.
    """

    def __init__(self, sock: zmq.asyncio.Socket, limit: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.sock = sock
        self.limit = limit
        self.dropped = 0
        self.unclaimed: list[bytes] = []
        self._waiting: dict[bytes, asyncio.Future[Any]] = {}
        self._recv: asyncio.Future[list[bytes]] | None = None
        self._closed = False
        # A non-owning synchronous view of the same socket, to take what is queued behind
        # the message a receive future got, without a future each.
        self._sync: zmq.Socket[Any] = zmq.Socket.shadow(sock.underlying)

    def expect(self, msg_id: bytes) -> asyncio.Future[Any]:
        """Return the future of the reply to ``msg_id``, which gets its REPLY `Envelope`
        (call it before the request is out, so that no reply can come first); `forget` it
        when done, whatever happened. Its owner may settle it otherwise first (a reply
        found elsewhere, a timeout): a reply arriving after that is unclaimed."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = fut
        if self._recv is None:
            self._arm()
        return fut

    def forget(self, msg_id: bytes) -> None:
        """Stop waiting for ``msg_id``; the socket is no longer read once no one waits."""
        fut = self._waiting.pop(msg_id, None)
        if fut is not None and not fut.done():
            fut.cancel()
        if not self._waiting and self._recv is not None:
            self._recv.cancel()  # a message it already got is still handed out
            self._recv = None

    @property
    def waiting(self) -> int:
        """How many replies are awaited."""
        return len(self._waiting)

    def _arm(self) -> None:
        recv = cast("asyncio.Future[list[bytes]]", self.sock.recv_multipart())
        self._recv = recv
        recv.add_done_callback(self._received)

    def _received(self, recv: asyncio.Future[list[bytes]]) -> None:
        if recv is self._recv:
            self._recv = None
        if recv.cancelled() or self._closed:
            return  # closed: the socket must not be touched again
        exc = recv.exception()
        if exc is not None:
            # The socket failed under the waiters (closed by another thread, its context
            # terminated): they learn it now rather than at their timeouts.
            self._fail_waiters(MailboxError(f"the reply socket failed: {exc}"))
            return
        self._dispatch(recv.result())
        sock = self._sync
        while cast(int, sock.getsockopt(EVENTS)) & POLLIN:
            self._dispatch(sock.recv_multipart(NOBLOCK))
        if self._waiting and self._recv is None:
            self._arm()

    def _dispatch(self, frames: list[bytes]) -> None:
        try:
            env = decode(frames, limit=self.limit)
        except (ProtocolError, PayloadTooLarge):
            self.dropped += 1
            return
        if env.kind is not Kind.REPLY:
            self.dropped += 1
            return
        fut = self._waiting.pop(env.msg_id, None)
        if fut is None or fut.done():
            self.unclaimed.append(env.msg_id)
        else:
            fut.set_result(env)

    def _fail_waiters(self, exc: BaseException) -> None:
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                try:
                    fut.set_exception(exc)
                except RuntimeError:
                    pass  # its loop is closed: no one waits

    def fail_all(self, exc: BaseException) -> None:
        """End every wait with ``exc`` (the socket is closing) and stop reading."""
        self._closed = True
        self._fail_waiters(exc)
        if self._recv is not None:
            try:
                self._recv.cancel()
            except RuntimeError:
                pass  # its loop is already closed
            self._recv = None


class AsyncInbox:
    """A bound PULL socket on a ``zmq.asyncio`` context whose REPLY envelopes go to the
    coroutines awaiting them (`replies`).

    Args:
        ctx: an asyncio context (``zmq.asyncio.Context.shadow`` of the process's one).
        path: the socket file to bind (made 0600).
        limit: the largest accepted payload in bytes.
    """

    def __init__(self, ctx: zmq.asyncio.Context, path: str,
                 limit: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.path = path
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, zmq_size_ceiling(limit))
        bind_private(self.sock, path)
        self.replies = AsyncReplies(self.sock, limit)

    def close(self, exc: BaseException) -> None:
        """End every wait with ``exc``, close the socket and remove its file."""
        self.replies.fail_all(exc)
        self.sock.close(linger=0)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class AsyncRequester:
    """A DEALER connected to a ROUTER inbox, for asyncio: any number of requests in flight
    at once on one socket, each reply matched to its request by ``msg_id``.

    Args:
        ctx: an asyncio context.
        path: the ROUTER's socket file.
        limit: the largest accepted payload in bytes.
    """

    def __init__(self, ctx: zmq.asyncio.Context, path: str,
                 limit: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.limit = limit
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 10)
        self.sock.connect(ipc_address(path))
        self.replies = AsyncReplies(self.sock, limit)

    async def request(self, payload: Any, timeout: float,
                      alive: Callable[[], bool] | None = None) -> Any:
        """Send ``payload`` as a CALL and return the payload of its REPLY.

        Args:
            alive: checked every `ALIVE_CHECK_S` while waiting: a peer known dead ends the
                wait at once (with `RequestTimeout`) instead of at ``timeout``.

        Raises:
            RequestTimeout: no reply within ``timeout`` seconds, or ``alive()`` said no.
        """
        msg_id = new_msg_id()
        frames = encode(Envelope(Kind.CALL, msg_id, b"", payload), limit=self.limit)
        fut = self.replies.expect(msg_id)
        try:
            # A DEALER queues up to its high-water mark without blocking (then this waits).
            await self.sock.send_multipart(frames)
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeout(f"no reply within {timeout:g} s")
                step = remaining if alive is None else min(remaining, ALIVE_CHECK_S)
                await asyncio.wait((fut,), timeout=step)
                if fut.done():
                    return fut.result().payload
                if alive is not None and not alive():
                    raise RequestTimeout("the peer went away")
        finally:
            self.replies.forget(msg_id)
            self.replies.unclaimed.clear()  # late replies to requests that gave up: dropped

    @property
    def dropped(self) -> int:
        """Invalid replies seen and dropped."""
        return self.replies.dropped

    def close(self, exc: BaseException) -> None:
        """End every wait with ``exc`` and close the socket."""
        self.replies.fail_all(exc)
        self.sock.close(linger=0)
