"""Fixtures for supervisor tests: a fake clock, a fake spawner, and supervisors that
are always shut down (with a timeout) when the test ends."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sup_helpers import WAIT, Recorder

from beamish.supervisor import ChildSpec, Supervisor, SupervisorSpec
from beamish.supervisor.testing import FakeClock, FakeSpawner

# tests/strategies.py (hypothesis strategies) lives two levels up.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spawner(clock: FakeClock) -> FakeSpawner:
    return FakeSpawner(clock, real_timeout=WAIT)


@pytest.fixture
def events() -> Recorder:
    return Recorder()


@pytest.fixture
def make(clock: FakeClock, spawner: FakeSpawner, events: Recorder) -> Iterator[Callable[..., Supervisor]]:
    """make(spec_or_strategy, *children, start=True, **spec_kwargs) -> started Supervisor."""
    made: list[Supervisor] = []

    def factory(spec: SupervisorSpec | str = "one_for_one", *children: ChildSpec | str, start: bool = True,
                on_exit: Callable[..., Any] | None = None, **kwargs: Any) -> Supervisor:
        if not isinstance(spec, SupervisorSpec):
            kids = tuple(c if isinstance(c, ChildSpec) else ChildSpec(c) for c in children)
            spec = SupervisorSpec("root", spec, children=kids, **kwargs)
        sup = Supervisor(spec, spawner, clock, on_event=events, on_exit=on_exit, seed=7)
        spawner.bind(sup)
        made.append(sup)
        if start:
            sup.start(timeout=WAIT)
        return sup

    yield factory
    for sup in made:
        sup.shutdown(timeout=WAIT)
