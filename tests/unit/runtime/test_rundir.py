"""The node's run dir on tmpfs (runtime/_rundir.py), on real directories: a stand-in
"tmpfs" directory under the test's tmp_path."""

from __future__ import annotations

import os
import stat
import time

import pytest

from beamish.runtime import _rundir
from beamish.runtime._rundir import (
    BACKLINK,
    PREFIX,
    STALE_AFTER_S,
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
