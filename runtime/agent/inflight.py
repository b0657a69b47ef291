"""Which message an agent is handling, readable after it dies without a word.

A small shared file mapping per agent (``run/a<id>.busy``): the agent writes the seq
of the message it starts and clears it when the handler returns. Writes to a MAP_SHARED mapping
land in the page cache, so they survive SIGKILL, a segfault or an OOM kill; the node
reads the file after the exit to tell "killed while handling message N" from "killed
while idle" (and so which message's attempt count to raise). It costs a memory write per
message, no system call.

A handler's return is not the end of an attempt: its result waits for the group commit
(see ``loop._Group``). The file also holds the first and last messages whose handlers
returned and whose results are not committed yet, so a death in that window (a native
destructor that crashes once the message is dropped, a kill between two handlers of a
group) still counts as an attempt at them.

It also holds the agent's handler latency histogram (`Latency`: fixed buckets, their sum),
for the node's metrics: counted as each handler returns, published at each group commit
(the sum and the buckets the group touched), so it counts exactly the committed messages;
the node reads it at scrape time (`read_latency`) and after an exit (carried over to the
agent's next process).
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
import time
from dataclasses import dataclass

# seq being handled (0: idle), incarnation, start (ns), ready, and the first and last seqs
# whose handlers returned but whose results are not committed yet (0: none), and how many
# frames its sockets dropped
_REC = struct.Struct(">QQQQQQQ")
_DROPPED, _DROPPED_AT = struct.Struct(">Q"), 48
TIMER_SEQ = (1 << 64) - 1  # "handling a timer or info message", not a mailbox message

LATENCY_BOUNDS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0)
"""The upper bounds (seconds, inclusive) of the handler latency buckets; one more bucket
holds the slower ones. From 100 µs (an in-memory handler) to a minute (a model call)."""
_BOUNDS_NS = tuple(round(b * 1e9) for b in LATENCY_BOUNDS_S)
# A latency's bucket without a search (this runs per message): the bounds are at least 2x
# apart and none is a power of 2, so the values of one bit length [2^(b-1), 2^b) hold at
# most one bound; its bucket is the first bucket of its bit length, or the next one.
_FIRST_BUCKET = tuple(bisect.bisect_left(_BOUNDS_NS, 1 << bits >> 1) for bits in range(65))
_BOUNDS_PAST = (*_BOUNDS_NS, 1 << 64)  # a bound for the last bucket, never exceeded


def bucket_of(ns: int) -> int:
    """The index of the latency bucket of ``ns`` nanoseconds (pure; `LATENCY_BOUNDS_S`
    are inclusive upper bounds, the last bucket holds the slower ones)."""
    bucket = _FIRST_BUCKET[ns.bit_length()]
    return bucket + 1 if ns > _BOUNDS_PAST[bucket] else bucket


# After the marker: the latencies' sum (ns), then a count per bucket (the last: +Inf), in
# this machine's byte order: the agent sets the words that changed in place (a memoryview;
# each an aligned 8-byte store), and only the node on this machine reads them.
_HIST, _HIST_AT = struct.Struct("=" + "Q" * (len(LATENCY_BOUNDS_S) + 2)), _REC.size
_SIZE = _REC.size + _HIST.size


class InFlight:
    """The agent's side: mark the message being handled, then the handled messages that
    wait for their commit.

    Args:
        path: the agent's ``.busy`` file.
        incarnation: written beside the seq so a stale file is recognised.
    """

    def __init__(self, path: str, incarnation: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Written, not only truncated: the page then exists, and a full filesystem is
            # an OSError here rather than a SIGBUS at the first write to the mapping.
            os.pwrite(fd, bytes(_SIZE), 0)
            self.map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        self.incarnation = incarnation
        self.ready = 0
        self.seq = self.start = self.first = self.last = self.dropped = 0
        self.returned_at = 0  # when the last handler returned (CLOCK_MONOTONIC, ns)
        # The returned handlers' latencies: their sum (ns) and a count per bucket, written
        # to the file at each commit (when they are all committed): the sum and the
        # buckets touched since the last one.
        self.latency_ns = 0
        self.buckets = [0] * (len(_BOUNDS_NS) + 1)
        self.touched: set[int] = set()
        self.histogram = memoryview(self.map)[_HIST_AT:].cast("Q")
        self._write()

    def _write(self) -> None:
        _REC.pack_into(self.map, 0, self.seq, self.incarnation, self.start, self.ready,
                       self.first, self.last, self.dropped)

    def mark(self, seq: int) -> None:
        """Record that message ``seq`` is being handled, from now (CLOCK_MONOTONIC)."""
        self.seq, self.start = seq, time.monotonic_ns()
        self._write()

    def returned(self) -> None:
        """Record that the marked message's handler returned: its result now waits for
        the group's commit (`committed`); its latency is counted (published then)."""
        self.returned_at = now = time.monotonic_ns()
        took = now - self.start
        bucket = _FIRST_BUCKET[took.bit_length()]  # bucket_of, inlined (per message)
        if took > _BOUNDS_PAST[bucket]:
            bucket += 1
        self.buckets[bucket] += 1
        self.touched.add(bucket)
        self.latency_ns += took
        self.first = self.first or self.seq
        self.last = self.seq
        self.seq = self.start = 0
        self._write()

    def committed(self) -> None:
        """Record that every handled message's result is committed, and publish the
        latency histogram, which now counts them."""
        self.first = self.last = 0
        self._write()
        histogram, buckets = self.histogram, self.buckets
        histogram[0] = self.latency_ns
        for bucket in self.touched:
            histogram[bucket + 1] = buckets[bucket]
        self.touched.clear()

    def clear(self) -> None:
        """Record that no message is being handled (one done without a group commit)."""
        self.seq = self.start = 0
        self._write()

    def set_dropped(self, count: int) -> None:
        """Publish how many invalid frames this process's sockets dropped (the node adds
        them up for ``node status``)."""
        if count != self.dropped:
            self.dropped = count
            _DROPPED.pack_into(self.map, _DROPPED_AT, count)

    def set_ready(self) -> None:
        """Record that init/recover ran (before telling the node): an exit the node hears
        before the ready report is then still known as a crash after the start."""
        self.ready = 1
        self.clear()

    def close(self) -> None:
        """Unmap the file."""
        self.histogram.release()
        self.map.close()


@dataclass(frozen=True)
class Unfinished:
    """What an agent's process had begun and not committed when it died, from its file.

    Attributes:
        handling: the mailbox message whose handler was running, or None.
        first: the first message whose handler returned and whose result was not
            committed yet (0: none); every message from ``first`` to ``last`` still in
            the mailbox is one of them (a group commits all or nothing).
        last: the last such message (0: none).
    """

    handling: int | None = None
    first: int = 0
    last: int = 0


def blame(unfinished: Unfinished, present: set[int]) -> tuple[int | None, tuple[int, ...]]:
    """Which message a death without a word counts against, and which other messages it
    cost an attempt, given the ``present`` seqs (those of ``unfinished`` that are still
    in the mailbox, i.e. not committed).

    The message whose handler was running is blamed; if none was, the last one whose
    handler returned (its result was lost before the commit: a crash after the return).
    Every other uncommitted message of the group was attempted too.
    """
    group = tuple(s for s in sorted(present) if unfinished.first <= s <= unfinished.last)
    blamed: int | None = None
    if unfinished.handling is not None:
        blamed = unfinished.handling if unfinished.handling in present else None
    elif group:
        blamed = group[-1]
    return blamed, tuple(s for s in group if s != blamed)


@dataclass(frozen=True, slots=True)
class Latency:
    """A handler latency histogram: how many committed messages' handlers took at most
    each of `LATENCY_BOUNDS_S` (per bucket, not cumulative; the last bucket: slower),
    and the sum of their latencies.

    Attributes:
        counts: a count per bucket, ``len(LATENCY_BOUNDS_S) + 1`` of them.
        sum_seconds: the latencies' sum.
    """

    counts: tuple[int, ...] = (0,) * (len(LATENCY_BOUNDS_S) + 1)
    sum_seconds: float = 0.0

    @property
    def count(self) -> int:
        """How many messages it counts."""
        return sum(self.counts)

    def __add__(self, other: Latency) -> Latency:
        return Latency(tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
                       self.sum_seconds + other.sum_seconds)


def _read(path: str) -> tuple[int, ...] | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_REC.size)
    except FileNotFoundError:
        return None
    return _REC.unpack(data) if len(data) == _REC.size else None


def read_latency(path: str, incarnation: int) -> Latency | None:
    """The node's side: that incarnation's handler latency histogram (what its process
    committed so far, or had committed when it exited); None if the file is another
    incarnation's or missing."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(_SIZE)
    except FileNotFoundError:
        return None
    if len(data) != _SIZE or _REC.unpack_from(data)[1] != incarnation:
        return None
    total_ns, *counts = _HIST.unpack_from(data, _HIST_AT)
    return Latency(tuple(counts), total_ns / 1e9)


def read_marker(path: str, incarnation: int) -> tuple[int, float] | None:
    """The node's side: ``(seq, seconds since it started)`` of what the agent is (or was,
    when it died) handling; None if idle, or the file is another incarnation's or missing."""
    rec = _read(path)
    if rec is None or not rec[0] or rec[1] != incarnation:
        return None
    return rec[0], (time.monotonic_ns() - rec[2]) / 1e9


def was_ready(path: str, incarnation: int) -> bool:
    """Whether that incarnation of the agent had finished its init/recover."""
    rec = _read(path)
    return rec is not None and rec[1] == incarnation and rec[3] == 1


def read_unfinished(path: str, incarnation: int) -> Unfinished:
    """The node's side, after the exit: what that incarnation had begun and not committed."""
    rec = _read(path)
    if rec is None or rec[1] != incarnation:
        return Unfinished()
    seq = rec[0] if rec[0] and rec[0] != TIMER_SEQ else None
    return Unfinished(seq, rec[4], rec[5])


def read_dropped(path: str, incarnation: int) -> int:
    """How many invalid frames that incarnation's sockets dropped (0 if unknown)."""
    rec = _read(path)
    return rec[6] if rec is not None and rec[1] == incarnation else 0
