"""The membership lease's timing, pure: when to renew, and when a node must fence itself.

The database sets a lease's expiry from its own clock when the renewal commits
(``lease_expires = now() + ttl``). A node cannot read that clock, but it knows when it
*sent* each renewal by its own monotonic clock, and the commit comes after the send: the
lease granted by a renewal sent at ``t`` expires no earlier than ``t + ttl`` as the node
measures it (clocks on two machines drift apart slowly; ``margin`` absorbs the drift and
the time the node needs to stop its agents). So:

* renew every ``renew_every`` seconds (default ``ttl / 4``) after the last attempt,
  whether it succeeded or not;
* fence (stop every replicated agent) once the last *successful* renewal was sent more
  than ``ttl - margin`` ago: that is always before the database can call the lease
  expired and let another node take the shards over.

``lease_action(now, last_sent_ok, last_attempt, timing)`` returns what to do now and
when to look again; it reads no clock. ``tests/unit/cluster/test_lease.py`` tables it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """A lease's durations, in seconds.

    Attributes:
        ttl: how long a renewal keeps the lease alive (the database's ``now() + ttl``).
        margin: how long before the earliest possible expiry the node fences itself.
        renew_every: the pause between renewal attempts (None: ``ttl / 4``).
    """

    ttl: float = 4.0
    margin: float = 1.0
    renew_every: float | None = None

    def __post_init__(self) -> None:
        if not self.ttl > 0:
            raise ConfigError(f"lease ttl must be positive, not {self.ttl!r}")
        if not 0 < self.margin < self.ttl:
            raise ConfigError(f"lease margin must be positive and below the ttl "
                              f"({self.ttl:g} s), not {self.margin!r}")
        if not 0 < self.renew_period < self.fence_after:
            raise ConfigError(
                f"lease renew_every ({self.renew_period:g} s) must be positive and shorter "
                f"than ttl - margin ({self.fence_after:g} s), or the node would fence "
                "itself between two renewals: renew more often, or raise the ttl")

    @property
    def renew_period(self) -> float:
        """Seconds between renewal attempts."""
        return self.ttl / 4 if self.renew_every is None else self.renew_every

    @property
    def fence_after(self) -> float:
        """Seconds after the send of the last successful renewal at which to fence."""
        return self.ttl - self.margin


class LeaseAction(enum.Enum):
    """What the lease keeper does now."""

    WAIT = "wait"    # nothing is due
    RENEW = "renew"  # send a renewal
    FENCE = "fence"  # the lease may be about to expire: stop every replicated agent


@dataclass(frozen=True, slots=True)
class LeaseDecision:
    """``action`` now, and the time (same clock as ``now``) to look again at the latest."""

    action: LeaseAction
    next_check: float


def lease_action(now: float, last_sent_ok: float | None, last_attempt: float | None,
                 timing: LeaseTiming) -> LeaseDecision:
    """What to do at ``now`` (monotonic seconds), given when the last successful renewal
    (or join) was sent, ``last_sent_ok`` (None: this node holds no lease it may act on,
    e.g. after fencing), and when the last attempt of any outcome was sent.

    FENCE wins over everything: it is due once ``last_sent_ok + ttl - margin`` is reached
    (the shell then forgets ``last_sent_ok``). Otherwise RENEW is due ``renew_every``
    after the last attempt (at once if there was none). ``next_check`` is never later
    than the fence deadline."""
    fence_at = None if last_sent_ok is None else last_sent_ok + timing.fence_after
    if fence_at is not None and now >= fence_at:
        return LeaseDecision(LeaseAction.FENCE, now)
    due = now if last_attempt is None else last_attempt + timing.renew_period
    if now >= due:
        action, next_check = LeaseAction.RENEW, now + timing.renew_period
    else:
        action, next_check = LeaseAction.WAIT, due
    if fence_at is not None:
        next_check = min(next_check, fence_at)
    return LeaseDecision(action, next_check)
