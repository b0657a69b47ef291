"""Sleeping agents at the edges of their transitions, through real processes: monitors and
links issued while an agent falls asleep or wakes, the node's handles for sleeping agents'
links once nothing holds them, an agent that stops itself from its first wake's ``init``,
a sleep whose ``terminate`` overruns its shutdown time, and ``max_awake`` against an agent
in the middle of a handler. Ledgers of acknowledged casts are checked exactly."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from beamish.runtime import RemoteError, start_node
from beamish.runtime.node.sessions import SLEEPERS
from tests.conftest import shutdown_quietly, wait_until

SESSION = "tests.agents.session_agents:Session"
WATCHER = "tests.agents.race_agents:Watcher"
SLOW = "tests.agents.race_agents:Slow"
SELF_STOPPER = "tests.agents.race_agents:SelfStopper"


def state(ref, timeout: float = 30):
    return ref.call({"op": "get"}, timeout=timeout)


def kinds(node, name: str) -> list[tuple[str, str]]:
    return [(e.kind, e.reason) for e in node.events() if e.name == name]


def _lines(path: str) -> list[str]:
    try:
        with open(path) as fh:
            return fh.read().split()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("watch", ["monitor", "link"])
def test_monitors_and_links_issued_while_an_agent_falls_asleep_and_wakes_fire_once(
        node, tmp_path, watch):
    # The watcher issues ctx.monitor (or ctx.link) in a loop while the target runs a slow
    # terminate("sleep"), exits, is recorded sleeping, and is woken again: every one of
    # them lands on the agent, so its crash afterwards is heard exactly once, with its
    # reason (no Down(noproc), no AgentNotFound, no monitor left on a lost handle).
    watcher = node.spawn(WATCHER, name="w")
    target = node.spawn(SESSION, name="t", args={"slow_sleep": 0.3})
    if watch == "link":
        watcher.call({"op": "link", "target": "t"})  # trap_exits is off: Exit would kill w
    issued: list[object] = []

    def watch_for() -> None:
        try:
            issued.append(watcher.call({"op": f"{watch}_for", "target": "t", "seconds": 4.0},
                                       timeout=60))
        except RemoteError as exc:  # a link refused with AgentNotFound: the race lost
            issued.append(exc)
    th = threading.Thread(target=watch_for)
    th.start()
    time.sleep(0.2)
    for i in range(3):  # while it loops: asleep, then woken, three times
        node.sleep("t")  # slow: terminate("sleep") takes 0.3 s, then the exit and the txn
        assert target.call({"op": "add", "v": i}, timeout=30) == i + 1
    th.join(timeout=60)
    assert isinstance(issued[0], int) and issued[0] > 0, issued
    assert state(watcher)["log"] == []  # no Down for a sleep or a wake
    assert node.info("w").restarts == 0  # no ctx.link refused (a crash of its handler)
    os.kill(node.info("t").pid, signal.SIGKILL)
    if watch == "monitor":
        wait_until(lambda: state(watcher)["log"], what="the Down of the crash")
        time.sleep(0.3)
        assert state(watcher)["log"] == [["Down", "t", "abnormal: killed: killed by SIGKILL"]]
    else:  # the link killed the watcher: restarted once, by its supervisor
        wait_until(lambda: node.info("w").restarts == 1 and node.info("w").status == "running",
                   timeout=30, what="the linked watcher killed and restarted")
        assert node.info("w").last_failure.kind == "killed"


def test_the_node_drops_its_hold_on_a_sleeping_agent_once_its_watchers_exit(node):
    # A watcher monitors (or links to) sleeping sessions: the node keeps a handle for
    # each, and lets it go once the watcher's process exits (a crash or a stop), not when
    # the session next wakes; a sleeper still watched by another keeps its handle.
    for i in range(40):
        node.spawn(SESSION, name=f"s{i}", lazy=True)
    monitors = node.spawn(SESSION, name="m")
    linker = node.spawn(SESSION, name="l", args={})
    for i in range(40):
        monitors.call({"op": "monitor", "target": f"s{i}"})
    for i in range(20, 40):
        linker.call({"op": "link", "target": f"s{i}"})
    assert node.status().held == 40
    os.kill(node.info("m").pid, signal.SIGKILL)  # a crash: its monitors die with it
    wait_until(lambda: node.status().held == 20, what="the monitored-only handles dropped")
    node.stop("l")  # a normal exit: its links go without killing anyone
    wait_until(lambda: node.status().held == 0, what="every handle dropped")
    assert all(node.info(f"s{i}").status == "sleeping" for i in range(40))
    # A sleeper monitored again, woken, put to sleep: held while watched, and only then.
    watcher = node.spawn(SESSION, name="w")
    watcher.call({"op": "monitor", "target": "s0"})
    node.ref("s0").call({"op": "add", "v": 1}, timeout=30)
    # Awake: its process holds the monitor (once its wake ends, a moment after its reply).
    wait_until(lambda: node.status().held == 0, what="the wake to take the handle over")
    node.sleep("s0")
    assert node.status().held == 1
    node.stop("w")
    wait_until(lambda: node.status().held == 0, what="the handle of s0 dropped")


def test_an_agent_that_stops_itself_from_its_first_wakes_init_ends_stopped(node, tmp_path):
    # Its init runs `beamish stop` on itself while the wake waits for that init: the stop
    # ends the wake (its starting process is killed) instead of waiting for it.
    pidfile = str(tmp_path / "pid")
    ref = node.spawn(SELF_STOPPER, name="ss", lazy=True,
                     args={"dir": node.dir, "pidfile": pidfile})
    ref.cast("hello")  # acknowledged: kept in its mailbox
    wait_until(lambda: node.info("ss").status == "stopped", timeout=30,
               what="the agent stopped by its own init")
    with open(pidfile) as fh:
        pid = int(fh.read())
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="its process gone")
    time.sleep(1.5)  # a scan of the pending wakes: its stale mark wakes nothing
    info = node.info("ss")
    assert (info.status, info.mailbox_depth, info.processed, node.status().awake) == \
        ("stopped", 1, 0, 0)
    events = [k for k, _ in kinds(node, "ss")]
    assert events[-1] == "stopped" and "woke" not in events and "failed" not in events


def test_a_sleep_that_kills_an_agent_mid_handler_keeps_that_message_for_its_next_wake(
        node, tmp_path):
    handling = str(tmp_path / "handling")
    ref = node.spawn(SLOW, name="b", shutdown=0.3, args={"handling": handling})
    ref.cast({"v": 0, "slow": 1.5})  # acknowledged: the ledger
    wait_until(lambda: _lines(handling) == ["0"], what="the slow handler to begin")
    node.sleep("b")  # its stop waits 0.3 s, then kills it in the middle of that handler
    for i in range(1, 6):
        ref.cast(i)
    wait_until(lambda: node.info("b").processed >= 6, timeout=60, what="the ledger handled")
    assert state(ref)["log"] == [0, 1, 2, 3, 4, 5]  # each once, in order
    assert _lines(handling) == ["0", "0"]  # begun again once, by the wake
    events = [k for k, _ in kinds(node, "b")]
    assert "killed" in events and events.index("slept") < events.index("woke")
    info = node.info("b")
    assert (info.restarts, info.last_failure) == (0, None)  # a sleep, not a crash


def test_a_sleep_whose_terminate_overruns_its_shutdown_keeps_the_mailbox_for_the_wake(
        node, tmp_path):
    going, done = str(tmp_path / "going"), str(tmp_path / "done")
    ref = node.spawn(SESSION, name="b", shutdown=0.3,
                     args={"slow_terminate": 2.0, "terminating": going, "terminated": done})
    ref.cast(0)  # acknowledged: the ledger
    sleeper = threading.Thread(target=node.sleep, args=("b",))
    sleeper.start()
    wait_until(lambda: os.path.exists(going), what="terminate('sleep') to begin")
    for i in range(1, 6):
        ref.cast(i)  # committed while it terminates: kept for the wake
    sleeper.join(timeout=60)
    wait_until(lambda: node.info("b").processed >= 6, timeout=60, what="the ledger handled")
    assert state(ref)["log"] == [0, 1, 2, 3, 4, 5]
    assert not os.path.exists(done)  # its terminate was cut short by the kill
    events = [k for k, _ in kinds(node, "b")]
    assert "killed" in events and events.index("slept") < events.index("woke")
    assert (node.info("b").restarts, node.info("b").last_failure) == (0, None)


def test_max_awake_never_puts_an_agent_to_sleep_in_the_middle_of_a_handler(
        node_dir, tmp_path):
    config = tmp_path / "beamish.toml"
    config.write_text("[node]\nmax_awake = 1\n")
    node = start_node(node_dir, config=str(config))
    try:
        handling = str(tmp_path / "handling")
        busy = node.spawn(SLOW, name="busy", shutdown=0.2, args={"handling": handling})
        busy.cast({"v": 0, "slow": 3.0})  # acknowledged: the ledger
        wait_until(lambda: _lines(handling) == ["0"], what="the slow handler to begin")
        for i in range(4):  # each wake puts two awake, one over max_awake
            node.spawn(SESSION, name=f"o{i}", lazy=True).call({"op": "add", "v": i},
                                                               timeout=30)
            time.sleep(0.3)
        wait_until(lambda: node.info("busy").processed >= 1, timeout=30,
                   what="the slow handler's end")
        assert _lines(handling) == ["0"]  # begun once: never stopped in the middle
        assert "killed" not in [k for k, _ in kinds(node, "busy")]
        assert state(busy)["log"] == [0]
        wait_until(lambda: node.status().awake <= 1, what="max_awake")
    finally:
        shutdown_quietly(node)


def test_max_awake_does_not_stop_an_agent_that_became_busy_after_it_was_chosen(
        node_dir, tmp_path):
    # Every sleep worker is held by a slow terminate("sleep"), so the sleep max_awake
    # chose for the idle agent waits; meanwhile that agent begins a long handler. When
    # the sleep's turn comes, the agent is not idle any more: it is left awake (it was
    # killed in the middle of its handler, after its shutdown time).
    config = tmp_path / "beamish.toml"
    config.write_text(f"[node]\nmax_awake = {SLEEPERS}\n")
    node = start_node(node_dir, config=str(config))
    try:
        for i in range(SLEEPERS):
            node.spawn(SESSION, name=f"slow{i}", idle_timeout=0.2, shutdown=30,
                       args={"slow_terminate": 5.0, "terminated": str(tmp_path / f"done{i}"),
                             "terminating": str(tmp_path / f"going{i}")})
        wait_until(lambda: all(os.path.exists(tmp_path / f"going{i}")
                               for i in range(SLEEPERS)),
                   timeout=30, what="every sleep worker in a slow terminate('sleep')")
        handling = str(tmp_path / "handling")
        busy = node.spawn(SLOW, name="busy", shutdown=0.2, args={"handling": handling})
        time.sleep(1.5)  # one over max_awake, and the only idle one: chosen, its sleep waits
        busy.cast({"v": 0, "slow": 8.0})  # acknowledged: the ledger
        wait_until(lambda: _lines(handling) == ["0"], what="the slow handler to begin")
        wait_until(lambda: all(node.info(f"slow{i}").status == "sleeping"
                               for i in range(SLEEPERS)),
                   timeout=60, what="the slow sleeps done (the chosen sleep's turn)")
        wait_until(lambda: node.info("busy").processed >= 1, timeout=30,
                   what="the slow handler's end")
        assert _lines(handling) == ["0"]  # begun once: never stopped in the middle
        assert "killed" not in [k for k, _ in kinds(node, "busy")]
        assert state(busy)["log"] == [0]
    finally:
        shutdown_quietly(node)
