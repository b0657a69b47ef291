"""Issue 9, the recover/attempt pipeline, through real nodes and real crashes: what
``Stop`` from ``recover`` gives up, that every restart runs ``recover`` until one succeeds,
that a handler must return its state, and that every attempt at a message counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from beamish.runtime import Node, RemoteError, start_node
from tests.conftest import shutdown_quietly, wait_until

pytestmark = pytest.mark.slow
AGENTS = "tests.agents.recovery_agents"


@pytest.fixture
def patient_node(node_dir: str, tmp_path) -> Iterator[Node]:  # type: ignore[no-untyped-def]
    """A node whose root allows 3 restarts per child within 60 s (not 5 s): a loaded
    machine must not spread a test's restarts past the window and change the outcome."""
    cfg = tmp_path / "beamish.toml"
    cfg.write_text("[node]\nmax_restarts = 3\nmax_seconds = 60\n")
    n = start_node(node_dir, config=str(cfg))
    try:
        yield n
    finally:
        shutdown_quietly(n)


def _lines(path) -> list[str]:  # type: ignore[no-untyped-def]
    try:
        with open(path) as fh:
            return fh.read().splitlines()
    except FileNotFoundError:
        return []


# -- Stop(reason) from recover (issue 9, item 2) ------------------------------------------------
def test_stop_from_recover_gives_the_call_up_and_a_permanent_agent_serves_the_next(node, tmp_path):
    log = tmp_path / "recover.log"
    ref = node.spawn(f"{AGENTS}:GivesUp", name="g", args={"log": str(log)})
    assert ref.call("incr") == 1
    with pytest.raises(RemoteError) as err:
        ref.call("poison", timeout=30)
    assert err.value.type == "ValueError" and err.value.failure.kind == "exception"
    # It stopped normally and, being permanent, came back: a second restart, counted.
    wait_until(lambda: (lambda i: i.status == "running" and i.restarts == 2)(node.info("g")),
               what="the come-back after the stop")
    assert ref.call("incr", timeout=10) == 2  # the next message is served, the state kept
    assert len(_lines(log)) == 1  # recover ran once: never again for the given-up message
    kinds = [e.kind for e in node.events() if e.name == "g"]
    assert "failed" not in kinds and kinds.count("restarted") == 2


def test_stop_from_recover_dead_letters_the_cast(node, tmp_path):
    log = tmp_path / "recover.log"
    ref = node.spawn(f"{AGENTS}:GivesUp", name="g", args={"log": str(log)})
    ref.cast("poison")
    ref.cast("incr")
    wait_until(lambda: node.dead_letters("g"), timeout=30, what="the poison cast dead-lettered")
    [dead] = node.dead_letters("g")
    assert dead["msg"] == "poison" and dead["failure"].exc_type == "ValueError"
    wait_until(lambda: node.info("g").restarts == 2, what="the come-back after the stop")
    assert ref.call("get", timeout=10) == 1  # the cast after the poison one was handled
    assert len(_lines(log)) == 1
    assert node.info("g").status == "running"


def test_stop_with_an_abnormal_reason_from_recover_restarts_a_transient_agent(node, tmp_path):
    log = tmp_path / "recover.log"
    ref = node.spawn(f"{AGENTS}:GivesUp", name="g", args={"log": str(log), "reason": "gave up"},
                     restart="transient")
    assert ref.call("incr") == 1
    with pytest.raises(RemoteError):
        ref.call("poison", timeout=30)
    wait_until(lambda: (lambda i: i.status == "running" and i.restarts == 2)(node.info("g")),
               what="the restart after the abnormal stop")
    assert ref.call("incr", timeout=10) == 2
    assert len(_lines(log)) == 1  # the restart after Stop does not run recover again
    assert node.info("g").last_failure.exc_type == "ValueError"  # what really went wrong

