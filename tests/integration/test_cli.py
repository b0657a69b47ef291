"""The ``beamish`` command line, run as a user would: a subprocess per command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, wait_until

pytestmark = pytest.mark.slow


def beamish(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "beamish.runtime", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"beamish {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def test_cli_end_to_end(node_dir):
    out = beamish("node", "start", "--dir", node_dir).stdout
    try:
        assert "node started" in out
        assert "running" in beamish("node", "status", "--dir", node_dir).stdout
        # --dir after or before the verb
        beamish("spawn", "tests.agents.basic:Counter", "--name", "c1", "--args", '{"start": 3}',
                "--dir", node_dir)
        assert json.loads(beamish("--dir", node_dir, "call", "c1", '"incr"').stdout) == 4
        beamish("cast", "c1", '"incr"', "--dir", node_dir)
        assert json.loads(beamish("call", "c1", '"get"', "--dir", node_dir).stdout) == 5
        ps = beamish("ps", "--dir", node_dir).stdout
        assert "NAME" in ps and "c1" in ps and "running" in ps
        rows = json.loads(beamish("ps", "--json", "--dir", node_dir).stdout)
        assert rows[0]["name"] == "c1" and rows[0]["processed"] == 3
        tree = json.loads(beamish("tree", "--json", "--dir", node_dir).stdout)
        assert tree["name"] == "root" and tree["children"][0]["name"] == "c1"
        assert "c1" in beamish("tree", "--dir", node_dir).stdout
        events = beamish("events", "--json", "--dir", node_dir).stdout.splitlines()
        assert any(json.loads(e)["kind"] == "spawned" for e in events)
        assert "stopped c1" in beamish("stop", "c1", "--dir", node_dir).stdout
        err = beamish("call", "c1", '"get"', "--dir", node_dir, check=False)
        assert err.returncode == 1 and "no agent named 'c1'" in err.stderr
    finally:
        beamish("node", "stop", "--dir", node_dir, check=False)
    gone = beamish("node", "status", "--dir", node_dir, check=False)
    assert gone.returncode == 1 and "no node runs" in gone.stderr


def test_cli_refuses_bad_json_with_a_hint(node_dir):
    proc = beamish("call", "c1", "incr", "--dir", node_dir, check=False)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr and '"incr"' in proc.stderr


def test_cli_help_teaches():
    out = beamish("--help").stdout
    for word in ("node", "spawn", "call", "cast", "ps", "tree", "events", "bench", "examples"):
        assert word in out


def test_cli_node_stop_without_node(node_dir):
    proc = beamish("node", "stop", "--dir", node_dir, check=False)
    assert proc.returncode == 1 and "no node runs" in proc.stderr


def test_a_cast_from_a_process_that_exits_at_once_is_handled_without_another_message(node):
    # The CLI commits, rings and exits; its ring must not die with it (the agent would find
    # the cast only at its idle re-read, 30 s later). No call follows: a call would ring.
    node.spawn("tests.agents.basic:Counter", name="c")
    before = node.info("c").processed
    beamish("cast", "c", '"incr"', "--dir", node.dir)
    wait_until(lambda: node.info("c").processed == before + 1, what="the CLI's cast handled")
