"""The event filters' rules (runtime/_events.py): one table per rule. Pure: the current
time is passed in; local times are built with the machine's own zone, as the code reads
them."""

from __future__ import annotations

import datetime as dt

import pytest

from beamish.runtime import Event
from beamish.runtime._events import (
    EventFilter,
    EventKind,
    check_kinds,
    duration_s,
    parse_since,
    since_time,
)
from beamish.runtime.errors import ConfigError
from beamish.runtime.messaging.wire import ReportKind
from beamish.supervisor import EventKind as SupervisorEventKind

NOW_LOCAL = dt.datetime(2026, 12, 7, 16, 30, 0)
NOW = NOW_LOCAL.timestamp()


def local(*args: int) -> float:
    return dt.datetime(*args).timestamp()


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800),
    ("1h30m", 5400), ("1.5h", 5400), ("0s", 0), ("1d2h3m4s", 93784),
    ("10", None), ("m", None), ("10x", None), ("-5m", None), ("10 m", None), ("", None),
    ("1h 30m", None),
])
def test_a_duration_is_numbers_with_units(text, seconds):
    assert duration_s(text) == seconds


@pytest.mark.parametrize(("text", "expected"), [
    ("10m", NOW - 600),                                           # a duration ago
    ("1h30m", NOW - 5400),
    (" 10m ", NOW - 600),                                         # spaces ignored
    ("2026-12-07T16:05:00", local(2026, 12, 7, 16, 5)),           # ISO, local
    ("2026-12-07 16:05", local(2026, 12, 7, 16, 5)),
    ("2026-12-07", local(2026, 12, 7)),                           # a date: its midnight
    ("2026-12-07T16:05:00Z", dt.datetime(2026, 12, 7, 16, 5, tzinfo=dt.UTC).timestamp()),
    ("2026-12-07T16:05:00+01:00", dt.datetime(2026, 12, 7, 15, 5, tzinfo=dt.UTC).timestamp()),
    ("16:05", local(2026, 12, 7, 16, 5)),                         # a time of day: today's
    ("9:05", local(2026, 12, 7, 9, 5)),
    ("16:05:30", local(2026, 12, 7, 16, 5, 30)),
    ("16:30", NOW),                                               # now is not the future
    ("23:50", local(2026, 12, 6, 23, 50)),                        # later today: yesterday's
    ("2027-01-01", local(2027, 1, 1)),                            # the future is allowed
])
def test_since_accepts_iso_times_times_of_day_and_durations_ago(text, expected):
    assert parse_since(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", [
    "yesterday", "10", "25:00", "16:61", "2026-13-01", "1h 30m", "", "now", "-10m",
    "10 minutes",
])
def test_since_refuses_anything_else_saying_what_it_takes(text):
    with pytest.raises(ConfigError, match="since=.*expected an ISO time.*a duration ago"):
        parse_since(text, NOW)


@pytest.mark.parametrize(("value", "expected"), [
    ("10m", NOW - 600),
    (dt.timedelta(minutes=10), NOW - 600),
    (dt.timedelta(0), NOW),
    (NOW_LOCAL, NOW),
    (dt.datetime(2026, 12, 7, 16, 5, tzinfo=dt.UTC),
     dt.datetime(2026, 12, 7, 16, 5, tzinfo=dt.UTC).timestamp()),
])
def test_since_time_takes_a_string_a_datetime_or_a_timedelta(value, expected):
    assert since_time(value, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(("value", "says"), [
    (5, "not a number.*after=N"),                     # an old caller's seq: refused, said so
    (NOW, "not a number.*fromtimestamp"),
    (True, "expected an ISO time"),
    (None, "expected an ISO time"),
    (dt.timedelta(minutes=-1), "must not be negative"),
    (dt.date(2026, 12, 7), "expected an ISO time"),
])
def test_since_time_refuses_numbers_and_other_types(value, says):
    with pytest.raises(ConfigError, match=says):
        since_time(value, NOW)


@pytest.mark.parametrize(("kind", "expected"), [
    (None, None),
    ("exited", {EventKind.EXITED}),
    ("exited,restarted", {EventKind.EXITED, EventKind.RESTARTED}),
    ("exited, restarted", {EventKind.EXITED, EventKind.RESTARTED}),
    (["slept", "woke"], {EventKind.SLEPT, EventKind.WOKE}),
    (("dead_lettered",), {EventKind.DEAD_LETTERED}),
    (EventKind.UPGRADED, {EventKind.UPGRADED}),
])
def test_kinds_are_one_several_or_any(kind, expected):
    assert check_kinds(kind) == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize(("kind", "says"), [
    ("exit", "kind='exit' is not an event kind; the kinds are: spawned, exited"),
    ("exited,bogus", "kind='bogus' is not an event kind"),
    ("EXITED", "kind='EXITED' is not an event kind"),
    ([], "none empty"),
    ("exited,", "none empty"),
    ("", "none empty"),
    (3, "expected an event kind or a list of them"),
    ([3], "expected an event kind or a list of them"),
])
def test_an_unknown_kind_is_refused_listing_the_kinds(kind, says):
    with pytest.raises(ConfigError, match=says):
        check_kinds(kind)


def test_the_kinds_cover_every_kind_the_node_emits():
    ours = {k.value for k in EventKind}
    assert {k.value for k in SupervisorEventKind} <= ours
    assert {k.value for k in ReportKind} - {"ready"} <= ours  # reports become events


EV = Event("exited", "a", "root", "killed", NOW, 7)


@pytest.mark.parametrize(("flt", "matches"), [
    (EventFilter(), True),
    (EventFilter(since=NOW), True),                  # at the time: included
    (EventFilter(since=NOW + 0.001), False),
    (EventFilter(name="a"), True),
    (EventFilter(name="b"), False),
    (EventFilter(kinds=frozenset({EventKind.EXITED, EventKind.WOKE})), True),
    (EventFilter(kinds=frozenset({EventKind.WOKE})), False),
    (EventFilter(since=NOW - 1, name="a", kinds=frozenset({EventKind.EXITED})), True),
    (EventFilter(since=NOW - 1, name="a", kinds=frozenset({EventKind.WOKE})), False),
])
def test_an_event_passes_when_it_passes_every_filter_set(flt, matches):
    assert flt.matches(EV) is matches
    assert flt.everything is (flt == EventFilter())


@pytest.mark.parametrize(("since", "name", "kind", "says"), [
    ("10m", None, None, "expected a time in seconds since the epoch"),
    (float("nan"), None, None, "expected a time in seconds since the epoch"),
    (True, None, None, "expected a time in seconds since the epoch"),
    (None, "", None, "not a valid name"),
    (None, None, "nope", "is not an event kind"),
])
def test_the_node_checks_a_requests_filters(since, name, kind, says):
    with pytest.raises(ConfigError, match=says):
        EventFilter.of(since, name, kind)


def test_a_filter_goes_to_the_node_and_back_unchanged():
    flt = EventFilter(NOW, "a", frozenset({EventKind.EXITED, EventKind.WOKE}))
    wire = flt.to_wire()
    assert wire == {"since": NOW, "name": "a", "kind": ["exited", "woke"]}
    assert EventFilter.of(wire["since"], wire["name"], wire["kind"]) == flt
    assert EventFilter().to_wire() == {}
