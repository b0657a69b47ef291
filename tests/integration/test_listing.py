"""``ps`` and ``tree`` on a large registry, through a real node, its LMDB and the CLI:
the node filters and pages, and what a page leaves out is always said."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from beamish.runtime import ConfigError, start_node
from beamish.runtime._types import AgentStatus
from benchmarks._registry import register_in_subprocess
from tests.conftest import REPO, beamish, shutdown_quietly

pytestmark = pytest.mark.slow

COUNTER = "tests.agents.basic:Counter"


def _register_stopped(dir: str, count: int) -> list[str]:
    """Write ``count`` stopped agents' records into the running node's store (records only,
    no process: stand-ins for idle sessions), from another process; return their names."""
    register_in_subprocess(dir, count)
    return [f"idle-{i:06d}" for i in range(count)]


def test_ps_filters_and_pages_on_the_node(node_dir):  # type: ignore[no-untyped-def]
    node = start_node(node_dir)
    try:
        node.add_supervisor("jobs")
        for name in ("w3", "w1"):
            node.spawn(COUNTER, name=name, supervisor="jobs")
        for name in ("r2", "r1", "s1"):
            node.spawn(COUNTER, name=name)
        node.stop("s1")
        node.call("r1", "incr")

        rows = node.ps()
        assert [r.name for r in rows] == ["r1", "r2", "s1", "w1", "w3"]  # name order
        assert rows[0].processed == 1 and rows[0].pid and rows[2].pid is None
        assert [r.name for r in node.ps(status="stopped")] == ["s1"]
        assert [r.name for r in node.ps(supervisor="jobs")] == ["w1", "w3"]
        assert [r.name for r in node.ps(status="running", supervisor="root")] == ["r1", "r2"]
        assert node.ps(status="failed") == []

        page = node.ps_page(limit=2)
        assert [r.name for r in page.rows] == ["r1", "r2"] and (page.more, page.after) == (3, "r2")
        page = node.ps_page(limit=2, after=page.after)
        assert [r.name for r in page.rows] == ["s1", "w1"] and (page.more, page.after) == (1, "w1")
        page = node.ps_page(limit=2, after=page.after)
        assert [r.name for r in page.rows] == ["w3"] and (page.more, page.after) == (0, None)
        page = node.ps_page(status="running", limit=1, after="r1")
        assert [r.name for r in page.rows] == ["r2"] and page.more == 2

        with pytest.raises(ConfigError) as err:
            node.ps(status="asleep")
        assert "'asleep'" in str(err.value) and all(s.value in str(err.value) for s in AgentStatus)
        with pytest.raises(ConfigError, match="no supervisor has that name"):
            node.ps(supervisor="nobody")
        with pytest.raises(ConfigError, match="limit=0"):
            node.ps(limit=0)
    finally:
        shutdown_quietly(node)


def test_cli_ps_shows_a_page_and_says_how_to_see_the_rest(node_dir):  # type: ignore[no-untyped-def]
    node = start_node(node_dir)
    try:
        node.spawn(COUNTER, name="a-live")
        names = _register_stopped(node_dir, 2500)

        out = beamish("ps", "--dir", node_dir, check=True).stdout.splitlines()
        assert out[0].split()[0] == "NAME" and len(out) == 1 + 1000 + 1
        assert out[1].split()[:3] == ["a-live", str(node.info("a-live").pid), "running"]
        assert out[-1].startswith("... 1,501 more agents not shown: "
                                  f"`beamish ps --after {names[998]}` for the next page")
        nxt = beamish("ps", "--after", names[998], "--limit", "2000", "--dir", node_dir,
                      check=True).stdout.splitlines()
        assert [line.split()[0] for line in nxt[1:]] == names[999:]  # the rest, no more line

        rows = json.loads(beamish("ps", "--json", "--status", "stopped", "--limit", "10",
                                  "--dir", node_dir, check=True).stdout)
        assert [r["name"] for r in rows] == names[:10]
        proc = beamish("ps", "--json", "--status", "stopped", "--dir", node_dir, check=True)
        assert len(json.loads(proc.stdout)) == 1000
        assert "1,500 more agents" in proc.stderr and "--status stopped --all" in proc.stderr
        every = json.loads(beamish("ps", "--json", "--all", "--dir", node_dir, check=True).stdout)
        assert len(every) == 2501
        assert len(json.loads(beamish("ps", "--json", "--limit", "0", "--status", "running",
                                      "--dir", node_dir, check=True).stdout)) == 1

        # `beamish ps | head -1`: the reader leaves early, beamish exits quietly
        reader = subprocess.Popen([sys.executable, "-m", "beamish.runtime", "ps", "--dir",
                                   node_dir], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert reader.stdout is not None and reader.stderr is not None
        assert reader.stdout.readline().split()[0] == b"NAME"
        reader.stdout.close()
        assert reader.wait(timeout=60) == 0 and reader.stderr.read() == b""
        reader.stderr.close()

        bad = beamish("ps", "--status", "asleep", "--dir", node_dir)
        assert bad.returncode == 2 and "running" in bad.stderr and "stopped" in bad.stderr
        bad = beamish("ps", "--limit", "-1", "--dir", node_dir)
        assert bad.returncode == 2 and "expected a count" in bad.stderr
    finally:
        shutdown_quietly(node)


def test_tree_lists_a_page_of_each_supervisor_and_counts_the_rest(node_dir):  # type: ignore[no-untyped-def]
    node = start_node(node_dir)
    try:
        node.add_supervisor("jobs")
        for i in range(5):
            node.spawn(COUNTER, name=f"j{i}", supervisor="jobs")
        node.spawn(COUNTER, name="top")

        full = node.tree()
        jobs = next(c for c in full["children"] if c["name"] == "jobs")
        assert [c["name"] for c in jobs["children"]] == ["j0", "j1", "j2", "j3", "j4"]
        assert jobs["more"] == 0
        cut = node.tree(limit=2)
        assert [c["name"] for c in cut["children"]] == ["jobs", "top"]  # supervisors always
        jobs = cut["children"][0]
        assert [c["name"] for c in jobs["children"]] == ["j0", "j1"]
        assert jobs["children"][0]["pid"] == node.info("j0").pid
        assert (jobs["more"], jobs["more_by_status"]) == (3, {"running": 3})

        out = beamish("tree", "--limit", "2", "--dir", node_dir, check=True).stdout
        assert "j1" in out and "j2" not in out
        assert "... 3 more agents (3 running); `beamish tree --all` shows them" in out
        out = beamish("tree", "--all", "--dir", node_dir, check=True).stdout
        assert "j4" in out and "more agents" not in out
        assert "j4" in beamish("tree", "--dir", node_dir, check=True).stdout  # 5 < 100
    finally:
        shutdown_quietly(node)


def test_node_pages_a_registry_of_20000_agents(node_dir):  # type: ignore[no-untyped-def]
    """Pages and counts of a 20,000-agent registry, from the first page and from a cursor."""
    node = start_node(node_dir)
    try:
        _register_stopped(node_dir, 20_000)
        assert len(node.ps(limit=50)) == 50
        assert node.ps_page(status="stopped", limit=1).more == 19_999
        assert node.ps_page(supervisor="root", limit=1, after="idle-019990").more == 8
        assert [r.name for r in node.ps(limit=2, after="idle-019998")] == ["idle-019999"]
    finally:
        shutdown_quietly(node)
