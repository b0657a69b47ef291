"""The front door's pool: closing it while a remote call is in flight answers that call
before any socket is closed; a call/cast whose answer cannot be handed back is logged and
gives its in-flight slot back (the relay never stops reading for good)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import pytest
import zmq

from beamish.mailbox import Envelope, Kind, encode, new_msg_id
from beamish.runtime import connect
from beamish.runtime._paths import NodePaths
from beamish.runtime.client.remote import client_curve
from beamish.runtime.cluster.frontdoor import (
    MAX_INFLIGHT,
    FrontDoor,
    open_front_door,
)
from beamish.runtime.cluster.keys import load_pair
from beamish.runtime.store import open_store
from tests.cluster.conftest import Keys, TcpNode, free_port
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

GATED = "tests.agents.frontdoor_agents:GatedCall"


def _waiting(caplog: pytest.LogCaptureFixture) -> bool:
    return any("remote call(s) in flight" in r.getMessage() for r in caplog.records)


def test_a_call_in_flight_when_the_front_door_closes_is_answered(tcp_node: TcpNode,
                                                                 tmp_path, caplog):
    node, k = tcp_node.local, tcp_node.keys
    node.spawn(GATED, name="g")
    address = f"tcp://127.0.0.1:{free_port()}"
    # A second front door of the node's, in this process: the test closes it.
    door = open_front_door(address, k.node, NodePaths.of(node.dir), node._store, 1 << 20)
    gate = str(tmp_path / "gate")
    got: list[Any] = []
    caplog.set_level(logging.INFO, logger="beamish.frontdoor")

    def call() -> None:
        try:
            got.append(remote.call("g", {"wait_for": gate}, timeout=10))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            got.append(exc)

    closer = threading.Thread(target=door.close)
    try:
        with connect(address, keys=k.client) as remote:
            caller = threading.Thread(target=call)
            caller.start()
            wait_until(lambda: os.path.exists(gate + ".entered"), what="the call in hand")
            closer.start()
            wait_until(lambda: _waiting(caplog), what="the door closing, waiting for it")
            open(gate, "w").close()  # the agent answers now, while the door closes
            caller.join()
        closer.join()
    finally:
        open(gate, "w").close()  # (the call done already, or the test failed)
        if closer.ident is None:
            door.close()
        else:
            closer.join()
    assert got == ["done"]
    assert door.inflight == 0


def _cast(sock: zmq.Socket) -> None:  # type: ignore[type-arg]
    sock.send_multipart(encode(Envelope(Kind.CALL, new_msg_id(), b"",
                                        {"op": "cast", "name": "nobody", "msg": 1})))


def test_a_cast_whose_answer_cannot_go_back_is_logged_and_frees_its_slot(
        keys: Keys, tmp_path, caplog):
    store = open_store(str(tmp_path / "store"), "memory")
    address = f"tcp://127.0.0.1:{free_port()}"
    door = FrontDoor(address, keys.node, load_pair(keys.node), NodePaths.of(str(tmp_path)),
                     store, 1 << 20)
    # Room for the door's own sockets only: no pool thread can make its socket to the
    # relay, so no answer can be handed back (a real libzmq refusal: EMFILE).
    door.ctx.set(zmq.MAX_SOCKETS, 6)
    door.start()
    ctx = zmq.Context()
    n = MAX_INFLIGHT + 20
    try:
        with caplog.at_level(logging.ERROR, logger="beamish.frontdoor"):
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            client_curve(keys.client, None).apply(sock)
            sock.connect(address)
            for _ in range(n):
                _cast(sock)
            # Every one is read: the failed ones gave their slots back.
            wait_until(lambda: door.status().requests == n and door.inflight == 0,
                       what=f"{n} requests read, none in flight")
            sock.close()
        failures = [r for r in caplog.records
                    if "cannot hand a remote answer to the relay" in r.getMessage()]
        assert len(failures) == n and all(r.exc_info for r in failures)
    finally:
        ctx.destroy(linger=0)
        door.close()
        store.close()
