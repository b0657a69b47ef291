"""The event log is kept in the store, through real nodes: it survives a restart and a
``kill -9`` of the node (every event anyone was shown, and every event older than the
writer's interval), keeps the latest ``[node] events_kept``, and is filtered by time,
name and kind, paged, and followed, from Python and from the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time

import pytest

from beamish.runtime import Event, connect, start_node
from beamish.runtime.errors import ConfigError
from tests.conftest import beamish, kill_node, restarted, shutdown_quietly, wait_until

COUNTER = "tests.agents.basic:Counter"
SESSION = "tests.agents.session_agents:Session"


def key(e: Event) -> tuple[int, str, str, str, str, float]:
    """All of an event, its seq included (`Event` equality leaves the seq out)."""
    return (e.seq, e.kind, e.name, e.supervisor, e.reason, e.time)


def stop(name: str) -> list[tuple[str, str]]:
    """The events of ``node.stop(name)``: its supervisor's reports that it stopped the
    agent and took it out of the tree, then the node's."""
    return [("stopped", name), ("removed", name), ("stopped", name)]


def crash(node, name: str) -> None:
    pid = node.info(name).pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: restarted(node, name, pid), what=f"{name} restarted")


def lazy_sessions(node_dir: str, names: list[str]) -> None:
    """Register lazy sessions (one ``spawned`` event each, cheap: no process). A client
    registers them itself and tells the node by datagram, holding back what the node's
    queue has no room for until its next registration or its close: closed here, so
    every event comes."""
    with connect(node_dir) as client:
        for name in names:
            client.spawn(SESSION, name=name, lazy=True)


def test_events_survive_a_node_restart_and_are_numbered_on(node_dir):
    n = start_node(node_dir)
    try:
        n.spawn(COUNTER, name="a")
        crash(n, "a")
        before = n.events()
    finally:
        n.shutdown()
    assert [(e.kind, e.name) for e in before] == [("spawned", "a"), ("exited", "a"),
                                                  ("restarted", "a")]
    n = start_node(node_dir)
    try:
        after = n.events()
    finally:
        n.shutdown()
    assert [key(e) for e in after[:3]] == [key(e) for e in before]
    # The shutdown's own events were kept too; the new node numbers on after them.
    assert [(e.kind, e.name) for e in after[3:]] == [("stopped", "a"), ("shutdown", "root"),
                                                     ("spawned", "a")]
    assert [e.seq for e in after] == list(range(1, len(after) + 1))


def test_a_killed_node_keeps_every_event_shown_and_every_one_older_than_a_flush(node_dir):
    n = start_node(node_dir)
    try:
        n.spawn(COUNTER, name="a")
        crash(n, "a")
        shown = n.events()  # the ledger: every event a reader was shown
        follower_saw: list[Event] = []
        stream = n.events(follow=True, after=shown[-1].seq)

        def follow() -> None:
            for ev in stream:
                follower_saw.append(ev)
                if ev.kind == "restarted":
                    return
        t = threading.Thread(target=follow)
        t.start()
        n.spawn(COUNTER, name="b")
        crash(n, "b")
        t.join(30)
        assert [(e.kind, e.name) for e in follower_saw] == [
            ("spawned", "b"), ("exited", "b"), ("restarted", "b")]
        # Shown to no one: committed by the writer within its 0.05 s, long before the kill.
        n.stop("a")
        time.sleep(1.0)
        killed_at = time.time()
        kill_node(n)
    finally:
        shutdown_quietly(n)
    n = start_node(node_dir)
    try:
        old = [e for e in n.events() if e.time < killed_at]
        new = [e for e in n.events() if e.time >= killed_at]
    finally:
        n.shutdown()
    ledger = [key(e) for e in shown + follower_saw]
    assert [key(e) for e in old[:len(ledger)]] == ledger
    assert [(e.kind, e.name) for e in old[len(ledger):]] == stop("a")
    # Nothing twice, nothing numbered again: the new node goes on after the last kept.
    assert [e.seq for e in old + new] == list(range(1, len(old) + len(new) + 1))
    assert [(e.kind, e.name) for e in new] == [("spawned", "b")]


def test_the_log_keeps_the_latest_events_kept_across_restarts(node_dir, tmp_path):
    config = tmp_path / "beamish.toml"
    config.write_text("[node]\nevents_kept = 25\n")
    n = start_node(node_dir, config=str(config))
    try:
        lazy_sessions(n.dir, [f"s{i:02d}" for i in range(40)])
        kept = wait_until(lambda: [e for e in n.events() if e.seq == 40] and n.events(),
                          what="the 40th event")
        assert [e.seq for e in kept] == list(range(16, 41))
        assert [e.name for e in kept] == [f"s{i:02d}" for i in range(15, 40)]
        assert all((e.kind, e.reason) == ("spawned", "lazy") for e in kept)
    finally:
        n.shutdown()
    n = start_node(node_dir, config=str(config))
    try:
        n.spawn(COUNTER, name="c")
        again = n.events()
    finally:
        n.shutdown()
    assert len(again) == 25 and again[-1].kind == "spawned" and again[-1].name == "c"
    assert [e.seq for e in again] == list(range(again[-1].seq - 24, again[-1].seq + 1))
    # A bad cap is refused before anything starts, saying what it takes.
    config.write_text("[node]\nevents_kept = 0\n")
    with pytest.raises(ConfigError, match="events_kept"):
        start_node(node_dir, config=str(config))


def test_a_log_larger_than_a_page_is_read_whole_and_paged(node):
    lazy_sessions(node.dir, [f"s{i:04d}" for i in range(1100)])
    wait_until(lambda: node.events(after=1099), what="the 1,100th event")
    everything = node.events()
    assert [e.seq for e in everything] == list(range(1, 1101))
    pages, after = [], 0
    while True:
        page = node.events_page(after=after, limit=400)
        pages.append([e.seq for e in page.events])
        if not page.more:
            break
        after = page.after
    assert [len(p) for p in pages] == [400, 400, 300]
    assert sum(pages, []) == [e.seq for e in everything]
    assert [e.seq for e in node.events(after=1090)] == list(range(1091, 1101))
    assert [e.seq for e in node.events(after=10, limit=3)] == [11, 12, 13]
    one = node.events_page(name="s0500")
    assert [e.name for e in one.events] == ["s0500"] and not one.more and one.after == 1100


def test_each_filter_and_their_combination(node):
    node.spawn(COUNTER, name="a")
    node.spawn(COUNTER, name="b")
    crash(node, "a")
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    node.stop("b")
    crash(node, "a")
    everything = node.events()
    assert [(e.kind, e.name) for e in everything] == [
        ("spawned", "a"), ("spawned", "b"), ("exited", "a"), ("restarted", "a"),
        *stop("b"), ("exited", "a"), ("restarted", "a")]

    def seen(**filters) -> list[tuple[str, str]]:
        return [(e.kind, e.name) for e in node.events(**filters)]
    assert seen(kind="exited") == [("exited", "a")] * 2
    assert seen(kind=["stopped", "spawned"]) == [("spawned", "a"), ("spawned", "b"),
                                                 ("stopped", "b"), ("stopped", "b")]
    assert seen(kind="exited,stopped") == seen(kind=["exited", "stopped"])
    assert seen(name="b") == [("spawned", "b"), *stop("b")]
    later = [*stop("b"), ("exited", "a"), ("restarted", "a")]
    assert seen(since=dt.datetime.fromtimestamp(middle)) == later
    assert seen(since=dt.datetime.fromtimestamp(middle).isoformat()) == later
    assert seen(since=dt.timedelta(seconds=time.time() - middle)) == later
    assert seen(since="1h") == [(e.kind, e.name) for e in everything]
    assert seen(since="1h", name="a", kind="restarted") == [("restarted", "a")] * 2
    assert seen(since=dt.datetime.fromtimestamp(middle), name="a", kind="restarted") == \
        [("restarted", "a")]
    assert seen(since=dt.datetime.now() + dt.timedelta(hours=1)) == []
    assert seen(name="nobody") == []


@pytest.mark.parametrize(("filters", "says"), [
    ({"kind": "exploded"}, "kind='exploded' is not an event kind; the kinds are: spawned"),
    ({"kind": ["exited", "nope"]}, "kind='nope' is not an event kind"),
    ({"since": "soon"}, "since='soon': expected an ISO time"),
    ({"since": 3}, "expected a time, not a number.*after=N"),
    ({"since": dt.timedelta(minutes=-5)}, "must not be negative"),
    ({"after": -1}, "after=-1: expected an event seq"),
    ({"limit": 0}, "limit=0: expected a count of 1 or more"),
    ({"limit": 5, "follow": True}, "a follower takes every event"),
    ({"name": ""}, "not a valid name"),
])
def test_bad_filters_are_a_config_error_saying_what_is_expected(node, filters, says):
    with pytest.raises(ConfigError, match=says):
        node.events(**filters)
    assert node.events() == []  # and the node still serves


def test_the_node_checks_a_raw_request_too(node):
    with pytest.raises(ConfigError, match="kind='nope' is not an event kind"):
        node._control.request("events", {"kind": ["nope"]})
    with pytest.raises(ConfigError, match="since='10m': expected float or None"):
        node._control.request("events", {"since": "10m"})
    with pytest.raises(ConfigError, match="limit=0"):
        node._control.request("events", {"limit": 0})


def test_a_filtered_follower_gets_only_what_it_asked_for(node):
    node.spawn(COUNTER, name="a")
    node.spawn(COUNTER, name="b")
    stream = node.events(follow=True, kind="restarted", name="b")
    got: list[Event] = []

    def follow() -> None:
        for ev in stream:
            got.append(ev)
            return
    t = threading.Thread(target=follow)
    t.start()
    crash(node, "a")  # news the follower does not want: it keeps waiting
    crash(node, "b")
    t.join(30)
    assert [(e.kind, e.name) for e in got] == [("restarted", "b")]


def test_the_cli_filters_and_refuses_bad_input(node):
    node.spawn(COUNTER, name="a")
    crash(node, "a")
    middle = time.time()
    time.sleep(0.05)
    node.stop("a")

    def cli(*args: str) -> list[tuple[str, str]]:
        out = beamish("events", "--json", "--dir", node.dir, *args, check=True).stdout
        return [(d["kind"], d["name"]) for d in map(json.loads, out.splitlines())]
    assert cli() == [("spawned", "a"), ("exited", "a"), ("restarted", "a"), *stop("a")]
    assert cli("--kind", "exited", "--kind", "removed") == [("exited", "a"), ("removed", "a")]
    assert cli("--kind", "exited,removed") == [("exited", "a"), ("removed", "a")]
    assert cli("--name", "a", "--since", "10m") == cli()
    assert cli("--name", "root") == []
    iso = dt.datetime.fromtimestamp(middle).isoformat()
    assert cli("--since", iso) == stop("a")
    assert cli("--after", "1", "--limit", "2") == [("exited", "a"), ("restarted", "a")]
    plain = beamish("events", "--kind", "removed", "--dir", node.dir, check=True).stdout
    assert plain.strip().endswith("removed       a (root)"), plain
    assert dt.date.today().isoformat() in plain  # dated: the log spans days
    bad = beamish("events", "--kind", "exploded", "--dir", node.dir)
    assert bad.returncode == 2 and "--kind 'exploded' is not an event kind" in bad.stderr
    assert "spawned, exited" in bad.stderr
    bad = beamish("events", "--since", "soon", "--dir", node.dir)
    assert bad.returncode == 2 and "--since 'soon': expected an ISO time" in bad.stderr
    bad = beamish("events", "--follow", "--limit", "3", "--dir", node.dir)
    assert bad.returncode == 2 and "--limit does not go with --follow" in bad.stderr


def test_the_cli_follows_with_a_filter(node):
    import subprocess
    import sys

    from tests.conftest import REPO
    node.spawn(COUNTER, name="a")
    proc = subprocess.Popen([sys.executable, "-m", "beamish.runtime", "events", "--follow",
                             "--json", "--kind", "restarted", "--dir", node.dir], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # it has asked; what it shows comes from its filter either way
        crash(node, "a")
        line = json.loads(proc.stdout.readline())
        assert (line["kind"], line["name"]) == ("restarted", "a")
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
