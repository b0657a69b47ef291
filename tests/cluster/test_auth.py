"""The TCP front door admits only authorized CURVE keys: keys made and authorized through
the CLI; unauthorized keys, plain ZeroMQ clients and garbage bytes get nothing in (no
frame reaches beamish code, the refusals are counted and logged) while local and
authorized clients go on being served; a node never listens without keys."""

from __future__ import annotations

import errno
import os
import re
import socket
import stat

import pytest
import zmq

from beamish.mailbox import Envelope, Kind, decode, encode, new_msg_id
from beamish.runtime import ConfigError, NodeNotRunning, connect, start_node
from beamish.runtime._paths import NodePaths
from beamish.runtime.client.remote import client_curve
from beamish.runtime.cluster.frontdoor import open_front_door
from beamish.runtime.cluster.keys import authorize, generate
from beamish.runtime.store import open_store
from tests.cluster.conftest import TcpNode, free_port, write_config
from tests.conftest import beamish, wait_until

pytestmark = pytest.mark.slow

COUNTER = "tests.agents.basic:Counter"


def test_keys_generate_and_authorize_through_the_cli(tmp_path):
    d = str(tmp_path / "keys")
    made = beamish("keys", "generate", d, check=True)
    public = made.stdout.strip()
    with open(os.path.join(d, "public.key")) as fh:
        assert fh.read().strip() == public and len(public) == 40
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(d, "secret.key")).st_mode) == 0o600
    again = beamish("keys", "generate", d)
    assert again.returncode == 2 and "never overwritten" in again.stderr

    other = str(tmp_path / "other")
    other_public = beamish("keys", "generate", other, check=True).stdout.strip()
    added = beamish("keys", "authorize", d, "--name", "peer", "--", other_public, check=True)
    assert "peer.key" in added.stdout
    with open(os.path.join(d, "authorized", "peer.key")) as fh:
        assert fh.read().strip() == other_public
    by_path = beamish("keys", "authorize", d, os.path.join(other, "public.key"), check=True)
    assert "authorized already" in by_path.stdout and "peer.key" in by_path.stdout

    third = beamish("keys", "generate", str(tmp_path / "third"), check=True).stdout.strip()
    taken = beamish("keys", "authorize", d, "--name", "peer", "--", third)
    assert taken.returncode == 2 and "another key" in taken.stderr
    for bad in ["not-a-key", third[:-1], "~" + third[1:]]:
        refused = beamish("keys", "authorize", d, "--", bad)
        assert refused.returncode == 2, bad
        assert "40-character Z85 CURVE key" in refused.stderr, refused.stderr
    assert sorted(os.listdir(os.path.join(d, "authorized"))) == ["peer.key"]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_node_never_listens_on_tcp_without_keys(node_dir, tmp_path):
    port = free_port()
    config = write_config(str(tmp_path), f'[cluster]\nlisten = "tcp://127.0.0.1:{port}"\n')
    with pytest.raises(ConfigError, match=r"cluster\.keys is required with cluster\.listen"):
        start_node(node_dir, config=config)
    assert not os.path.exists(os.path.join(node_dir, "node.json"))

    empty = tmp_path / "empty"
    empty.mkdir()
    config = write_config(str(tmp_path), f'[cluster]\nlisten = "tcp://127.0.0.1:{port}"\n'
                                         f'keys = "{empty}"\n')
    with pytest.raises(ConfigError, match=r"cluster\.keys: .* holds no keys"):
        start_node(node_dir, config=config)
    out = beamish("node", "start", "--dir", node_dir, "--config", config)
    assert out.returncode == 2 and "holds no keys" in out.stderr
    assert not _port_open(port)
    with pytest.raises(NodeNotRunning):
        connect(node_dir)


def test_a_secret_key_others_can_read_is_refused(node_dir, keys):
    os.chmod(os.path.join(keys.node, "secret.key"), 0o644)
    config = write_config(keys.base, f'[cluster]\nlisten = "tcp://127.0.0.1:{free_port()}"'
                                     '\nkeys = "nk"\n')
    with pytest.raises(ConfigError, match=r"cluster\.keys: .*readable by others"):
        start_node(node_dir, config=config)


def _zmq_request(sock: zmq.Socket, timeout_ms: int) -> list[bytes] | None:  # type: ignore[type-arg]
    """Send a valid ping envelope on ``sock``; return the answer, or None if none came."""
    sock.send_multipart(encode(Envelope(Kind.CALL, new_msg_id(), b"", {"op": "ping"})))
    return sock.recv_multipart() if sock.poll(timeout_ms) else None


def _read_to_the_end(raw: socket.socket) -> None:
    raw.settimeout(30)
    try:
        while raw.recv(4096):
            pass
    except ConnectionResetError:
        pass


def test_unauthorized_plain_and_garbage_clients_get_nothing_in(tcp_node: TcpNode):
    node, address, k = tcp_node.local, tcp_node.address, tcp_node.keys
    node.spawn(COUNTER, name="c")
    with connect(address, keys=k.client) as remote:
        assert remote.call("c", "incr") == 1
    before = node.transport()
    assert before is not None and before.public_key == k.node_public
    assert before.refused == 0 and before.requests >= 2

    # A CURVE client with a key the node does not know: refused by the authenticator.
    stranger = os.path.join(k.base, "stranger")
    generate(stranger)
    authorize(stranger, k.node_public, "node")
    with pytest.raises(NodeNotRunning, match="does not admit this key"):
        connect(address, keys=stranger, timeout=1.0)
    # A plain ZeroMQ client (no CURVE) with a well-formed request, and garbage over TCP.
    ctx = zmq.Context()
    try:
        plain = ctx.socket(zmq.DEALER)
        plain.linger = 0
        plain.connect(address)
        assert _zmq_request(plain, 500) is None
        plain.close()
    finally:
        ctx.destroy(linger=0)
    host, port = address[len("tcp://"):].rsplit(":", 1)
    ping = encode(Envelope(Kind.CALL, b"1", b"", {"op": "ping"}))
    # A ZMTP 3.0 greeting with the NULL mechanism, the client waiting for the node to hang
    # up: the node reads it whole, so it counts it as not CURVE. (The plain ZeroMQ client
    # above may see the mismatch first and reset its connection before the node has read
    # its greeting: on a loaded machine that one is only a connection closed early.)
    null_greeting = b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") \
        + bytes(32)
    for junk in [os.urandom(300), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"\xff" + os.urandom(64), b"".join(ping), null_greeting]:
        with socket.create_connection((host, int(port))) as raw:
            try:
                raw.sendall(junk)
                raw.shutdown(socket.SHUT_WR)
            except (ConnectionResetError, BrokenPipeError, OSError) as e:
                # The node may hang up on the junk before we are done sending it: that is
                # the refusal this test wants, not a failure.
                if not isinstance(e, (ConnectionResetError, BrokenPipeError)) \
                        and e.errno != errno.ENOTCONN:
                    raise
            _read_to_the_end(raw)  # the node hung up on it (a reset, or after its greeting)

    seen: list[object] = []

    def refused_all() -> object:
        t = node.transport()
        seen[:] = [t]
        return t is not None and t.refused_auth >= 1 and t.refused_protocol >= 1 \
            and t.refused >= 7 and t
    try:
        after = wait_until(refused_all, what="refusals")
    except pytest.fail.Exception:
        pytest.fail(f"not every refusal was counted: {seen}")
    # Not one frame of theirs reached the relay: no request, no invalid frame.
    assert after.requests == before.requests and after.dropped == 0
    assert after.connections == before.connections
    with open(os.path.join(node.dir, "node.log")) as fh:
        log = fh.read()
    assert "is not in" in log and "refused a TCP connection" in log
    # The node serves its local and authorized clients as before.
    assert node.call("c", "incr") == 2
    with connect(address, keys=k.client) as remote:
        assert remote.call("c", "incr") == 3
    status = beamish("node", "status", "--dir", node.dir, check=True).stdout
    assert f"listening on {address}" in status
    assert int(re.search(r"(\d+) refused", status)[1]) >= after.refused  # type: ignore[index]


def test_a_client_trusts_only_the_node_key_it_authorized(tcp_node: TcpNode):
    k = tcp_node.keys
    impostor = generate(os.path.join(k.base, "impostor")).public
    fooled = os.path.join(k.base, "fooled")
    authorize(k.node, generate(fooled).public, "fooled")
    authorize(fooled, impostor, "impostor")
    # The node would admit this client, but it expects another server key: no session.
    with pytest.raises(NodeNotRunning):
        connect(tcp_node.address, keys=fooled, timeout=1.0)
    authorize(fooled, k.node_public, "real")
    with pytest.raises(ConfigError, match="holds 2 keys"):
        connect(tcp_node.address, keys=fooled)
    with connect(tcp_node.address, keys=fooled, server_key="real") as remote:
        assert remote.status().pid == tcp_node.local.pid


def test_a_key_authorized_while_the_node_runs_is_admitted(tcp_node: TcpNode):
    k = tcp_node.keys
    late = os.path.join(k.base, "late")
    generate(late)
    authorize(late, k.node_public, "node")
    with pytest.raises(NodeNotRunning):
        connect(tcp_node.address, keys=late, timeout=1.0)
    beamish("keys", "authorize", k.node, os.path.join(late, "public.key"), check=True)
    with connect(tcp_node.address, keys=late) as remote:
        assert remote.ps() == []
    assert tcp_node.local.transport().authorized == 2  # type: ignore[union-attr]


def test_keys_is_required_on_the_client_side(tcp_node: TcpNode, monkeypatch):
    monkeypatch.delenv("BEAMISH_KEYS", raising=False)
    with pytest.raises(ConfigError, match="needs a keys dir"):
        connect(tcp_node.address)
    monkeypatch.setenv("BEAMISH_KEYS", tcp_node.keys.client)
    with connect(tcp_node.address) as remote:
        assert remote.ps() == []


def _cast_nobody(keys_dir: str, address: str) -> object:
    """A cast to an unknown agent from a client with ``keys_dir``: the node's answer
    (an AgentNotFound error), or None if none came."""
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        client_curve(keys_dir, None).apply(sock)
        sock.connect(address)
        sock.send_multipart(encode(Envelope(Kind.CALL, new_msg_id(), b"",
                                            {"op": "cast", "name": "nobody", "msg": 1})))
        got = decode(sock.recv_multipart()).payload if sock.poll(2000) else None
        sock.close()
        return got
    finally:
        ctx.destroy(linger=0)


def test_without_its_authenticator_the_front_door_admits_no_one(keys, tmp_path):
    """Fail closed: libzmq admits every CURVE client while no ZAP handler is bound, unless
    told to enforce the domain; the front door tells it."""
    store = open_store(str(tmp_path / "store"), "memory")
    address = f"tcp://127.0.0.1:{free_port()}"
    door = open_front_door(address, keys.node, NodePaths.of(str(tmp_path)), store, 1 << 20)
    try:
        answer = _cast_nobody(keys.client, address)
        assert isinstance(answer, dict) and answer["error"]["type"] == "AgentNotFound"
        door.zap_stop.set()  # the authenticator is gone (as if its thread had died)
        door._threads[1].join()
        assert _cast_nobody(keys.client, address) is None
        assert door.status().requests == 1
        wait_until(lambda: door.status().refused >= 1, what="the refusal counted")
    finally:
        door.close()
        store.close()
