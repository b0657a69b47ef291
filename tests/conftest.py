"""Fixtures: short temp node dirs, nodes that are always shut down, and a check that no
process a test started outlives it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from beamish.runtime import Node, start_node

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_until(pred, timeout: float = 10.0, what: str = "condition",  # type: ignore[no-untyped-def]
               interval: float = 0.01):
    """Poll ``pred`` every ``interval`` seconds until it returns a truthy value; fail the
    test with ``what`` if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def beamish(*args: str, check: bool = False, cwd: str = REPO,
            env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the ``beamish`` CLI as a user would (a subprocess) and return what it did; with
    ``check``, fail the test with its output when it exits nonzero."""
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "beamish.runtime", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"beamish {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def restarted(node: Node, name: str, old_pid: int | None) -> bool:
    """Whether agent ``name`` runs again, in a process other than ``old_pid`` (for
    `wait_until` after a crash or a kill)."""
    info = node.info(name)
    return info.status == "running" and info.pid not in (None, old_pid)


def _descendants() -> set[int]:
    try:
        return {p.pid for p in psutil.Process().children(recursive=True)
                if p.status() != psutil.STATUS_ZOMBIE}
    except psutil.Error:
        return set()


# Every process this test session starts inherits this mark, so a leak check finds ours
# even after reparenting (an orphan) and ignores other sessions' nodes on the machine.
# Each pytest-xdist worker is a session of its own: the other's processes are not its leaks.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["BEAMISH_TEST_SESSION"] = uuid.uuid4().hex
SESSION_MARK = os.environ.setdefault("BEAMISH_TEST_SESSION", uuid.uuid4().hex)


def _beamish_procs() -> set[int]:
    found = set()
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        try:
            if p.environ().get("BEAMISH_TEST_SESSION") == SESSION_MARK \
                    and p.status() != psutil.STATUS_ZOMBIE:
                found.add(p.pid)
        except psutil.Error:
            continue
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail a test that leaves a child process, a node daemon or a zygote behind
    (and kill what it left, so later tests are not disturbed)."""
    before_children = _descendants()
    before_beamish = _beamish_procs()
    yield
    deadline = time.monotonic() + 10.0
    while True:
        leaked = (_descendants() - before_children) | (_beamish_procs() - before_beamish)
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    described = []
    for pid in leaked:
        try:
            described.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:120]}")
        except psutil.Error:
            described.append(str(pid))
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leaked, f"processes outlived the test: {described}"


@pytest.fixture
def node_dir() -> Iterator[str]:
    """A fresh, short node dir (unix socket paths must stay under ~100 characters)."""
    base = tempfile.mkdtemp(prefix="bmt-", dir="/tmp")
    yield os.path.join(base, "node")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def node(node_dir: str) -> Iterator[Node]:
    """A running node, shut down after the test whatever happens."""
    n = start_node(node_dir)
    try:
        yield n
    finally:
        shutdown_quietly(n)


def shutdown_quietly(n: Node) -> None:
    """Shut a node down; if it is already gone (a test killed it), make sure its processes are."""
    try:
        n.shutdown(timeout=60)
    except Exception:  # noqa: BLE001 - the node may be dead on purpose; clean up below
        n.close()
        kill_tree(n.pid)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def kill_node(n: Node) -> None:
    """SIGKILL a node daemon (its agents die with it) and reap it, as a crash would."""
    from beamish.runtime.client.api import _daemons
    try:
        os.kill(n.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    n.close()
    kill_tree(n.pid)
    proc = _daemons.pop(n.pid, None)
    if proc is not None:
        proc.wait(10)
