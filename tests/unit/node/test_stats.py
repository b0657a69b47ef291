"""The pure parts of the node's figures: the latency histogram an agent publishes, the
tallies kept across exits, the Prometheus families of a snapshot, the metrics address,
the snapshot's wire form and ``beamish top``'s rows, one test per rule."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from beamish.runtime import DroppedFrames
from beamish.runtime.agent.inflight import (
    LATENCY_BOUNDS_S,
    InFlight,
    Latency,
    bucket_of,
    read_latency,
)
from beamish.runtime.client.top import summary, top_rows
from beamish.runtime.node.config import ListenAddress, listen_address
from beamish.runtime.node.daemon import to_wire
from beamish.runtime.node.metrics import StatsCollector
from beamish.runtime.node.stats import AgentStats, ExitTally, NodeStats, cumulative_buckets

BUCKETS = len(LATENCY_BOUNDS_S) + 1


def latency(*at: tuple[int, int], sum_seconds: float = 0.0) -> Latency:
    """A histogram with ``count`` messages in bucket ``index`` for each ``(index, count)``."""
    counts = [0] * BUCKETS
    for index, count in at:
        counts[index] = count
    return Latency(tuple(counts), sum_seconds)


def agent(name: str, **kw: object) -> AgentStats:
    base = AgentStats(name, 100, "running", "root", 0, 0, 0, 0, {}, Latency(), 1 << 20, None,
                      0.0)
    return replace(base, **kw)  # type: ignore[arg-type]


def snapshot(*agents: AgentStats, at: float = 1000.0, **kw: object) -> NodeStats:
    base = NodeStats(1, 60.0, 1 << 24, 1.5, len(agents), {"running": len(agents)}, 0.0,
                     DroppedFrames(), 3, {}, list(LATENCY_BOUNDS_S), list(agents), at)
    return replace(base, **kw)  # type: ignore[arg-type]


# -- the agent's histogram (a real mmap'ed file) ---------------------------------------------
def test_the_histogram_counts_a_message_only_once_its_group_commits(tmp_path):
    path = str(tmp_path / "a.busy")
    busy = InFlight(path, incarnation=7)
    busy.mark(1)
    busy.returned()
    busy.mark(2)
    busy.returned()
    assert read_latency(path, 7) == Latency()  # handled, not committed: not counted yet
    busy.committed()
    got = read_latency(path, 7)
    assert got is not None and got.count == 2 and got.sum_seconds > 0
    busy.close()


def test_a_handler_lands_in_the_first_bucket_whose_bound_it_does_not_exceed(tmp_path):
    path = str(tmp_path / "a.busy")
    busy = InFlight(path, incarnation=1)
    busy.mark(1)
    busy.start -= 300_000_000  # began 0.3 s ago
    busy.returned()
    busy.committed()
    got = read_latency(path, 1)
    assert got is not None
    assert got.counts[LATENCY_BOUNDS_S.index(0.5)] == 1 and got.count == 1
    assert 0.3 <= got.sum_seconds < 0.5
    busy.close()


@pytest.mark.parametrize(("ns", "bucket"), [
    (0, 0), (1, 0), (100_000, 0), (100_001, 1), (250_000, 1), (250_001, 2),
    (1_000_000_000, 12), (1_000_000_001, 13), (60_000_000_000, 17),
    (60_000_000_001, 18), (1 << 63, 18),
])
def test_a_latency_goes_to_the_first_bucket_whose_bound_it_does_not_exceed(ns, bucket):
    assert bucket_of(ns) == bucket


def test_the_bucket_without_a_search_is_the_one_a_search_finds():
    import bisect
    bounds = [round(b * 1e9) for b in LATENCY_BOUNDS_S]
    values = [v for b in bounds for v in (b - 1, b, b + 1)]
    values += [(1 << bits) + d for bits in range(64) for d in (-1, 0, 1) if (1 << bits) + d >= 0]
    assert [bucket_of(v) for v in values] == [bisect.bisect_left(bounds, v) for v in values]


def test_another_incarnations_histogram_is_not_read(tmp_path):
    path = str(tmp_path / "a.busy")
    InFlight(path, incarnation=1).close()
    assert read_latency(path, 2) is None
    assert read_latency(str(tmp_path / "missing.busy"), 1) is None


def test_a_new_incarnation_starts_its_histogram_at_zero(tmp_path):
    path = str(tmp_path / "a.busy")
    old = InFlight(path, incarnation=1)
    old.mark(1)
    old.returned()
    old.committed()
    old.close()
    InFlight(path, incarnation=2).close()
    assert read_latency(path, 2) == Latency()


# -- tallies across exits --------------------------------------------------------------------
def test_exited_processes_latencies_add_up_per_agent():
    tally = ExitTally()
    tally.exited("a", latency((0, 2), sum_seconds=0.5))
    tally.exited("a", latency((0, 1), (3, 1), sum_seconds=0.25))
    tally.exited("b", None)
    assert tally.carried("a") == (latency((0, 3), (3, 1), sum_seconds=0.75), {})
    assert tally.carried("b") == (Latency(), {})


def test_restarts_are_counted_per_agent_and_kind_and_in_all():
    tally = ExitTally()
    tally.restarted("a", "exception")
    tally.restarted("a", "exception")
    tally.restarted("b", "killed")
    assert tally.carried("a")[1] == {"exception": 2}
    assert tally.totals() == {"exception": 2, "killed": 1}


def test_the_tally_keeps_the_most_recently_exited_agents_only():
    tally = ExitTally(kept=2)
    for name in ("a", "b", "c"):
        tally.restarted(name, "exit")
    assert tally.carried("a")[1] == {} and tally.carried("c")[1] == {"exit": 1}
    assert tally.totals() == {"exit": 3}  # the node-wide count loses nothing


# -- Prometheus ------------------------------------------------------------------------------
def test_buckets_are_cumulative_and_end_with_inf():
    got = cumulative_buckets(latency((0, 2), (2, 1), (BUCKETS - 1, 4)), LATENCY_BOUNDS_S)
    assert got[0] == ("0.0001", 2) and got[1] == ("0.00025", 2) and got[2] == ("0.0005", 3)
    assert got[-2] == ("60.0", 3) and got[-1] == ("+Inf", 7)
    assert len(got) == BUCKETS


def scrape_text(s: NodeStats) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(lambda: s))
    text = generate_latest(registry).decode()
    return {(x.name, frozenset(x.labels.items())): x.value
            for f in text_string_to_metric_families(text) for x in f.samples}


def test_each_awake_agent_gets_its_series_and_the_node_its_counts():
    a = agent("a", mailbox_depth=4, processed=9, dead_letters=1, uss_bytes=4096,
              restarts_by_kind={"oom": 2}, latency=latency((1, 9), sum_seconds=0.002),
              cpu_seconds=1.25)
    got = scrape_text(snapshot(a, by_status={"running": 1, "sleeping": 99},
                               restarts_by_kind={"oom": 2}))
    one = frozenset({("agent", "a")})
    assert got[("beamish_agent_mailbox_depth", one)] == 4
    assert got[("beamish_agent_messages_handled_total", one)] == 9
    assert got[("beamish_agent_dead_letters", one)] == 1
    assert got[("beamish_agent_unique_memory_bytes", one)] == 4096
    assert got[("beamish_agent_cpu_seconds_total", one)] == 1.25
    assert got[("beamish_agent_handler_seconds_count", one)] == 9
    assert got[("beamish_agent_handler_seconds_bucket", one | {("le", "0.0001")})] == 0
    assert got[("beamish_agent_handler_seconds_bucket", one | {("le", "0.00025")})] == 9
    assert got[("beamish_agent_restarts_total", one | {("kind", "oom")})] == 2
    assert got[("beamish_restarts_total", frozenset({("kind", "oom")}))] == 2
    assert got[("beamish_agents_sleeping", frozenset())] == 99
    assert got[("beamish_agents", frozenset({("status", "sleeping")}))] == 99


def test_an_unmeasured_uss_is_left_out_rather_than_shown_as_zero():
    got = scrape_text(snapshot(agent("a", uss_bytes=None)))
    assert not any(name == "beamish_agent_unique_memory_bytes" for name, _ in got)


def test_a_node_without_awake_agents_still_serves_its_own_series():
    got = scrape_text(snapshot(by_status={"sleeping": 3}))
    assert got[("beamish_agents_awake", frozenset())] == 0
    assert not any(("agent" in dict(labels)) for _, labels in got)


# -- the address -----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9464", ListenAddress("127.0.0.1", 9464)),
    ("0.0.0.0:80", ListenAddress("0.0.0.0", 80)),
    ("[::1]:9464", ListenAddress("::1", 9464)),
    ("localhost:9464", ListenAddress("localhost", 9464)),
    (":9464", ListenAddress("127.0.0.1", 9464)),
    ("9464", ListenAddress("127.0.0.1", 9464)),
])
def test_an_address_is_host_and_port_with_loopback_by_default(text, expected):
    assert listen_address(text) == expected


@pytest.mark.parametrize(("text", "why"), [
    ("127.0.0.1:0", "port '0'"), ("127.0.0.1:65536", "port '65536'"),
    ("127.0.0.1:", "port ''"), ("127.0.0.1:http", "port 'http'"),
    ("example.com:9464", "not an IP address"), ("::1:9464", "takes brackets"),
    ("1.2.3.4:٩٤", "port"),
])
def test_a_bad_address_is_refused_saying_what_is_expected(text, why):
    with pytest.raises(ValueError, match=why) as err:
        listen_address(text)
    assert "HOST:PORT" in str(err.value) or "brackets" in str(err.value)


# -- the wire --------------------------------------------------------------------------------
def test_a_snapshot_comes_back_from_its_wire_form_unchanged():
    s = snapshot(agent("a", uss_bytes=7, restarts_by_kind={"exit": 1},
                       latency=latency((2, 3), sum_seconds=0.1)), restarts_by_kind={"exit": 1},
                 dropped=DroppedFrames(1, 2, 3, 4))
    assert NodeStats.from_wire(to_wire(s)) == s


# -- beamish top -----------------------------------------------------------------------------
def test_cpu_percent_is_the_rate_between_two_readings():
    before = snapshot(agent("a", cpu_seconds=1.0), at=100.0)
    now = snapshot(agent("a", cpu_seconds=1.5), at=102.0)
    rows, more = top_rows(before, now, "cpu")
    assert rows[0].cpu_percent == pytest.approx(25.0) and more == 0


def test_a_first_reading_or_a_new_process_has_no_rates():
    assert top_rows(None, snapshot(agent("a")), "cpu")[0][0].cpu_percent is None
    before = snapshot(agent("a", pid=1, cpu_seconds=5.0, processed=3), at=1.0)
    row = top_rows(before, snapshot(agent("a", pid=2, cpu_seconds=0.1, processed=4), at=2.0),
                   "cpu")[0][0]
    assert row.cpu_percent is None and row.rate == 1.0  # handled counts over its life


@pytest.mark.parametrize(("sort", "order"), [
    ("cpu", ["b", "a", "c"]), ("memory", ["c", "a", "b"]), ("mailbox", ["a", "b", "c"]),
    ("restarts", ["c", "b", "a"]),
])
def test_rows_are_sorted_largest_first(sort, order):
    before = snapshot(agent("a"), agent("b"), agent("c"), at=0.0)
    now = snapshot(agent("a", cpu_seconds=0.1, rss_bytes=2, mailbox_depth=9, restarts=0),
                   agent("b", cpu_seconds=0.5, rss_bytes=1, mailbox_depth=5, restarts=1),
                   agent("c", cpu_seconds=0.0, rss_bytes=3, mailbox_depth=0, restarts=2),
                   at=1.0)
    assert [r.name for r in top_rows(before, now, sort)[0]] == order


def test_ties_keep_name_order_and_a_limit_says_how_many_it_left_out():
    now = snapshot(agent("c"), agent("a"), agent("b"))
    rows, more = top_rows(None, now, "mailbox", limit=2)
    assert [r.name for r in rows] == ["a", "b"] and more == 1


def test_the_mean_latency_is_over_the_counted_messages():
    row = top_rows(None, snapshot(agent("a", latency=latency((0, 4), sum_seconds=0.002))),
                   "cpu")[0][0]
    assert row.mean_ms == pytest.approx(0.5)
    assert top_rows(None, snapshot(agent("a")), "cpu")[0][0].mean_ms is None


def test_the_summary_names_the_counts_by_status_and_restarts_by_kind():
    line = summary(snapshot(agent("a"), by_status={"running": 1, "sleeping": 100_000},
                            restarts_by_kind={"killed": 2}, uptime=3723.0))
    assert "up 1h02m03s" in line and "100,000 sleeping" in line and "2 killed" in line
    assert "restarts since start: none" in summary(snapshot())

