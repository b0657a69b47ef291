"""The supervisor's rules hold across sleep and wake, through real processes: sleep is not
an exit, so it resets nothing (an agent that crashes on every message and sleeps between
them reaches ``failed`` as an always-awake one does, and its restart backoff grows); a
wake whose process cannot be started is a crash its supervisor handles (restart type,
intensity, ``exited``); a wake its supervisor cannot take now costs no fork, and happens
once it can, its message handled exactly once."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from beamish.runtime import RemoteError, start_node
from tests.conftest import shutdown_quietly, wait_until

pytestmark = pytest.mark.slow
SESSION = "tests.agents.session_agents:Session"
CRASHER = "tests.agents.rules_agents:Crasher"
SLOW_IMPORT = "tests.agents.slow_import_session:SlowSession"


def kinds(node, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.kind for e in node.events() if e.name == name]


def config(tmp_path, max_restarts: int, max_seconds: float) -> str:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "beamish.toml"
    cfg.write_text(f"[node]\nmax_restarts = {max_restarts}\nmax_seconds = {max_seconds}\n")
    return str(cfg)


def crash_until_failed(node, name: str, asleep: bool) -> int:  # type: ignore[no-untyped-def]
    """Crash ``name`` with a call each time it is back (asleep again, if ``asleep``);
    return how many crashes it took to be marked failed."""
    want = "sleeping" if asleep else "running"
    for crashes in range(1, 10):
        wait_until(lambda: node.info(name).status in (want, "failed"), timeout=30,
                   what=f"{name} {want} again")
        if node.info(name).status == "failed":
            return crashes - 1
        with pytest.raises(RemoteError):  # "crash on request", or (the last) "failed"
            node.call(name, {"op": "crash"}, timeout=30)
    wait_until(lambda: node.info(name).status == "failed", what=f"{name} failed")
    return 9


def test_an_agent_crashing_on_every_wake_reaches_failed_as_an_awake_one_does(
        node_dir, tmp_path):
    # Root's per-child intensity: 3 restarts in 60 s tolerated, the 4th crash fails it.
    # Failed before the fix: the sleeper's restart log was dropped at each sleep, so it
    # was restarted forever (its 5th crash still found it "sleeping" again).
    n = start_node(node_dir, config=config(tmp_path, 3, 60.0))
    try:
        n.spawn(CRASHER, name="awake")
        n.spawn(CRASHER, name="sleeper", idle_timeout=0.2, lazy=True)
        assert crash_until_failed(n, "awake", asleep=False) == 4
        assert crash_until_failed(n, "sleeper", asleep=True) == 4
        assert kinds(n, "sleeper").count("slept") >= 3  # it did sleep between its crashes
        assert n.info("sleeper").restarts == n.info("awake").restarts == 3
        n.restart("sleeper")  # by hand, with a fresh log, as for any failed agent
        assert n.call("sleeper", {"op": "add", "v": 1}, timeout=30) == 1
    finally:
        shutdown_quietly(n)


def test_the_restart_backoff_of_an_agent_crashing_on_every_wake_grows(node):
    # Failed before the fix: every wake adopted the agent with a fresh backoff attempt, so
    # every delay was the first one's (0.2-0.4 s).
    node.add_supervisor("slow", backoff=[0.2, 30.0], max_restarts=100, max_seconds=60.0)
    node.spawn(CRASHER, name="s", supervisor="slow", idle_timeout=0.2, lazy=True)
    for crash in range(3):
        wait_until(lambda: node.info("s").status == "sleeping", timeout=30, what="asleep")
        with pytest.raises(RemoteError, match="crash on request"):
            node.call("s", {"op": "crash"}, timeout=30)
        wait_until(lambda c=crash: kinds(node, "s").count("backoff") == c + 1,
                   what="its restart's backoff")
    delays = [float(re.search(r"restart in ([\d.]+)s", e.reason).group(1))  # type: ignore[union-attr]
              for e in node.events() if e.name == "s" and e.kind == "backoff"]
    # min_s * 2**attempt * (1 + jitter), jitter in [0, 1): each range above the last's.
    assert [0.2 * 2 ** i <= d <= 0.4 * 2 ** i for i, d in enumerate(delays)] == [True] * 3
    assert kinds(node, "s").count("slept") >= 2  # it slept between its crashes


@pytest.mark.parametrize(("restart", "ends"), [("permanent", "failed"),
                                               ("temporary", "exited")])
def test_a_wake_whose_fork_is_refused_goes_through_its_supervisors_rules(
        node_dir, tmp_path, restart, ends):
    # The zygote refuses to fork an agent whose module kills its importer: StartFailed.
    # Before the fix the wake marked it "failed" itself, whatever its restart type, with
    # no "exited" event and nothing counted.
    node = start_node(node_dir, config=config(tmp_path, 3, 60.0))
    try:
        refused_wake(node, restart, ends)
    finally:
        shutdown_quietly(node)


def refused_wake(node, restart: str, ends: str) -> None:  # type: ignore[no-untyped-def]
    node.spawn("tests.agents.zygote_exit_at_import:Never", name="never", lazy=True,
               restart=restart)
    node.cast("never", "hello")
    wait_until(lambda: node.info("never").status == ends, timeout=60, what=ends)
    events = kinds(node, "never")
    assert "exited" in events, events  # its supervisor heard of it as of any exit
    if restart == "permanent":
        # Restarted (each start refused, counted) until past root's intensity (3 in 60 s).
        assert node.info("never").restarts == 3
        assert events[-1] == "failed"
    else:
        assert node.info("never").restarts == 0  # temporary: never restarted, forgotten
        assert "removed" in events


def test_a_wake_cut_off_by_the_zygotes_death_is_restarted_and_its_message_handled_once(
        node_dir, tmp_path, monkeypatch):
    # The zygote dies while the wake's fork waits on it (it is probing the agent's slow
    # module): a transient failure its supervisor's restart gets over. Before the fix the
    # agent was left "failed" with its message unhandled.
    mark = tmp_path / "importing"
    monkeypatch.setenv("BMT_SLOW_IMPORT", "3")
    monkeypatch.setenv("BMT_SLOW_IMPORT_MARK", str(mark))
    n = start_node(node_dir)
    try:
        ref = n.spawn(SLOW_IMPORT, name="slow", lazy=True)
        ref.cast("hello")
        wait_until(mark.exists, timeout=30, what="the zygote probing the agent's module")
        # Titled "beamish zygote (node pid N)" once it runs; "python -m ...zygote" before.
        zygote = [c for c in psutil.Process(n.pid).children()
                  if "zygote" in " ".join(c.cmdline())]
        assert len(zygote) == 1
        os.kill(zygote[0].pid, signal.SIGKILL)
        wait_until(lambda: n.info("slow").status == "running", timeout=60, what="restarted")
        st = ref.call({"op": "get"}, timeout=60)
        assert (st["log"], st["inits"], st["recovers"]) == (["hello"], 1, 0)
        assert n.info("slow").restarts == 1
        assert "exited" in kinds(n, "slow")
    finally:
        shutdown_quietly(n)


def test_a_wake_its_supervisor_cannot_take_forks_nothing_until_it_can(
        node_dir, tmp_path):
    # Root fails a supervisor at its first exit (max_restarts = 0): "down" stays down,
    # its shell not running, until restarted by hand. Before the fix each 1 s scan forked
    # the sleeper, which its supervisor refused, and stopped it again ("sleep" written to
    # its terminated file each time).
    n = start_node(node_dir, config=config(tmp_path, 0, 60.0))
    terminated = tmp_path / "terminated"
    try:
        n.add_supervisor("down", max_restarts=0)
        n.spawn(SESSION, name="boom", supervisor="down")
        ref = n.spawn(SESSION, name="sleeper", supervisor="down", lazy=True,
                      args={"terminated": str(terminated)})
        os.kill(n.info("boom").pid, signal.SIGKILL)
        wait_until(lambda: any(e.kind == "failed" and e.name == "down" for e in n.events()),
                   what="supervisor 'down' failed")
        ref.cast("once")
        time.sleep(3.5)  # three scans or more
        info = n.info("sleeper")
        assert (info.status, info.processed) == ("sleeping", 0)
        assert not terminated.exists()  # no process was started (nor stopped)
        assert "woke" not in kinds(n, "sleeper")
        n.restart("down")
        wait_until(lambda: n.info("sleeper").processed == 1, timeout=30, what="its wake")
        st = ref.call({"op": "get"}, timeout=30)
        assert (st["log"], st["inits"]) == (["once"], 1)
        assert kinds(n, "sleeper").count("woke") == 1
    finally:
        shutdown_quietly(n)
