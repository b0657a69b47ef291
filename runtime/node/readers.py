"""When the node clears the LMDB reader slots of dead processes: a pure rule.

``mdb_reader_check`` tests each slot's owner with an ``fcntl(F_GETLK)`` on the lock
file, and the kernel walks every process's lock on that file for each test: with N
processes holding a slot (every awake agent does) one check costs O(N²), ~7 ms at 1,000
agents on an idle machine and far more under load, on the node's main loop and holding
the GIL. A slot goes stale only when its process dies, so the node checks soon after an
agent's process exit (it hears each one), and otherwise rarely, for the processes it does
not hear about (a killed client).
"""

from __future__ import annotations

from dataclasses import dataclass

READER_CHECK_AFTER_EXIT_S = 1.0  # at most this often while agents' processes exit
READER_CHECK_IDLE_S = 30.0  # when none exited: a client's process may have died unseen


@dataclass(frozen=True, slots=True)
class ReaderCheck:
    """The last reader check: when (monotonic seconds) and the node's count of agent
    process exits then."""

    at: float
    exits: int


def reader_check_due(last: ReaderCheck, now: float, exits: int) -> bool:
    """Whether to clear stale reader slots now (pure): an agent's process exited since
    ``last`` and `READER_CHECK_AFTER_EXIT_S` passed, or `READER_CHECK_IDLE_S` passed."""
    elapsed = now - last.at
    if exits != last.exits:
        return elapsed >= READER_CHECK_AFTER_EXIT_S
    return elapsed >= READER_CHECK_IDLE_S
