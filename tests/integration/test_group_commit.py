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


def test_a_message_that_succeeds_on_its_last_attempt_is_not_run_again(node, tmp_path):
    # It is killed on its 1st and 2nd attempts and succeeds on its 3rd; the poison cast
    # behind it must not take that success down with it (it would run a 4th time).
    node.add_supervisor("s", strategy="one_for_one", max_restarts=10, max_seconds=60)
    ref = node.spawn("tests.agents.basic:Faulty", name="g", supervisor="s")
    attempts = tmp_path / "attempts"
    ref.cast({"sleep": 0.3})
    ref.cast({"kill_first": str(attempts), "times": 2})
    ref.cast("sigkill")
    letters = wait_until(lambda: node.dead_letters("g"), timeout=30, what="the dead letter")
    assert [letter["msg"] for letter in letters] == ["sigkill"]
    assert attempts.read_text().count("attempt") == 3
    assert ref.call("get") == 2  # the sleep and the 3rd attempt, each counted once
