"""Messages validated against declared pydantic models: a bad one gets the caller a clear
error and does not crash the agent."""

from __future__ import annotations

import pytest

from beamish.runtime import RemoteError
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def test_invalid_messages_are_refused_without_a_crash(node):
    ref = node.spawn("tests.agents.basic:Typed", name="t")
    pid = node.info("t").pid
    assert ref.call({"question": "why?"}) == {"echo": "why?", "memos": 0}
    with pytest.raises(RemoteError) as err:
        ref.call({"question": 42, "max_words": "many"})
    assert err.value.type == "ValidationError" and "Ask" in err.value.message
    assert "max_words" in err.value.message
    ref.cast({"text": "kept"})
    ref.cast({"txt": "typo"})
    wait_until(lambda: node.dead_letters("t"), what="the invalid cast in the dead letters")
    assert node.dead_letters("t")[0]["failure"].exc_type == "ValidationError"
    assert ref.call({"question": "count"}) == {"echo": "count", "memos": 1}
    info = node.info("t")
    assert info.pid == pid and info.restarts == 0  # never crashed
