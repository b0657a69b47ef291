"""Which message an agent is handling, readable after it dies without a word.

A small shared file mapping per agent (``run/a<id>.busy``): the agent writes the seq
of the message it starts and clears it when the handler returns. Writes to a MAP_SHARED mapping
land in the page cache, so they survive SIGKILL, a segfault or an OOM kill; the node
reads the file after the exit to tell "killed while handling message N" from "killed
while idle" (and so which message's attempt count to raise). It costs a memory write per
message, no system call.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

# seq being handled (0: idle), incarnation, start (ns), ready, frames its sockets dropped
_REC = struct.Struct(">QQQQQ")
_DROPPED, _DROPPED_AT = struct.Struct(">Q"), 32
TIMER_SEQ = (1 << 64) - 1  # "handling a timer or info message", not a mailbox message


class InFlight:
    """The agent's side: mark and clear the message being handled.

    Args:
        path: the agent's ``.busy`` file.
        incarnation: written beside the seq so a stale file is recognised.
    """

    def __init__(self, path: str, incarnation: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Written, not only truncated: the page then exists, and a full filesystem is
            # an OSError here rather than a SIGBUS at the first write to the mapping.
            os.pwrite(fd, bytes(_REC.size), 0)
            self.map = mmap.mmap(fd, _REC.size)
        finally:
            os.close(fd)
        self.incarnation = incarnation
        self.ready = 0
        self.dropped = 0
        self.clear()

    def mark(self, seq: int) -> None:
        """Record that message ``seq`` is being handled, from now (CLOCK_MONOTONIC)."""
        _REC.pack_into(self.map, 0, seq, self.incarnation, time.monotonic_ns(), self.ready,
                       self.dropped)

    def clear(self) -> None:
        """Record that no message is being handled."""
        _REC.pack_into(self.map, 0, 0, self.incarnation, 0, self.ready, self.dropped)

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
        self.map.close()


def _read(path: str) -> tuple[int, int, int, int, int] | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_REC.size)
    except FileNotFoundError:
        return None
    return _REC.unpack(data) if len(data) == _REC.size else None


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


def read_in_flight(path: str, incarnation: int) -> int | None:
    """The seq of the mailbox message the agent was handling, or None."""
    marker = read_marker(path, incarnation)
    return None if marker is None or marker[0] == TIMER_SEQ else marker[0]


def read_dropped(path: str, incarnation: int) -> int:
    """How many invalid frames that incarnation's sockets dropped (0 if unknown)."""
    rec = _read(path)
    return rec[4] if rec is not None and rec[1] == incarnation else 0
