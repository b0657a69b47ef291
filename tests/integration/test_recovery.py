"""Semantic recovery: each choice ``recover`` can make, in a freshly restarted process."""

from __future__ import annotations

import pytest

from beamish.runtime import AgentNotFound, RemoteError
from tests.conftest import wait_until

pytestmark = pytest.mark.slow
AGENT = "tests.agents.basic:Recovering"


def test_resume_with_a_compacted_state_is_invisible_to_the_caller(node):
    ref = node.spawn(AGENT, name="r", args={"mode": "compact"})
    assert ref.call("work", timeout=20) == {"answered_with": 1}  # the retry's reply
    state = ref.call("state")
    assert state["compacted"] is True and state["history"] == ["t3"]
    assert node.info("r").restarts == 1


def test_skip_gives_the_caller_remote_error_and_adopts_the_state(node):
    ref = node.spawn(AGENT, name="r", args={"mode": "skip"})
    with pytest.raises(RemoteError) as err:
        ref.call("work", timeout=20)
    assert err.value.failure.kind == "exit" and err.value.failure.exit_code == 3
    assert ref.call("state")["skipped"] == "exit"


def test_a_recover_choice_with_a_none_state_keeps_the_state_and_is_reported(node):
    ref = node.spawn(AGENT, name="r", args={"mode": "skip-forgetting-state"})
    with pytest.raises(RemoteError):
        ref.call("work", timeout=20)
    assert ref.call("state")["history"] == ["t1", "t2", "t3"]  # not replaced by None
    wait_until(lambda: any(e.kind == "recover_failed" and "bad_return_value" in e.reason
                           for e in node.events()), what="the recover_failed event")


def test_reset_runs_init_again_then_retries(node, tmp_path):
    ref = node.spawn(AGENT, name="r", args={"mode": "reset", "marker": str(tmp_path / "m")})
    assert ref.call("work", timeout=20) == {"answered_with": 1}  # init ran again: short history


def test_stop_normal_from_recover_ends_a_transient_agent(node):
    ref = node.spawn(AGENT, name="r", args={"mode": "stop"}, restart="transient")
    with pytest.raises(RemoteError, match="exited"):
        ref.call("work", timeout=20)
    # The call is given up (as by Skip) before the agent stops: wait for the stop.
    wait_until(lambda: node.info("r").status == "exited", what="r exited")
    with pytest.raises(AgentNotFound):
        ref.call("state")


def test_escalate_marks_the_root_child_failed(node):
    ref = node.spawn(AGENT, name="r", args={"mode": "escalate"})
    with pytest.raises(RemoteError, match="failed"):
        ref.call("work", timeout=20)
    wait_until(lambda: node.info("r").status == "failed", what="failed")
    assert any(e.kind == "failed" and e.name == "r" for e in node.events())


def test_a_raising_recover_is_treated_as_reset_and_reported(node, tmp_path):
    ref = node.spawn(AGENT, name="r", args={"mode": "raise", "marker": str(tmp_path / "m")})
    assert ref.call("work", timeout=20) == {"answered_with": 1}
    wait_until(lambda: any(e.kind == "recover_failed" and "recover itself failed" in e.reason
                           for e in node.events()), what="the recover_failed event")


def test_max_attempts_caps_a_recover_that_always_resumes(node):
    ref = node.spawn(AGENT, name="r", args={"mode": None})  # default: Resume for exits
    with pytest.raises(RemoteError) as err:
        ref.call("work", timeout=30)
    assert err.value.failure.attempt == 3
    assert ref.call("state")["history"] == ["t1", "t2", "t3"]
