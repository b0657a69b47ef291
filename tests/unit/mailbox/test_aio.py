"""The asyncio sockets (`AsyncInbox`, `AsyncRequester`) over real ipc:// sockets, without a
node: replies reach the coroutine awaiting their msg_id, whatever the order; late and
invalid ones are dropped and counted; nothing is read, and no receive is pending, once
no one waits; closing fails the waiters."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator

import pytest
import zmq
import zmq.asyncio

from beamish.mailbox import (
    AsyncInbox,
    AsyncRequester,
    Envelope,
    Inbox,
    Kind,
    RequestTimeout,
    encode_ring,
    pack,
)


@pytest.fixture
def sock_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="aio-", dir="/tmp")
    yield d
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


def _ring(msg_id: bytes, value: object) -> bytes:
    return encode_ring(Kind.REPLY, msg_id, pack(value))


def test_replies_reach_their_waiters_in_any_order_and_late_ones_are_unclaimed(sock_dir):
    async def go() -> None:
        ctx = zmq.asyncio.Context()
        inbox = AsyncInbox(ctx, os.path.join(sock_dir, "in.sock"))
        push = ctx.socket(zmq.PUSH)
        push.connect("ipc://" + inbox.path)
        replies = inbox.replies
        ids = [bytes([i]) * 16 for i in range(50)]
        futures = [replies.expect(i) for i in ids]
        for i in reversed(ids):
            await push.send(_ring(i, {"for": i}))
        await push.send(b"not a frame")  # dropped, counted
        await push.send(encode_ring(Kind.RING, b"", b""))  # not a reply: dropped too
        got = await asyncio.gather(*futures)
        assert [env.payload["for"] for env in got] == ids
        for i in ids:
            replies.forget(i)
        assert replies.waiting == 0 and replies._recv is None  # nothing read any more
        late = b"L" * 16
        await push.send(_ring(late, {}))
        fut = replies.expect(b"N" * 16)  # reading again: the late one is taken, unclaimed
        while late not in replies.unclaimed:
            await asyncio.sleep(0.001)
        assert not fut.done()
        replies.forget(b"N" * 16)
        assert fut.cancelled() and replies.dropped == 2
        push.close(linger=0)
        inbox.close(RuntimeError("closed"))
        assert not os.path.exists(inbox.path)
        ctx.term()
    asyncio.run(go())


def test_closing_fails_every_waiter_with_the_given_error(sock_dir):
    async def go() -> None:
        ctx = zmq.asyncio.Context()
        inbox = AsyncInbox(ctx, os.path.join(sock_dir, "in.sock"))
        futures = [inbox.replies.expect(bytes([i]) * 16) for i in range(3)]
        inbox.close(ConnectionError("closed under them"))
        for fut in futures:
            with pytest.raises(ConnectionError, match="closed under them"):
                await fut
        ctx.term()
    asyncio.run(go())


def test_requester_multiplexes_requests_and_times_out_each_alone(sock_dir):
    """Three requests in flight on one DEALER, answered in reverse order; one never
    answered times out alone, one whose peer is said dead ends at its next alive check."""
    path = os.path.join(sock_dir, "router.sock")

    async def go() -> None:
        ctx = zmq.asyncio.Context()
        router = Inbox(zmq.Context.shadow(ctx), path, router=True)
        req = AsyncRequester(ctx, path)
        calls = [asyncio.ensure_future(req.request({"n": n}, 10.0)) for n in range(3)]
        held: list[tuple[bytes, Envelope]] = []
        while len(held) < 3:
            await asyncio.sleep(0.005)
            held += router.drain()
        for ident, env in reversed(held):
            router.reply(ident, Envelope(Kind.REPLY, env.msg_id, b"", {"got": env.payload}))
        assert [r["got"]["n"] for r in await asyncio.gather(*calls)] == [0, 1, 2]
        with pytest.raises(RequestTimeout):
            await req.request("unanswered", 0.2)
        with pytest.raises(RequestTimeout, match="went away"):
            await req.request("unanswered", 30.0, alive=lambda: False)
        assert req.replies.waiting == 0
        # The late replies to those two are dropped by msg_id, not taken for a new request.
        call = asyncio.ensure_future(req.request("fresh", 10.0))
        answered = False
        while not answered:
            await asyncio.sleep(0.005)
            for ident, env in router.drain():
                answered = env.payload == "fresh"
                value = "fresh" if answered else "late"
                router.reply(ident, Envelope(Kind.REPLY, env.msg_id, b"", value))
        assert await call == "fresh"
        req.close(RuntimeError("closed"))
        router.close()
        ctx.term()
    asyncio.run(go())


def test_encode_errors_come_before_anything_waits(sock_dir):
    async def go() -> None:
        ctx = zmq.asyncio.Context()
        req = AsyncRequester(ctx, os.path.join(sock_dir, "nobody.sock"))
        with pytest.raises(TypeError):
            await req.request({"bad": object()}, 1.0)
        assert req.replies.waiting == 0
        req.close(RuntimeError("closed"))
        ctx.term()
    asyncio.run(go())
