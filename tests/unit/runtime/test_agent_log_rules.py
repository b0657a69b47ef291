"""An agent's log, its pure rules: where the file is, how lines are stamped, how a reader
splits and tails it. One table per rule; the real processes are in
tests/integration/test_agent_logs.py."""

from __future__ import annotations

import os
import re
import time

import pytest

from beamish.runtime._paths import NodePaths
from beamish.runtime.agent.logfile import StampedWriter, stamp, stamp_lines
from beamish.runtime.client.logs import last_lines, split_lines

P = "T "
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.mark.parametrize(("text", "midline", "out", "ends_inside"), [
    ("", False, "", False),                          # nothing written: nothing changes
    ("", True, "", True),
    ("a\n", False, "T a\n", False),                  # a whole line
    ("a\nb\n", False, "T a\nT b\n", False),          # each line its own stamp
    ("\n", False, "T \n", False),                    # an empty line is a line
    ("a\n\nb\n", False, "T a\nT \nT b\n", False),
    ("par", False, "T par", True),                   # a line's start (a flush)...
    ("tial\n", True, "tial\n", False),               # ...continued without a stamp
    ("tial\nnext\n", True, "tial\nT next\n", False),
    ("a\nb", False, "T a\nT b", True),               # whole line, then a start
])
def test_stamp_lines_stamps_each_line_start_once(text: str, midline: bool, out: str,
                                                  ends_inside: bool) -> None:
    assert stamp_lines(text, P, midline) == (out, ends_inside)


def test_stamp_is_the_local_time_to_the_millisecond_like_node_log() -> None:
    now = 1_796_000_000.0425
    assert stamp(now) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + ",042 "


@pytest.mark.parametrize(("name", "file"), [
    ("c1", "c1.log"),                        # a valid name is the file's name as it is
    ("chat:user-42", "chat:user-42.log"),
    ("..", "...log"),                        # no '/': stays inside logs/
    ("a/b", "a%2Fb.log"),                    # a stored name with '/' is quoted
    ("../x", "..%2Fx.log"),
])
def test_agent_log_is_one_file_inside_logs(name: str, file: str) -> None:
    paths = NodePaths.of("/n")
    assert paths.agent_log(name) == f"/n/logs/{file}"
    assert os.path.dirname(paths.agent_log(name)) == paths.logs


@pytest.mark.parametrize(("data", "lines", "rest"), [
    (b"", [], b""),
    (b"abc", [], b"abc"),                    # an unfinished line waits
    (b"a\n", ["a"], b""),
    (b"a\nb\nc", ["a", "b"], b"c"),
    (b"\n\n", ["", ""], b""),
    (b"\xff\n", ["\ufffd"], b""),            # undecodable bytes are shown, not fatal
])
def test_split_lines_keeps_the_unfinished_rest(data: bytes, lines: list[str],
                                               rest: bytes) -> None:
    assert split_lines(data) == (lines, rest)


@pytest.mark.parametrize(("live", "older", "n", "want"), [
    ("a\nb\nc\n", [], 2, ["b", "c"]),
    ("a\nb\nc\n", [], 10, ["a", "b", "c"]),
    ("a\nb\nc", [], 1, ["c"]),                       # an unfinished last line counts
    ("a\nb\n", [], 0, []),
    ("c\n", ["a\nb\n"], 2, ["b", "c"]),              # reaches into NAME.log.1
    ("", ["c\nd\n", "a\nb\n"], 3, ["b", "c", "d"]),  # .1 the newest, then .2
    (None, ["a\nb\n"], 5, ["a", "b"]),               # the live file missing
])
def test_last_lines_reads_back_through_the_rotated_copies(
        tmp_path: object, live: str | None, older: list[str], n: int,
        want: list[str]) -> None:
    path = os.path.join(str(tmp_path), "x.log")
    if live is not None:
        with open(path, "w") as fh:
            fh.write(live)
    for i, text in enumerate(older, 1):
        with open(f"{path}.{i}", "w") as fh:
            fh.write(text)
    assert last_lines(path, n) == want


def test_last_lines_of_a_long_log_reads_its_end_only(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "x.log")
    with open(path, "w") as fh:
        fh.writelines(f"line {i}\n" for i in range(200_000))
    assert last_lines(path, 3) == ["line 199997", "line 199998", "line 199999"]


def test_stamped_writer_writes_whole_lines_and_keeps_a_start(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "w.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        w = StampedWriter(fd, None)
        print("one", file=w)
        w.write("par")
        assert _read(path).count("\n") == 1  # the start waits for its line
        w.write("tial\n")
        w.write("x")
        w.flush()
        w.write("y\n")
        text = _read(path)
    finally:
        os.close(fd)
    lines = text.splitlines()
    assert [line[24:] for line in lines] == ["one", "partial", "xy"]
    assert all(STAMP.match(line) for line in lines)
    with pytest.raises(TypeError):
        w.write(b"bytes")  # type: ignore[arg-type]


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()
