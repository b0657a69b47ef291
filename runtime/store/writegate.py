"""Write lanes: while the store's writer lock is contended, a commit that a caller is
waiting on goes ahead of bulk commits (casts).

LMDB lets one process write at a time for the whole node. Under a flood of casts (the
benchmark's ``loaded`` scenario: 4 sender processes casting to 100 agents on 2 cores)
that lock is held most of the time, a good part of it by a holder that was preempted
while holding it, and a call queues twice behind the flood: its caller's append and the
agent's commit of state and reply. A cast has no one waiting on its commit but its own
sender, so here the casts yield:

- an `WriteLane.URGENT` commit (a call's append, an agent's commit that holds a reply)
  holds a shared flock(2) on a file beside the store (``write-gate``) while it waits for
  and holds the writer lock;
- a `WriteLane.BULK` commit (a cast's append, an agent's commit of casts only) first
  checks, with an exclusive lock taken without waiting and released at once, that no
  urgent commit is in progress; while one is, it waits `YIELD_POLL_S` and looks again,
  for at most `YIELD_MAX_S` in all (then it goes ahead: a flood of calls slows casts,
  never stops them);
- `WriteLane.PLAIN` commits (the node's own) do neither.

Both only while this process has seen the writer lock contended (a wait of more than
`CONTENDED_WAIT_S` for it within the last `CONTENDED_FOR_S`): an uncontended commit pays
no system call for the gate. The kernel drops a process's flocks when it dies, so a
crashed caller cannot hold the casts back. The rule is `gate_step` (pure); `WriteGate`
carries it out.
"""

from __future__ import annotations

import enum
import fcntl
import os
import threading
import time

from ..errors import StoreError

# A wait for the writer lock longer than this counts as contention ...
CONTENDED_WAIT_S = 0.0001
# ... and the lanes are kept this long after the last one seen.
CONTENDED_FOR_S = 1.0
# A bulk commit that finds an urgent one in progress looks again after this long ...
YIELD_POLL_S = 0.0002
# ... and goes ahead anyway once it has waited this long.
YIELD_MAX_S = 0.01
GATE_FILE = "write-gate"


class WriteLane(enum.Enum):
    """Who waits on a commit (`Store.write_in_lane`)."""

    PLAIN = "plain"  # neither: the node's own writes
    URGENT = "urgent"  # a caller waits on it: a call's append, a commit holding a reply
    BULK = "bulk"  # only its sender does: a cast's append, a commit of casts only


class GateStep(enum.Enum):
    """What a commit does at the gate before it takes the writer lock."""

    NONE = "none"  # nothing: straight to the writer lock
    SHARE = "share"  # hold the gate shared until it has committed (urgent)
    YIELD = "yield"  # wait while an urgent commit holds the gate (bulk)


def gate_step(lane: WriteLane, contended: bool) -> GateStep:
    """What a commit in ``lane`` does at the gate; ``contended``: whether this process
    saw the writer lock contended lately (else nothing, whatever the lane)."""
    if not contended or lane is WriteLane.PLAIN:
        return GateStep.NONE
    return GateStep.SHARE if lane is WriteLane.URGENT else GateStep.YIELD


class WriteGate:
    """The gate of one store in this process (see the module docstring).

    One open file per process, opened with the store: flock belongs to an open file, so
    the process's threads take it through a count under a mutex (one flock for all its
    urgent commits) instead of converting each other's locks.

    Args:
        path: the store's directory (the gate file is created there).
        yield_max_s: how long a bulk commit waits for urgent ones at most.

    Raises:
        StoreError: the gate file cannot be opened.
    """

    def __init__(self, path: str, yield_max_s: float = YIELD_MAX_S) -> None:
        self.path = os.path.join(path, GATE_FILE)
        self.yield_max_s = yield_max_s
        self.contended_until = 0.0  # time.monotonic()'s clock
        self._mutex = threading.Lock()
        self._shared = 0  # this process's urgent commits in progress
        self._pid = os.getpid()
        self._fd = self._open()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the store's write gate {self.path!r}: {exc}; "
                             "check that the node dir is writable by this user") from exc

    def saw_wait(self, waited: float, now: float) -> None:
        """Note a wait of ``waited`` seconds for the writer lock, ended at ``now``."""
        if waited > CONTENDED_WAIT_S:
            self.contended_until = now + CONTENDED_FOR_S

    def step(self, lane: WriteLane) -> GateStep:
        """What a commit in ``lane`` does at the gate now."""
        if lane is WriteLane.PLAIN:
            return GateStep.NONE
        return gate_step(lane, time.monotonic() < self.contended_until)

    def share(self) -> None:
        """Hold the gate shared (an urgent commit) until `release`."""
        with self._mutex:
            fd = self._own_fd()
            if self._shared == 0:
                fcntl.flock(fd, fcntl.LOCK_SH)
            self._shared += 1

    def release(self) -> None:
        """Release what `share` took."""
        with self._mutex:
            self._shared -= 1
            if self._shared == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def yield_to_urgent(self) -> None:
        """Wait while an urgent commit (of any process) holds the gate, at most
        ``yield_max_s``."""
        give_up = time.monotonic() + self.yield_max_s
        while not self._clear():
            if time.monotonic() >= give_up:
                return
            time.sleep(YIELD_POLL_S)

    def _clear(self) -> bool:
        """Whether no urgent commit holds the gate now."""
        with self._mutex:
            if self._shared:
                return False
            fd = self._own_fd()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True

    def _own_fd(self) -> int:
        # After a fork the parent's open file (and its lock) would be shared: a file of
        # this process's own (the store's rule is to open it again after a fork anyway).
        if self._pid != os.getpid():
            self._pid, self._fd, self._shared = os.getpid(), self._open(), 0
        return self._fd

    def close(self) -> None:
        """Close the gate file."""
        with self._mutex:
            if self._fd >= 0 and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = -1
