"""The node's run dir (``DIR/run``: its Unix sockets) on tmpfs.

Every agent binds its inbox socket there as it starts. On a disk filesystem that is an
inode allocation, and on ext4 without a journal each allocation scans past the inodes
recently deleted: ~0.35 ms of an agent's start CPU here (more after a burst of
deletions), against ~0.05 ms on tmpfs (docs/memory.md). No socket file has to outlive
the machine (each is bound again by its next process), so ``DIR/run`` is a symlink to a
private directory under /dev/shm. (The agents' ``.busy`` markers, which cost as much to
create, stay on disk in ``DIR/busy``: one stays per sleeping session, and a page of RAM
each would not be bounded.) Every path stays ``DIR/run/...``: the node, agents and clients
keep using `NodePaths`, and Unix socket paths are no longer.

Where there is no usable tmpfs, or ``DIR/run`` is a real directory already (made by an
older beamish), it is a plain directory, as before.

The tmpfs directory outlives a node's stop when a client still holds its reply socket
there (a client keeps working across a restart of its node), and a node dir deleted
without a clean stop leaves its directory behind: each holds a link back to its node dir
(``.node``), and a node starting removes those of its user whose node dir no longer links
to them (after `STALE_AFTER_S`, so that a node starting at that moment is never robbed).
A path says nothing about whether the node is alive, though: its node dir may have been
renamed, or reached through a symlink that a deploy switched, while it runs. So a running
node holds a shared ``flock`` on the directory's ``.lock`` for its whole life
(`hold_run_dir`), and a sweep removes only a directory whose lock it can take
exclusively: one no process holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass

TMPFS = "/dev/shm"
PREFIX = "beamish-run-"
BACKLINK = ".node"  # in the tmpfs directory: a symlink to the node dir it serves
LOCK = ".lock"  # in the tmpfs directory: flocked (shared) by the node it serves, while it runs
STALE_AFTER_S = 600.0


def _private_dir(path: str) -> bool:
    """Whether ``path`` is a real directory (not a symlink) of this user, closed to the
    group and others: one an agent may bind its socket in."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def _ours(target: str, tmpfs: str) -> bool:
    """Whether ``target`` is named as this module names its directories (pure)."""
    return os.path.dirname(target) == tmpfs and os.path.basename(target).startswith(PREFIX)


def _reuse(target: str, tmpfs: str) -> bool:
    """Make the symlink's ``target`` usable again: it is still there and ours, or it was
    removed (a reboot) and is made again, ours. Someone else's is never used."""
    if not _ours(target, tmpfs):
        return False  # not one this module made: never trusted
    with contextlib.suppress(FileExistsError):
        os.mkdir(target, 0o700)
    return _private_dir(target)


def _link(to: str, path: str) -> None:
    """Make ``path`` a symlink to ``to`` (replacing another one there)."""
    try:
        if os.readlink(path) == to:
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.symlink(to, path)


def make_run_dir(run: str, tmpfs: str = TMPFS) -> str:
    """Make the node's run dir ``run`` usable (the node calls it holding its dir's lock)
    and return the directory its files land in: the tmpfs directory ``run`` links to, or
    ``run`` itself when it is a plain directory.

    Raises:
        OSError: the directory cannot be made at all.
    """
    node_dir = os.path.dirname(os.path.abspath(run))
    if os.path.islink(run):
        target = os.readlink(run)
        if _reuse(target, tmpfs):
            _link(node_dir, os.path.join(target, BACKLINK))  # the node dir may have moved
            return target
        os.unlink(run)  # its target is someone else's: make a new one
    elif os.path.isdir(run):
        return run
    if os.path.isdir(tmpfs) and os.access(tmpfs, os.W_OK | os.X_OK):
        sweep(tmpfs)
        target = tempfile.mkdtemp(prefix=PREFIX, dir=tmpfs)  # 0700, a fresh random name
        try:
            _link(node_dir, os.path.join(target, BACKLINK))
            os.symlink(target, run)
            return target
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            raise
    os.makedirs(run, mode=0o700, exist_ok=True)
    return run


@dataclass(frozen=True, slots=True)
class HeldRunDir:
    """A node's run dir, held for the node's life (`hold_run_dir`).

    Attributes:
        path: the directory its files land in (as `make_run_dir` returns it).
        lock_fd: the open ``.lock`` the node holds a shared flock on; None for a plain
            run dir (it goes with the node dir: nothing sweeps it).
    """

    path: str
    lock_fd: int | None

    def release(self) -> None:
        """Let go of the lock (the node is stopping: a sweep may remove the dir now)."""
        if self.lock_fd is not None:
            os.close(self.lock_fd)


def _lock(target: str, how: int) -> int | None:
    """Open ``target``'s lock file and flock it ``how``; the fd, or None when it is held
    (with ``LOCK_NB``) or cannot be opened."""
    try:
        fd = os.open(os.path.join(target, LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, how)
    except OSError:  # BlockingIOError: another process holds it
        os.close(fd)
        return None
    return fd


def _still_there(fd: int, target: str) -> bool:
    """Whether ``fd`` is still ``target``'s lock file (a sweep did not remove the dir while
    we waited for the lock)."""
    try:
        at = os.lstat(os.path.join(target, LOCK))
    except OSError:
        return False
    mine = os.fstat(fd)
    return (at.st_dev, at.st_ino) == (mine.st_dev, mine.st_ino)


def hold_run_dir(run: str, tmpfs: str = TMPFS) -> HeldRunDir:
    """`make_run_dir`, then hold its tmpfs directory for as long as the returned record is
    not released (the node's life): no `sweep` removes it meanwhile, whatever becomes of
    the node dir's path.

    Raises:
        OSError: the directory cannot be made, or held.
    """
    for _ in range(3):
        target = make_run_dir(run, tmpfs)
        if not os.path.islink(run):
            return HeldRunDir(target, None)
        fd = _lock(target, fcntl.LOCK_SH)  # a sweep holds it only while it removes the dir
        if fd is None:
            raise OSError(f"cannot lock {os.path.join(target, LOCK)}")
        if _still_there(fd, target):
            return HeldRunDir(target, fd)
        os.close(fd)  # swept while we waited: make_run_dir makes it again
    raise OSError(f"the run dir {target} keeps being removed by other nodes starting")


def remove_run_dir(run: str, tmpfs: str = TMPFS) -> None:
    """After a clean shutdown: remove the agents' sockets from the tmpfs directory ``run``
    links to (``a<id>.sock``; those of killed agents stay behind), then that directory and the link if nothing
    else is left in it (a client still running keeps its socket there, and so the
    directory). Nothing is done for a plain directory: it goes with the node dir."""
    if not os.path.islink(run):
        return
    target = os.readlink(run)
    if not _ours(target, tmpfs) or not _private_dir(target):
        return
    for entry in os.scandir(target):
        if entry.name.startswith("a") and entry.name.endswith(".sock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    if any(entry.name not in (BACKLINK, LOCK) for entry in os.scandir(target)):
        return  # a client's socket, or one of the node's still closing: kept for it
    shutil.rmtree(target, ignore_errors=True)
    os.unlink(run)


def _orphaned(target: str, now: float) -> bool:
    """Whether the tmpfs directory ``target`` serves no node dir any more: its node dir's
    ``run`` does not link to it, and it was made over `STALE_AFTER_S` ago."""
    try:
        if now - os.lstat(target).st_mtime < STALE_AFTER_S:
            return False
        node_dir = os.readlink(os.path.join(target, BACKLINK))
    except OSError:
        return False  # not ours to judge (no backlink: made by someone else)
    try:
        return os.readlink(os.path.join(node_dir, "run")) != target
    except OSError:
        return True  # the node dir, or its run link, is gone


def sweep(tmpfs: str = TMPFS, now: float | None = None) -> list[str]:
    """Remove this user's tmpfs run directories that no node dir links to any more and no
    process holds (see the module's docstring); return them."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        entries = list(os.scandir(tmpfs))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(PREFIX) and _private_dir(entry.path)
                and _orphaned(entry.path, now)):
            continue
        fd = _lock(entry.path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if fd is None:
            continue  # a running node holds it: its node dir's path moved, not the node
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(entry.path)
    return removed
