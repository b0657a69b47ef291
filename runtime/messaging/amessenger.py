"""The message path of `messenger` for asyncio code, without a thread per call.

The same protocol as `Messenger` (see its module docstring): a message is acknowledged
by its commit to the target's LMDB mailbox, then the agent is rung; a call's reply comes
back as a ring carrying the committed reply. What differs is who waits:

    acall ─┐ queued    ┌─ one LMDB transaction at the loop's next turn (inline: short)
    acall ─┼──────────▶┤    (group commit of every append queued meanwhile)
    acast ─┘           └─ then each agent is rung
    replies ◀── one PULL inbox per event loop (zmq.asyncio) ◀── reply rings, routed by
                msg_id to the coroutine awaiting each (a reader task runs while any waits)

A waiting call holds no thread: 200 calls in flight are 200 futures. As in the sync
path, calls that hear nothing for `REPLY_RECHECK_S` are checked in LMDB (a ring may have
been lost; the agent may have left the tree): all of them in one transaction.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Iterable
from typing import Any

import zmq.asyncio

from beamish.mailbox import AsyncInbox, MailboxError, new_msg_id, pack, unpack

from .._types import ACCEPTS_MESSAGES
from .._validation import check_name, check_timeout
from ..errors import BeamishError, CallTimeout, NodeNotRunning
from ..store.protocol import Txn
from ..store.records import AgentRecord, Message, Reply, ReplyError
from ..store.writegate import WriteLane
from .messenger import (
    INLINE_RING_BYTES,
    REPLY_RECHECK_S,
    Messenger,
    _Append,
    _GroupAppender,
    _own_copy,
    encode_message,
    hint_node,
    raise_gone,
    raise_reply_error,
)
from .wire import parse_reply_ring, ring_frame


def closed_error(dir: str) -> NodeNotRunning:
    """The error of a call made (or still waiting) on a closed connection."""
    return NodeNotRunning(f"this connection to the node on {dir!r} is closed (a message whose "
                          "call or cast had returned or was waiting for its reply is still "
                          "in its mailbox); connect() again")


class _Waiting:
    """A call waiting for its reply: ``reply`` gets the ring's `Envelope`, or the `Reply`
    a recheck found in LMDB, or the call's error."""

    __slots__ = ("name", "msg_id", "timeout", "deadline", "sent", "reply")

    def __init__(self, name: str, msg_id: bytes, timeout: float, sent: float,
                 reply: asyncio.Future[Any]) -> None:
        self.name = name
        self.msg_id = msg_id
        self.timeout = timeout
        self.sent = sent  # on the loop's clock
        self.deadline = sent + timeout
        self.reply = reply


class AsyncMessenger:
    """Calls and casts for the coroutines of one event loop, sharing a `Messenger`'s store,
    doorbells and limits. Created and used in that loop only (`Node` keeps one per loop).

    Args:
        messenger: the connection's synchronous messenger.
    """

    def __init__(self, messenger: Messenger) -> None:
        self.messenger = messenger
        self.paths = messenger.paths
        self.store = messenger.store
        self.limit = messenger.limit
        self.ctx = zmq.asyncio.Context.shadow(messenger.ctx)
        self.inbox_path = self.paths.client_inbox(os.urandom(8).hex())
        self._inbox: AsyncInbox | None = None
        # Appends waiting for the loop's next turn, committed together (`_commit`).
        self._queue: list[tuple[_Append, asyncio.Future[None]]] = []
        self._flush: asyncio.Handle | None = None
        # The calls waiting for their reply, by msg_id, and the next recheck of LMDB.
        self._calls: dict[bytes, _Waiting] = {}
        self._recheck_at: asyncio.TimerHandle | None = None
        # Replies taken from their ring (or late and unclaimed), still to be deleted from
        # LMDB: in the next group commit, as the sync path does.
        self._taken: list[bytes] = []
        self.closed = False

    def _bound(self) -> AsyncInbox:
        if self.closed:
            raise closed_error(self.paths.dir)
        if self._inbox is None:
            self._inbox = AsyncInbox(self.ctx, self.inbox_path)
        return self._inbox

    async def _append(self, name: str, message: Message) -> None:
        """Commit ``message`` to ``name``'s mailbox with the other appends of this turn of
        the loop, then ring the agent. Cancelled before its commit, it is not sent."""
        if self.closed:
            raise closed_error(self.paths.dir)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((_Append(name, pack(message.to_wire()), [], message.kind == "call"),
                            done))
        if self._flush is None:
            self._flush = loop.call_soon(self._commit)
        await done

    def _commit(self) -> None:
        self._flush = None
        queued = [(item, done) for item, done in self._queue if not done.done()]
        self._queue = []
        if not queued:
            return
        group = [item for item, _ in queued]
        if self._inbox is not None:
            self._taken += self._inbox.replies.unclaimed
            self._inbox.replies.unclaimed = []
        group[0].taken, self._taken = self._taken, []
        try:
            # A call's commit goes ahead of casts' under contention; casts do not yield
            # here (that would block the event loop).
            lane = WriteLane.URGENT if any(i.urgent for i in group) else WriteLane.PLAIN
            self.store.write_in_lane(lambda t: _GroupAppender._commit(t, group), lane)
        except BaseException as exc:
            # Nothing was committed: not one of them was sent.
            self._taken = group[0].taken + self._taken
            for _, done in queued:
                done.set_exception(_own_copy(exc))
            if isinstance(exc, Exception):
                return
            raise
        woke = False
        rings = self.messenger.doorbells
        for item, done in queued:
            if item.error is not None:
                done.set_exception(item.error)
                continue
            assert item.route is not None
            if item.asleep:
                woke = True  # no process to ring: the node wakes it
            else:
                agent_id, seq = item.route
                inline = item.packed if len(item.packed) <= INLINE_RING_BYTES else b""
                rings.ring(self.messenger._inbox(agent_id), ring_frame(seq, inline))
            done.set_result(None)
        if woke:
            hint_node(self.paths)

    async def cast(self, name: str, msg: Any) -> None:
        """`Messenger.cast` as a coroutine: returns once ``msg`` is committed."""
        check_name(name)
        payload = encode_message(msg, self.limit, name)
        await self._append(name, Message("cast", payload, time.time()))

    async def cast_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """`Messenger.cast_many`: one commit, inline (it is one transaction already)."""
        if self.closed:
            raise closed_error(self.paths.dir)
        self.messenger.cast_many(items)

    async def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """`Messenger.call` as a coroutine: no thread waits for the reply.

        Raises:
            CallTimeout: no reply within ``timeout`` (the message is still handled later).
            ConfigError: ``timeout`` is not a number > 0 (``math.inf`` waits forever).
            AgentNotFound, RemoteError, MessageTooLarge, BadMessage.
            NodeNotRunning: the connection was closed (before or while it waited).
        """
        check_name(name)
        timeout = check_timeout(timeout, allow_inf=True)
        payload = encode_message(msg, self.limit, name)
        replies = self._bound().replies
        loop = asyncio.get_running_loop()
        msg_id = new_msg_id()
        waiting = _Waiting(name, msg_id, timeout, loop.time(),
                           replies.expect(msg_id))  # before the message is out
        try:
            await self._append(name, Message.call(payload, msg_id, self.inbox_path,
                                                  time.time() + timeout, time=time.time()))
            self._calls[msg_id] = waiting
            if self._recheck_at is None:
                self._recheck_at = loop.call_later(REPLY_RECHECK_S, self._recheck)
            at_deadline = (loop.call_at(waiting.deadline, self._check, [waiting], True)
                           if timeout != math.inf else None)
            try:
                while True:
                    got = await waiting.reply
                    if isinstance(got, Reply):
                        reply = got  # found in LMDB by a recheck
                        break
                    ring = parse_reply_ring(got)
                    if ring is not None and ring.msg_id == msg_id:
                        reply = Reply.from_wire(ring.reply)  # the committed reply
                        self._taken.append(msg_id)
                        break
                    waiting.reply = replies.expect(msg_id)  # not a reply: wait on
            finally:
                if at_deadline is not None:
                    at_deadline.cancel()
        except MailboxError as exc:
            raise NodeNotRunning(f"the reply socket of this connection to {self.paths.dir!r} "
                                 f"failed ({exc}); the call stays in its mailbox; connect() "
                                 "again") from exc
        finally:
            replies.forget(msg_id)
            self._calls.pop(msg_id, None)
        if reply.ok:
            return unpack(reply.value)
        raise_reply_error(name, reply.error or ReplyError("Error", ""))

    def _recheck(self) -> None:
        """Every `REPLY_RECHECK_S` while calls wait: read LMDB for those still without a
        ring, all in one transaction (what the sync path does per call when it hears
        nothing: a reply whose ring was lost, an agent that left the tree)."""
        self._recheck_at = None
        if not self._calls or self.closed:
            return
        loop = asyncio.get_running_loop()
        since = loop.time() - REPLY_RECHECK_S
        due = [w for w in self._calls.values() if w.sent <= since and not w.reply.done()]
        if due:
            self._check(due, False)
        self._recheck_at = loop.call_later(REPLY_RECHECK_S, self._recheck)

    def _check(self, due: list[_Waiting], at_deadline: bool) -> None:
        """Settle the calls of ``due`` that LMDB can: a committed reply, an agent gone;
        ``at_deadline``: the others time out."""
        due = [w for w in due if not w.reply.done()]
        if not due or self.closed:
            return

        def read(t: Txn) -> list[tuple[Reply | None, AgentRecord | None]]:
            records: dict[str, AgentRecord | None] = {}
            found = []
            for w in due:
                if w.name not in records:
                    records[w.name] = t.get_agent(w.name)
                found.append((t.pop_reply(w.msg_id), records[w.name]))
            return found
        try:
            found = self.store.write(read)
        except Exception as exc:  # the store failed: these calls fail with it
            for w in due:
                w.reply.set_exception(_own_copy(exc))
            return
        for w, (reply, rec) in zip(due, found, strict=True):
            if reply is not None:
                w.reply.set_result(reply)
            elif rec is None or rec.status not in ACCEPTS_MESSAGES:
                try:
                    raise_gone(w.name, rec)
                except BeamishError as exc:
                    w.reply.set_exception(exc)
            elif at_deadline:
                w.reply.set_exception(CallTimeout(w.name, w.timeout))

    @property
    def dropped(self) -> int:
        """Invalid frames the reply inbox dropped."""
        return self._inbox.replies.dropped if self._inbox is not None else 0

    def close(self) -> None:
        """Close the reply inbox: waiting calls end with `NodeNotRunning`, appends not yet
        committed are not sent. Call it from the loop's thread, or once the loop is done."""
        if self.closed:
            return
        self.closed = True
        error = closed_error(self.paths.dir)
        queued, self._queue = self._queue, []
        for _, done in queued:
            if not done.done():
                try:
                    done.set_exception(error)
                except RuntimeError:
                    pass  # its loop is closed: no one waits
        for handle in (self._flush, self._recheck_at):
            if handle is not None:
                handle.cancel()
        self._flush = self._recheck_at = None
        if self._inbox is not None:
            self._taken += self._inbox.replies.unclaimed
            self._inbox.close(error)
        if self._taken:
            taken, self._taken = self._taken, []

            def delete(t: Any) -> None:
                for msg_id in taken:
                    t.delete_reply(msg_id)
            self.store.write(delete)
