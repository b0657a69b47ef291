"""Where a node keeps its files. One place, so the node, agents and clients agree."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import urllib.parse
from dataclasses import dataclass

from beamish.mailbox import MAX_IPC_PATH

from .errors import ConfigError, NodeNotRunning


def default_dir() -> str:
    """The node dir when none is given: ``$BEAMISH_DIR``, else ``./.beamish``."""
    return os.environ.get("BEAMISH_DIR") or ".beamish"


@dataclass(frozen=True)
class NodePaths:
    """The files of the node rooted at ``dir`` (an absolute path).

    Attributes:
        dir: the node dir (0700).
    """

    dir: str

    @classmethod
    def of(cls, dir: str | os.PathLike[str]) -> NodePaths:
        """Return the paths for ``dir``, made absolute."""
        return cls(os.path.abspath(os.fspath(dir)))

    @property
    def lock(self) -> str:
        """The lock file a running node holds (flock)."""
        return os.path.join(self.dir, "node.lock")

    @property
    def info(self) -> str:
        """The JSON file describing the running node (pid, store path, durability)."""
        return os.path.join(self.dir, "node.json")

    @property
    def log(self) -> str:
        """The daemon's log file."""
        return os.path.join(self.dir, "node.log")

    @property
    def logs(self) -> str:
        """The directory of the agents' own logs (``NAME.log`` each, see `agent_log`)."""
        return os.path.join(self.dir, "logs")

    def agent_log(self, name: str) -> str:
        """The log file of agent ``name``: its stdout, stderr and ``logging`` records.

        A valid name is the file's name as it is (it has no '/'); a name an older beamish
        let through with a '/' is quoted, so that it stays one file inside `logs`."""
        if "/" in name or "\0" in name:
            name = urllib.parse.quote(name, safe="")
        return os.path.join(self.logs, name + ".log")

    @property
    def store(self) -> str:
        """The LMDB environment directory (for durable modes)."""
        return os.path.join(self.dir, "store")

    @property
    def run(self) -> str:
        """The directory of ipc socket files."""
        return os.path.join(self.dir, "run")

    @property
    def control(self) -> str:
        """The node's control socket (ROUTER): requests from clients."""
        return os.path.join(self.run, "node.sock")

    @property
    def node_in(self) -> str:
        """The node's notification socket (PULL): reports from agents."""
        return os.path.join(self.run, "node-in.sock")

    @property
    def timers_poke(self) -> str:
        """The node's timer socket (a Unix datagram socket): an agent that committed a
        timer due soon pokes it, so the node's timer service looks again at once."""
        return os.path.join(self.run, "timers.sock")

    @property
    def sessions_poke(self) -> str:
        """The node's sessions socket (a Unix datagram socket): a sender that found an
        agent asleep, and an agent idle past its ``idle_timeout``, hint the node there."""
        return os.path.join(self.run, "sessions.sock")

    def agent_inbox(self, agent_id: int) -> str:
        """The doorbell socket of agent ``agent_id``."""
        return os.path.join(self.run, f"a{agent_id}.sock")

    @property
    def busy(self) -> str:
        """The directory of the agents' in-flight markers. On the node dir's own
        filesystem, not with the sockets under `run` (tmpfs): a marker stays while its
        agent sleeps, and a page of RAM per sleeping session would not be bounded."""
        return os.path.join(self.dir, "busy")

    def agent_busy(self, agent_id: int) -> str:
        """The in-flight marker file of agent ``agent_id`` (see `.agent.inflight`)."""
        return os.path.join(self.busy, f"a{agent_id}.busy")

    def client_inbox(self, token: str) -> str:
        """The reply-doorbell socket of one client thread."""
        return os.path.join(self.run, f"c{token}.sock")

    def check_length(self) -> None:
        """Refuse a dir too long for Unix socket paths under it.

        Raises:
            ConfigError: the dir is too long.
        """
        longest = self.client_inbox("0" * 16)
        if len(longest) > MAX_IPC_PATH:
            raise ConfigError(
                f"node dir {self.dir!r} is too long: socket paths under it would be "
                f"{len(longest)} characters, over the {MAX_IPC_PATH} a Unix socket allows; "
                "use a shorter --dir"
            )


def dir_error(dir: str, exc: OSError) -> ConfigError:
    """Turn an OSError met while creating or opening node dir ``dir`` into a `ConfigError`
    that says what is wrong and what to do (pure)."""
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return ConfigError(f"node dir {dir!r} is not a directory (it, or a dir above it, is a "
                           "file); pass --dir a directory, or a path where one can be created")
    if isinstance(exc, PermissionError):
        return ConfigError(f"cannot create or write node dir {dir!r}: permission denied "
                           f"({exc.filename}); pick a dir you can write (--dir or "
                           "$BEAMISH_DIR), or fix its permissions")
    return ConfigError(f"cannot use node dir {dir!r}: {exc.strerror or exc} ({exc.filename})")


def make_dir(paths: NodePaths) -> None:
    """Create the node dir (0700, parents too) if it is missing.

    Raises:
        ConfigError: it cannot be created or is not a directory (see `dir_error`).
    """
    try:
        os.makedirs(paths.dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise dir_error(paths.dir, exc) from None


def check_dir_safe(dir: str) -> None:
    """Refuse a node dir owned by another user or writable by group/others.

    Raises:
        ConfigError: the dir is unsafe, naming what is wrong and how to fix it.
    """
    st = os.stat(dir)
    if st.st_uid != os.getuid():
        raise ConfigError(f"node dir {dir!r} is owned by uid {st.st_uid}, not you "
                          f"(uid {os.getuid()}); use a dir of your own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"node dir {dir!r} is writable by others (mode "
                          f"{stat.S_IMODE(st.st_mode):o}); run `chmod 700 {dir}`")


class NotRegularFile(OSError):
    """Something other than a regular file stands where a log goes (a FIFO there would
    block its writer)."""


def open_append(path: str) -> int:
    """Open (creating, 0600) ``path`` for appending and return the fd, blocking. Never
    through a symlink; anything but a regular file is refused.

    Raises:
        NotRegularFile: it is not a regular file.
        OSError: it cannot be opened (FileNotFoundError: its directory is missing).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(f"{path!r} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def open_log(paths: NodePaths) -> int:
    """Open (or create, 0600) the node's log for appending and return the fd; a symlink
    or anything but a regular file there is refused, never followed.

    Raises:
        ConfigError: ``node.log`` is a symlink or not a regular file.
    """
    try:
        return open_append(paths.log)
    except NotRegularFile:
        raise ConfigError(f"{paths.log!r} is not a regular file: remove it") from None
    except OSError as exc:
        if os.path.islink(paths.log):
            raise ConfigError(f"{paths.log!r} is a symlink; beamish never follows one for "
                              f"its log: remove it (`rm {paths.log}`)") from None
        raise dir_error(paths.dir, exc) from None


def rotate_log(path: str, fd: int, max_bytes: int, keep: int) -> bool:
    """Rotate the log at ``path`` if it is the file open as ``fd`` and past ``max_bytes``.

    Copy-truncate: ``path.N`` becomes ``path.N+1`` (the oldest past ``keep`` is dropped),
    the log is copied to ``path.1`` and truncated in place. Every process writing to it
    (the node, the zygote, the agents, which inherited the descriptor) appends with
    O_APPEND, so each goes on at the new end; a line written between the copy and the
    truncation is lost. Nothing is followed through a symlink.

    Returns:
        Whether it rotated.

    Raises:
        OSError: a file could not be renamed or written (the log is then truncated all
            the same, so that it stays under its cap).
    """
    try:
        st = os.fstat(fd)
    except OSError:
        return False  # no such descriptor: nothing is logged there
    if not stat.S_ISREG(st.st_mode) or st.st_size <= max_bytes:
        return False
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return False
    if (lst.st_dev, lst.st_ino) != (st.st_dev, st.st_ino):
        return False  # not the file we write (a foreground node's stderr, or replaced)
    try:
        for i in range(keep - 1, 0, -1):
            if os.path.lexists(f"{path}.{i}"):
                os.replace(f"{path}.{i}", f"{path}.{i + 1}")
        tmp = f"{path}.1.tmp"
        src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600)
            try:
                while os.sendfile(dst, src, None, 1 << 20):
                    pass
            finally:
                os.close(dst)
        finally:
            os.close(src)
        os.replace(tmp, f"{path}.1")
    finally:
        os.ftruncate(fd, 0)
    return True


def rotate_agent_log(path: str, max_bytes: int, keep: int) -> bool:
    """Rotate an agent's log at ``path`` (`rotate_log`) if it is past ``max_bytes``, under
    an exclusive flock: the agent, which rotates its own log the same way, and a reader
    following it (``beamish logs -f``, a shared flock) never see half a rotation.

    Returns:
        Whether it rotated (False too when there is no such file, or not a regular one).

    Raises:
        OSError: as `rotate_log`.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC)
    except OSError:
        return False  # none yet, or not a file we may write: nothing to rotate
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size <= max_bytes:
            return False
        fcntl.flock(fd, fcntl.LOCK_EX)
        return rotate_log(path, fd, max_bytes, keep)  # checks the size again, locked
    finally:
        os.close(fd)  # and with it the lock


@dataclass(frozen=True, slots=True)
class NodeFile:
    """What a running node's ``node.json`` tells a client: its daemon's pid and how to open
    its store and size its messages (the daemon writes it once it serves).

    Attributes:
        pid: the daemon's pid (0 if the file does not say).
        store: the LMDB store's path.
        durability: "process", "fsync" or "memory".
        max_message_bytes: the node's message size limit.
    """

    pid: int
    store: str
    durability: str
    max_message_bytes: int

    @classmethod
    def from_json(cls, data: object, dir: str) -> NodeFile:
        """Read ``node.json``'s content.

        Raises:
            NodeNotRunning: it is not a node's (a field is missing or of the wrong type).
        """
        try:
            if not isinstance(data, dict):
                raise TypeError(f"a {type(data).__name__}, not an object")
            return cls(int(data.get("pid", 0)), str(data["store"]), str(data["durability"]),
                       int(data["max_message_bytes"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise NodeNotRunning(f"the node.json in {dir!r} is not a running node's ({exc!r}); "
                                 f"start a node with `beamish node start --dir {dir}`") from None


def read_node_info(paths: NodePaths) -> NodeFile:
    """Read the running node's ``node.json``.

    Raises:
        NodeNotRunning: no node has written one (or it is unreadable).
    """
    try:
        with open(paths.info, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise NodeNotRunning(f"no node runs on {paths.dir!r} (start one with "
                             f"`beamish node start --dir {paths.dir}`)") from exc
    except OSError as exc:
        raise dir_error(paths.dir, exc) from None
    return NodeFile.from_json(data, paths.dir)
