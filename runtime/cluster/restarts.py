"""What the owner of a replicated agent does when its process exits by itself, pure.

A replicated agent is not in a supervisor's tree: its shard's owner restarts it. This is
OTP's restart intensity, applied to each agent on its own (`after_exit`); the rules,
first match wins, each with its own test in ``tests/unit/cluster/test_restarts.py``:

    restart "temporary"                      exited (never restarted)
    restart "transient", a normal exit       exited
    max_restarts restarts already within     failed (kept so, with its last failure,
      the last max_seconds                     until `restart`/`stop`/`delete`)
    otherwise                                restarted after a delay that doubles with
                                             each restart in the window (from
                                             `RESTART_DELAY_S` up to `RESTART_DELAY_MAX_S`),
                                             the first one if it ran `RESTART_RESET_S`

The departure from OTP: a supervisor whose intensity runs out exits and its own
supervisor decides (in the end, the node stops); here the agent alone ends ``failed``,
and neither the node nor the other agents of its shard are touched: a cluster node
serves thousands of unrelated replicated agents, one crash loop must not stop them. Its
restarts are counted by the node that owns it: a failover starts the count again.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

RESTART_DELAY_S = 0.5
RESTART_DELAY_MAX_S = 30.0
RESTART_RESET_S = 10.0  # a process that ran this long restarts after the first delay


@dataclass(frozen=True, slots=True)
class RestartIntensity:
    """At most ``max_restarts`` restarts of one replicated agent within ``max_seconds``
    (the node's ``[node] max_restarts`` and ``max_seconds``, as its root supervisor's)."""

    max_restarts: int = 3
    max_seconds: float = 5.0


class Verdict(enum.StrEnum):
    """What becomes of an agent whose process exited by itself."""

    RESTART = "restart"
    EXITED = "exited"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AfterExit:
    """`after_exit`'s decision.

    Attributes:
        verdict: restart it, or leave it exited or failed.
        delay: seconds to wait before the restart (0 unless restarted).
        history: the times (monotonic) of its restarts within the window, this one
            included: what the next exit is judged with.
    """

    verdict: Verdict
    delay: float = 0.0
    history: tuple[float, ...] = ()


def after_exit(restart: str, normal: bool, history: Sequence[float], now: float,
               ran_for: float, intensity: RestartIntensity) -> AfterExit:
    """Decide about a replicated agent whose process exited by itself at ``now`` after
    running ``ran_for`` seconds (``normal``: a normal exit), ``history`` being the times
    of its earlier restarts (the rules are in the module doc)."""
    window = tuple(t for t in history if now - t < intensity.max_seconds)
    if restart == "temporary" or (restart == "transient" and normal):
        return AfterExit(Verdict.EXITED, history=window)
    if len(window) >= intensity.max_restarts:
        return AfterExit(Verdict.FAILED, history=window)
    n = 0 if ran_for >= RESTART_RESET_S else len(window)
    return AfterExit(Verdict.RESTART, min(RESTART_DELAY_MAX_S, RESTART_DELAY_S * 2 ** n),
                     (*window, now))
