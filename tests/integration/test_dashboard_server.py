"""The dashboard's HTTP server on its own, over real sockets, with a source that answers
from memory: what a failing request does, and what slow or many clients cannot do (stall
`close`, hold unbounded threads). The page and a real node's data are tested in
Chromium (tests/integration/test_dashboard.py)."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from beamish.runtime.node.config import ListenAddress
from beamish.runtime.node.dashboard import DashboardServer

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
        conn.request("GET", path, headers=getattr(server, "auth_headers", {}))
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
