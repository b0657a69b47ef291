"""``beamish dashboard --connect tcp://...``: the web view of a node reached over its
CURVE front door. Agents' pages work; their log, a file on the node's machine that is
not served over TCP, is shown as not available (in a real headless Chromium)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from tests.cluster.conftest import TcpNode, free_port
from tests.conftest import REPO
from tests.integration.test_dashboard import PAGE_WAIT_MS, shot
from tests.integration.test_dashboard import browser as browser  # the fixture

pytestmark = pytest.mark.slow

COUNTER = "tests.agents.basic:Counter"


@pytest.fixture
def remote_dashboard(tcp_node: TcpNode) -> Iterator[str]:
    """``beamish dashboard --connect`` on ``tcp_node`` (run as a user would); the link it
    printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "beamish.runtime", "dashboard", "--connect", tcp_node.address,
         "--keys", tcp_node.keys.client, "--bind", f"127.0.0.1:{free_port()}"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        found = re.search(r"(http://\S+)", proc.stdout.readline())
        assert found, f"no link printed; stderr: {proc.stderr.read()}"
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_an_agent_page_over_tcp_says_its_log_is_not_available(tcp_node, remote_dashboard,
                                                              browser):
    tcp_node.local.spawn(COUNTER, name="c").call("incr")
    base, token = remote_dashboard.split("#token=", 1)
    request = urllib.request.Request(base + "api/agent?name=c",
                                     headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=30) as resp:
        agent = json.loads(resp.read())
    assert resp.status == 200 and agent["info"]["name"] == "c" and agent["log"] is None
    assert agent["state"]["state"] == {"n": 1}

    page = browser.new_page()
    page.goto(remote_dashboard)
    page.goto(base + "#/agent/c")
    page.wait_for_selector("#agent-log", timeout=PAGE_WAIT_MS)
    assert "log not available over TCP" in page.inner_text("#agent-log")
    assert '"n": 1' in page.inner_text("#agent-state")
    shot(page, "9-agent-page-over-tcp")
    page.close()
