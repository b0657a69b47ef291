"""Group commit: casts that arrive together are handled and committed in one transaction,
and a crash in the middle of a group still applies every message to the state once."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def _queue_behind_a_sleep(ref, middle: str) -> None:
    """Cast 5 increments, ``middle`` and 5 more while the agent sleeps (a counted cast too),
    so that they reach it together, in one batch (one group)."""
    ref.cast({"sleep": 0.5})
    for _ in range(5):
        ref.cast("inc")
    ref.cast(middle)
    for _ in range(5):
        ref.cast("inc")


def test_a_sigkill_in_the_middle_of_a_group_is_counted_and_retried_until_dead_lettered(node):
    ref = node.spawn("tests.agents.basic:Faulty", name="g")
    _queue_behind_a_sleep(ref, "sigkill")
    # The first kill loses the group's 5 uncommitted increments (redelivered: no double
    # count) and is the 1st attempt of a message that is not the mailbox head; the cap
    # dead-letters it after exactly 3 attempts.
    letters = wait_until(lambda: node.dead_letters("g"), timeout=30, what="the dead letter")
    assert [letter["msg"] for letter in letters] == ["sigkill"]
    failure = letters[0]["failure"]
    assert failure.kind == "killed" and failure.attempt == 3
    assert wait_until(lambda: ref.call("get") == 11, what="11 casts counted, each once")
    assert node.info("g").restarts == 3
    assert node.info("g").mailbox_depth == 0


def test_an_exception_in_the_middle_of_a_group_keeps_the_messages_before_it(node):
    ref = node.spawn("tests.agents.basic:Faulty", name="g")
    _queue_behind_a_sleep(ref, "raise")
    letters = wait_until(lambda: node.dead_letters("g"), what="the dead letter")
    assert [letter["msg"] for letter in letters] == ["raise"]
    assert letters[0]["failure"].attempt == 1  # an exception is skipped at once
    assert wait_until(lambda: ref.call("get") == 11, what="11 casts counted, each once")
    assert node.info("g").restarts == 1
