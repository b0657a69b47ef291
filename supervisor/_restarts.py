"""The restart intensity window: a pure port of OTP ``supervisor:add_restart/3``.

OTP keeps the restart times newest first, drops those older than ``Now - Period``
(a restart exactly ``Period`` seconds ago still counts), prepends ``Now`` and
terminates the supervisor when the list is longer than ``Intensity``. Here ``now`` is
passed in, so tests step through ``0.0, 0.1, ...`` instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RestartLog"]


@dataclass(frozen=True, slots=True)
class RestartLog:
    """The times of recent restarts, newest first. Immutable.

    Attributes:
        times: Restart times (clock seconds), newest first, all within the last period
            as of the latest :meth:`record`.
    """

    times: tuple[float, ...] = ()

    def record(self, now: float, max_restarts: int, max_seconds: float) -> tuple[RestartLog, bool]:
        """Record a restart at ``now``.

        Args:
            now: The current clock time in seconds.
            max_restarts: OTP's intensity: how many restarts the period tolerates.
            max_seconds: OTP's period, in seconds.

        Returns:
            ``(log, exceeded)``: the new log, and whether it now holds more than
            ``max_restarts`` restarts within ``max_seconds`` (the supervisor must give up).
        """
        threshold = now - max_seconds
        kept: list[float] = []
        for t in self.times:  # newest first, so stop at the first one too old (takewhile)
            if t < threshold:
                break
            kept.append(t)
        log = RestartLog((now, *kept))
        return log, len(log.times) > max_restarts

    def __len__(self) -> int:
        return len(self.times)
