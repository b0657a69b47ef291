"""Durable timers through real processes: committed with the handler's transition, fired
by the node into the mailbox (handle_info) across agent and node kill -9, never fired when
their transition did not commit; a ledger of timers set across crashes fires each once."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from beamish.runtime import RemoteError, start_node
from tests.conftest import kill_node, shutdown_quietly, wait_until

ALARM = "tests.agents.timer_agents:Alarm"


def fired(ref):
    return ref.call({"op": "fired"}, timeout=10)


def test_a_timer_fires_into_handle_info_once_and_its_id_is_a_string(node):
    ref = node.spawn(ALARM, name="a")
    ident = ref.call({"op": "set", "after": 0.05, "tag": "tick"})
    assert isinstance(ident, str)
    wait_until(lambda: fired(ref) == ["tick"], what="the timer")
    time.sleep(0.3)
    assert fired(ref) == ["tick"]
    assert ref.call({"op": "cancel", "id": ident}) is False  # fired: not an error


def test_a_timer_set_in_init_fires(node):
    ref = node.spawn(ALARM, name="a", args={"arm_in_init": 0.0})
    wait_until(lambda: fired(ref) == ["init"], what="the timer set in init")


def test_a_timer_fires_after_its_agent_was_killed_before_it_was_due(node):
    ref = node.spawn(ALARM, name="a")
    ref.call({"op": "set", "after": 1.0, "tag": "late"})  # committed with the reply
    os.kill(node.info("a").pid, signal.SIGKILL)
    wait_until(lambda: node.info("a").restarts == 1, what="the restart")
    wait_until(lambda: fired(ref) == ["late"], what="the timer after the kill")


def test_a_timer_due_while_the_node_was_down_fires_when_it_starts(node_dir):
    node = start_node(node_dir)
    try:
        ref = node.spawn(ALARM, name="a")
        ref.call({"op": "set", "after": 0.5, "tag": "late"})
        ref.call({"op": "set", "after": 60.0, "tag": "later"})
        kill_node(node)  # the node and its agents, before the timer is due
        time.sleep(1.0)
        node = start_node(node_dir)
        ref = node.ref("a")
        wait_until(lambda: fired(ref) == ["late"], what="the late timer at the node's start")
        time.sleep(0.3)
        assert fired(ref) == ["late"]
    finally:
        shutdown_quietly(node)


def test_a_timer_set_in_recover_fires_and_one_set_by_a_recover_that_raised_does_not(
        node, tmp_path):
    ref = node.spawn(ALARM, name="a")
    with pytest.raises(RemoteError):
        ref.call({"op": "crash", "why": "arm in recover"})
    wait_until(lambda: fired(ref) == ["from recover"], what="the timer set in recover")
    marker = str(tmp_path / "recover-raised")
    # recover raises once (a Reset: init's fresh state), then skips the message.
    with pytest.raises(RemoteError):
        ref.call({"op": "crash", "why": f"raise in recover once:{marker}"}, timeout=30)
    wait_until(lambda: os.path.exists(marker) and node.info("a").status == "running",
               what="the restart after recover raised")
    ref.call({"op": "set", "after": 0.2, "tag": "after"})
    wait_until(lambda: "after" in fired(ref), what="the later timer")
    time.sleep(0.3)
    assert fired(ref) == ["after"]  # reset by the Reset; "never" never came


def test_a_timer_with_a_message_too_big_for_a_ring_fires_from_the_mailbox(node):
    ref = node.spawn(ALARM, name="a")
    ref.call({"op": "big", "size": 200_000})
    wait_until(lambda: len(fired(ref)) == 1, what="the big timer")
    assert fired(ref) == [b"x" * 200_000]


def test_a_timer_set_by_a_handler_that_raised_never_fires(node):
    ref = node.spawn(ALARM, name="a")
    with pytest.raises(RemoteError, match="raised after send_after"):
        ref.call({"op": "set_then_raise", "after": 0.0, "tag": "never"})
    ref.call({"op": "set", "after": 0.2, "tag": "after"})  # a later timer, to wait for
    wait_until(lambda: fired(ref) == ["after"], what="the later timer")
    time.sleep(0.3)
    assert fired(ref) == ["after"]


def test_a_timer_set_by_a_process_killed_before_its_commit_never_fires(node, tmp_path):
    ref = node.spawn(ALARM, name="a")
    marker = str(tmp_path / "killed-once")
    # The first attempt sets the timer, then is SIGKILLed before its transition commits;
    # its retry in the restarted process does not set one.
    assert ref.call({"op": "set_then_die", "after": 0.0, "tag": "never", "marker": marker},
                    timeout=30) == "retried"
    assert os.path.exists(marker) and node.info("a").restarts == 1
    ref.call({"op": "set", "after": 0.2, "tag": "after"})
    wait_until(lambda: fired(ref) == ["after"], what="the later timer")
    time.sleep(0.3)
    assert fired(ref) == ["after"]


def test_a_cancelled_timer_never_fires_and_unknown_ids_are_not_errors(node):
    ref = node.spawn(ALARM, name="a")
    ident = ref.call({"op": "set", "after": 0.3, "tag": "cancelled"})
    assert ref.call({"op": "cancel", "id": ident}) is True
    assert ref.call({"op": "cancel", "id": ident}) is False  # once
    # A timer set and cancelled by the same handler: pending until its commit.
    assert ref.call({"op": "set_and_cancel", "after": 0.0, "tag": "same"}) is True
    for unknown in ("", "nonsense", "ffff.1", ident + "0"):
        assert ref.call({"op": "cancel", "id": unknown}) is False
    assert ref.call({"op": "bad_cancel", "id": 7}) == "ConfigError"
    ref.call({"op": "set", "after": 0.5, "tag": "after"})
    wait_until(lambda: fired(ref) == ["after"], what="the later timer")
    assert fired(ref) == ["after"]


def test_send_after_checks_its_arguments_at_the_call(node):
    ref = node.spawn(ALARM, name="a")
    for after in (-1, float("nan"), float("inf"), "1", None, 2e9):
        assert ref.call({"op": "bad", "after": after}) == "ConfigError", after
    assert ref.call({"op": "bad_msg", "what": "object"}) == "BadMessage"
    assert ref.call({"op": "bad_msg", "what": "big", "size": (16 << 20) + 1})  # over the default limit == "MessageTooLarge"
    time.sleep(0.3)
    assert fired(ref) == []


def test_delete_erases_an_agents_timers(node):
    ref = node.spawn(ALARM, name="a")
    ref.call({"op": "set", "after": 0.5, "tag": "old"})
    assert node._store.read(lambda t: t.next_timer_due()) is not None  # the client's handle
    node.delete("a")
    assert node._store.read(lambda t: t.next_timer_due()) is None
    ref = node.spawn(ALARM, name="a")  # the same name: a new agent
    time.sleep(1.0)
    assert fired(ref) == []


@pytest.mark.slow
def test_timers_set_across_agent_and_node_kills_each_fire_exactly_once(node_dir, tmp_path):
    cfg = tmp_path / "beamish.toml"
    cfg.write_text("[node]\nmax_restarts = 1000\nmax_seconds = 1\n")
    node = start_node(node_dir, config=str(cfg))
    rng = random.Random(3)
    acked: list[int] = []  # a cast returns once committed: its timer is owed
    kills = 0
    try:
        ref = node.spawn(ALARM, name="a")
        for tag in range(120):
            ref.cast({"after": rng.uniform(0.0, 0.4), "tag": tag})
            acked.append(tag)
            if tag % 10 == 5:
                pid = node.info("a").pid
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
            if tag == 60:
                kill_node(node)  # timers committed and not due yet, casts not handled yet
                node = start_node(node_dir, config=str(cfg))
                ref = node.ref("a")
            time.sleep(0.01)
        wait_until(lambda: len(fired(ref)) >= len(acked), timeout=60,
                   what="every acknowledged timer")
        time.sleep(0.6)  # past the longest timer: a duplicate would have arrived
        got = fired(ref)
        assert sorted(got) == acked, sorted(set(acked) ^ set(got))
        assert kills >= 8
    finally:
        shutdown_quietly(node)
