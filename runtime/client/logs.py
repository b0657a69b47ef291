"""Reading an agent's log from the client: its last lines, and following it (``beamish
logs NAME [-n N] [-f]``).

The agent writes ``DIR/logs/NAME.log`` itself (`beamish.runtime.agent.logfile`); a rotation
copies it to ``NAME.log.1`` (older ones move up: ``.2``, ...) and truncates it in place. A
follower therefore watches the ``.1`` file: when a new one appears, the old file's lines it
had not read yet are there, and the live file starts again from its beginning. A restarted
agent appends to the same file, so following survives restarts too.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator

FOLLOW_POLL_S = 0.2  # how often a follower looks for new lines
_BLOCK = 1 << 16


def split_lines(data: bytes) -> tuple[list[str], bytes]:
    """The whole lines of ``data`` (decoded, without their newlines) and the unfinished
    rest; pure."""
    end = data.rfind(b"\n") + 1
    if end == 0:
        return [], data
    text = data[:end - 1].decode("utf-8", "replace")
    return text.split("\n"), data[end:]


def generations(path: str) -> list[str]:
    """The log ``path`` and its rotated copies that exist, newest first."""
    out = [path] if os.path.lexists(path) else []
    i = 1
    while os.path.lexists(f"{path}.{i}"):
        out.append(f"{path}.{i}")
        i += 1
    return out


def last_lines(path: str, n: int) -> list[str]:
    """The last ``n`` lines of the log ``path``, oldest first, reaching into its rotated
    copies when the live file holds fewer (an unfinished last line counts as a line)."""
    fd = _open(path)
    if fd < 0:
        return _older_lines(path, n)
    try:
        return _backlog(path, fd, os.fstat(fd).st_size, n)
    finally:
        os.close(fd)


def _backlog(path: str, fd: int, end: int, n: int) -> list[str]:
    """The last ``n`` lines of the live log open as ``fd`` up to ``end``, then of its
    copies if it holds fewer."""
    if n <= 0:
        return []
    got = _tail(fd, end, n)
    if len(got) < n:
        got = _older_lines(path, n - len(got)) + got
    return got


def _older_lines(path: str, n: int) -> list[str]:
    got: list[str] = []
    for file in generations(path)[1:] if os.path.lexists(path) else generations(path):
        if len(got) >= n:
            break
        fd = _open(file)
        if fd < 0:
            continue  # rotated away meanwhile
        try:
            got = _tail(fd, os.fstat(fd).st_size, n - len(got)) + got
        finally:
            os.close(fd)
    return got[-n:] if n > 0 else []


def _tail(fd: int, end: int, n: int) -> list[str]:
    """The last ``n`` lines of the file open as ``fd`` before offset ``end``."""
    data = b""
    while end > 0 and data.count(b"\n") <= n:
        start = max(0, end - _BLOCK)
        data = os.pread(fd, end - start, start) + data
        end = start
    if not data:
        return []
    lines = data.decode("utf-8", "replace").split("\n")
    if lines[-1] == "":
        lines.pop()  # the file ends with a newline
    if end > 0:
        lines = lines[1:]  # the first one is cut (it began before the bytes read)
    return lines[-n:]


def follow(path: str, n: int, poll: float = FOLLOW_POLL_S,
           stop: threading.Event | None = None) -> Iterator[str]:
    """The last ``n`` lines of the log ``path``, then each line written to it from then
    on, as it comes (until the caller stops iterating, or ``stop`` is set: then it ends
    within ``poll`` seconds, also while it waits). It goes on across the agent's
    restarts and the log's rotations, and waits for a log that does not exist yet."""
    rotated = _ino(f"{path}.1")  # the newest copy we know of
    fd = _open(path)
    if fd < 0:
        yield from _older_lines(path, n)
        fd = _wait_open(path, poll, stop)
        if fd < 0:
            return
        pos = 0
    else:
        # The backlog from the same descriptor, then on from where it ended: no line is
        # shown twice or skipped.
        pos = os.fstat(fd).st_size
        yield from _backlog(path, fd, pos, n)
    rest = b""
    try:
        while True:
            # The agent rotates under an exclusive flock: under a shared one, a rotation
            # is either done or not begun.
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                copies, lost = _copies_since(path, rotated)
                if copies:
                    # What we had not read is in the oldest new copy, the newer copies
                    # are whole, and the live file starts again from its beginning.
                    if lost:
                        rest += b"[beamish logs: lines were rotated away unread]\n"
                    rest += _read_from(copies[0], 0 if lost else pos)
                    for copy in copies[1:]:
                        rest += _read_from(copy, 0)
                    rotated, pos = _ino(f"{path}.1"), 0
                size = os.fstat(fd).st_size
                if size < pos:
                    pos = 0  # truncated without a copy (the copy failed)
                if size > pos:
                    data = os.pread(fd, size - pos, pos)
                    pos += len(data)
                    rest += data
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            lines, rest = split_lines(rest)
            yield from lines
            if _ino(path) not in (None, os.fstat(fd).st_ino):
                os.close(fd)  # replaced (deleted and made again): read the new one
                fd = -1
                fd, pos = _wait_open(path, poll, stop), 0
                if fd < 0:
                    return
                continue
            if _stopped(stop, poll):
                return
    finally:
        if fd >= 0:
            os.close(fd)


def _copies_since(path: str, known: int | None) -> tuple[list[str], bool]:
    """The copies rotations made since ``known`` was the newest (its inode; None: there
    was none), oldest first, and whether the copy holding our unread lines is gone
    (rotated past the ones kept)."""
    copies = generations(path)[1:] if os.path.lexists(path) else generations(path)
    inos = [_ino(c) for c in copies]
    if known in inos:
        made = inos.index(known)  # it moved down by one place per rotation
        return list(reversed(copies[:made])), False
    if known is None:
        return list(reversed(copies)), False
    return list(reversed(copies)), True


def _wait_open(path: str, poll: float, stop: threading.Event | None) -> int:
    """The log opened once it exists; -1 if ``stop`` was set first."""
    while True:
        fd = _open(path)
        if fd >= 0:
            return fd
        if _stopped(stop, poll):
            return -1


def _stopped(stop: threading.Event | None, poll: float) -> bool:
    """Wait ``poll`` seconds, or less if ``stop`` is set meanwhile; return whether it is."""
    if stop is None:
        time.sleep(poll)
        return False
    return stop.wait(poll)


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1


def _ino(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return None


def _read_from(path: str, pos: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    try:
        out = b""
        while chunk := os.pread(fd, _BLOCK, pos + len(out)):
            out += chunk
        return out
    finally:
        os.close(fd)
