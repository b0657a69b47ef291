"""Per-agent limits kill the agent with the right failure kind; it comes back with its state."""

from __future__ import annotations

import pytest

from beamish.runtime import Limits, RemoteError

pytestmark = pytest.mark.slow
HOG = "tests.agents.basic:Hog"


@pytest.mark.parametrize("msg, limits, kind", [
    ("bomb", Limits(memory_mb=200), "oom"),
    ("spin", Limits(handler_timeout=0.5), "timeout"),
    ("c-sleep", Limits(handler_timeout=0.5), "timeout"),
    ("spin", Limits(cpu_seconds=1), "cpu"),
])
def test_limit_kills_with_its_kind_and_the_agent_comes_back(node, msg, limits, kind):
    ref = node.spawn(HOG, name="hog", limits=limits)
    other = node.spawn("tests.agents.basic:Counter", name="other")
    assert ref.call("incr") == 1
    with pytest.raises(RemoteError) as err:
        ref.call(msg, timeout=60)  # retried max_attempts times, then skipped
    failure = err.value.failure
    assert failure is not None and failure.kind == kind and failure.attempt == 3
    assert ref.call("get", timeout=30) == 1  # the last committed state
    info = node.info("hog")
    assert info.last_failure.kind == kind and info.restarts == 3
    assert other.call("incr") == 1  # the neighbour never noticed
