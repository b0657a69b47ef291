"""Hot code upgrade through real processes: an agent module is edited on disk (a tmp
package on the module path) and ``node.upgrade`` moves the running agents onto the new
code, one at a time. Checked: behaviour changes, ``code_change`` runs with the old
version, a rolling upgrade under load loses no message and fails no call (a ledger), a
module that fails to import stops everything before any move, a ``code_change`` that
raises stops the rollout with that agent back on its old code and its state untouched,
sleeping agents wake on the new code, new spawns use it, and the events."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest

from beamish.runtime import (
    AsyncNode,
    BeamishError,
    Node,
    RemoteError,
    UpgradeFailed,
    UpgradeImportError,
    start_node,
)
from tests.conftest import beamish, shutdown_quietly, wait_until

TEMPLATE = '''
import os
import time

from beamish.runtime import Agent


class Worker(Agent):
    version = {version}

    def init(self, args):
        return {{"n": 0, "seen": [], "bad": bool(args.get("bad"))}}

    def handle_call(self, msg, state):
        if msg == "tag":
            return "{tag}", state
        if msg == "get":
            return state, state
        if isinstance(msg, list) and msg[0] == "slow":
            time.sleep(msg[1])
            return "{tag}", state
        if isinstance(msg, list) and msg[0] == "hold":  # says it took it; waits for leave
            open(msg[1], "w").close()
            while not os.path.exists(msg[2]):
                time.sleep(0.01)
            return "{tag}", state
        if msg[0] == "seq":
            return self.handle_cast(msg, state)["n"], state
        state["n"] += 1
        state["seen"].append(msg[1])
        return state["n"], state

    def handle_cast(self, msg, state):
        state["n"] += 1
        if msg[0] == "seq":  # [seq, sender, i]: each sender's i in order, once each
            nxt = state.setdefault("next", {{}})
            if msg[2] != nxt.get(msg[1], 0):
                state.setdefault("anomalies", []).append(msg[1:])
            nxt[msg[1]] = msg[2] + 1
            return state
        state["seen"].append(msg[1])
        return state

    def code_change(self, old_version, state):
        {code_change}
'''


@dataclass
class AgentModule:
    """A module of agents in a tmp package on the module path, rewritten by `write`."""

    root: str
    package: str

    @property
    def module(self) -> str:
        return f"{self.package}.agents"

    @property
    def cls(self) -> str:
        return f"{self.module}:Worker"

    def write(self, tag: str, version: int = 1, code_change: str = "return state",
              source: str | None = None) -> None:
        """Put this version of the module on disk (its stale bytecode removed: the new
        file may have the old one's size and modification second)."""
        pkg = os.path.join(self.root, self.package)
        with open(os.path.join(pkg, "agents.py"), "w") as fh:
            fh.write(source if source is not None else TEMPLATE.format(
                tag=tag, version=version, code_change=code_change))
        shutil.rmtree(os.path.join(pkg, "__pycache__"), ignore_errors=True)


@pytest.fixture
def agents_module() -> Iterator[AgentModule]:
    root = tempfile.mkdtemp(prefix="bmu-", dir="/tmp")
    package = f"upg_{uuid.uuid4().hex[:8]}"
    os.makedirs(os.path.join(root, package))
    open(os.path.join(root, package, "__init__.py"), "w").close()
    mod = AgentModule(root, package)
    mod.write("v1")
    sys.path.insert(0, root)  # the node imports agents with the starter's sys.path
    try:
        yield mod
    finally:
        sys.path.remove(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def unode(node_dir: str, agents_module: AgentModule) -> Iterator[Node]:
    n = start_node(node_dir)
    try:
        yield n
    finally:
        shutdown_quietly(n)


def zygotes(node: Node) -> int:
    """How many zygotes the node runs (its children: agents are the zygotes')."""
    count = 0
    for child in psutil.Process(node.pid).children():
        try:
            if child.name() == "beamish-zygote" or "zygote" in " ".join(child.cmdline()):
                count += 1
        except psutil.Error:
            continue
    return count


def upgraded_events(node: Node) -> list[tuple[str, str]]:
    return [(e.name, e.reason) for e in node.events() if e.kind == "upgraded"]


def test_an_upgrade_runs_the_new_code_and_new_spawns_use_it(unode, agents_module):
    a = unode.spawn(agents_module.cls, name="a")
    assert a.call(["add", "k1"]) == 1 and a.call("tag") == "v1"
    agents_module.write("v2")
    # Without an upgrade the zygote keeps serving the module it preloaded.
    unode.spawn(agents_module.cls, name="before")
    assert unode.call("before", "tag") == "v1"
    pid = a.info().pid

    report = unode.upgrade()

    assert report.ok
    assert [m.name for m in report.moved] == ["a", "before"]
    assert a.call("tag") == "v2" and unode.call("before", "tag") == "v2"
    assert a.info().pid != pid
    assert a.call("get")["seen"] == ["k1"]  # its committed state came along
    assert a.info().restarts == 0  # a move is no restart
    unode.spawn(agents_module.cls, name="after")
    assert unode.call("after", "tag") == "v2"
    assert upgraded_events(unode) == [("a", "version 1 -> 1"), ("before", "version 1 -> 1")]
    # The old zygote is retired: no agent runs its code any more.
    wait_until(lambda: zygotes(unode) == 1, what="the old zygote to be retired")


def test_a_version_bump_runs_code_change_with_the_old_version(unode, agents_module):
    a = unode.spawn(agents_module.cls, name="a")
    a.call(["add", "k1"])
    agents_module.write("v2", version=2,
                        code_change='state["from"] = old_version\n        return state')

    report = unode.upgrade([agents_module.module])

    assert [(m.name, m.old_version, m.new_version) for m in report.moved] == [("a", 1, 2)]
    assert a.call("get") == {"n": 1, "seen": ["k1"], "bad": False, "from": 1}
    assert upgraded_events(unode) == [("a", "version 1 -> 2")]
    # Migrated once: it was committed at version 2, so a restart does not migrate again.
    pid = a.info().pid
    os.kill(pid, 9)
    wait_until(lambda: a.info().status == "running" and a.info().pid != pid,
               what="the agent to be restarted")
    assert a.call("get")["from"] == 1


def test_a_rolling_upgrade_under_load_loses_nothing_and_fails_no_call(unode, agents_module):
    unode.add_supervisor("workers")
    names = ["r1", "w1", "r2", "w2"]
    for name in names:
        unode.spawn(agents_module.cls, name=name,
                    supervisor="workers" if name.startswith("w") else "root")
    agents_module.write("v2", version=2,
                        code_change='state["from"] = old_version\n        return state')
    # Acknowledged messages per agent and sender: each sender's are numbered 0, 1, ...
    acked = {n: {"x": 0, "y": 0} for n in names}
    errors: list[BaseException] = []
    stop = threading.Event()

    def send(kind: str) -> None:
        # Its own client: a caller as any other process would be. "x" casts unthrottled
        # (a backlog builds while an agent moves), "y" calls, waiting behind it.
        from beamish.runtime import connect
        client = connect(unode.dir)
        try:
            i = 0
            while not stop.is_set():
                name = names[i % len(names)]
                msg = ["seq", kind, acked[name][kind]]
                try:
                    if kind == "y":
                        client.call(name, msg)  # default timeout: 5 s
                    else:
                        client.cast(name, msg)
                except BaseException as exc:  # noqa: BLE001 - every failure is the test's
                    errors.append(exc)
                    return
                acked[name][kind] += 1
                i += 1
        finally:
            client.close()
    senders = [threading.Thread(target=send, args=(k,)) for k in ("x", "y")]
    for t in senders:
        t.start()
    wait_until(lambda: all(v["y"] >= 5 for v in acked.values()), what="traffic")
    try:
        report = unode.upgrade()
    finally:
        stop.set()
        for t in senders:
            t.join(60)

    assert errors == []
    # Per supervisor in the tree's order, each one's agents in start order.
    assert [m.name for m in report.moved] == ["r1", "r2", "w1", "w2"]
    for name in names:
        final = wait_until(lambda n=name: (lambda s: s if s["n"] >= sum(acked[n].values())
                                           else None)(unode.call(n, "get")),
                           timeout=60, what=f"{name}'s casts to be applied")
        # Each acknowledged message applied exactly once, in its sender's order.
        assert final["next"] == acked[name] and "anomalies" not in final, name
        assert final["n"] == sum(acked[name].values())
        assert final["from"] == 1 and unode.call(name, "tag") == "v2"
    assert sorted(n for n, _ in upgraded_events(unode)) == sorted(names)
    # Each moved between two messages, ahead of its backlog: none was killed.
    assert [e.name for e in unode.events() if e.kind == "killed"] == []


def test_a_call_in_flight_during_the_move_gets_its_reply(unode, agents_module):
    a = unode.spawn(agents_module.cls, name="a")
    agents_module.write("v2")
    taken = os.path.join(agents_module.root, "taken")
    leave = os.path.join(agents_module.root, "leave")
    in_hand: list[object] = []
    queued: list[object] = []
    caller = threading.Thread(
        target=lambda: in_hand.append(a.call(["hold", taken, leave], timeout=60)))
    caller.start()
    wait_until(lambda: os.path.exists(taken), what="the agent to take the held call")
    behind = threading.Thread(target=lambda: queued.append(a.call("tag", timeout=60)))
    behind.start()  # waits in the mailbox; handled by the old code or the new
    reports: list[object] = []
    upgrader = threading.Thread(target=lambda: reports.append(unode.upgrade()))
    upgrader.start()
    try:
        # The upgrade has checked the new code and is moving the agent, which still has
        # the held call in hand (it cannot move before finishing it).
        wait_until(lambda: "moving 1 agents onto the new code" in _node_log(unode),
                   timeout=60, what="the upgrade to start moving the agent")
        assert caller.is_alive() and upgrader.is_alive()
    finally:
        open(leave, "w").close()
        upgrader.join(60)
        caller.join(60)
        behind.join(60)
    (report,) = reports
    assert report.ok
    assert in_hand == ["v1"]  # the message in hand was finished by the old code
    assert queued in (["v1"], ["v2"])
    assert a.call("tag") == "v2"


def _node_log(node: Node) -> str:
    with open(os.path.join(node.dir, "node.log"), errors="replace") as fh:
        return fh.read()


def test_a_module_that_fails_to_import_stops_before_anything_moves(unode, agents_module):
    a = unode.spawn(agents_module.cls, name="a")
    pid = a.info().pid
    agents_module.write("", source="from beamish.runtime import Agent\n"
                                   "raise RuntimeError('the config is missing')\n")

    with pytest.raises(UpgradeImportError) as caught:
        unode.upgrade()

    err = caught.value
    assert err.module == agents_module.module
    assert err.error == "RuntimeError: the config is missing"
    assert agents_module.module in str(err) and "no agent was moved" in str(err)
    assert err.report.moved == () and [s.name for s in err.report.skipped] == ["a"]
    assert a.info().pid == pid and a.call("tag") == "v1"  # the old code keeps serving
    assert upgraded_events(unode) == []


def test_a_missing_class_stops_before_anything_moves(unode, agents_module):
    unode.spawn(agents_module.cls, name="a")
    agents_module.write("", source="X = 1\n")
    with pytest.raises(UpgradeImportError) as caught:
        unode.upgrade()
    assert caught.value.module == agents_module.cls
    assert "has no class 'Worker'" in caught.value.error
    assert unode.call("a", "tag") == "v1"


def test_a_raising_code_change_stops_the_rollout_and_keeps_the_rest_on_old_code(
        unode, agents_module):
    for name, bad in (("a", False), ("b", True), ("c", False)):
        unode.spawn(agents_module.cls, name=name, args={"bad": bad})
        unode.call(name, ["add", f"{name}0"])
    pids = {n: unode.info(n).pid for n in "abc"}
    agents_module.write("v2", version=2, code_change=(
        'if state["bad"]:\n            raise ValueError("cannot migrate " + str(state["n"]))'
        '\n        return state'))

    with pytest.raises(UpgradeFailed) as caught:
        unode.upgrade()

    report = caught.value.report
    assert [m.name for m in report.moved] == ["a"]
    assert [(f.name, f.error, f.restored) for f in report.failed] == [
        ("b", "ValueError: cannot migrate 1", True)]
    assert [(s.name, s.why) for s in report.skipped] == [
        ("c", "not moved: the upgrade stopped at agent 'b'")]
    assert "agent 'b': ValueError: cannot migrate 1" in str(caught.value)
    assert unode.call("a", "tag") == "v2"
    # b: back on its old code, state untouched (no restart counted); c never moved.
    assert unode.call("b", "tag") == "v1" and unode.info("b").restarts == 0
    assert unode.call("b", "get") == {"n": 1, "seen": ["b0"], "bad": True}
    assert unode.call("b", ["add", "b1"]) == 2
    assert unode.info("c").pid == pids["c"] and unode.call("c", "tag") == "v1"
    # A crash of one left behind restarts on its own (old) code.
    os.kill(pids["c"], 9)
    wait_until(lambda: unode.info("c").status == "running" and unode.info("c").pid != pids["c"],
               what="c to be restarted")
    assert unode.call("c", "tag") == "v1"
    assert [n for n, _ in upgraded_events(unode)] == ["a"]
    assert zygotes(unode) == 2  # the old one serves b and c

    # Fixed: the next upgrade moves those left behind, and both old zygotes retire.
    agents_module.write("v3", version=2, code_change='state["from"] = old_version\n'
                                                     '        return state')
    report = unode.upgrade()
    assert [(m.name, m.old_version, m.new_version) for m in report.moved] == [
        ("a", 2, 2), ("b", 1, 2), ("c", 1, 2)], report  # its skipped/failed say why
    assert unode.call("b", "get") == {"n": 2, "seen": ["b0", "b1"], "bad": True, "from": 1}
    assert {unode.call(n, "tag") for n in "abc"} == {"v3"}
    wait_until(lambda: zygotes(unode) == 1, what="the old zygotes to be retired")


def test_a_sleeping_agent_wakes_on_the_new_code(unode, agents_module):
    s = unode.spawn(agents_module.cls, name="s")
    s.call(["add", "k1"])
    unode.sleep("s")
    agents_module.write("v2")

    report = unode.upgrade()

    assert [(k.name, k.why) for k in report.skipped] == [("s", "asleep: it wakes on the new code")]
    assert s.info().status == "sleeping"
    assert s.call("tag") == "v2" and s.call("get")["seen"] == ["k1"]


def test_async_node_upgrades(unode, agents_module):
    unode.spawn(agents_module.cls, name="a")
    agents_module.write("v2")

    async def run():
        return await AsyncNode(unode).upgrade([agents_module.package])
    report = asyncio.run(run())
    assert [m.name for m in report.moved] == ["a"]
    assert unode.call("a", "tag") == "v2"


def test_the_cli_prints_the_report_and_fails_when_the_rollout_stops(unode, agents_module):
    unode.spawn(agents_module.cls, name="a", args={"bad": True})
    agents_module.write("v2")
    done = beamish("upgrade", agents_module.module, "--dir", unode.dir, check=True)
    assert "moved    a (root) version 1 -> 1" in done.stdout
    assert "upgrade complete: 1 moved, 0 failed, 0 skipped" in done.stdout

    agents_module.write("v3", version=2, code_change='raise KeyError("n")')
    done = beamish("upgrade", "--json", "--dir", unode.dir)
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["ok"] is False and out["failed"] == [["a", "root", "KeyError: 'n'", True]]
    assert "the upgrade stopped" in done.stderr
    assert unode.call("a", "tag") == "v2"

    done = beamish("upgrade", "not a module", "--dir", unode.dir)
    assert done.returncode == 2 and "is not a module name" in done.stderr


CONFIG = '''
[[supervisor]]
name = "workers"

[[agent]]
name = "cfg"
class = "{cls}"
supervisor = "workers"
restart = "{restart}"
args = {{ bad = {bad} }}
limits = {{ {limits} }}

[[agent]]
name = "other"
class = "{cls}"
'''


def test_config_entry_changes_are_applied_as_the_agent_moves(node_dir, agents_module):
    path = os.path.join(os.path.dirname(node_dir), "beamish.toml")

    def write_config(**fields: str) -> None:
        with open(path, "w") as fh:
            fh.write(CONFIG.format(**{"cls": agents_module.cls, "restart": "permanent",
                                      "bad": "false", "limits": "memory_mb = 512",
                                      **fields}))
    write_config()
    n = start_node(node_dir, config=path)
    try:
        n.call("cfg", ["add", "k1"])
        assert n.call("cfg", ["slow", 0.6]) == "v1"  # no handler_timeout yet
        write_config(limits="memory_mb = 512, handler_timeout = 0.3", bad="true")
        pid = n.info("other").pid

        report = n.upgrade(config=path)

        # Only the agent whose entry changed moved (no module was asked).
        assert [(m.name, m.config) for m in report.moved] == [("cfg", ("args", "limits"))]
        assert n.info("other").pid == pid
        with pytest.raises(RemoteError, match="timeout"):
            n.call("cfg", ["slow", 0.6], timeout=30)  # its new limit applies
        assert n.call("cfg", "get")["seen"] == ["k1"]  # args are init's: state kept
        assert upgraded_events(n) == [("cfg", "version 1 -> 1; config: args, limits")]

        write_config(cls=agents_module.module + ":Gone")
        report = n.upgrade(config=path)
        assert report.moved == ()
        assert ("cfg", "its config entry is not applied: its cls changed, which takes a new "
                       "spawn (`beamish stop cfg`, then spawn it as the entry says)") in [
            (s.name, s.why) for s in report.skipped]
    finally:
        shutdown_quietly(n)


CHATTY_AT_EXIT = "\nimport atexit\natexit.register(print, 'chatty: goodbye')\n"


def test_a_module_printing_at_exit_upgrades_and_leaves_one_zygote(unode, agents_module):
    a = unode.spawn(agents_module.cls, name="a")
    agents_module.write("", source=TEMPLATE.format(tag="v2", version=1,
                                                   code_change="return state")
                        + CHATTY_AT_EXIT)
    report = unode.upgrade()
    assert report.ok and [m.name for m in report.moved] == ["a"]
    assert a.call("tag") == "v2"
    wait_until(lambda: zygotes(unode) == 1, what="the old zygote to be retired")


def test_a_chatty_module_that_fails_to_import_is_refused_typed_and_its_zygote_stopped(
        unode, agents_module):
    a = unode.spawn(agents_module.cls, name="a")
    agents_module.write("", source=CHATTY_AT_EXIT
                        + "raise RuntimeError('the config is missing')\n")
    with pytest.raises(BeamishError) as caught:
        unode.upgrade()
    wait_until(lambda: zygotes(unode) == 1, what="the refused upgrade's zygote to stop")
    assert isinstance(caught.value, UpgradeImportError)
    assert caught.value.error == "RuntimeError: the config is missing"
    assert a.call("tag") == "v1"
