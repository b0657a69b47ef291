"""What ``beamish events`` filters by, checked: the kinds of `Event` there are
(`EventKind`), a ``--since`` time (`since_time`: an ISO time, a time of day or a duration
ago), and the filter itself (`EventFilter`), which the store applies while it scans the
log and the node to what its followers wait for. Pure: the current time is passed in.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Collection
from dataclasses import dataclass

from ._types import Event, WireMap
from ._validation import check_lookup_name
from .errors import ConfigError


class EventKind(enum.StrEnum):
    """Every kind of `Event` the node records: its supervisors' reports (the first nine,
    `beamish.supervisor.EventKind`) and the node's own."""

    SPAWNED = "spawned"
    """An agent started for the first time (``reason`` ``lazy``: registered asleep)."""
    EXITED = "exited"
    """A running agent's process exited by itself (``reason``: how)."""
    RESTARTED = "restarted"
    """An agent started again after an exit."""
    ESCALATED = "escalated"
    """A supervisor gave up (``name``: the supervisor)."""
    FAILED = "failed"
    """An agent or supervisor is left stopped, marked failed."""
    BACKOFF = "backoff"
    """A restart is delayed (``reason``: by how long)."""
    STOPPED = "stopped"
    """An agent was stopped (by ``beamish stop``, or by its supervisor)."""
    REMOVED = "removed"
    """An agent left the tree."""
    SHUTDOWN = "shutdown"
    """A supervisor stopped as asked."""
    KILLED = "killed"
    """An agent did not stop within its shutdown time and was killed."""
    DELETED = "deleted"
    """An agent was deleted with its state."""
    RESENT = "resent"
    """A dead letter was put back in its agent's mailbox."""
    SLEPT = "slept"
    """An agent fell asleep (``reason``: ``requested``, ``idle`` or ``max_awake``)."""
    WOKE = "woke"
    """A sleeping agent was woken by a message or a timer."""
    DEAD_LETTERED = "dead_lettered"
    """A cast an agent could not handle went to its dead letters."""
    RECOVER_FAILED = "recover_failed"
    """An agent's ``recover`` raised or returned nonsense."""
    TERMINATE_FAILED = "terminate_failed"
    """An agent's ``terminate`` raised."""
    UPGRADED = "upgraded"
    """An agent was moved onto new code (``beamish upgrade``)."""


SinceArg = str | dt.datetime | dt.timedelta
"""What a ``since`` argument may be (`since_time`)."""

KINDS_LIST = ", ".join(k.value for k in EventKind)

SINCE_FORMS = ("an ISO time (2026-12-07T16:05:00, 2026-12-07 16:05+01:00, 2026-12-07), a "
               "time of day (16:05, 16:05:30: the latest one not in the future) or a "
               "duration ago (30s, 10m, 2h, 1d, 1w, 1h30m)")
"""What ``--since`` accepts, for help texts and errors. A time without an offset is local."""

_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")


def duration_s(text: str) -> float | None:
    """Return the seconds a duration like ``10m`` or ``1h30m`` spells, or None if ``text``
    is not one (units s, m, h, d, w; each part a number, decimals allowed)."""
    if not _DURATION.fullmatch(text):
        return None
    return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))


def parse_since(text: str, now: float) -> float:
    """Return the time ``text`` names, in seconds since the epoch, given the time ``now``
    (see `SINCE_FORMS`; surrounding spaces ignored).

    Raises:
        ConfigError: ``text`` is none of those forms.
    """
    value = text.strip()
    ago = duration_s(value)
    if ago is not None:
        return now - ago
    if _TIME_OF_DAY.fullmatch(value):
        try:
            clock = dt.time.fromisoformat(value if value.index(":") == 2 else "0" + value)
        except ValueError:
            raise _bad_since(text) from None
        today = dt.datetime.fromtimestamp(now).date()
        at = dt.datetime.combine(today, clock).timestamp()
        # The latest such time not in the future: 23:50 asked at 00:10 is yesterday's.
        return at if at <= now else \
            dt.datetime.combine(today - dt.timedelta(days=1), clock).timestamp()
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise _bad_since(text) from None


def _bad_since(value: object) -> ConfigError:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:60] + "..."
    return ConfigError(f"since={shown}: expected {SINCE_FORMS}")


def since_time(value: object, now: float) -> float:
    """Return the time a ``since`` argument names, in seconds since the epoch: a string
    (`parse_since`), a `datetime.datetime` (naive: local time) or a `datetime.timedelta`
    (that long before ``now``, >= 0).

    Raises:
        ConfigError: anything else, a negative duration, or a number (ambiguous: an event
            ``seq`` goes in ``after``; a Unix time as ``datetime.fromtimestamp(t)``).
    """
    if isinstance(value, str):
        return parse_since(value, now)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dt.timedelta):
        if value < dt.timedelta(0):
            raise ConfigError(f"since={value!r}: a duration ago must not be negative")
        return now - value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ConfigError(
            f"since={value!r}: expected a time, not a number: {SINCE_FORMS}, a "
            "datetime or a timedelta. To continue after an event's seq N, pass after=N; "
            "for a Unix time t, since=datetime.fromtimestamp(t)")
    raise _bad_since(value)


def check_kinds(kind: object) -> frozenset[EventKind] | None:
    """Return the kinds a ``kind`` argument asks for: None (any kind), one kind, or a
    collection of them; a string may list several, separated by commas.

    Raises:
        ConfigError: an unknown kind (listing the known ones), or an empty collection.
    """
    if kind is None:
        return None
    if isinstance(kind, str):
        words = [w.strip() for w in kind.split(",")]
    elif isinstance(kind, Collection) and all(isinstance(k, str) for k in kind):
        words = [str(k).strip() for k in kind]
    else:
        raise ConfigError(f"kind={kind!r}: expected an event kind or a list of them "
                          f"({KINDS_LIST})")
    if not words or not all(words):
        raise ConfigError(f"kind={kind!r}: expected an event kind or a list of them, "
                          f"none empty ({KINDS_LIST})")
    unknown = [w for w in words if w not in EventKind.__members__.values()]
    if unknown:
        raise ConfigError(f"kind={unknown[0]!r} is not an event kind; the kinds are: "
                          f"{KINDS_LIST}")
    return frozenset(EventKind(w) for w in words)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader wants: all that pass every filter that is set.

    Attributes:
        since: only those at or after this time (seconds since the epoch).
        name: only those about this agent or supervisor (`Event.name`, exactly).
        kinds: only those of one of these kinds.
    """

    since: float | None = None
    name: str | None = None
    kinds: frozenset[EventKind] | None = None

    @classmethod
    def of(cls, since: float | None, name: str | None, kind: object) -> EventFilter:
        """Check a request's filters (as the node gets them) and return the filter.

        Raises:
            ConfigError: a ``since`` that is not a finite number, a bad name, an
                unknown kind.
        """
        if since is not None and (not isinstance(since, (int, float))
                                  or isinstance(since, bool) or not math.isfinite(since)):
            raise ConfigError(f"since={since!r}: expected a time in seconds since the epoch")
        return cls(None if since is None else float(since),
                   None if name is None else check_lookup_name(name), check_kinds(kind))

    @property
    def everything(self) -> bool:
        """Whether it lets every event through."""
        return self.since is None and self.name is None and self.kinds is None

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes."""
        return ((self.since is None or event.time >= self.since)
                and (self.name is None or event.name == self.name)
                and (self.kinds is None or event.kind in self.kinds))

    def to_wire(self) -> WireMap:
        """The filter as the ``events`` request carries it (unset ones left out)."""
        out: WireMap = {}
        if self.since is not None:
            out["since"] = self.since
        if self.name is not None:
            out["name"] = self.name
        if self.kinds is not None:
            out["kind"] = sorted(k.value for k in self.kinds)
        return out


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of the event log, oldest first (`Node.events_page`).

    Attributes:
        events: the matching events of the page, by ``seq``.
        after: where the next page starts (pass it as ``after``): the seq of the page's
            last event when ``more``, else of the last event read (the page has read the
            log up to there; 0 if the log is empty).
        more: whether more matching events follow (a page filled to its limit).
    """

    events: list[Event]
    after: int
    more: bool

    @classmethod
    def from_wire(cls, data: WireMap) -> EventPage:
        """Rebuild a page the node's ``events`` command sent."""
        return cls([Event.from_wire(e) for e in data["events"]], int(data["after"]),
                   bool(data["more"]))


class PageFiller:
    """Builds one `EventPage` from a store's events read in seq order (LMDB's cursor, or
    PostgreSQL's batches): `add` each event read, and return the page it gives back once
    the page is full and one more match follows; at the end of the log, `end`. Pure; one
    page per filler.

    Attributes:
        read: the seq of the last event read (where a next batch of reads starts).
    """

    __slots__ = ("_flt", "_limit", "_out", "_everything", "read")

    def __init__(self, after: int, flt: EventFilter, limit: int) -> None:
        self._flt = flt
        self._limit = limit
        self._out: list[Event] = []
        self._everything = flt.everything
        self.read = after

    def add(self, event: Event) -> EventPage | None:
        """Take the next event of the log; return the full page when ``event`` is a match
        beyond its limit (more follow), else None."""
        if not self._everything and not self._flt.matches(event):
            self.read = event.seq
            return None
        if len(self._out) >= self._limit:
            return EventPage(self._out, self._out[-1].seq, True)
        self._out.append(event)
        self.read = event.seq
        return None

    def end(self) -> EventPage:
        """The page when the log ended before it filled."""
        return EventPage(self._out, self.read, False)
