"""An agent's own log: its stdout, stderr and ``logging`` records in ``DIR/logs/NAME.log``,
each line timestamped, the file rotated past a size; and the process titles.

An agent process opens its file once, before ``init`` (`attach`), and points fds 1 and 2 at
it (``dup2``): what C code and the processes it starts write there lands in the file too,
as written (nothing sits between them and the file to stamp it). ``sys.stdout`` and
``sys.stderr`` become `StampedWriter` s, which write whole lines, each prefixed with the
time, with one ``write(2)`` per batch of lines (no thread, no buffer to lose at a crash
but an unfinished line); ``logging``'s handler of last resort (for records no configured
handler takes) writes ``LEVEL logger: message`` there, whatever the record's level.

Rotation is copy-truncate (`beamish.runtime._paths.rotate_agent_log`, under an flock),
checked by the writers after each write and by the node every few seconds for what only C
code or subprocesses wrote; the file's identity never changes: fds 1 and 2
stay what the loop recorded after ``init`` (it restarts an agent whose stdio changed), and
``beamish logs -f`` sees a truncation. A line written by a subprocess at the very moment
of a rotation can be lost.

The file is held only while the process runs: a sleeping agent has neither.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

from .._osproc import set_title
from .._paths import NodePaths, open_append, rotate_agent_log

# A line without its newline is written (stamped) once this long, or at a flush.
PARTIAL_MAX = 64 * 1024
# Python's own logging.Formatter prints its time this way: node.log and the agents' logs
# read alike.
_STAMP_SECOND = "%Y-%m-%d %H:%M:%S"
RECORD_FORMAT = "%(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True, slots=True)
class LogSpec:
    """Where an agent's log is and when it is rotated.

    Attributes:
        path: the file (``DIR/logs/NAME.log``).
        max_bytes: it is rotated once past this size.
        keep: older generations kept (``NAME.log.1`` the newest).
    """

    path: str
    max_bytes: int
    keep: int


def stamp(now: float) -> str:
    """The prefix of a line written at time ``now``: local time to the millisecond and a
    space, as ``2026-12-07 16:35:38,123 ``."""
    ms = int(now * 1000) % 1000
    return f"{time.strftime(_STAMP_SECOND, time.localtime(now))},{ms:03d} "


def stamp_lines(text: str, prefix: str, midline: bool) -> tuple[str, bool]:
    """Put ``prefix`` at the start of every line of ``text``; pure.

    Args:
        text: what is written: whole lines, or a line's start (a flush or a long line).
        prefix: the line prefix (`stamp`).
        midline: whether the last text written ended inside a line (it is continued
            without a prefix).

    Returns:
        The text to write, and whether it ends inside a line.
    """
    if not text:
        return "", midline
    ends_line = text.endswith("\n")
    body = text[:-1] if ends_line else text
    out = body.replace("\n", "\n" + prefix)
    if not midline:
        out = prefix + out
    return (out + "\n" if ends_line else out), not ends_line


class StampedWriter(io.TextIOBase):
    """A text stream (``sys.stdout``/``sys.stderr`` of an agent) that writes each whole
    line to ``fd`` at once, prefixed with the time it was written.

    A line's start without its newline waits for the rest (or a `flush`, or
    `PARTIAL_MAX` characters). After each write the log is rotated if it is past its cap.

    Args:
        fd: the descriptor written to (1 or 2).
        spec: the log's rotation rule; None: never rotated (not an agent's log).
        tag: written after the time on each line (``agent NAME: `` in the node's log).
    """

    def __init__(self, fd: int, spec: LogSpec | None, tag: str = "") -> None:
        super().__init__()
        self._fd = fd
        self._spec = spec
        self._tag = tag
        self._partial = ""
        self._midline = False
        self._lock = threading.Lock()  # an agent's threads may print at once
        self._buffer: io.FileIO | None = None

    encoding = "utf-8"
    errors = "backslashreplace"  # what UTF-8 cannot carry (lone surrogates) is escaped

    @property
    def buffer(self) -> io.FileIO:
        """The descriptor as a binary stream: bytes written there are not stamped."""
        self.flush()
        if self._buffer is None:
            self._buffer = io.FileIO(self._fd, "wb", closefd=False)
        return self._buffer

    def rotate_with(self, spec: LogSpec | None) -> None:
        """Rotate the file written to by ``spec`` from now on (a new file: the next write
        starts a line)."""
        self._spec = spec
        self._midline = False

    def fileno(self) -> int:
        """The descriptor written to."""
        return self._fd

    def isatty(self) -> bool:
        """Whether the descriptor is a terminal (never, for an agent's log file)."""
        return os.isatty(self._fd)

    def writable(self) -> bool:
        """Always writable."""
        return True

    def write(self, s: str) -> int:
        """Write ``s``: its whole lines now, the rest with the next newline or flush."""
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        with self._lock:
            text = self._partial + s if self._partial else s
            end = text.rfind("\n") + 1
            if end == 0 and len(text) < PARTIAL_MAX:
                self._partial = text
                return len(s)
            if end == 0:
                end = len(text)
            self._partial = text[end:]
            self._emit(text[:end])
        return len(s)

    def flush(self) -> None:
        """Write the unfinished line (stamped; its rest follows without a stamp)."""
        if self.closed:
            return
        with self._lock:
            if self._partial:
                text, self._partial = self._partial, ""
                self._emit(text)

    def _emit(self, text: str) -> None:
        out, self._midline = stamp_lines(text, stamp(time.time()) + self._tag, self._midline)
        _write_all(self._fd, out.encode("utf-8", "backslashreplace"))
        if self._spec is not None:
            self._rotate_if_full(self._spec)

    def _rotate_if_full(self, spec: LogSpec) -> None:
        try:
            # With O_APPEND the offset after a write is the file's end: no fstat needed.
            if os.lseek(self._fd, 0, os.SEEK_CUR) <= spec.max_bytes:
                return
        except OSError:
            return  # the agent pointed the fd at a pipe or socket: not our file
        try:
            rotate_agent_log(spec.path, spec.max_bytes, spec.keep)
        except OSError as exc:
            # Truncated all the same (rotate_log), so the cap holds: say what was lost.
            line = stamp_lines(f"beamish: cannot keep a copy of the rotated log {spec.path!r}"
                               f" ({exc}): its older lines are gone\n",
                               stamp(time.time()), False)[0]
            _write_all(self._fd, line.encode("utf-8", "backslashreplace"))


class _StderrHandler(logging.Handler):
    """Writes each record to whatever ``sys.stderr`` is when it is emitted (the agent's
    `StampedWriter`, which adds the time)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            sys.stderr.write(text + "\n")
        except Exception:  # noqa: BLE001 - logging's own rule: report through handleError
            self.handleError(record)


# Made in the zygote (which imports this module before forking). Level NOTSET: a record
# is shown when its logger lets it through (the root logger's WARNING by default).
_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter(RECORD_FORMAT))


def open_log_file(path: str, dir: str) -> int:
    """Open (creating, 0600) the log ``path`` for appending; its directory ``dir`` is
    created (0700) if missing. Never follows a symlink; refuses anything but a regular
    file (a FIFO there would block the agent).

    Raises:
        OSError: it cannot be opened, or is not a regular file.
    """
    try:
        return open_append(path)
    except FileNotFoundError:
        os.makedirs(dir, mode=0o700, exist_ok=True)
        return open_append(path)


def attach(paths: NodePaths, name: str, max_bytes: int, keep: int) -> None:
    """Make this process agent ``name``'s: its title names it, fds 1 and 2 and
    ``sys.stdout``/``sys.stderr`` write to its log, and so do ``logging`` records no
    configured handler takes. Run before ``init``.

    A log that cannot be opened leaves the output where it went (the node's log), each
    line written through ``sys.stdout``/``sys.stderr`` naming the agent, and says why there.
    """
    set_title(f"beamish agent {name} (node {paths.dir})", name)
    # Python's handler of last resort, for records no configured handler takes: a
    # `logging.basicConfig` in the agent's code still configures logging as it would.
    logging.lastResort = _HANDLER
    path = paths.agent_log(name)
    try:
        fd = open_log_file(path, paths.logs)
    except OSError as exc:
        sys.stdout = StampedWriter(1, None, f"agent {name}: ")
        sys.stderr = StampedWriter(2, None, f"agent {name}: ")
        sys.stderr.write(f"beamish: cannot open the log {path!r} ({exc}); this agent's "
                         "output goes to the node's log\n")
        return
    spec = LogSpec(path, max_bytes, keep)
    for fd_no, stream in ((1, sys.stdout), (2, sys.stderr)):
        if stream is not None:
            stream.flush()
        os.dup2(fd, fd_no)
        if isinstance(stream, StampedWriter) and stream.fileno() == fd_no:
            stream.rotate_with(spec)  # the zygote's, inherited: cheaper than new ones
        else:
            setattr(sys, "stdout" if fd_no == 1 else "stderr", StampedWriter(fd_no, spec))
    os.close(fd)


def warm_up(dir: str) -> None:
    """In a warm zygote child, before it knows its agent: title it, and run through the
    code `attach` runs (without its effects). A forked process pays for its first touch
    of each inherited page (copy-on-write faults: most of `attach`'s cost); this way the
    spawn that takes this child does not."""
    set_title(f"beamish agent, not started yet (node {dir})", "beamish-warm")
    spec = LogSpec(NodePaths(dir).agent_log("warm"), 0, 0)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, StampedWriter):
            stream.flush()
            stream.rotate_with(None)
    stamp_lines("\n", stamp(time.time()), spec.max_bytes > 0)
    logging.getLogger().hasHandlers()
    try:
        os.close(open_log_file(os.devnull, dir))
    except OSError:
        pass  # expected: not a regular file (the point was to run the code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
