"""Skipped casts are kept with their failure, listed, and can be re-sent."""

from __future__ import annotations

import json

import pytest

from beamish.runtime import ConfigError
from tests.conftest import beamish, wait_until

pytestmark = pytest.mark.slow


def test_a_failing_cast_goes_to_the_dead_letters_and_can_be_resent(node):
    ref = node.spawn("tests.agents.basic:Faulty", name="f")
    ref.cast("flaky")
    letters = wait_until(lambda: node.dead_letters("f"), what="the dead letter")
    assert letters[0]["msg"] == "flaky" and letters[0]["kind"] == "cast"
    failure = letters[0]["failure"]
    assert failure.kind == "exception" and failure.exc_type == "ConnectionError"
    # The event comes from the agent's report, which may reach the node after the commit.
    wait_until(lambda: any(e.kind == "dead_lettered" and e.name == "f" for e in node.events()),
               what="the dead_lettered event")
    assert ref.call("get") == 0
    ref.cast("heal")
    out = beamish("dead-letters", "f", "--json", "--dir", node.dir, check=True,
                  timeout=60).stdout
    assert json.loads(out)[0]["seq"] == letters[0]["seq"]
    node.resend_dead_letter("f", letters[0]["seq"])
    wait_until(lambda: ref.call("get") == 1, what="the re-sent cast to be handled")
    assert node.dead_letters("f") == []
    with pytest.raises(ConfigError, match="no dead letter"):
        node.resend_dead_letter("f", 12345)
