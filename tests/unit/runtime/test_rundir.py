"""The node's run dir on tmpfs (runtime/_rundir.py), on real directories: a stand-in
"tmpfs" directory under the test's tmp_path."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from beamish.runtime import _rundir
from beamish.runtime._rundir import (
    BACKLINK,
    LOCK,
    PREFIX,
    STALE_AFTER_S,
    HeldRunDir,
    hold_run_dir,
    make_run_dir,
    remove_run_dir,
    sweep,
)


@pytest.fixture
def dirs(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    node = tmp_path / "node"
    node.mkdir(mode=0o700)
    return str(shm), str(node), str(node / "run")


@pytest.mark.parametrize("target, tmpfs, ours", [
    ("/dev/shm/beamish-run-abc", "/dev/shm", True),
    ("/dev/shm/other-abc", "/dev/shm", False),
    ("/dev/shm/x/beamish-run-abc", "/dev/shm", False),
    ("/tmp/beamish-run-abc", "/dev/shm", False),
])
def test_ours_is_a_directory_this_module_names(target, tmpfs, ours):
    assert _rundir._ours(target, tmpfs) is ours


def test_the_run_dir_links_to_a_private_tmpfs_dir_that_links_back(dirs):
    shm, node, run = dirs
    target = make_run_dir(run, shm)
    assert os.readlink(run) == target
    assert os.path.dirname(target) == shm and os.path.basename(target).startswith(PREFIX)
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o700
    assert os.readlink(os.path.join(target, BACKLINK)) == node
    assert make_run_dir(run, shm) == target  # a restart keeps it


def test_a_plain_run_dir_is_kept(dirs):
    shm, node, run = dirs
    os.mkdir(run, 0o700)
    assert make_run_dir(run, shm) == run
    assert not os.path.islink(run) and os.listdir(shm) == []


def test_without_a_tmpfs_the_run_dir_is_a_plain_dir(dirs):
    shm, node, run = dirs
    assert make_run_dir(run, shm + "/missing") == run
    assert os.path.isdir(run) and not os.path.islink(run)


def test_a_removed_target_is_made_again_and_a_foreign_one_replaced(dirs, tmp_path):
    shm, node, run = dirs
    target = make_run_dir(run, shm)
    os.unlink(os.path.join(target, BACKLINK))
    os.rmdir(target)  # a reboot emptied the tmpfs
    assert make_run_dir(run, shm) == target and os.path.isdir(target)
    assert os.readlink(os.path.join(target, BACKLINK)) == node
    os.unlink(run)
    foreign = tmp_path / "elsewhere"
    foreign.mkdir(mode=0o700)
    os.symlink(foreign, run)  # not a directory this module made: never used
    fresh = make_run_dir(run, shm)
    assert fresh not in (str(foreign), target) and os.readlink(run) == fresh


def test_a_clean_stop_removes_the_agents_sockets_and_an_empty_dir(dirs):
    shm, node, run = dirs
    target = make_run_dir(run, shm)
    for name in ("a1.sock", "a22.sock"):
        open(os.path.join(target, name), "w").close()
    remove_run_dir(run, shm)
    assert not os.path.lexists(run) and not os.path.exists(target)


def test_a_clients_socket_keeps_the_dir(dirs):
    shm, node, run = dirs
    target = make_run_dir(run, shm)
    for name in ("a1.sock", "c0123.sock"):
        open(os.path.join(target, name), "w").close()
    remove_run_dir(run, shm)
    assert sorted(os.listdir(target)) == [BACKLINK, "c0123.sock"]
    assert os.readlink(run) == target


def test_a_plain_run_dir_is_left_to_the_node_dir(dirs):
    shm, node, run = dirs
    os.mkdir(run, 0o700)
    open(os.path.join(run, "a1.sock"), "w").close()
    remove_run_dir(run, shm)
    assert os.listdir(run) == ["a1.sock"]


def test_sweep_removes_only_old_dirs_no_node_dir_links_to(dirs, tmp_path):
    shm, node, run = dirs
    linked = make_run_dir(run, shm)
    other = tmp_path / "gone"
    other.mkdir(mode=0o700)
    orphan = make_run_dir(str(other / "run"), shm)
    os.unlink(other / "run")  # its node dir no longer links to it
    relinked = make_run_dir(str(other / "run"), shm)  # ... and has a new one
    unmarked = os.path.join(shm, PREFIX + "nolink")
    os.mkdir(unmarked, 0o700)  # no backlink: not ours to judge
    assert sweep(shm, now=time.time()) == []  # all too recent
    later = time.time() + STALE_AFTER_S + 1
    assert sweep(shm, now=later) == [orphan]
    assert sorted(os.listdir(shm)) == sorted(os.path.basename(p)
                                             for p in (linked, relinked, unmarked))


def _holder(run: str, shm: str) -> tuple[subprocess.Popen[str], str]:
    """A real process holding the run dir ``run`` as a node does (`hold_run_dir`) until it
    is killed, and the dir it holds; returned once it holds it."""
    code = ("import sys\nfrom beamish.runtime._rundir import hold_run_dir\n"
            f"held = hold_run_dir({run!r}, {shm!r})\nprint(held.path, flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


@pytest.mark.parametrize("move", ["rename", "switch_symlink"])
def test_sweep_never_removes_the_dir_of_a_running_node_whatever_its_path(tmp_path, move):
    # The node runs in release/var reached through `current`; then its path stops leading
    # to it: the release is renamed, or `current` switched to a new release with its own.
    shm = tmp_path / "shm"
    shm.mkdir()
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for release in (v1, v2):
        (release / "var").mkdir(parents=True, mode=0o700)
    current = tmp_path / "current"
    current.symlink_to(v1)
    proc, target = _holder(str(current / "var" / "run"), str(shm))
    try:
        if move == "rename":
            v1.rename(tmp_path / "v1-old")
        else:
            current.unlink()
            current.symlink_to(v2)
            make_run_dir(str(current / "var" / "run"), str(shm))  # v2's node starts
        later = time.time() + STALE_AFTER_S + 1
        assert sweep(str(shm), now=later) == []
        assert os.path.isdir(target)
    finally:
        _kill(proc)
    assert sweep(str(shm), now=later) == [target]  # nobody holds it now: an orphan


def test_a_held_dir_goes_with_a_clean_stop_and_a_restart_holds_it_again(dirs):
    shm, node, run = dirs
    held = hold_run_dir(run, shm)
    assert sorted(os.listdir(held.path)) == sorted([BACKLINK, LOCK])
    again = hold_run_dir(run, shm)  # shared: a second holder is not refused
    again.release()
    remove_run_dir(run, shm)
    held.release()
    assert not os.path.lexists(run) and not os.path.exists(held.path)
    plain = os.path.join(node, "plain")
    os.mkdir(plain, 0o700)
    assert hold_run_dir(plain, shm) == HeldRunDir(plain, None)
