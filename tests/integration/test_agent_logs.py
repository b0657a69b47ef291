"""Per-agent logs and process titles, through real processes: what an agent writes in
every way (print, logging, os.write on fds 1 and 2, a subprocess) lands in its own
DIR/logs/NAME.log, each line it writes through Python stamped; the file is rotated at its
cap; ``beamish logs -n`` and ``-f`` read it, ``-f`` across a kill -9 and a rotation; ps
and top name the agent; a sleeping agent holds no file."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import psutil
import pytest

from beamish.runtime import AgentNotFound, Node, start_node
from beamish.runtime._paths import NodePaths
from tests.conftest import REPO, beamish, restarted, shutdown_quietly, wait_until

TALKER = "tests.agents.log_agents:Talker"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
CAP = 4096


def log_text(node: Node, name: str) -> str:
    with open(NodePaths.of(node.dir).agent_log(name)) as fh:
        return fh.read()


def node_log(node: Node) -> str:
    with open(NodePaths.of(node.dir).log) as fh:
        return fh.read()


@pytest.fixture
def small_logs(node_dir: str) -> Iterator[Node]:
    """A node whose agents' logs are rotated past `CAP` bytes, two older copies kept."""
    os.makedirs(node_dir, mode=0o700)
    config = os.path.join(node_dir, "beamish.toml")
    with open(config, "w") as fh:
        fh.write(f"[node]\nagent_log_max_bytes = {CAP}\nagent_log_keep = 2\n")
    n = start_node(node_dir, config=config)
    try:
        yield n
    finally:
        shutdown_quietly(n)


def test_every_way_an_agent_writes_lands_in_its_own_log(node: Node) -> None:
    ref = node.spawn(TALKER, name="t")
    pid = ref.call({"op": "print", "text": "a printed line"})
    ref.call({"op": "print", "text": "two\nlines"})
    ref.call({"op": "stderr", "text": "to stderr"})
    ref.call({"op": "log", "text": "a warning record"})
    ref.call({"op": "exc"})
    ref.call({"op": "fd", "fd": 1, "text": "raw on fd 1"})
    ref.call({"op": "fd", "fd": 2, "text": "raw on fd 2"})
    ref.call({"op": "subprocess", "text": "from-a-subprocess"})
    text = log_text(node, "t")
    # Each line written through Python is stamped; a logging record names its level and
    # logger; fds 1 and 2 (C code, subprocesses) land in the same file, as written.
    for line in (f"hello from init, pid {pid}", "a printed line", "two", "lines", "to stderr",
                 "WARNING tests.talker: a warning record", "ERROR tests.talker: it failed"):
        assert re.search(f"^{STAMP}{line}$", text, re.M), (line, text)
    assert re.search(f"^{STAMP}Traceback", text, re.M)
    assert re.search(f"^{STAMP}ValueError: bad value$", text, re.M)
    for line in ("raw on fd 1", "raw on fd 2", "from-a-subprocess"):
        assert re.search(f"^{line}$", text, re.M), (line, text)
    assert text.count("from-a-subprocess") == 2  # its stdout and its stderr
    # ... and none of it in the node's own log.
    assert "a printed line" not in node_log(node)
    assert "from-a-subprocess" not in node_log(node)


def test_an_agent_that_configures_logging_itself_gets_its_format_and_level(
        node: Node) -> None:
    ref = node.spawn("tests.agents.log_agents:Configured", name="c")
    ref.call("an info record")
    assert re.search(f"^{STAMP}configured INFO an info record$", log_text(node, "c"), re.M)


def test_an_agent_log_lives_across_restarts_and_node_logs_reads_it(node: Node) -> None:
    ref = node.spawn(TALKER, name="t")
    pid = ref.call({"op": "print", "text": "before the kill"})
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: restarted(node, "t", pid), what="the restart")
    new = ref.call({"op": "print", "text": "after the kill"})
    assert node.logs("t", 4)[-4:] == node.logs("t", 4)
    lines = [line[24:] for line in node.logs("t")]
    assert lines == [f"hello from init, pid {pid}", "before the kill",
                     f"recovering from killed, pid {new}", f"hello from init, pid {new}",
                     "after the kill"]
    assert [line[24:] for line in node.logs("t", 1)] == ["after the kill"]
    assert node.logs("t", 0) == []
    with pytest.raises(AgentNotFound):
        node.logs("nobody")


def test_the_log_is_rotated_at_its_cap_and_nothing_is_lost_between_copies(
        small_logs: Node) -> None:
    ref = small_logs.spawn(TALKER, name="t")
    ref.call({"op": "spam", "text": "line", "n": 600}, timeout=30)  # ~30 lines per 1 KiB
    path = NodePaths.of(small_logs.dir).agent_log("t")
    sizes = [os.path.getsize(p) for p in (path, f"{path}.1", f"{path}.2")]
    assert all(0 < size <= CAP + 64 for size in sizes), sizes  # the cap, plus one line
    assert not os.path.exists(f"{path}.3")  # agent_log_keep = 2
    # The three files hold the last lines written, in order, without a gap.
    lines = small_logs.logs("t", 10_000)
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines if " line " in line]
    assert numbers == list(range(numbers[0], 600)), numbers
    assert len(numbers) > 100


def test_what_only_a_subprocess_writes_is_rotated_by_the_node(small_logs: Node) -> None:
    ref = small_logs.spawn(TALKER, name="t")
    ref.call({"op": "spam_fd", "text": "from-sh", "n": 2000})  # ~16 KiB, never a print
    path = NodePaths.of(small_logs.dir).agent_log("t")
    assert os.path.getsize(path) > 3 * CAP  # the agent itself did not see it
    wait_until(lambda: os.path.getsize(path) <= CAP, timeout=30,
               what="the node to rotate the log (it checks every 5 s)")
    assert os.path.exists(f"{path}.1") and not os.path.exists(f"{path}.2")
    with open(f"{path}.1") as fh:
        assert fh.read().count("from-sh\n") == 2000


def test_beamish_logs_n_prints_the_last_lines(node: Node) -> None:
    ref = node.spawn(TALKER, name="t")
    for text in ("one", "two", "three"):
        ref.call({"op": "print", "text": text})
    out = beamish("logs", "t", "-n", "2", "--dir", node.dir, check=True).stdout
    assert [line[24:] for line in out.splitlines()] == ["two", "three"]
    gone = beamish("logs", "nobody", "--dir", node.dir)
    assert gone.returncode == 1 and "nobody" in gone.stderr


class _Follower:
    """``beamish logs NAME -f`` as a user runs it, its lines read by a thread."""

    def __init__(self, node: Node, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beamish.runtime", "logs", name, "-f", "-n", "1",
             "--dir", node.dir], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
            stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str) -> None:
        def arrived() -> bool:
            while not self.lines.empty():
                self.seen.append(self.lines.get()[24:])
            return text in self.seen
        wait_until(arrived, timeout=20, what=f"{text!r} from `beamish logs -f`")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_beamish_logs_follow_goes_on_across_a_restart_and_a_rotation(
        small_logs: Node) -> None:
    ref = small_logs.spawn(TALKER, name="t")
    ref.call({"op": "print", "text": "first"})
    follower = _Follower(small_logs, "t")
    try:
        follower.wait_for("first")  # -n 1: the backlog's last line
        pid = ref.call({"op": "print", "text": "before the kill"})
        follower.wait_for("before the kill")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: restarted(small_logs, "t", pid), what="the restart")
        new = ref.call({"op": "print", "text": "after the kill"})
        follower.wait_for("after the kill")
        ref.call({"op": "spam", "text": "spam", "n": 300}, timeout=30)  # 2+ rotations
        ref.call({"op": "print", "text": "after the rotation"})
        follower.wait_for("after the rotation")
    finally:
        follower.close()
    seen = follower.seen
    assert seen[:5] == ["first", "before the kill", f"recovering from killed, pid {new}",
                        f"hello from init, pid {new}", "after the kill"], seen
    assert seen[-1] == "after the rotation"
    # Each line once, in order, across the rotations: those rotated into the copies
    # before it looked were read from there.
    spam = [int(line.split()[1]) for line in seen if line.startswith("spam ")]
    assert spam == list(range(300)), seen


def test_ps_and_top_name_each_agent_the_zygote_and_the_node(node: Node) -> None:
    ref = node.spawn(TALKER, name="chat-user-42")
    pid = ref.call({"op": "print", "text": "x"})
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        cmdline = fh.read().replace(b"\0", b" ").decode().strip()
    assert cmdline == f"beamish agent chat-user-42 (node {node.dir})"
    assert ref.call({"op": "title"}) == "chat-user-42"  # /proc/PID/comm, what top shows
    assert psutil.Process(node.pid).name() == "beamish-node"
    assert " ".join(psutil.Process(node.pid).cmdline()).strip() == f"beamish node {node.dir}"
    zygote = psutil.Process(pid).parent()
    assert zygote is not None and zygote.name() == "beamish-zygote"


def test_a_sleeping_agent_has_no_process_and_no_open_log(node: Node) -> None:
    ref = node.spawn(TALKER, name="t")
    pid = ref.call({"op": "print", "text": "awake"})
    path = NodePaths.of(node.dir).agent_log("t")
    assert os.readlink(f"/proc/{pid}/fd/1") == path
    node.sleep("t")

    def holders() -> list[int]:
        procs = [psutil.Process(node.pid), *psutil.Process(node.pid).children(recursive=True)]
        return [p.pid for p in procs if any(f.path == path for f in p.open_files())]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert holders() == []
    ref.call({"op": "print", "text": "awake again"})  # its next message wakes it
    assert [line[24:] for line in node.logs("t", 1)] == ["awake again"]


def test_an_agent_that_points_its_stdio_elsewhere_in_init_keeps_running(
        node: Node, node_dir: str) -> None:
    own = os.path.join(os.path.dirname(node_dir), "own.log")
    ref = node.spawn("tests.agents.log_agents:OwnStdio", name="o", args={"path": own})
    pid = ref.call("one")
    assert ref.call("two") == pid
    assert node.info("o").restarts == 0
    with open(own) as fh:
        assert fh.read() == "one\nraw one\ntwo\nraw two\n"


def test_an_agent_whose_log_cannot_be_opened_writes_to_the_node_log_naming_itself(
        node: Node) -> None:
    os.makedirs(NodePaths.of(node.dir).agent_log("t"))  # a directory in the file's place
    ref = node.spawn(TALKER, name="t")
    ref.call({"op": "print", "text": "still heard"})
    text = node_log(node)
    assert re.search(f"^{STAMP}agent t: beamish: cannot open the log .* this agent's output "
                     "goes to the node's log$", text, re.M), text
    assert re.search(f"^{STAMP}agent t: still heard$", text, re.M), text


def test_async_node_logs_reads_and_follows_an_agent_log(node: Node) -> None:
    import asyncio

    from beamish.runtime import AsyncNode

    node.spawn(TALKER, name="a").call({"op": "print", "text": "first line"})

    async def go() -> tuple[list[str], list[str]]:
        anode = AsyncNode(node)
        last = await anode.logs("a", n=5)
        follow = anode.logs("a", n=1, follow=True)
        seen = [await follow.__anext__()]  # the backlog's last line: it now follows
        await anode.call("a", {"op": "print", "text": "second line"})
        seen.append(await follow.__anext__())
        waiting = asyncio.ensure_future(follow.__anext__())  # no third line comes
        await asyncio.sleep(0.3)
        waiting.cancel()  # its worker thread ends too (else asyncio.run would hang)
        return last, seen

    last, seen = asyncio.run(go())
    assert any(line.endswith("first line") for line in last), last
    assert seen[0].endswith("first line") and seen[1].endswith("second line"), seen
