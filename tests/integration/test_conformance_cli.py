"""Issue 9, the CLI and the node's command dispatch: every error path says what happened and
what to do (real node, real agents, real sockets; the CLI run as a subprocess)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys

import pytest

from beamish.runtime.client.cli import build_parser
from tests.conftest import REPO, beamish

pytestmark = pytest.mark.slow


# -- item 9: the JSON hint fits the input ----------------------------------------------------

def test_an_object_with_bare_keys_gets_the_object_hint(node_dir):
    proc = beamish("spawn", "tests.agents.basic:Counter", "--args", "{start: 1}",
                   "--dir", node_dir)
    assert proc.returncode == 2, proc.stderr
    assert "not valid JSON" in proc.stderr
    assert "keys" in proc.stderr and '{"start": 1}' in proc.stderr
    assert '\'"incr"\'' not in proc.stderr  # the string hint is wrong for an object


def test_single_quotes_get_the_double_quote_hint(node_dir):
    proc = beamish("call", "c1", "['a']", "--dir", node_dir)
    assert proc.returncode == 2 and "double quotes" in proc.stderr, proc.stderr


def test_a_bare_word_still_gets_the_string_hint(node_dir):
    proc = beamish("call", "c1", "incr", "--dir", node_dir)
    assert proc.returncode == 2 and '\'"incr"\'' in proc.stderr, proc.stderr


# -- item 10: a CLI user is told the CLI command --------------------------------------------

def test_spawn_into_a_missing_supervisor_names_the_cli_command(node):
    proc = beamish("spawn", "tests.agents.basic:Counter", "--supervisor", "nosuch",
                   "--dir", node.dir)
    assert proc.returncode == 1
    assert "beamish add-supervisor nosuch" in proc.stderr, proc.stderr
    from beamish.runtime.errors import SpawnError
    with pytest.raises(SpawnError, match=r"node\.add_supervisor\('nosuch'"):
        node.spawn("tests.agents.basic:Counter", supervisor="nosuch")


# -- item 11: help for every argument, --version, limits, backoff, bench --dir ---------------

def _actions(parser: argparse.ArgumentParser, path: str = "beamish"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_argument_of_every_verb_has_help():
    missing = [f"{path}: {action.option_strings or action.dest}"
               for path, action in _actions(build_parser()) if not action.help]
    assert not missing, "arguments without help text:\n" + "\n".join(missing)


def test_help_gives_units_and_defaults():
    out = beamish("call", "--help").stdout
    assert "seconds" in out and "default 5" in out, out
    out = beamish("spawn", "--help").stdout
    for word in ("--memory-mb", "--handler-timeout", "--cpu-seconds", "--shutdown",
                 "default root"):
        assert word in out, out


def test_version():
    proc = beamish("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("beamish "), proc


def test_cli_spawn_sets_limits_and_add_supervisor_sets_backoff(node):
    proc = beamish("add-supervisor", "slow", "--backoff", "0.5", "2", "--dir", node.dir)
    assert proc.returncode == 0, proc.stderr
    proc = beamish("spawn", "tests.agents.basic:Counter", "--name", "lim", "--supervisor",
                   "slow", "--memory-mb", "256", "--handler-timeout", "7.5",
                   "--cpu-seconds", "30", "--shutdown", "brutal_kill", "--dir", node.dir)
    assert proc.returncode == 0, proc.stderr
    rec = node._store.read(lambda t: t.get_agent("lim"))
    assert rec.limits == {"memory_mb": 256.0, "handler_timeout": 7.5, "cpu_seconds": 30.0}
    assert rec.shutdown == "brutal_kill"
    sup = node._store.read(lambda t: t.get_sup("slow"))
    assert sup.backoff == (0.5, 2.0)


def test_cli_refuses_bad_limits(node):
    proc = beamish("spawn", "tests.agents.basic:Counter", "--memory-mb", "-1", "--dir", node.dir)
    assert proc.returncode == 2 and "--memory-mb" in proc.stderr, proc.stderr


def test_bench_refuses_dir(node_dir):
    for argv in (("bench", "--quick", "--dir", node_dir), ("--dir", node_dir, "bench")):
        proc = beamish(*argv)
        assert proc.returncode == 2 and "--dir" in proc.stderr, proc
        assert not os.path.exists(node_dir)


# -- item 4: a --dir that cannot be used says why, exit 2 -------------------------------------

def _as_unprivileged() -> list[str]:
    """A command prefix under which file permissions apply: root ignores them unless it
    drops CAP_DAC_OVERRIDE (setpriv keeps uid 0, so the venv stays readable)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_an_unwritable_dir_is_refused_clearly(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        target = str(parent / "node")
        for argv in (["node", "start"], ["node", "start", "--foreground"]):
            proc = subprocess.run(
                [*_as_unprivileged(), sys.executable, "-m", "beamish.runtime", *argv,
                 "--dir", target], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2, proc
            assert "Traceback" not in proc.stderr and "permission denied" in proc.stderr, proc
            assert "--dir" in proc.stderr
    finally:
        parent.chmod(0o755)


def test_a_dir_naming_a_file_is_refused_clearly(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a dir")
    for argv in (["node", "start"], ["node", "start", "--foreground"], ["ps"], ["node", "status"],
                 ["spawn", "tests.agents.basic:Counter"]):
        proc = beamish(*argv, "--dir", str(afile))
        assert proc.returncode == 2, (argv, proc)
        assert "Traceback" not in proc.stderr and "not a directory" in proc.stderr, (argv, proc)


# -- item 5: --foreground says why it did not start -------------------------------------------

def test_foreground_on_a_running_nodes_dir_says_so(node):
    proc = beamish("node", "start", "--foreground", "--dir", node.dir)
    assert proc.returncode == 2
    assert "already runs" in proc.stderr and "beamish node stop" in proc.stderr, proc.stderr


def test_foreground_whose_open_fails_says_so(node_dir):
    os.makedirs(node_dir, mode=0o700)
    with open(os.path.join(node_dir, "store"), "w") as fh:
        fh.write("in the way")
    proc = beamish("node", "start", "--foreground", "--dir", node_dir)
    assert proc.returncode == 2, proc
    assert "beamish: the node did not start" in proc.stderr, proc.stderr
    assert "store" in proc.stderr and "another --dir" in proc.stderr


# -- item 7 of the issue: a TypeError inside the node is a bug, not a user error -------------

def test_an_internal_type_error_is_reported_as_a_bug(node):
    from beamish.runtime.errors import BeamishInternalError
    node.spawn("tests.agents.basic:Counter", name="c")
    # A registry record the node's own code cannot read (as a bug would leave it): `info`
    # then fails with a TypeError inside the node, which is no fault of the caller's.
    node._store.write(lambda t: t.put_agent(dataclasses.replace(t.get_agent("c"),
                                                                restarts=[1])))
    with pytest.raises(BeamishInternalError, match="this is a bug") as err:
        node.info("c")
    assert "TypeError" in str(err.value)
    assert "Traceback" in err.value.traceback
    with open(node.paths.log, encoding="utf-8") as fh:
        logged = fh.read()
    assert "command 'info' failed" in logged and "TypeError" in logged


@pytest.mark.parametrize(("op", "args", "says"), [
    ("info", {}, "missing argument 'name'"),
    ("info", {"name": "c", "colour": 1}, "unexpected argument 'colour'"),
    ("info", {"name": 5}, "name=5: expected str"),
    ("events", {"after": "x"}, "after='x': expected int"),
    ("events", {"since": "x"}, "since='x': expected float or None"),
    ("add_supervisor", {"name": "s", "max_restarts": "3"}, "max_restarts='3': expected int"),
    ("spawn", {"cls": "a:B", "args": [1], "name": None}, "args=[1]: expected dict"),
])
def test_bad_arguments_are_named_config_errors(node, op, args, says):
    from beamish.runtime.errors import ConfigError
    with pytest.raises(ConfigError, match=f"bad arguments to {op!r}") as err:
        node._control.request(op, args)
    assert says in str(err.value)
    assert node.ps() == []  # and the node still serves


# -- events followers: no command thread held; the node's death said at once ----------------

def test_many_followers_leave_the_node_serving(node):
    import threading

    from beamish.runtime import connect
    since = max([e.seq for e in node.events()], default=0)
    followers = 80  # more than the node's 64 command threads
    got: list[list[dict]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def follow() -> None:
        try:
            # One long-poll, as node.events(follow=True) makes: it waits up to 30 s for news.
            found = node._control.request("events", {"after": since, "wait": 30.0},
                                          timeout=60)["events"]
            with lock:
                got.append(found)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            with lock:
                errors.append(exc)
    threads = [threading.Thread(target=follow) for _ in range(followers)]
    for t in threads:
        t.start()
    try:
        # While they wait, the node serves commands and new clients at once: neither must
        # wait for a follower's 30 s to run out (a 10 s request timeout says so).
        assert node._control.request("ps", timeout=10.0) == []
        other = connect(node.dir, timeout=10.0)
        other.close()
        node.spawn("tests.agents.basic:Counter", name="news", timeout=10.0)
    finally:
        for t in threads:
            t.join(60)
    assert not errors, errors[:3]
    # Every follower was woken by the spawn's event, not by its wait running out.
    assert len(got) == followers
    assert all(any(e["kind"] == "spawned" and e["name"] == "news" for e in found)
               for found in got)


def test_a_follower_hears_at_once_that_the_node_was_killed(node_dir):
    import signal
    import threading

    from beamish.runtime import start_node
    from beamish.runtime.errors import NodeNotRunning
    from tests.conftest import kill_node
    n = start_node(node_dir)
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def follow() -> None:
        try:
            stream = n.events(follow=True)
            waiting.set()
            for _ in stream:
                pass
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)
    t = threading.Thread(target=follow)
    t.start()
    try:
        waiting.wait(10)
        os.kill(n.pid, signal.SIGKILL)
        t.join(10)  # not the 40 s request timeout
        assert not t.is_alive(), "the follower did not notice the node died"
        assert len(outcome) == 1 and isinstance(outcome[0], NodeNotRunning), outcome
        assert "went away" in str(outcome[0]) and "node.log" in str(outcome[0])
    finally:
        kill_node(n)
        t.join(60)


def test_cli_events_follow_exits_when_the_node_is_killed(node):
    import signal

    from tests.conftest import kill_node
    node.spawn("tests.agents.basic:Counter", name="c")
    proc = subprocess.Popen([sys.executable, "-m", "beamish.runtime", "events", "--follow",
                             "--dir", node.dir], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "spawned" in proc.stdout.readline()  # it is following
        os.kill(node.pid, signal.SIGKILL)
        rc = proc.wait(10)  # not the 40 s request timeout
        err = proc.stderr.read()
        assert rc != 0 and "went away" in err, (rc, err)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
        kill_node(node)


# -- an agent class the node cannot import says where the node looks --------------------------

OUTSIDE_AGENT = '''
from beamish.runtime import Agent


class Thing(Agent):
    def handle_call(self, msg, state):
        return "thing", state
'''


def test_an_import_error_says_the_node_imports_with_its_own_path(tmp_path, node_dir):
    (tmp_path / "b9_outside_agent.py").write_text(OUTSIDE_AGENT)
    start = beamish("node", "start", "--dir", node_dir)  # from the repo: tmp_path not on path
    assert start.returncode == 0, start.stderr
    try:
        proc = beamish("spawn", "b9_outside_agent:Thing", "--name", "t", "--dir", node_dir)
        assert proc.returncode == 1
        assert "No module named 'b9_outside_agent'" in proc.stderr
        assert "sys.path it was started with" in proc.stderr, proc.stderr
        assert "BEAMISH_SYS_PATH" in proc.stderr and REPO in proc.stderr
    finally:
        beamish("node", "stop", "--dir", node_dir)
    # What the error says works: BEAMISH_SYS_PATH for `node start`.
    start = beamish("node", "start", "--dir", node_dir, env={"BEAMISH_SYS_PATH": str(tmp_path)})
    assert start.returncode == 0, start.stderr
    try:
        proc = beamish("spawn", "b9_outside_agent:Thing", "--name", "t", "--dir", node_dir)
        assert proc.returncode == 0, proc.stderr
        assert beamish("call", "t", '"x"', "--dir", node_dir).stdout.strip() == '"thing"'
    finally:
        beamish("node", "stop", "--dir", node_dir)


def test_a_missing_class_in_a_module_is_named(node):
    from beamish.runtime.errors import SpawnError
    with pytest.raises(SpawnError, match=r"module 'tests.agents.basic' has no class 'Nope'"):
        node.spawn("tests.agents.basic:Nope")


# -- a config's agents that fail to start, and edited entries, are reported --------------------

def _write_config(path, agents: list[dict]) -> str:
    lines = []
    for a in agents:
        lines.append("[[agent]]")
        for key, value in a.items():
            lines.append(f"{key} = {json.dumps(value) if not isinstance(value, dict) else _inline(value)}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _inline(table: dict) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + " }"


def test_a_config_agent_that_does_not_start_is_reported(tmp_path, node_dir):
    config = _write_config(tmp_path / "beamish.toml", [
        {"name": "good", "class": "tests.agents.basic:Counter"},
        {"name": "bad", "class": "tests.agents.basic:NoSuchClass"}])
    proc = beamish("node", "start", "--config", config, "--dir", node_dir)
    try:
        assert proc.returncode == 0, proc.stderr
        assert "node started" in proc.stdout
        assert "agent 'bad' (tests.agents.basic:NoSuchClass) did not start" in proc.stderr
        assert "has no class 'NoSuchClass'" in proc.stderr and "--strict" in proc.stderr
        assert "'good'" not in proc.stderr
    finally:
        beamish("node", "stop", "--dir", node_dir)
    # The API has it too.
    from beamish.runtime import start_node
    n = start_node(node_dir, config=config)
    try:
        assert [(f.name, f.cls) for f in n.start_report.failures] == \
            [("bad", "tests.agents.basic:NoSuchClass")]
        assert "before this start" in n.start_report.failures[0].reason
    finally:
        n.shutdown()


def test_strict_refuses_to_start_with_an_agent_that_fails(tmp_path, node_dir):
    config = _write_config(tmp_path / "beamish.toml", [
        {"name": "good", "class": "tests.agents.basic:Counter"},
        {"name": "bad", "class": "no_such_module_b9:Agent"}])
    proc = beamish("node", "start", "--strict", "--config", config, "--dir", node_dir)
    try:
        assert proc.returncode != 0, proc
        assert "'bad'" in proc.stderr and "No module named 'no_such_module_b9'" in proc.stderr
        assert "strict" in proc.stderr
        assert "no node runs" in beamish("node", "status", "--dir", node_dir).stderr
    finally:
        beamish("node", "stop", "--dir", node_dir)


def test_an_edited_config_entry_is_reported_with_how_to_apply_it(tmp_path, node_dir):
    path = tmp_path / "beamish.toml"
    config = _write_config(path, [{"name": "c", "class": "tests.agents.basic:Counter",
                                   "args": {"start": 1}}])
    proc = beamish("node", "start", "--config", config, "--dir", node_dir)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    beamish("node", "stop", "--dir", node_dir)
    _write_config(path, [{"name": "c", "class": "tests.agents.basic:Echo", "args": {"start": 1},
                          "restart": "transient", "limits": {"memory_mb": 300}}])
    proc = beamish("node", "start", "--config", config, "--dir", node_dir)
    try:
        assert proc.returncode == 0, proc.stderr
        assert "agent 'c'" in proc.stderr and "cls, restart, limits" in proc.stderr, proc.stderr
        assert "persisted record wins" in proc.stderr
        assert f"beamish stop c --dir {node_dir}" in proc.stderr
        assert "beamish spawn tests.agents.basic:Echo --name c" in proc.stderr
        # The command it gives applies the entry.
        cmd = shlex.split(proc.stderr.split("then `", 1)[1].split("`", 1)[0])[1:]
        assert beamish("stop", "c", "--dir", node_dir).returncode == 0
        done = beamish(*cmd)
        assert done.returncode == 0, done.stderr
        assert beamish("call", "c", '"hi"', "--dir", node_dir).stdout.strip() == '"hi"'
    finally:
        beamish("node", "stop", "--dir", node_dir)
    proc = beamish("node", "start", "--config", config, "--dir", node_dir)
    try:
        assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    finally:
        beamish("node", "stop", "--dir", node_dir)
