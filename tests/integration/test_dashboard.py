"""The live web view in a real headless Chromium (Debian's ``chromium``, driven by
Playwright): the page shows a crash and its restart as they happen, resends a dead letter
through its button, and a dashboard bound beyond loopback answers nothing without its
token. Screenshots go to tests/artifacts/dashboard/ (gitignored); their paths are
printed (``pytest -s`` shows them)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beamish.runtime import AgentNotFound, AsyncNode, ConfigError, Node, RemoteError, start_node
from tests.conftest import REPO, shutdown_quietly, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(REPO) / "tests" / "artifacts" / "dashboard"
FAULTY = "tests.agents.basic:Faulty"
COUNTER = "tests.agents.basic:Counter"
TALKER = "tests.agents.log_agents:Talker"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PAGE_WAIT_MS = 20_000


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shot(page: Any, name: str) -> Path:
    """Save a screenshot of ``page`` as a test artifact and print where it is."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    """A fresh headless Chromium (its own new profile dir), closed after the test."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y "
                    "chromium)")
    from playwright.sync_api import sync_playwright
    profile = tempfile.mkdtemp(prefix="bmt-chromium-")
    pw = sync_playwright().start()
    try:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()
    finally:
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def dash_node(node_dir: str, tmp_path: Path) -> Iterator[tuple[Node, str, str]]:
    """A node that serves its own dashboard (``[node] dashboard``); its base URL and the
    token it made (read from the link in its node.log)."""
    port = free_port()
    config = tmp_path / "beamish.toml"
    config.write_text(f'[node]\ndashboard = "127.0.0.1:{port}"\n')
    n = start_node(node_dir, config=str(config))
    try:
        found = wait_until(lambda: re.search(r"serving the dashboard on (http://\S+)",
                                             Path(n.paths.log).read_text()),
                           what="the dashboard's link in the node log")
        base, token = found.group(1).split("#token=", 1)
        assert base == f"http://127.0.0.1:{port}/"
        yield n, base, token
    finally:
        shutdown_quietly(n)


class DashboardProcess:
    """``beamish dashboard`` run as a user would, until `stop`; ``url`` is the address
    it printed (with its token when it made one)."""

    def __init__(self, node: Node, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=REPO)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beamish.runtime", "dashboard", "--dir", node.dir, *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://\S+)", line)
        if found is None:
            self.stop()
            pytest.fail(f"beamish dashboard printed {line!r}, not its address; "
                        f"stderr: {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = found.group(1)

    def stop(self) -> None:
        """Ctrl-C it and wait for it to exit."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def dashboard_cli(node: Node) -> Iterator[Any]:
    """Starts ``beamish dashboard`` processes on ``node``; stops them after the test."""
    started: list[DashboardProcess] = []

    def start(*args: str) -> DashboardProcess:
        started.append(DashboardProcess(node, *args))
        return started[-1]
    try:
        yield start
    finally:
        for d in started:
            d.stop()


def row(page: Any, name: str) -> Any:
    return page.locator(f'[data-testid="agent-{name}"]')


def check_log_tail(node: Node, page: Any, base: str) -> None:
    """An agent's page shows the tail of its log (what it printed)."""
    talker = node.spawn(TALKER, name="talker")
    talker.call({"op": "print", "text": "hello, dashboard"})
    page.goto(base + "#/agent/talker")
    page.wait_for_function(
        "() => (document.querySelector('#agent-log')?.textContent || '')"
        ".includes('hello, dashboard')", timeout=PAGE_WAIT_MS)
    assert "hello from init" in page.inner_text("#agent-log")


def test_the_page_shows_a_crash_and_its_restart_as_they_happen(dash_node, browser):
    node, url, token = dash_node
    node.add_supervisor("workers", max_restarts=20)  # the crashes stay within its intensity
    counter = node.spawn(COUNTER, name="counter", supervisor="workers")
    faulty = node.spawn(FAULTY, name="faulty", supervisor="workers")
    assert counter.call("bump") == 1
    page = browser.new_page()
    page.goto(f"{url}#token={token}")
    faulty_row = row(page, "faulty")
    faulty_row.wait_for(timeout=PAGE_WAIT_MS)
    assert faulty_row.get_attribute("data-status") == "running"
    assert faulty_row.get_attribute("data-restarts") == "0"
    assert page.locator('[data-testid="sup-workers"]').count() == 1
    shot(page, "1-tree-before-the-crash")

    # A raising handler: the process exits with the exception, and is restarted.
    old_pid = node.info("faulty").pid
    with pytest.raises(RemoteError):
        faulty.call("raise")
    page.wait_for_selector('[data-testid="agent-faulty"][data-restarts="1"]'
                           '[data-status="running"]', timeout=PAGE_WAIT_MS)
    assert node.info("faulty").pid != old_pid
    events = page.locator("#events")
    events.locator("li", has_text="restarted").filter(has_text="faulty").first.wait_for(
        timeout=PAGE_WAIT_MS)
    assert events.locator("li", has_text="exited").filter(has_text="faulty").count() >= 1
    shot(page, "2-tree-after-a-raising-handler")

    # Its page: the failure with its traceback, the state as JSON, its events.
    page.click('[data-testid="agent-faulty"] a')
    page.wait_for_selector("#agent-traceback", timeout=PAGE_WAIT_MS)
    assert "ValueError: boom" in page.inner_text("#agent-traceback")
    assert page.inner_text("#agent-restarts") == "1"
    assert '"n": 0' in page.inner_text("#agent-state")
    assert "restarted" in page.inner_text("#agent-events")
    shot(page, "3-agent-page-with-its-traceback")

    # A real crash of the process (os._exit(3)), in a call: the node retries the message
    # it died on (each attempt another crash) until it gives up on it. The open page
    # follows every restart without a reload.
    with pytest.raises(RemoteError, match="exited with code 3"):
        faulty.call("exit")
    wait_until(lambda: node.info("faulty").status == "running", what="faulty back")
    restarts = node.info("faulty").restarts
    assert restarts >= 2
    page.wait_for_function(
        f"() => document.querySelector('#agent-restarts')?.textContent === '{restarts}'"
        " && document.querySelector('#agent-status')?.textContent === 'running'"
        " && document.querySelector('#agent-failure')?.textContent.includes('code 3')",
        timeout=PAGE_WAIT_MS)
    assert row(page, "faulty").get_attribute("data-restarts") == str(restarts)
    assert row(page, "counter").get_attribute("data-restarts") == "0"  # the other one
    assert counter.call("get") == 1
    shot(page, "4-agent-page-after-os-exit")
    check_log_tail(node, page, url)  # read by the node daemon
    page.close()


def test_a_dead_letter_is_resent_with_its_button(node, dashboard_cli, browser):
    ref = node.spawn(FAULTY, name="f")
    ref.cast("flaky")  # raises until healed: set aside as a dead letter
    letters = wait_until(lambda: node.dead_letters("f"), what="the dead letter")
    ref.cast("heal")
    assert ref.call("get") == 0
    dash = dashboard_cli("--bind", f"127.0.0.1:{free_port()}")  # loopback: a token too
    base = dash.url.split("#token=", 1)[0]
    page = browser.new_page()
    page.goto(dash.url)
    page.goto(base + "#/agent/f")
    button = page.locator(f'button.resend[data-seq="{letters[0]["seq"]}"]')
    button.wait_for(timeout=PAGE_WAIT_MS)
    assert "upstream is down" in page.inner_text("#dead-letters")
    shot(page, "5-a-dead-letter-and-its-button")
    button.click()
    page.wait_for_function(
        "() => (document.querySelector('#resend-result')?.textContent || '')"
        ".includes('resent')", timeout=PAGE_WAIT_MS)
    wait_until(lambda: ref.call("get") == 1, what="the resent cast to be handled")
    assert node.dead_letters("f") == []
    page.wait_for_function(
        "() => !document.querySelector('#dead-letters')"
        " && JSON.parse(document.querySelector('#agent-state')?.textContent || '{}').n === 1",
        timeout=PAGE_WAIT_MS)
    assert "resent" in page.inner_text("#agent-events")
    assert ref.call("get") == 1  # handled once: the button moved it, it did not copy it
    shot(page, "6-after-the-resend")
    check_log_tail(node, page, base)  # read by `beamish dashboard`
    page.close()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}),
                         timeout=30) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_a_dashboard_bound_beyond_loopback_needs_its_token(node, dashboard_cli, browser):
    node.spawn(COUNTER, name="c")
    port = free_port()
    dash = dashboard_cli("--bind", f"0.0.0.0:{port}")
    token = dash.url.split("#token=", 1)[1]
    assert len(token) >= 16
    base = f"http://127.0.0.1:{port}"
    for path in ("/api/tree", "/api/agent?name=c", "/api/events", "/api/tree?token=" + token):
        status, body, _ = _get(base + path)
        assert (status, body) == (401, b""), path
    status, body, _ = _get(base + "/api/tree", {"Cookie": f"beamish_dashboard_{port}={token}"})
    assert status == 401  # no cookie is taken: a browser sends one to every port
    status, body, _ = _get(base + "/api/tree", {"Authorization": "Bearer " + token})
    assert status == 200 and b'"c"' in body
    status, shell, headers = _get(base + "/")  # the page's shell: no data, no cookie
    assert status == 200 and "Set-Cookie" not in headers
    assert b'"c"' not in shell and node.dir.encode() not in shell

    page = browser.new_page()
    requests: list[Any] = []
    page.on("request", lambda r: requests.append(r))
    page.goto(base + "/")  # without the token: the page says what it needs
    page.wait_for_function(
        "() => (document.querySelector('#conn')?.textContent || '').includes('token')",
        timeout=PAGE_WAIT_MS)
    assert page.locator('[data-testid="agent-c"]').count() == 0
    shot(page, "7-no-token")
    assert dash.url.endswith(f":{port}/#token={token}")
    page.goto(f"{base}/#token={token}")  # the link it printed: the token in the fragment
    row(page, "c").wait_for(timeout=PAGE_WAIT_MS)
    assert "token" not in page.url  # dropped from the address bar
    assert row(page, "c").get_attribute("data-status") == "running"
    page.goto(base + "/#/agent/c")  # the tab keeps it
    page.wait_for_selector("#agent-state", timeout=PAGE_WAIT_MS)
    assert browser.cookies() == []
    sent = [r for r in requests if r.url.startswith(base)]
    assert all(token not in r.url for r in sent)  # the fragment is never sent
    assert any(r.headers.get("authorization") == "Bearer " + token for r in sent)
    shot(page, "8-with-the-token")
    page.close()


def test_the_node_serves_a_dashboard_only_when_asked(node, node_dir, tmp_path):
    # Off by default: the node logs no dashboard address.
    assert "dashboard" not in Path(node.paths.log).read_text()
    config = tmp_path / "bad.toml"
    config.write_text('[node]\ndashboard = "example.com:8470"\n')
    out = subprocess.run([sys.executable, "-m", "beamish.runtime", "node", "start",
                          "--dir", node_dir + "-2", "--config", str(config)],
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "node.dashboard" in out.stderr, out.stderr


def test_state_reads_an_agents_committed_state_without_waking_it(node):
    ref = node.spawn(COUNTER, name="c", args={"start": 5})
    assert ref.call("bump") == 6
    st = node.state("c")
    assert (st.name, st.state, st.processed, st.version) == ("c", {"n": 6}, 1, 1)
    node.sleep("c")
    assert node.state("c").state == {"n": 6}
    assert node.info("c").status == "sleeping"  # reading it did not wake it
    with pytest.raises(AgentNotFound):
        node.state("nobody")

    async def via_asyncio() -> Any:
        return await AsyncNode(node).state("c")
    assert asyncio.run(via_asyncio()) == node.state("c")


def _post(url: str, body: object, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def test_resend_answers_typed_errors_and_refuses_cross_site_posts(dash_node):
    node, url, token = dash_node
    ref = node.spawn(FAULTY, name="f")
    ref.cast("flaky")
    seq = wait_until(lambda: node.dead_letters("f"), what="the dead letter")[0]["seq"]
    bearer = {"Authorization": "Bearer " + token}
    api, ok = url + "api/resend", {"X-Beamish-Dashboard": "1", **bearer}
    assert _post(api, {"name": "f", "seq": seq}, {"X-Beamish-Dashboard": "1"}) == (401, None)
    assert _post(api, {"name": "f", "seq": seq}, bearer) == (403, None)  # a plain form post
    status, body = _post(api, {"name": "f", "seq": seq + 100}, ok)
    assert status == 400 and body["error"]["type"] == "ConfigError"
    assert "no dead letter" in body["error"]["message"]
    status, body = _post(api, {"name": "nobody", "seq": seq}, ok)
    assert status == 404 and body["error"]["type"] == "AgentNotFound"
    status, body = _post(api, {"name": "f", "seq": "1"}, ok)
    assert status == 400 and body["error"]["type"] == "ConfigError"
    assert node.dead_letters("f")[0]["seq"] == seq  # none of those moved it
    ref.cast("heal")
    status, body = _post(api, {"name": "f", "seq": seq}, ok)
    assert status == 200 and body["name"] == "f"
    wait_until(lambda: ref.call("get") == 1, what="the resent cast to be handled")
    assert node.dead_letters("f") == []
    status, body = _post(api, {"name": "f", "seq": seq}, ok)  # already moved
    assert status == 400 and body["error"]["type"] == "ConfigError"
    assert ref.call("get") == 1


def test_a_node_dashboard_beyond_loopback_makes_a_token_and_logs_its_link(node_dir, tmp_path):
    port = free_port()
    config = tmp_path / "beamish.toml"
    config.write_text(f'[node]\ndashboard = "0.0.0.0:{port}"\n')
    n = start_node(node_dir, config=str(config))
    try:
        found = wait_until(lambda: re.search(r"serving the dashboard on (http://\S+)",
                                             Path(n.paths.log).read_text()),
                           what="the dashboard's link in the node log")
        token = found.group(1).split("#token=", 1)[1]
        base = f"http://127.0.0.1:{port}"
        assert _get(base + "/api/tree")[:2] == (401, b"")
        status, body, _ = _get(base + "/api/tree", {"Authorization": "Bearer " + token})
        assert status == 200 and b'"root"' in body
    finally:
        shutdown_quietly(n)


def test_a_taken_port_is_refused_before_the_node_starts(node_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "beamish.toml"
        config.write_text(f'[node]\ndashboard = "127.0.0.1:{port}"\n')
        with pytest.raises(ConfigError, match="cannot listen there"):
            start_node(node_dir, config=str(config))


def test_a_loopback_dashboard_needs_its_token_too(dash_node):
    # Another user of this machine reaches 127.0.0.1 as well; only the node's owner can
    # read the token, in node.log (0600) or as `beamish dashboard` printed it.
    node, url, token = dash_node
    node.spawn(COUNTER, name="c")
    for path in ("api/tree", "api/agent?name=c", "api/events?after=-1"):
        assert _get(url + path, {"Host": "127.0.0.1"})[:2] == (401, b""), path
    assert _post(url + "api/resend", {"name": "c", "seq": 1},
                 {"X-Beamish-Dashboard": "1"}) == (401, None)
    status, body, _ = _get(url + "api/agent?name=c", {"Authorization": "Bearer " + token})
    assert status == 200 and json.loads(body)["info"]["name"] == "c"
    assert os.stat(node.paths.log).st_mode & 0o777 == 0o600
