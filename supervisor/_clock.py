"""Time for the supervisor shell: a ``Clock`` protocol and the real ``MonotonicClock``.

The pure core never reads a clock; the shell reads ``clock.now()`` once per event and
schedules backoff delays with ``clock.call_later``. Tests pass
:class:`beamish.supervisor.testing.FakeClock` instead, so delays take no real time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "MonotonicClock", "TimerHandle"]

_log = logging.getLogger("beamish.supervisor")


@runtime_checkable
class TimerHandle(Protocol):
    """What :meth:`Clock.call_later` returns."""

    def cancel(self) -> None:
        """Make sure the callback does not run (idempotent; harmless once it ran)."""


@runtime_checkable
class Clock(Protocol):
    """A monotonic clock that can run a callback later."""

    def now(self) -> float:
        """The current time in seconds (monotonic; only differences mean anything)."""

    def call_later(self, delay: float, fn: Callable[[], object]) -> TimerHandle:
        """Run ``fn()`` once, ``delay`` seconds from now, on some other thread.

        Args:
            delay: Seconds (<= 0 means as soon as possible).
            fn: The callback; it must not block.

        Returns:
            A handle whose ``cancel()`` stops it from running.
        """


class _Timer:
    __slots__ = ("cancelled", "due", "fn", "seq")

    def __init__(self, due: float, seq: int, fn: Callable[[], object]) -> None:
        self.due = due
        self.seq = seq
        self.fn = fn
        self.cancelled = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)

    def cancel(self) -> None:
        self.cancelled = True


class MonotonicClock:
    """The real clock: ``time.monotonic()`` and one daemon timer thread.

    Callbacks run on the timer thread in due order (ties in scheduling order); a
    callback that raises is logged and does not stop the others.
    """

    def __init__(self) -> None:
        """Create the clock; the timer thread starts with the first ``call_later``."""
        self._heap: list[_Timer] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def now(self) -> float:
        """The current time: ``time.monotonic()``.

        Returns:
            Seconds.
        """
        return time.monotonic()

    def call_later(self, delay: float, fn: Callable[[], object]) -> TimerHandle:
        """Run ``fn()`` on the timer thread ``delay`` seconds from now.

        Args:
            delay: Seconds.
            fn: The callback; it should not block (it delays the other timers).

        Returns:
            A handle whose ``cancel()`` stops it from running.

        Raises:
            RuntimeError: The clock was closed.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("MonotonicClock is closed")
            timer = _Timer(time.monotonic() + max(0.0, delay), next(self._seq), fn)
            heapq.heappush(self._heap, timer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="beamish-supervisor-clock", daemon=True)
                self._thread.start()
            self._cond.notify()
        return timer

    def close(self, timeout: float | None = 1.0) -> None:
        """Stop the timer thread; pending callbacks never run.

        Args:
            timeout: Seconds to wait for the thread to end.
        """
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    while self._heap and self._heap[0].cancelled:
                        heapq.heappop(self._heap)
                    if self._heap:
                        wait = self._heap[0].due - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                timer = heapq.heappop(self._heap)
            try:
                timer.fn()
            except Exception:
                _log.exception("timer callback %r failed", timer.fn)
