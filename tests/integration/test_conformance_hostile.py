"""Issue 9, hostile input and faults at the node and the mailbox: reports from processes
that run user code are untrusted, every dropped frame is counted and shown, a full disk
says so, node.log is capped and never followed through a symlink, and an agent handles
only what its durable mailbox holds."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import msgpack
import pytest
import zmq

from beamish.mailbox import DEFAULT_MAX_MESSAGE_BYTES
from tests.conftest import restarted, shutdown_quietly, wait_until

pytestmark = pytest.mark.slow


def _push(ctx: zmq.Context, path: str) -> zmq.Socket:  # type: ignore[type-arg]
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect("ipc://" + path)
    return sock


def _info_frames(payload: object) -> list[bytes]:
    """A well-framed INFO envelope (what an agent's report looks like) around ``payload``."""
    return [b"\x01", b"\x04", b"", b"", msgpack.packb(payload, use_bin_type=True)]


def _malformed_reports(pid: int, agent_id: int) -> list[object]:
    """Reports a process running user code could send: right envelope, wrong fields."""
    return [
        {"ev": "ready", "pid": "not a pid"},  # observed: stopped every agent
        {"ev": "ready", "pid": None, "id": agent_id, "inc": 1},
        {"ev": "ready", "pid": [pid], "id": agent_id, "inc": 1},
        {"ev": "ready", "pid": {"a": 1}},
        {"ev": "ready", "pid": 1.5, "id": agent_id, "inc": 1},
        {"ev": "ready", "pid": 2 ** 64 - 1, "id": agent_id, "inc": 1},
        {"ev": "ready", "pid": -7, "id": agent_id, "inc": 1},
        {"ev": "ready", "pid": True, "id": agent_id, "inc": 1},
        {"ev": "ready", "pid": pid, "id": [agent_id], "inc": {"x": 1}},
        {"ev": "ready", "pid": pid, "id": agent_id, "inc": 1, "trap_exits": "yes"},
        {"ev": "ready", "pid": b"\x00\x01", "id": agent_id, "inc": 1},
        {"ev": "dead_lettered", "id": {"nested": [1, 2]}, "reason": {"no": "string"}},
        {"ev": "dead_lettered", "id": agent_id, "pid": pid, "inc": 1, "seq": "x",
         "reason": "r"},
        {"ev": "recover_failed", "id": None, "reason": ["a", "b"]},
        {"ev": "terminate_failed", "id": -(2 ** 63), "pid": pid, "inc": 1, "reason": "r"},
        {"ev": ["ready"], "pid": pid},
        {"ev": None},
        {"ev": "ready"},
        {"ev": "nosuch", "pid": pid},
        {},
        {1: 2, "ev": "ready", "pid": pid},
        [1, 2, 3],
        "ready",
        12,
        None,
    ]


def test_malformed_reports_are_dropped_and_counted_and_the_node_keeps_serving(node):
    ref = node.spawn("tests.agents.basic:Counter", name="c")
    assert ref.call("incr") == 1
    pid = ref.call("pid")
    agent_id = 1
    before = node._control.request("ping")["dropped_frames"]
    bad = _malformed_reports(pid, agent_id)
    ctx = zmq.Context()
    try:
        sock = _push(ctx, node.paths.node_in)
        for payload in bad * 3:
            sock.send_multipart(_info_frames(payload))
        wait_until(lambda: node._control.request("ping")["dropped_frames"] - before
                   >= len(bad) * 3, what="every malformed report to be counted")
    finally:
        ctx.destroy(linger=0)
    # The node kept serving: the agent answers with its state, a new one spawns, and a
    # killed one is restarted.
    assert ref.call("incr") == 2
    assert node.spawn("tests.agents.basic:Counter", name="d").call("get") == 0
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: restarted(node, "c", pid), what="the killed agent to be restarted")
    assert ref.call("get") == 2


def _refused(start_node, node_dir: str, match: str) -> None:  # type: ignore[no-untyped-def]
    """Start a node on ``node_dir``, expecting a ConfigError matching ``match``."""
    from beamish.runtime import ConfigError
    try:
        n = start_node(node_dir)
    except ConfigError as exc:
        assert match in str(exc)
        return
    shutdown_quietly(n)
    pytest.fail(f"a node started on {node_dir}")


def test_a_world_writable_dir_is_refused_before_anything_is_created_in_it(node_dir):
    from beamish.runtime import start_node
    os.makedirs(node_dir)
    os.chmod(node_dir, 0o777)
    target = os.path.join(os.path.dirname(node_dir), "victim")
    os.symlink(target, os.path.join(node_dir, "node.log"))
    _refused(start_node, node_dir, "writable by others")
    assert not os.path.lexists(target), "the planted node.log symlink was followed"
    assert sorted(os.listdir(node_dir)) == ["node.log"]


def test_a_symlink_planted_as_node_log_is_never_followed(node_dir):
    from beamish.runtime import start_node
    os.makedirs(node_dir, mode=0o700)
    target = os.path.join(os.path.dirname(node_dir), "victim")
    os.symlink(target, os.path.join(node_dir, "node.log"))
    _refused(start_node, node_dir, "node.log")
    assert not os.path.lexists(target), "the planted node.log symlink was followed"


GARBAGE = [
    [b"not msgpack at all"],
    [b"\x09", b"\x01", b"", b"", b"\xc1"],
    [b"\x01", b"\x63", b"", b"", b"\x80"],
    [b"\x01"],
    [b"a", b"b", b"c"],
]


def test_every_dropped_frame_is_counted_and_shown_in_node_status(node):
    """Frames a few KiB over the limit (which ZeroMQ's own limit used to drop unseen) and
    garbage sent to an agent's own socket are all counted, and `node status` (API, CLI
    and --json) shows them."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO
    ref = node.spawn("tests.agents.basic:Counter", name="c")
    ref.call("incr")
    limit = DEFAULT_MAX_MESSAGE_BYTES  # of every node and agent socket, by default
    oversized = [b"\x01", b"\x02", b"", b"", b"\xc4" + os.urandom(limit + 8192)]
    ctx = zmq.Context()
    try:
        control = ctx.socket(zmq.DEALER)
        control.setsockopt(zmq.LINGER, 1000)
        control.connect("ipc://" + node.paths.control)
        control.send_multipart(oversized)
        _push(ctx, node.paths.node_in).send_multipart(oversized)
        agent = _push(ctx, node.paths.agent_inbox(1))
        agent.send_multipart(oversized)
        for frames in GARBAGE:
            agent.send_multipart(frames)
        want = {"control": 1, "reports": 1, "agents": 1 + len(GARBAGE)}

        def counted():  # type: ignore[no-untyped-def]
            dropped = node.status().dropped_frames
            return all(getattr(dropped, k) >= v for k, v in want.items()) and dropped
        dropped = wait_until(counted, what=f"the dropped frames {want} to be counted")
        assert node.status().dropped_frames.total >= sum(want.values())
    finally:
        ctx.destroy(linger=0)
    assert ref.call("incr") == 2  # the agent kept serving, with its state
    # The counts of an agent's earlier processes are kept when it restarts.
    os.kill(ref.call("pid"), signal.SIGKILL)
    wait_until(lambda: node.info("c").status == "running" and node.info("c").restarts == 1,
               what="the agent to be restarted")
    assert node.status().dropped_frames.agents >= dropped.agents
    env = dict(os.environ, PYTHONPATH=REPO)
    cli = [sys.executable, "-m", "beamish.runtime", "node", "status", "--dir", node.dir]
    out = subprocess.run(cli, env=env, capture_output=True, text=True, check=True).stdout
    assert f"agents {node.status().dropped_frames.agents}" in out
    st = json.loads(subprocess.run([*cli, "--json"], env=env, capture_output=True, text=True,
                                   check=True).stdout)
    assert st["dropped_frames"]["agents"] >= dropped.agents
    assert st["dropped_frames"]["control"] >= 1


def test_a_ring_for_a_message_never_committed_is_not_handled(node):
    """A well-formed ring for the next sequence number, carrying a message that was never
    committed to the durable mailbox: the agent handles only what its mailbox holds."""
    import time

    from beamish.mailbox import Kind, encode_ring, pack
    ref = node.spawn("tests.agents.basic:Counter", name="c")
    assert ref.call("incr") == 1  # seq 1: the next one is 2
    ctx = zmq.Context()
    try:
        reply_path = node.paths.client_inbox("f0f0f0f0f0f0f0f0")
        replies = ctx.socket(zmq.PULL)
        replies.setsockopt(zmq.LINGER, 0)
        replies.bind("ipc://" + reply_path)
        forged = {"k": "call", "p": pack("incr"), "t": time.time(), "id": os.urandom(16),
                  "r": reply_path, "d": time.time() + 60}
        _push(ctx, node.paths.agent_inbox(1)).send(
            encode_ring(Kind.RING, (2).to_bytes(8, "big"), pack(forged)))

        def refused() -> bool:
            if replies.poll(0):
                pytest.fail("the agent handled (and answered) a message not in its mailbox")
            return node.status().dropped_frames.agents >= 1
        wait_until(refused, what="the forged ring to be dropped and counted")
        assert not replies.poll(0)
    finally:
        ctx.destroy(linger=0)
    assert ref.call("get") == 1  # seq 2 is the real next message, and the state is intact
    assert ref.call("incr") == 2
    assert node.info("c").processed == 3


def test_node_log_is_rotated_at_its_size_cap(node_dir, tmp_path):
    from beamish.runtime import start_node
    cap, keep = 64 * 1024, 2
    config = tmp_path / "beamish.toml"
    config.write_text(f"[node]\nlog_max_bytes = {cap}\nlog_keep = {keep}\n")
    n = start_node(node_dir, config=str(config))
    try:
        log = n.paths.log
        for round in range(4):
            # ~200 KiB: over the cap (agents have logs of their own now: written here as
            # the node's and the zygote's lines are, appended)
            with open(log, "a", encoding="utf-8") as fh:
                fh.writelines(f"round-{round} " + "x" * 1000 + "\n" for _ in range(200))
            wait_until(lambda: os.path.getsize(log) < cap, timeout=30,
                       what=f"node.log to be rotated (round {round})")
        gens = sorted(f for f in os.listdir(node_dir) if f.startswith("node.log."))
        assert gens == [f"node.log.{i}" for i in range(1, keep + 1)]
        with open(log + ".1", encoding="utf-8") as fh:
            assert "round-3" in fh.read()
        with open(log + f".{keep}", encoding="utf-8") as fh:
            assert "round-2" in fh.read()
        # The node and its agents keep writing to node.log after a rotation.
        n.spawn("tests.agents.basic:Counter", name="after-rotation")
        wait_until(lambda: "after-rotation" in Path(log).read_text(encoding="utf-8"),
                   what="the node to log into node.log after the rotation")
    finally:
        shutdown_quietly(n)


def _mounted(path: str) -> bool:
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        return any(line.split()[1] == path for line in fh)


@pytest.fixture
def small_fs():  # type: ignore[no-untyped-def]
    """A 6 MiB tmpfs, mounted for the test and always unmounted after it (checked: a test
    must never leak a mount)."""
    import shutil
    import subprocess
    import tempfile
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    base = tempfile.mkdtemp(prefix="bmf-", dir="/tmp")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", base],
                   check=True)
    try:
        yield base
    finally:
        if subprocess.run(["umount", base]).returncode != 0:
            subprocess.run(["umount", "-l", base])  # still busy: detach it, then fail
            leaked = True
        else:
            leaked = _mounted(base)
        shutil.rmtree(base, ignore_errors=True)
        assert not leaked and not _mounted(base), f"the test left {base} mounted"


def test_a_full_disk_is_reported_as_a_full_disk(small_fs):
    from beamish.runtime import RemoteError, SpawnError, start_node
    n = start_node(os.path.join(small_fs, "node"))
    try:
        ref = n.spawn("tests.agents.hostile_agents:Hoarder", name="h")
        with pytest.raises(RemoteError) as err:
            for _ in range(100):  # 256 KiB more state per call: the 6 MiB fill up
                ref.call({"kib": 256}, timeout=30)
        assert "full" in str(err.value), err.value

        def failure():  # type: ignore[no-untyped-def]
            return n.info("h").last_failure
        got = wait_until(failure, what="the failure to be recorded")
        assert "full" in got.message and "free space" in got.message, got
        # A new agent cannot start either: the error says why and what to do.
        with pytest.raises(SpawnError) as err2:
            n.spawn("tests.agents.basic:Counter", name="x")
        assert "full" in str(err2.value) and "free space" in str(err2.value), err2.value
    finally:
        shutdown_quietly(n)


def test_malformed_reports_from_an_agent_process_are_dropped(node):
    """The same shapes, sent by an agent (a process that runs user code) from its handler."""
    ref = node.spawn("tests.agents.basic:Counter", name="c")
    pid = ref.call("pid")
    before = node.status().dropped_frames.reports
    forger = node.spawn("tests.agents.hostile_agents:Forger", name="forger")
    bad = _malformed_reports(pid, 1)
    assert forger.call({"dir": node.dir, "payloads": bad}, timeout=30) == len(bad)
    wait_until(lambda: node.status().dropped_frames.reports - before >= len(bad),
               what="every malformed report to be counted")
    assert ref.call("incr") == 1
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: restarted(node, "c", pid), what="the killed agent to be restarted")
    assert ref.call("get") == 1
    assert node.spawn("tests.agents.basic:Counter", name="d").call("get") == 0


def _fill(path: str) -> None:
    """Write ``path`` until its filesystem has no space left."""
    import errno
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_the_node_keeps_serving_while_its_disk_is_full(small_fs):
    from beamish.runtime import SpawnError, start_node
    from beamish.runtime.errors import StoreFullError
    n = start_node(os.path.join(small_fs, "node"))
    try:
        ref = n.spawn("tests.agents.basic:Counter", name="c")
        assert ref.call("incr") == 1
        pid = ref.call("pid")
        filler = os.path.join(small_fs, "filler")
        _fill(filler)
        # The node's own commits fail now too: an agent's death must still reach its
        # supervisor, and every client error names the full disk.
        os.kill(pid, signal.SIGKILL)
        with pytest.raises((StoreFullError, SpawnError), match="is full"):
            n.spawn("tests.agents.basic:Counter", name="d")
        with pytest.raises(StoreFullError, match="free space"):
            ref.cast("x" * (1 << 20))  # needs new pages (a small one may fit in freed ones)
        assert n.status().pid == n.pid  # still serving
        os.unlink(filler)

        def back() -> bool:
            info = n.info("c")
            if info.status == "failed":  # its supervisor gave up while the disk was full
                n.restart("c")
                return False
            return restarted(n, "c", pid)
        wait_until(back, timeout=30, what="the agent to run again once the disk has room")
        assert ref.call("incr") == 2
        assert n.spawn("tests.agents.basic:Counter", name="e").call("get") == 0
    finally:
        shutdown_quietly(n)
