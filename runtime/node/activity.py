"""Which awake agents to put to sleep: the pure rule behind ``[node] max_awake``.

"Active" means a message handled (SPEC, Sessions). The node does not hear of every
message (they go from sender to agent through the store); it reads an awake agent's
committed ``processed`` count when it needs to choose, and remembers when that count last
moved. `Activity` is that memory for one agent; `observe` updates it from a fresh reading
and `choose_sleepers` picks the least recently active idle agents over the limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Activity:
    """What the node knows of one awake agent's activity.

    Attributes:
        name: the agent.
        processed: its committed count of messages handled, as last read.
        active_at: when that count was last seen to move (or when it woke), node clock.
        idle: whether, at that reading, its mailbox was empty (nothing to handle).
    """

    name: str
    processed: int
    active_at: float
    idle: bool


def observe(prev: Activity, processed: int, idle: bool, now: float) -> Activity:
    """``prev`` updated from a reading taken at ``now``: a moved count is activity."""
    active_at = now if processed != prev.processed else prev.active_at
    return Activity(prev.name, processed, active_at, idle)


def choose_sleepers(awake: Iterable[Activity], max_awake: int | None) -> list[str]:
    """The agents to put to sleep so that at most ``max_awake`` stay awake: the least
    recently active idle ones first (ties by name, so the choice is deterministic). An
    agent with messages waiting is never chosen; if too few are idle, fewer are put to
    sleep than the excess (the limit is a target, not a cap on wakes: a message to a
    sleeping agent is always served).

    Args:
        awake: every awake agent's activity, fresh enough for the caller.
        max_awake: the limit; None means unlimited.
    """
    agents = list(awake)
    if max_awake is None or len(agents) <= max_awake:
        return []
    excess = len(agents) - max_awake
    idle = sorted((a for a in agents if a.idle), key=lambda a: (a.active_at, a.name))
    return [a.name for a in idle[:excess]]
