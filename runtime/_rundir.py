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
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time

TMPFS = "/dev/shm"
PREFIX = "beamish-run-"
BACKLINK = ".node"  # in the tmpfs directory: a symlink to the node dir it serves
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
    if any(entry.name != BACKLINK for entry in os.scandir(target)):
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
    """Remove this user's tmpfs run directories that no node dir links to any more (see
    the module's docstring); return them."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        entries = list(os.scandir(tmpfs))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(PREFIX) and _private_dir(entry.path) \
                and _orphaned(entry.path, now):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed
