"""A replicated agent's store through its node (`NodeStore`): the agent holds no
PostgreSQL connection; its node's committer (``node/cluster_commits.py``) runs its reads
and commits them, many agents' sets in one transaction.

    agent: store.write(fn) ─ fn(recording txn) ─▶ WriteSet ──DEALER──▶ node's committer
           ◀── committed / StaleEpoch / its error / CommitOutcomeUnknown ──┘
           store.read(fn)  ─ fn(deferred txn)  ─▶ read ops, one snapshot ─▶ their values

* **Writes.** ``fn`` runs on a recording `Txn`: each write of `shipped.WRITE_OPS` is
  recorded (``delete_timer``'s value comes back after the commit), and the set is sent
  with the agent's fence; the answer is the commit, so the loop rings no caller before
  it. A function that reads inside its write, or calls a write whose value it needs at
  once (an append, a counter), cannot be shipped: it runs on the agent's own
  `PgStore` (``fallback``, opened on first need and kept: an agent that sends messages
  to other agents from its handlers, or skips a bad message, opens one).
* **Reads.** ``fn`` runs first on a deferred `Txn` whose calls return placeholders; if
  its value is built of those alone (one call, or a tuple or list of calls), the calls go
  to the node in one request and run in one snapshot. A function that looks at a value
  (compares, adds, takes an attribute: the placeholder raises) or returns anything else
  runs again with each call sent on its own (one snapshot per call). A function that
  only tests a value's identity (``is None``) and returns placeholders either way is not
  caught: none of beamish's agent-side reads does so.

The fence is the agent's grant (shard, node, epoch): the node commits the set only if it
still holds that grant and the shard's row says so in the commit's transaction.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import zmq

from ..errors import CommitOutcomeUnknown, StoreError, StoreUnavailable
from ..store.postgres.fencing import Fence
from ..store.protocol import Store, Txn
from ..store.shipped import READ_OPS, WRITE_OPS, Op, WriteSet, dumps, error_from_wire, loads
from ..store.writegate import WriteLane

T = TypeVar("T")

KIND_READ = b"R"
KIND_WRITE = b"W"
# How long an agent waits for its node's answer. Its node kills it when it fences itself
# (and drops its queued sets unanswered), and it dies with its node: an answer that does
# not come means a node that is stuck or paused. Every `GRANT_CHECK_S` without an answer
# the agent asks PostgreSQL itself whether its grant still holds (StaleEpoch if not: a
# paused node's agents stop soon after a takeover, as when they committed alone); after
# `ANSWER_TIMEOUT_S` it ends, acknowledging nothing. Well above the committer's own
# worst case (a connection attempt, then settling a cut-off commit: `SETTLE_S` there).
GRANT_CHECK_S = 3.0
ANSWER_TIMEOUT_S = 60.0


class _Touched(BaseException):
    """A deferred read's function looked at a placeholder's value (BaseException: a
    function's own ``except Exception`` does not swallow it)."""


class _Unrecordable(BaseException):
    """A write function called a method that cannot be shipped."""


class _Later:
    """The value of the ``i``-th call of a deferred read or recorded write (a
    placeholder: any use of it but returning it raises `_Touched`)."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        object.__setattr__(self, "i", i)

    def _touched(self, *args: Any, **kwargs: Any) -> Any:
        raise _Touched()

    __getattr__ = __setattr__ = __getitem__ = __iter__ = __len__ = __contains__ = _touched
    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _touched
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __index__ = __int__ = _touched
    __float__ = __str__ = __format__ = _touched


class _DeferredTxn:
    """A read-only `Txn` whose calls are recorded and answered later (`_Later`)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in READ_OPS:
            raise _Touched()  # not a plain read: run it call by call

        def call(*args: Any) -> _Later:
            self.ops.append(Op(name, args))
            return _Later(len(self.ops) - 1)
        return call


class _LiveTxn:
    """A read-only `Txn` whose every call is one request to the node."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in READ_OPS:
            raise StoreError(f"{name!r} is not a read: it cannot run in a read of a "
                             "replicated agent's store")

        def call(*args: Any) -> Any:
            return self.store._ask(KIND_READ, (Op(name, args),))[0]
        return call


class _RecordingTxn:
    """A write `Txn` that records the writes of `WRITE_OPS` (values: `_Later`)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in WRITE_OPS:
            raise _Unrecordable()

        def call(*args: Any) -> _Later:
            self.ops.append(Op(name, args))
            return _Later(len(self.ops) - 1)
        return call


def _resolve(value: Any, results: list[Any]) -> tuple[Any, bool]:
    """``value`` with its placeholders replaced by ``results``; and whether it was made
    of placeholders alone (a placeholder, or tuples and lists of such)."""
    if isinstance(value, _Later):
        return results[object.__getattribute__(value, "i")], True
    if isinstance(value, (tuple, list)):
        parts = [_resolve(v, results) for v in value]
        out = [p[0] for p in parts]
        return (tuple(out) if isinstance(value, tuple) else out), all(p[1] for p in parts)
    return value, False


def _has_later(value: Any) -> bool:
    if isinstance(value, _Later):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_later(v) for v in value)
    return False


class NodeStore:
    """The store of one replicated agent's process, through its node (implements
    `..store.protocol.Store`; see the module docstring).

    Args:
        address: the node committer's socket (``ipc://...``).
        fence: the agent's grant; every commit is fenced by it.
        ctx: the process's ZeroMQ context.
        fallback: opens the agent's own fenced `PgStore`, for the writes that cannot be
            shipped (called at most once, on first need).
    """

    def __init__(self, address: str, fence: Fence, ctx: zmq.Context[Any],
                 fallback: Callable[[], Store]) -> None:
        self.fence = fence
        self._open_fallback = fallback
        self._fallback: Store | None = None
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._sock = ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(address)
        self.shipped = 0  # commits sent to the node (for tests and stats)

    # -- the Store interface ------------------------------------------------------------
    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` on the agent's data through the node (see the module docstring).

        Raises:
            StoreError: the node could not run it (StoreUnavailable: the server is down).
        """
        deferred = _DeferredTxn()
        try:
            value = fn(deferred)
        except _Touched:
            pass
        else:
            if not deferred.ops:
                return value
            if _has_later(value):
                results = self._ask(KIND_READ, tuple(deferred.ops))
                resolved, pure = _resolve(value, results)
                if pure:
                    return resolved  # type: ignore[no-any-return]
        return fn(_LiveTxn(self))

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Commit what ``fn`` writes, through the node (see the module docstring); return
        its value once committed.

        Raises:
            StaleEpoch: the agent's grant no longer holds (nothing was committed).
            StoreUnavailable: nothing was committed.
            CommitOutcomeUnknown: the node could not tell whether it committed.
            StoreError: the commit was refused (nothing of it was committed).
        """
        recording = _RecordingTxn()
        try:
            value = fn(recording)
            if not recording.ops:
                return value
            results = self._ask(KIND_WRITE, WriteSet(self.fence.shard, self.fence.node,
                                                     self.fence.epoch, tuple(recording.ops)))
            self.shipped += 1
            return _resolve(value, results)[0]  # type: ignore[no-any-return]
        except (_Unrecordable, _Touched):
            return self._own().write(fn)

    def write_in_lane(self, fn: Callable[[Txn], T], lane: WriteLane) -> T:
        """`write` (the node's committer has one lane)."""
        return self.write(fn)

    def reader_check(self) -> int:
        """Nothing to release here. Returns 0."""
        return 0

    def close(self) -> None:
        """Close the socket to the node (and the agent's own connection, if opened)."""
        with self._lock:
            self._sock.close(linger=0)
            if self._fallback is not None:
                self._fallback.close()

    # -- the node ------------------------------------------------------------------------
    @property
    def has_own_connection(self) -> bool:
        """Whether this process opened its own connection (a write that could not be
        shipped)."""
        return self._fallback is not None

    def _own(self) -> Store:
        with self._lock:
            if self._fallback is None:
                self._fallback = self._open_fallback()
            return self._fallback

    def _ask(self, kind: bytes, payload: Any) -> list[Any]:
        """Send one request and wait for its answer: the operations' values.

        Raises:
            StoreError: the node's answer is an error (rebuilt with its type).
            StaleEpoch: no answer within `ANSWER_TIMEOUT_S`, and the agent's grant is
                gone (nothing of it was committed by this process after the takeover).
            CommitOutcomeUnknown: no answer to a write within `ANSWER_TIMEOUT_S` (it may
                be committed or not; StoreUnavailable for a read).
        """
        with self._lock:
            rid = next(self._ids).to_bytes(8, "big")
            self._sock.send_multipart([kind, rid, dumps(payload)])
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while time.monotonic() < deadline:
                if not self._sock.poll(int(GRANT_CHECK_S * 1000)):
                    self._own().write(lambda t: None)  # StaleEpoch if the grant is gone
                    continue
                frames = self._sock.recv_multipart()
                if len(frames) == 3 and frames[0] == rid:
                    return self._answer(frames)
                # else: the answer of a request given up before; dropped
        why = f"the node did not answer within {ANSWER_TIMEOUT_S:g} s"
        if kind == KIND_READ:
            raise StoreUnavailable(why)
        raise CommitOutcomeUnknown(-1, why)

    @staticmethod
    def _answer(frames: list[bytes]) -> list[Any]:
        ok, body = frames[1] == b"1", loads(frames[2])
        if ok:
            return list(body)
        kind_name, args = body
        raise error_from_wire(kind_name, tuple(args))
