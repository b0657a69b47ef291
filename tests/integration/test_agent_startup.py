"""An agent's start, through real processes: an agent forked from the zygote imports
nothing the zygote had not imported already (an import after the fork costs every agent
its CPU and its pages: docs/memory.md); the files it makes as it starts (its inbox socket,
its in-flight marker) are its inbox socket on tmpfs (a clean stop removes it) and its
marker on disk (it stays while the agent sleeps)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import pytest

from beamish.runtime import Limits, start_node
from beamish.runtime._paths import NodePaths
from beamish.runtime._rundir import LOCK, TMPFS
from tests.conftest import shutdown_quietly

MODULES = "tests.agents.startup_agents:Modules"


def _zygote_modules() -> set[str]:
    """The modules of a fresh interpreter that imported what the zygote imports before
    its first fork (its own module and the agent loop, pydantic; runpy ran it, as
    ``python -m``) and the test agent's module (preloaded by the zygote at the first
    spawn)."""
    code = ("import sys, runpy, pydantic, beamish.runtime.agent.zygote, "
            "beamish.runtime.agent.loop, tests.agents.startup_agents\nprint('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    return set(out.stdout.split())


def test_an_agent_imports_nothing_after_the_fork(node):
    # Limits too: the start applies them (rlimits), a path every agent with limits takes.
    plain = node.spawn(MODULES, name="plain")
    limited = node.spawn(MODULES, name="limited",
                         limits=Limits(cpu_seconds=60, memory_mb=4096))
    known = _zygote_modules()
    for ref in (plain, limited):
        loaded = set(ref.call("modules", timeout=30))
        assert sorted(loaded - known) == [], ref.name


@pytest.mark.skipif(not os.path.isdir(TMPFS), reason="no /dev/shm on this machine")
def test_the_agents_sockets_are_on_tmpfs_and_go_with_a_clean_stop(node_dir):
    node = start_node(node_dir)
    try:
        ref = node.spawn("tests.agents.basic:Counter", name="c")
        ref.call("pid", timeout=30)
        paths = NodePaths.of(node_dir)
        run = paths.run
        target = os.readlink(run)
        assert os.path.dirname(target) == TMPFS
        assert {"a1.sock", "node.sock"} <= set(os.listdir(run))
        assert os.stat(os.path.join(run, "a1.sock")).st_dev == os.stat(TMPFS).st_dev
        # The marker stays on the node dir's filesystem (one per sleeping session).
        assert os.stat(paths.agent_busy(1)).st_dev == os.stat(node_dir).st_dev
    finally:
        shutdown_quietly(node)
    left = set(os.listdir(target)) if os.path.isdir(target) else set()
    assert not {f for f in left if f.startswith("a")}, left
    node = start_node(node_dir)  # a restart finds its run dir again
    try:
        assert node.spawn("tests.agents.basic:Counter", name="d").call("get", timeout=30) == 0
        assert os.path.realpath(NodePaths.of(node_dir).run) == target
    finally:
        shutdown_quietly(node)


@pytest.mark.skipif(not os.path.isdir(TMPFS), reason="no /dev/shm on this machine")
def test_a_running_node_holds_its_tmpfs_run_dir(node_dir):
    # What keeps another node's sweep off it, whatever becomes of the node dir's path.
    node = start_node(node_dir)
    try:
        lock = os.path.join(os.readlink(NodePaths.of(node_dir).run), LOCK)
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        shutdown_quietly(node)
