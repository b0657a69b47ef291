"""The ``beamish`` command line, run as a user would: a subprocess per command."""

from __future__ import annotations

import json

import pytest

from tests.conftest import beamish, wait_until

pytestmark = pytest.mark.slow


def test_cli_end_to_end(node_dir):
    out = beamish("node", "start", "--dir", node_dir, check=True).stdout
    try:
        assert "node started" in out
        assert "running" in beamish("node", "status", "--dir", node_dir, check=True).stdout
        # --dir after or before the verb
        beamish("spawn", "tests.agents.basic:Counter", "--name", "c1", "--args", '{"start": 3}',
                "--dir", node_dir, check=True)
        assert json.loads(beamish("--dir", node_dir, "call", "c1", '"incr"', check=True).stdout) == 4
        beamish("cast", "c1", '"incr"', "--dir", node_dir, check=True)
        assert json.loads(beamish("call", "c1", '"get"', "--dir", node_dir, check=True).stdout) == 5
        ps = beamish("ps", "--dir", node_dir, check=True).stdout
        assert "NAME" in ps and "c1" in ps and "running" in ps
        rows = json.loads(beamish("ps", "--json", "--dir", node_dir, check=True).stdout)
        assert rows[0]["name"] == "c1" and rows[0]["processed"] == 3
        tree = json.loads(beamish("tree", "--json", "--dir", node_dir, check=True).stdout)
        assert tree["name"] == "root" and tree["children"][0]["name"] == "c1"
        assert "c1" in beamish("tree", "--dir", node_dir, check=True).stdout
        events = beamish("events", "--json", "--dir", node_dir, check=True).stdout.splitlines()
        assert any(json.loads(e)["kind"] == "spawned" for e in events)
        assert "stopped c1" in beamish("stop", "c1", "--dir", node_dir, check=True).stdout
        err = beamish("call", "c1", '"get"', "--dir", node_dir)
        assert err.returncode == 1 and "no agent named 'c1'" in err.stderr
    finally:
        beamish("node", "stop", "--dir", node_dir)
    gone = beamish("node", "status", "--dir", node_dir)
    assert gone.returncode == 1 and "no node runs" in gone.stderr


def test_cli_refuses_bad_json_with_a_hint(node_dir):
    proc = beamish("call", "c1", "incr", "--dir", node_dir)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr and '"incr"' in proc.stderr


def test_cli_help_teaches():
    out = beamish("--help", check=True).stdout
    for word in ("node", "spawn", "call", "cast", "ps", "tree", "events", "bench", "examples"):
        assert word in out


def test_cli_node_stop_without_node(node_dir):
    proc = beamish("node", "stop", "--dir", node_dir)
    assert proc.returncode == 1 and "no node runs" in proc.stderr


def test_a_cast_from_a_process_that_exits_at_once_is_handled_without_another_message(node):
    # The CLI commits, rings and exits; its ring must not die with it (the agent would find
    # the cast only at its idle re-read, 30 s later). No call follows: a call would ring.
    node.spawn("tests.agents.basic:Counter", name="c")
    before = node.info("c").processed
    beamish("cast", "c", '"incr"', "--dir", node.dir, check=True)
    wait_until(lambda: node.info("c").processed == before + 1, what="the CLI's cast handled")
