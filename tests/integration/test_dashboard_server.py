"""The dashboard's HTTP server on its own, over real sockets, with a source that answers
from memory: what a failing request does, and what slow or many clients cannot do (stall
`close`, hold unbounded threads). The page and a real node's data are tested in
Chromium (tests/integration/test_dashboard.py)."""

from __future__ import annotations

import http.client
import json
import logging
import select
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from beamish.runtime.node.config import ListenAddress
from beamish.runtime.node.dashboard import DashboardServer
from tests.conftest import wait_until

LOOPBACK = ListenAddress("127.0.0.1", 0)


class BadShape:
    """A source whose ``events`` answer lacks its ``events`` list (a node of another
    version, a bug): the dashboard must say so, not drop the connection."""

    def request(self, op: str, args: Mapping[str, object]) -> Any:
        if op == "events":
            return {"after": 0, "more": False}
        return {"name": "a", "status": "running", "restarts": 0}

    def log_tail(self, name: str, n: int) -> list[str] | None:
        return []


@pytest.fixture
def server() -> Iterator[DashboardServer]:
    s = DashboardServer(LOOPBACK, BadShape())
    try:
        yield s
    finally:
        s.close()


def _get(server: DashboardServer, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(server.address.host, server.address.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {server.token}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_failing_request_answers_500_and_goes_to_the_log(server, caplog, capfd):
    with caplog.at_level(logging.ERROR, logger="beamish.node"):
        status, body = _get(server, "/api/agent?name=a")
    assert status == 500
    error = json.loads(body)["error"]
    assert error["type"] == "BeamishInternalError" and "KeyError" in error["message"]
    assert any("GET /api/agent" in r.getMessage() and r.exc_info for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err  # not printed bare by socketserver


class Trickler:
    """A client that sends a request's headers one byte at a time and never ends them (no
    token needed to get that far), until `stop` or until the server cuts it off."""

    def __init__(self, server: DashboardServer) -> None:
        self.sock = socket.create_connection((server.address.host, server.address.port))
        self.sock.sendall(b"GET /api/tree HTTP/1.0\r\nX-Slow: ")
        self.stopped = threading.Event()
        self.cut = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        try:
            while not self.stopped.is_set():
                self.sock.send(b"x")
                readable, _, _ = select.select([self.sock], [], [], 0.1)
                if readable and self.sock.recv(4096) == b"":
                    break  # the server closed it
        except OSError:
            pass  # reset by the server: cut off as well
        self.cut.set()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.sock.close()


def _request_threads() -> int:
    return sum(t.name == "beamish-dashboard-request" for t in threading.enumerate())


def test_slow_clients_cannot_stall_close_nor_take_more_than_their_threads():
    server = DashboardServer(LOOPBACK, BadShape(), max_connections=4)
    trickler = Trickler(server)
    idle: list[socket.socket] = []
    try:
        idle += [socket.create_connection((server.address.host, server.address.port))
                 for _ in range(3)]
        wait_until(lambda: _request_threads() == 4, what="the 4 connections it serves")
        for _ in range(3):  # past the cap: told it is busy, no thread for them
            extra = socket.create_connection((server.address.host, server.address.port))
            idle.append(extra)
            extra.settimeout(30)
            assert extra.recv(4096).startswith(b"HTTP/1.0 503 ")
        assert _request_threads() == 4

        closing = threading.Thread(target=server.close)
        closing.start()
        closing.join(60)  # a generous bound: without the fix it never returns
        assert not closing.is_alive(), "close() is stalled by a trickling client"
        assert trickler.cut.wait(30)  # it was cut off
        wait_until(lambda: _request_threads() == 0, what="the request threads to end")
    finally:
        trickler.stop()
        for sock in idle:
            sock.close()
        server.close()


def test_a_trickling_request_is_cut_off_at_its_deadline():
    server = DashboardServer(LOOPBACK, BadShape(), request_deadline_s=0.5)
    trickler = Trickler(server)
    try:
        wait_until(trickler.cut.is_set, timeout=30, what="the server to cut it off")
        wait_until(lambda: _request_threads() == 0, what="its thread to end")
    finally:
        trickler.stop()
        server.close()
