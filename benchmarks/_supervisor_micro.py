"""Microbenchmark: what one supervisor event costs with many children, in the pure core
(`beamish.supervisor.decide`) and through a running `Supervisor` shell (its own thread,
publishing a view after each action).

    python -m benchmarks._supervisor_micro [N ...]       # default: 1000 10000 100000

For each N it prints the median time of one ``decide`` (a child's exit and its restart
decision: ``ChildExited`` then ``ChildStarted``, the commonest events) and of a
``restart_child`` round trip through a shell holding N children.
"""

from __future__ import annotations

import statistics
import sys
import time

from beamish.supervisor import (
    ChildExited,
    Children,
    ChildSpec,
    ChildStarted,
    ChildState,
    ChildStatus,
    ExitReason,
    Strategy,
    Supervisor,
    SupervisorSpec,
    SupervisorState,
    decide,
)
from beamish.supervisor.testing import FakeClock, FakeSpawner


def _booted(n: int) -> tuple[SupervisorSpec, SupervisorState]:
    """A running supervisor with ``n`` running children, built directly (booting it event
    by event would cost n events)."""
    spec = SupervisorSpec("s", Strategy.ONE_FOR_ONE, max_restarts=10**9, max_seconds=1.0)
    children = Children(ChildState(ChildSpec(f"c{i}"), ChildStatus.RUNNING, started=True,
                                   started_at=0.0) for i in range(n))
    return spec, SupervisorState(children, running=True)


def decide_cost(n: int, rounds: int = 200) -> float:
    """The median seconds of one ``decide`` with ``n`` running children."""
    spec, state = _booted(n)
    times = []
    crash = ExitReason.abnormal("boom")
    for r in range(rounds):
        id = f"c{(r * 7919) % n}"
        t0 = time.perf_counter()
        state = decide(spec, state, ChildExited(id, crash), 1.0 + r).state
        t1 = time.perf_counter()
        state = decide(spec, state, ChildStarted(id), 1.0 + r).state
        t2 = time.perf_counter()
        times += [t1 - t0, t2 - t1]
    return statistics.median(times)


def shell_cost(n: int, rounds: int = 50) -> float:
    """The median seconds of a ``restart_child`` round trip on a shell with ``n`` children
    (one is stopped, then restarted)."""
    spawner = FakeSpawner(FakeClock())
    sup = Supervisor(SupervisorSpec("s", Strategy.ONE_FOR_ONE, max_restarts=10**9,
                                    max_seconds=1.0), spawner)
    sup.start()
    try:
        for i in range(n):
            sup.add_child(ChildSpec(f"c{i}"))
        times = []
        for r in range(rounds):
            id = f"c{(r * 7919) % n}"
            t0 = time.perf_counter()
            sup.remove_child(id)
            sup.add_child(ChildSpec(id))
            times.append((time.perf_counter() - t0) / 2)
        return statistics.median(times)
    finally:
        sup.shutdown()


SHELL_MAX = 10_000  # a shell is filled by add_child, one event each


def main(sizes: list[int]) -> None:
    """Print both costs for each size (the shell's up to `SHELL_MAX` children)."""
    for n in sizes:
        shell = (f"{shell_cost(n) * 1e6:9.1f} us/call" if n <= SHELL_MAX else "not measured")
        print(f"{n:>7} children: decide {decide_cost(n) * 1e6:9.1f} us/event; "
              f"shell remove/add {shell}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10_000, 100_000])
