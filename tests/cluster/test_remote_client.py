"""A remote client (``connect("tcp://...", keys=DIR)``) has the `Node` API of a local one,
through a real node's CURVE front door on 127.0.0.1; the CLI verbs take --connect/--keys;
and a ledger: every cast the node acknowledged to a remote client is applied exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading

import pytest
import zmq

from beamish.runtime import (
    AgentNotFound,
    AsyncNode,
    CallTimeout,
    ConfigError,
    NodeNotRunning,
    RemoteError,
    RemoteNode,
    connect,
)
from tests.cluster.conftest import TcpNode
from tests.conftest import beamish, wait_until

pytestmark = pytest.mark.slow

COUNTER = "tests.agents.basic:Counter"
FAULTY = "tests.agents.basic:Faulty"
RECORDER = "tests.agents.batch_agents:Recorder"


def test_a_remote_client_does_what_a_local_one_does(tcp_node: TcpNode):
    local = tcp_node.local
    with connect(tcp_node.address, keys=tcp_node.keys.client) as node:
        assert isinstance(node, RemoteNode) and node.pid == local.pid
        ref = node.spawn(COUNTER, name="c", args={"start": 10})
        assert ref.call("incr") == 11
        ref.cast("incr")
        node.cast("c", "incr")
        ref.cast_many(["incr", "incr"])
        node.cast_many([("c", "incr"), ("c", "incr")])
        assert node.call("c", "get") == 17
        assert local.call("c", "get") == 17  # the same agent, seen locally
        info = node.info("c")
        assert info.status == "running" and info.pid == local.info("c").pid
        assert [a.name for a in node.ps()] == ["c"]
        assert node.tree()["children"][0]["name"] == "c"
        assert any(e.kind == "spawned" and e.name == "c" for e in node.events())

        with pytest.raises(AgentNotFound):
            node.call("nobody", "x")
        with pytest.raises(AgentNotFound):
            node.cast_many([("c", "incr"), ("nobody", "x")])
        assert node.call("c", "get") == 17  # all or nothing
        faulty = node.spawn(FAULTY, name="f")
        with pytest.raises(RemoteError) as err:
            faulty.call("raise")
        assert err.value.type == "ValueError" and err.value.failure.exc_type == "ValueError"
        with pytest.raises(CallTimeout):
            faulty.call({"sleep": 3}, timeout=0.5)
        faulty.cast("flaky")
        letters = wait_until(lambda: node.dead_letters("f"), what="the dead letter")
        assert letters[0]["msg"] == "flaky"
        node.add_supervisor("workers")
        node.spawn(COUNTER, name="w1", supervisor="workers", lazy=True)
        assert node.info("w1").status == "sleeping"
        assert node.call("w1", "incr") == 1  # woken by its first message
        with pytest.raises(ConfigError, match="not served over TCP"):
            node.logs("c")

        node.stop("c")
        with pytest.raises(AgentNotFound):
            node.call("c", "get")
        assert node.spawn(COUNTER, name="c").call("get") == 17  # its state stayed
        node.delete("c")
        assert node.spawn(COUNTER, name="c").call("get") == 0  # erased
    assert local.transport().dropped == 0  # type: ignore[union-attr]


def test_asyncio_over_tcp(tcp_node: TcpNode):
    async def main() -> list[object]:
        anode = await AsyncNode.connect(tcp_node.address, keys=tcp_node.keys.client)
        try:
            ref = await anode.spawn(COUNTER, name="a")
            await ref.cast("incr")
            await anode.cast_many([("a", "incr")])
            got = await asyncio.gather(*(ref.call("incr") for _ in range(5)))
            door = await anode.transport()
            return [sorted(got), (await anode.info("a")).status, door and door.listen]
        finally:
            anode.close()
    assert asyncio.run(main()) == [[3, 4, 5, 6, 7], "running", tcp_node.address]


def test_cli_verbs_take_connect_and_keys(tcp_node: TcpNode):
    flags = ["--connect", tcp_node.address, "--keys", tcp_node.keys.client]
    out = beamish("spawn", COUNTER, "--name", "k", *flags, check=True).stdout
    assert "spawned k" in out
    assert beamish("call", "k", '"incr"', *flags, check=True).stdout.strip() == "1"
    beamish("cast", "k", '"incr"', *flags, check=True)
    rows = json.loads(beamish("ps", "--json", *flags, check=True).stdout)
    assert [r["name"] for r in rows] == ["k"]
    env = {"BEAMISH_CONNECT": tcp_node.address, "BEAMISH_KEYS": tcp_node.keys.client}
    assert beamish("call", "k", '"get"', env=env, check=True).stdout.strip() == "2"
    status = beamish("node", "status", *flags, check=True).stdout
    assert f"pid {tcp_node.local.pid}" in status and f"listening on {tcp_node.address}" in status
    missing = beamish("call", "nobody", '"x"', *flags)
    assert missing.returncode == 1 and "nobody" in missing.stderr
    refused = beamish("node", "start", "--connect", tcp_node.address)
    assert refused.returncode == 2 and "--connect does not apply" in refused.stderr


def test_an_unreachable_node_is_a_clear_error(keys):
    with pytest.raises(NodeNotRunning, match="did not answer"):
        connect("tcp://127.0.0.1:9", keys=keys.client, timeout=0.5)
    with pytest.raises(ConfigError, match="not a tcp:// address|HOST:PORT"):
        connect("tcp://nowhere", keys=keys.client)


def test_every_acknowledged_remote_cast_is_applied_exactly_once(tcp_node: TcpNode):
    """Four threads cast 300 messages each to one agent over TCP (single casts and
    batches) while its process is SIGKILLed up to three times (its restart intensity):
    the agent's log holds exactly the acknowledged messages, each once, each sender's in
    the order it sent them."""
    local = tcp_node.local
    local.spawn(RECORDER, name="r")
    per_thread = 300
    acked: list[list[int]] = [[] for _ in range(4)]
    failed: list[BaseException] = []
    with connect(tcp_node.address, keys=tcp_node.keys.client) as remote:
        def sender(t: int) -> None:
            ids = [t * 1000 + i for i in range(per_thread)]
            try:
                for i in range(0, len(ids), 10):
                    chunk = ids[i:i + 10]
                    if (i // 10) % 2:
                        remote.cast_many([("r", m) for m in chunk])
                        acked[t] += chunk
                    else:
                        for m in chunk:
                            remote.cast("r", m)
                            acked[t].append(m)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                failed.append(exc)
        threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        kills = 0
        while kills < 3 and any(th.is_alive() for th in threads):
            pid = wait_until(lambda: (i := local.info("r")).status == "running" and i.pid,
                             timeout=30, what="the recorder running")
            os.kill(pid, signal.SIGKILL)  # while casts are being acknowledged
            kills += 1
            wait_until(lambda old=pid: local.info("r").pid not in (None, old), timeout=30,
                       what="the recorder restarted")
        for th in threads:
            th.join()
        assert not failed, failed
        assert kills >= 1
        want = sorted(m for a in acked for m in a)
        assert len(want) == 4 * per_thread
        log = wait_until(lambda: (got := remote.call("r", "log")) and len(got) >= len(want)
                         and got, timeout=60, what="every cast handled")
    assert sorted(log) == want  # each acknowledged message once: none lost, none twice
    for t in range(4):
        assert [m for m in log if m // 1000 == t] == acked[t]  # each sender's order


def test_a_flood_is_pushed_back_and_no_answer_is_lost_silently(tcp_node: TcpNode):
    """A client sends 3,000 casts without reading an answer: the node reads at its own
    pace (the client's sends wait), applies each cast once, and every answer is either
    delivered or counted as undeliverable."""
    from beamish.mailbox import Envelope, Kind, decode, encode
    from beamish.runtime.client.remote import client_curve

    local, n = tcp_node.local, 3000
    local.spawn(RECORDER, name="r")
    before = local.transport()
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.rcvhwm = 100
        sock.sndhwm = 100
        sock.sndtimeo = 60_000
        client_curve(tcp_node.keys.client, None).apply(sock)
        sock.connect(tcp_node.address)
        for i in range(n):
            sock.send_multipart(encode(Envelope(Kind.CALL, i.to_bytes(4, "big"), b"",
                                                {"op": "cast", "name": "r", "msg": i})))
        log = wait_until(lambda: (got := local.call("r", "log")) and len(got) >= n and got,
                         timeout=120, what="every cast handled")
        answered = 0
        while sock.poll(1000):
            env = decode(sock.recv_multipart())
            assert env.payload == {"ok": True, "value": None}
            answered += 1
        sock.close()
    finally:
        ctx.destroy(linger=0)
    assert sorted(log) == list(range(n))  # none lost, none applied twice
    after = local.transport()
    assert answered + after.undeliverable - before.undeliverable == n
    assert after.dropped == 0


def test_a_message_over_the_nodes_limit_is_refused_at_once(node_dir, keys):
    from beamish.runtime import MessageTooLarge, start_node
    from tests.cluster.conftest import free_port, write_config
    from tests.conftest import shutdown_quietly

    address = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(keys.base, f'[node]\nmax_message_bytes = 65536\n[cluster]\n'
                                     f'listen = "{address}"\nkeys = "nk"\n')
    local = start_node(node_dir, config=config)
    try:
        local.spawn(RECORDER, name="r")
        with connect(address, keys=keys.client) as remote:
            with pytest.raises(MessageTooLarge):
                remote.cast("r", "x" * 100_000)
            with pytest.raises(MessageTooLarge, match="agent 'r'"):
                remote.cast("r", "x" * 66_000)  # within the request's room: the node says
            remote.cast("r", "x" * 60_000)
            assert len(remote.call("r", "log")) == 1
    finally:
        shutdown_quietly(local)
