"""The Prometheus endpoint (``[node] metrics``) and ``beamish top``, through real nodes,
real crashes and a real HTTP scrape: each awake agent's series show what it did, sleeping
sessions are counted without series of their own, and the endpoint is off by default."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from beamish.runtime import ConfigError, Node, start_node
from tests.conftest import beamish, restarted, shutdown_quietly, wait_until

pytestmark = pytest.mark.slow

GATED = "tests.agents.metrics_agents:Gated"
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp_path: Path, node_table: str) -> str:
    path = tmp_path / "beamish.toml"
    path.write_text(f"[node]\n{node_table}\n")
    return str(path)


def scrape(port: int) -> Series:
    """GET /metrics and parse it with prometheus_client's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def agents_in(series: Series) -> set[str]:
    return {v for (_, labels) in series for k, v in labels if k == "agent"}


@pytest.fixture
def metrics_node(node_dir: str, tmp_path: Path) -> Iterator[tuple[Node, int]]:
    port = free_port()
    n = start_node(node_dir, config=config(tmp_path, f'metrics = "127.0.0.1:{port}"'))
    try:
        yield n, port
    finally:
        shutdown_quietly(n)


def handled(node: Node, name: str) -> int:
    """Messages the agent handled, asked without sending it one (a call would count)."""
    return node.info(name).processed


def top_names(node: Node, sort: str) -> list[str]:
    out = beamish("top", "--once", "--sort", sort, "--interval", "0.2", "--dir", node.dir,
                  check=True, timeout=60).stdout
    names = {"counter", "busy", "flaky", "victim"}
    return [line.split()[0] for line in out.splitlines() if line.split()[:1]
            and line.split()[0] in names]


def test_a_scrape_shows_what_each_awake_agent_did(metrics_node, tmp_path):
    node, port = metrics_node
    # Sessions registered asleep: counted, with no series of their own (and no process).
    for i in range(5):
        node.spawn(GATED, name=f"session-{i}", lazy=True)
    counter = node.spawn(GATED, name="counter")
    for _ in range(20):
        counter.cast({})
    counter.cast({"sleep": 0.3})  # one handler past the 0.25 s bucket
    busy = node.spawn(GATED, name="busy")
    gate = tmp_path / "gate"
    busy.cast({"wait_for": str(gate)})
    wait_until(lambda: os.path.exists(str(gate) + ".entered"), what="the busy handler")
    for _ in range(7):
        busy.cast({"grow": 8})
    # A crash (exception); the default recover skips the cast to the dead letters.
    flaky = node.spawn("tests.agents.basic:Faulty", name="flaky")
    flaky.cast("flaky")
    wait_until(lambda: node.dead_letters("flaky"), what="the dead letter")
    victim = node.spawn(GATED, name="victim")
    victim.cast({})
    wait_until(lambda: handled(node, "victim") == 1, what="the victim's cast")
    for _ in range(2):  # killed twice (idle: nothing to retry)
        old = node.info("victim").pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_until(lambda old=old: restarted(node, "victim", old), what="the victim's restart")
    wait_until(lambda: handled(node, "counter") == 21, what="the counter's casts")
    wait_until(lambda: node.info("flaky").status == "running", what="flaky serving again")

    m = scrape(port)
    assert agents_in(m) == {"counter", "busy", "flaky", "victim"}
    assert value(m, "beamish_agents_awake") == 4
    assert value(m, "beamish_agents_sleeping") == 5
    assert value(m, "beamish_agents", status="sleeping") == 5
    assert value(m, "beamish_agents", status="running") == 4
    # The held cast and the seven behind it wait in the mailbox.
    assert value(m, "beamish_agent_mailbox_depth", agent="busy") == 8
    assert value(m, "beamish_agent_mailbox_depth", agent="counter") == 0
    # Messages handled (the store's count) and the histogram count the same messages.
    assert value(m, "beamish_agent_messages_handled_total", agent="counter") == 21
    assert value(m, "beamish_agent_handler_seconds_count", agent="counter") == 21
    assert value(m, "beamish_agent_handler_seconds_bucket", agent="counter", le="0.25") == 20
    assert value(m, "beamish_agent_handler_seconds_bucket", agent="counter", le="+Inf") == 21
    assert value(m, "beamish_agent_handler_seconds_sum", agent="counter") >= 0.3
    for name in ("counter", "flaky", "victim"):
        assert value(m, "beamish_agent_handler_seconds_count", agent=name) \
            == value(m, "beamish_agent_messages_handled_total", agent=name), name
    # The killed processes' histograms are carried into their successor's.
    assert value(m, "beamish_agent_handler_seconds_count", agent="victim") == 1
    # Restarts by failure kind, per agent and node-wide.
    assert value(m, "beamish_agent_restarts_total", agent="flaky", kind="exception") == 1
    assert value(m, "beamish_agent_restarts_total", agent="victim", kind="killed") == 2
    assert value(m, "beamish_restarts_total", kind="exception") == 1
    assert value(m, "beamish_restarts_total", kind="killed") == 2
    assert value(m, "beamish_agent_dead_letters", agent="flaky") == 1
    assert value(m, "beamish_agent_dead_letters", agent="counter") == 0
    for name in ("counter", "busy", "flaky", "victim"):
        assert value(m, "beamish_agent_resident_memory_bytes", agent=name) > 0
        assert value(m, "beamish_agent_unique_memory_bytes", agent=name) > 0
    assert value(m, "beamish_node_resident_memory_bytes") > 0
    assert value(m, "beamish_events_total") > 0

    # beamish top reads the same snapshot: the deepest mailbox, the most restarts first.
    assert top_names(node, "mailbox")[0] == "busy"
    assert top_names(node, "restarts")[:2] == ["victim", "flaky"]

    gate.touch()
    wait_until(lambda: handled(node, "busy") == 8, what="the busy agent's casts")
    m = scrape(port)
    assert value(m, "beamish_agent_mailbox_depth", agent="busy") == 0
    assert value(m, "beamish_agent_messages_handled_total", agent="busy") == 8
    assert value(m, "beamish_agent_handler_seconds_count", agent="busy") == 8
    # 56 MiB more touched since: top by memory puts it first
    assert top_names(node, "memory")[0] == "busy"

    # An agent put to sleep loses its series; the count of sleepers includes it.
    node.sleep("counter")
    m = scrape(port)
    assert "counter" not in agents_in(m)
    assert value(m, "beamish_agents_awake") == 3


def test_the_endpoint_is_off_by_default(node):
    listening = [c for c in psutil.Process(node.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening == []
    node.spawn(GATED, name="g").cast({})
    stats = node.stats()  # the same figures, through the control socket
    assert [a.name for a in stats.agents] == ["g"] and stats.awake == 1


def test_a_bad_metrics_address_is_refused_before_anything_starts(node_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"node\.metrics.*port '99999'"):
        start_node(node_dir, config=config(tmp_path, 'metrics = "127.0.0.1:99999"'))
    with pytest.raises(ConfigError, match=r"node\.metrics.*'example\.com' is not an IP"):
        start_node(node_dir, config=config(tmp_path, 'metrics = "example.com:9464"'))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="cannot listen there"):
            start_node(node_dir, config=config(tmp_path, f'metrics = "127.0.0.1:{port}"'))
