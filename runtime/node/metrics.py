"""The node's Prometheus endpoint (``[node] metrics = "127.0.0.1:9464"``): the series of
docs/metrics.md, built by `prometheus_client` from a `NodeStats` snapshot at each scrape.

Nothing runs between scrapes: `StatsCollector.collect` takes one snapshot
(`stats.StatsReader.take`) when Prometheus asks, on the HTTP server's thread, and turns
it into metric families (`families`, pure). The server is `prometheus_client`'s own
(a thread per request, off the node's main loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from ..errors import ConfigError
from .config import ListenAddress
from .stats import NodeStats, cumulative_buckets

AGENT = ["agent"]


def families(s: NodeStats) -> Iterator[Metric]:
    """The metric families of one snapshot (pure): the node's, then per awake agent's."""
    yield GaugeMetricFamily("beamish_node_uptime_seconds",
                            "Seconds since the node started.", value=s.uptime)
    yield GaugeMetricFamily("beamish_node_resident_memory_bytes",
                            "Resident memory of the node daemon.", value=s.rss_bytes)
    yield CounterMetricFamily("beamish_node_cpu_seconds",
                              "CPU time of the node daemon (user + system).",
                              value=s.cpu_seconds)
    yield GaugeMetricFamily("beamish_agents_awake",
                            "Agents with a process (running now).", value=s.awake)
    yield GaugeMetricFamily("beamish_agents_sleeping",
                            "Agents asleep (no process; their next message wakes them).",
                            value=s.sleeping)
    by_status = GaugeMetricFamily("beamish_agents",
                                  "Agents by status (every agent, sleeping ones included; "
                                  "read at most every 5 s).", labels=["status"])
    for status, n in sorted(s.by_status.items()):
        by_status.add_metric([status], n)
    yield by_status
    dropped = CounterMetricFamily("beamish_dropped_frames",
                                  "Invalid frames dropped, by where they arrived.",
                                  labels=["socket"])
    for where in ("control", "reports", "ready", "agents"):
        dropped.add_metric([where], getattr(s.dropped, where))
    yield dropped
    yield CounterMetricFamily("beamish_events", "Events the node emitted (beamish events).",
                              value=s.events)
    restarts = CounterMetricFamily("beamish_restarts",
                                   "Agent restarts by failure kind, every agent.",
                                   labels=["kind"])
    for kind, n in sorted(s.restarts_by_kind.items()):
        restarts.add_metric([kind], n)
    yield restarts
    yield from _agent_families(s)


def _agent_families(s: NodeStats) -> Iterator[Metric]:
    depth = GaugeMetricFamily("beamish_agent_mailbox_depth",
                              "Messages waiting in the agent's mailbox.", labels=AGENT)
    handled = CounterMetricFamily("beamish_agent_messages_handled",
                                  "Messages the agent handled (committed), over its life.",
                                  labels=AGENT)
    latency = HistogramMetricFamily("beamish_agent_handler_seconds",
                                    "How long the agent's handlers took, per message "
                                    "(since the node started).", labels=AGENT)
    restarts = CounterMetricFamily("beamish_agent_restarts",
                                   "The agent's restarts by failure kind (since the node "
                                   "started).", labels=["agent", "kind"])
    dead = GaugeMetricFamily("beamish_agent_dead_letters",
                             "Casts the agent set aside (beamish dead-letters).", labels=AGENT)
    rss = GaugeMetricFamily("beamish_agent_resident_memory_bytes",
                            "Resident memory (RSS) of the agent's process.", labels=AGENT)
    uss = GaugeMetricFamily("beamish_agent_unique_memory_bytes",
                            "Unique memory (USS) of the agent's process: what killing it "
                            "frees (measured at most every 5 s).", labels=AGENT)
    cpu = CounterMetricFamily("beamish_agent_cpu_seconds",
                              "CPU time of the agent's current process (user + system).",
                              labels=AGENT)
    for a in s.agents:
        name = [a.name]
        depth.add_metric(name, a.mailbox_depth)
        handled.add_metric(name, a.processed)
        latency.add_metric(name, cumulative_buckets(a.latency, s.latency_bounds),
                           a.latency.sum_seconds)
        for kind, n in sorted(a.restarts_by_kind.items()):
            restarts.add_metric([a.name, kind], n)
        dead.add_metric(name, a.dead_letters)
        rss.add_metric(name, a.rss_bytes)
        if a.uss_bytes is not None:
            uss.add_metric(name, a.uss_bytes)
        cpu.add_metric(name, a.cpu_seconds)
    yield from (depth, handled, latency, restarts, dead, rss, uss, cpu)


class StatsCollector(Collector):
    """A `prometheus_client` collector: one snapshot per scrape.

    Args:
        take: takes a snapshot (`stats.StatsReader.take`).
    """

    def __init__(self, take: Callable[[], NodeStats]) -> None:
        self.take = take

    def collect(self) -> Iterable[Metric]:
        """The families of a snapshot taken now."""
        return list(families(self.take()))

    def describe(self) -> Iterable[Metric]:
        """Nothing: registering the collector must not take a snapshot."""
        return []


class MetricsServer:
    """The HTTP endpoint, serving ``/metrics`` on its own threads until `close`.

    Args:
        address: where to listen.
        take: takes a snapshot.

    Raises:
        ConfigError: it cannot listen there (the port is taken, the address is not this
            machine's); the node does not start.
    """

    def __init__(self, address: ListenAddress, take: Callable[[], NodeStats]) -> None:
        self.address = address
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsCollector(take))
        try:
            self._server: Any
            self._server, self._thread = start_http_server(address.port, address.host,
                                                           registry)
        except OSError as exc:
            raise ConfigError(
                f"[node] metrics = {str(address)!r}: cannot listen there ({exc.strerror or exc});"
                " choose a free port, or an address of this machine") from None

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
