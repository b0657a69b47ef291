"""The node's committer: its replicated agents' reads and commits, on two connections
for all of them (``agent/nodestore.py`` is the agents' side; the rules are
``cluster/commits.py``).

    agents (DEALER) ──ipc──▶ ROUTER (io thread) ─┬─▶ write sets ─▶ committer thread:
                                                 │     every set queued meanwhile,
                                                 │     one transaction (write_group)
                                                 └─▶ reads ─▶ reader thread: every read
                                                       queued meanwhile, one snapshot
        answers ◀── io thread ◀── inproc PUSH/PULL ◀── committer, reader

* Each set is committed under its own agent's fence (`PgStore.write_group`: the shards'
  rows read ``FOR SHARE`` in the transaction), and only if this node still holds that
  grant (`commits.decide`); one set's own failure rolls back that set alone (a
  savepoint); its agent gets its own answer.
* A group cut off in flight (`CommitOutcomeUnknown`) is settled by the writer row
  (`PgStore.commit_outcome`), retried while the server is away for up to
  `SETTLE_S`: each set is answered committed, not committed, or still in doubt (its
  agent then ends without acknowledging anything).
* A node that fences itself (`fence`) drops the queued sets unanswered and answers no
  set until it holds shards again: its agents are being killed.
* Bounded: the ROUTER's queue holds `HWM` requests; each agent thread has one request
  out at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from ..cluster.commits import Decision, SetFence, Unknown, after_unknown, decide
from ..errors import CommitOutcomeUnknown, StaleEpoch, StoreError, StoreUnavailable
from ..store.postgres.agents import PgStore
from ..store.postgres.fencing import Fence, GroupItem
from ..store.protocol import Txn
from ..store.shipped import (
    READ_OPS,
    WRITE_OPS,
    Op,
    WriteSet,
    check_ops,
    dumps,
    error_wire,
    loads,
    replay,
)

log = logging.getLogger("beamish.cluster")

HWM = 10_000
SETTLE_S = 10.0  # how long a cut-off group's outcome is asked for before "in doubt"
_ANSWERS = "inproc://beamish-commits-answers"


@dataclass(slots=True)
class _Request:
    ident: bytes
    rid: bytes
    payload: Any


class NodeCommitter:
    """Serves the node's replicated agents' store requests (see the module docstring).

    Args:
        path: the ipc socket's path (``run/commits.sock`` of the node dir).
        open_store: opens an unfenced `PgStore` (called twice: the committer's and the
            reader's connections).
        node: this node's name.
        granted: the epoch at which this node holds a shard now (None: not held).
        fenced: whether this node is fenced now.
    """

    def __init__(self, path: str, open_store: Callable[[], PgStore], node: str,
                 granted: Callable[[int], int | None], fenced: Callable[[], bool]) -> None:
        self.address = "ipc://" + path
        self.node = node
        self._granted = granted
        self._fenced = fenced
        self.writer = open_store()
        self.reader = open_store()
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.RCVHWM, HWM)
        self._router.setsockopt(zmq.SNDHWM, HWM)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.bind(self.address)
        self._answers = self._ctx.socket(zmq.PULL)
        self._answers.bind(_ANSWERS)
        self._cond = threading.Condition()
        self._writes: list[_Request] = []
        self._reads: list[_Request] = []
        self._stopping = False
        self.groups = 0  # transactions committed (for tests and stats)
        self.sets = 0  # sets committed
        self._threads = [threading.Thread(target=self._guard(fn), name=name, daemon=True)
                         for fn, name in ((self._io, "beamish-commits-io"),
                                          (self._commit_loop, "beamish-commits"),
                                          (self._read_loop, "beamish-commits-read"))]

    def start(self) -> None:
        """Start serving."""
        for t in self._threads:
            t.start()

    def close(self) -> None:
        """Stop serving (queued requests stay unanswered) and close the connections."""
        with self._cond:
            self._stopping = True
            self._writes.clear()
            self._reads.clear()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5.0)
        self._ctx.destroy(linger=0)
        self.writer.close()
        self.reader.close()

    def fence(self) -> None:
        """The node fenced itself: drop the queued sets, unanswered (quick)."""
        with self._cond:
            dropped = len(self._writes)
            self._writes.clear()
        if dropped:
            log.warning("node %s fenced: %d queued commit(s) of its agents dropped, "
                        "unanswered", self.node, dropped)

    # -- threads ---------------------------------------------------------------------------
    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stopping:
                try:
                    fn()
                    return
                except zmq.ContextTerminated:
                    return
                except Exception:  # a bug must not end the thread while agents wait
                    log.exception("node committer: %s failed (restarted)", fn.__name__)
                    time.sleep(0.1)
        return run

    def _io(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._answers, zmq.POLLIN)
        while not self._stopping:
            events = dict(poller.poll(200))
            if self._answers in events:
                while self._answers.poll(0):
                    self._router.send_multipart(self._answers.recv_multipart(),
                                                zmq.NOBLOCK)
            if self._router in events:
                self._take_requests()

    def _take_requests(self) -> None:
        writes: list[_Request] = []
        reads: list[_Request] = []
        while self._router.poll(0):
            frames = self._router.recv_multipart()
            if len(frames) != 4 or frames[1] not in (b"R", b"W"):
                continue  # not an agent's request: dropped
            ident, kind, rid, body = frames
            try:
                payload = loads(body)
                if kind == b"W":
                    if not isinstance(payload, WriteSet):
                        raise StoreError("a commit request holds no write set")
                    check_ops(payload.ops, WRITE_OPS)
                else:
                    check_ops(payload, READ_OPS)
            except StoreError as exc:
                self._router.send_multipart(_error_frames(ident, rid, exc), zmq.NOBLOCK)
                continue
            (writes if kind == b"W" else reads).append(_Request(ident, rid, payload))
        if writes or reads:
            with self._cond:
                self._writes.extend(writes)
                self._reads.extend(reads)
                self._cond.notify_all()

    def _take(self, queue: str) -> list[_Request]:
        with self._cond:
            while not self._stopping and not getattr(self, queue):
                self._cond.wait()
            taken: list[_Request] = getattr(self, queue)
            setattr(self, queue, [])
            return taken

    def _commit_loop(self) -> None:
        out = self._ctx.socket(zmq.PUSH)
        out.connect(_ANSWERS)
        try:
            while not self._stopping:
                group = self._take("_writes")
                for frames in self.commit_group(group):
                    out.send_multipart(frames)
        finally:
            out.close(linger=0)

    def _read_loop(self) -> None:
        out = self._ctx.socket(zmq.PUSH)
        out.connect(_ANSWERS)
        try:
            while not self._stopping:
                reads = self._take("_reads")
                for frames in self._read_group(reads):
                    out.send_multipart(frames)
        finally:
            out.close(linger=0)

    # -- the work --------------------------------------------------------------------------
    def commit_group(self, requests: list[_Request]) -> list[list[bytes]]:
        """Commit ``requests``' sets in one transaction; return their answers' frames
        (none for a set dropped by a fenced node)."""
        fenced = self._fenced()
        answers: list[list[bytes]] = []
        todo: list[_Request] = []
        for req in requests:
            ws: WriteSet = req.payload
            verdict = decide(SetFence(ws.shard, ws.node, ws.epoch), self.node,
                             self._granted(ws.shard), fenced)
            if verdict is Decision.COMMIT:
                todo.append(req)
            elif verdict is Decision.STALE:
                answers.append(_error_frames(req.ident, req.rid, StaleEpoch(
                    ws.shard, ws.node, ws.epoch, None, None)))
        if not todo:
            return answers
        ran: dict[int, bool] = {}  # item -> its function returned, in the latest pass
        items = [GroupItem(_item_fn(i, r.payload.ops, ran),
                           (Fence(r.payload.shard, r.payload.node, r.payload.epoch),))
                 for i, r in enumerate(todo)]
        try:
            results = self.writer.write_group(items)
        except CommitOutcomeUnknown as exc:
            return answers + self._settle(todo, exc, ran)
        except StoreError as exc:  # StoreUnavailable and the like: nothing committed
            return answers + [_error_frames(r.ident, r.rid, exc) for r in todo]
        with self._cond:
            dropped = self._stopping
        if dropped:
            return answers
        self.groups += 1
        for req, res in zip(todo, results, strict=True):
            if res.ok:
                self.sets += 1
                answers.append(_value_frames(req.ident, req.rid, res.value))
            else:
                assert res.error is not None
                answers.append(_error_frames(req.ident, req.rid, res.error))
        return answers

    def _settle(self, todo: list[_Request], exc: CommitOutcomeUnknown,
                ran: dict[int, bool]) -> list[list[bytes]]:
        """Answer a group whose commit was cut off, from its writer row."""
        outcome: bool | None = None
        deadline = time.monotonic() + SETTLE_S
        while True:
            try:
                outcome = self.writer.commit_outcome(exc.commit)
                break
            except StoreUnavailable:
                if time.monotonic() >= deadline or self._stopping:
                    break
                time.sleep(0.2)
        log.warning("node %s: a group commit of %d set(s) was cut off in flight; the "
                    "writer row says %s", self.node, len(todo),
                    {True: "committed", False: "not committed", None: "unknown"}[outcome])
        answers = []
        for i, req in enumerate(todo):
            verdict = after_unknown(outcome, not ran.get(i, False))
            if verdict is Unknown.COMMITTED:
                answers.append(_value_frames(req.ident, req.rid, ran_values(req)))
            elif verdict is Unknown.NOT_COMMITTED:
                answers.append(_error_frames(req.ident, req.rid, StoreUnavailable(
                    f"the commit was cut off and did not commit ({exc.detail})")))
            else:
                answers.append(_error_frames(req.ident, req.rid, exc))
        return answers

    def _read_group(self, reads: list[_Request]) -> list[list[bytes]]:
        """Run every read of ``reads`` in one snapshot; return their answers' frames."""
        def run(t: Txn) -> list[tuple[bool, Any]]:
            out: list[tuple[bool, Any]] = []
            for req in reads:
                out.append((True, replay(t, req.payload)))
            return out
        try:
            results = self.reader.read(run)
        except StoreError as exc:
            return [_error_frames(r.ident, r.rid, exc) for r in reads]
        return [_value_frames(r.ident, r.rid, values)
                for r, (_, values) in zip(reads, results, strict=True)]


def _item_fn(i: int, ops: tuple[Op, ...], ran: dict[int, bool]) -> Callable[[Txn], Any]:
    def fn(t: Txn) -> Any:
        ran[i] = False
        values = replay(t, ops)
        ran[i] = True
        return values
    return fn


def ran_values(req: _Request) -> list[Any]:
    """The values a set's writes are answered with when its group's outcome was settled
    after a cut-off commit (the values themselves were lost with the connection: the only
    write whose value an agent takes, ``delete_timer``, gets None)."""
    return [None] * len(req.payload.ops)


def _value_frames(ident: bytes, rid: bytes, values: Any) -> list[bytes]:
    return [ident, rid, b"1", dumps(values)]


def _error_frames(ident: bytes, rid: bytes, exc: BaseException) -> list[bytes]:
    return [ident, rid, b"0", dumps(error_wire(exc))]

