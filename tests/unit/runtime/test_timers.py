"""Durable timers' pure rules (ids, due times, the service's sleep) and their store
operations on a real LMDB environment (those that take the ``store`` fixture run on
PostgreSQL too: tests/cluster/test_pg_store.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from beamish.runtime.agent.context import due_ns, parse_timer_id, timer_id
from beamish.runtime.errors import ConfigError
from beamish.runtime.node.timers import wait_seconds
from beamish.runtime.store.lmdb import Store
from beamish.runtime.store.records import Timer

S = 1_000_000_000  # ns per second


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store(str(tmp_path / "s"))
    yield s
    s.close()


@pytest.mark.parametrize(("agent_id", "seq", "ident"), [
    (1, 1, "1.1"),
    (255, (3 << 32) | 7, "ff.300000007"),
    ((1 << 64) - 1, (1 << 64) - 1, "ffffffffffffffff.ffffffffffffffff"),
])
def test_a_timer_id_names_its_agent_and_seq_and_parses_back(agent_id, seq, ident):
    assert timer_id(agent_id, seq) == ident
    assert parse_timer_id(ident, agent_id) == seq


@pytest.mark.parametrize(("ident", "why"), [
    ("2.1", "an id of another agent"),
    ("", "empty"),
    ("1", "no seq"),
    ("1.", "an empty seq"),
    (".1", "an empty agent"),
    ("1.zz", "a seq that is not hex"),
    ("x.1", "an agent that is not hex"),
    ("1.-1", "a negative seq"),
    ("1.10000000000000000", "a seq over 64 bits"),
])
def test_a_string_that_is_not_one_of_this_agents_ids_names_no_timer(ident, why):
    assert parse_timer_id(ident, 1) is None, why


@pytest.mark.parametrize("ident", [None, 7, b"1.1", ["1.1"]])
def test_a_timer_id_that_is_not_a_string_is_a_config_error(ident):
    with pytest.raises(ConfigError, match="timer id is the string send_after returned"):
        parse_timer_id(ident, 1)


@pytest.mark.parametrize(("now", "seconds", "due"), [
    (10 * S, 0.0, 10 * S),
    (10 * S, 1.5, 11 * S + S // 2),
    (10 * S, 1e-9, 10 * S + 1),
    (0, 1e9, 10**18),
])
def test_a_timer_is_due_seconds_after_it_was_set_in_wall_clock_ns(now, seconds, due):
    assert due_ns(now, seconds) == due


@pytest.mark.parametrize(("next_due", "now", "recheck", "wait"), [
    (None, 5 * S, 1.0, 1.0),          # no timer: look again after the recheck
    (5 * S, 5 * S, 1.0, 0.0),         # due now
    (4 * S, 5 * S, 1.0, 0.0),         # overdue (the node was down): at once
    (5 * S + S // 4, 5 * S, 1.0, 0.25),  # due sooner than the recheck: sleep until then
    (60 * S, 5 * S, 1.0, 1.0),        # due later: no longer than the recheck
])
def test_the_service_sleeps_until_the_earliest_timer_or_the_recheck(next_due, now, recheck,
                                                                     wait):
    assert wait_seconds(next_due, now, recheck) == pytest.approx(wait)


def test_timers_are_found_earliest_first_cancelled_by_id_and_erased_with_their_agent(store):
    timers = [Timer(1, 1, 30 * S, b"\xa1a"), Timer(2, 1, 10 * S, b"\xa1b"),
              Timer(1, 2, 20 * S, b"\xa1c"), Timer(1, 3, 20 * S, b"\xa1d")]
    store.write(lambda t: [t.put_timer(x) for x in timers])
    assert store.read(lambda t: t.next_timer_due()) == 10 * S
    due = store.read(lambda t: t.due_timers(20 * S))
    assert [(x.agent_id, x.seq, x.payload) for x in due] == [(2, 1, b"\xa1b"), (1, 2, b"\xa1c"),
                                                             (1, 3, b"\xa1d")]
    assert store.read(lambda t: t.due_timers(20 * S, limit=1)) == due[:1]
    assert store.read(lambda t: t.due_timers(9 * S)) == []
    assert store.write(lambda t: t.delete_timer(1, 2)) is True
    assert store.write(lambda t: t.delete_timer(1, 2)) is False  # gone: not an error
    assert store.read(lambda t: (t.has_timer(1, 2), t.has_timer(1, 3))) == (False, True)
    assert [x.seq for x in store.read(lambda t: t.timers(1))] == [1, 3]
    store.write(lambda t: t.erase_agent_data(1))
    assert store.read(lambda t: (t.timers(1), [x.agent_id for x in t.due_timers(99 * S)])) \
        == ([], [2])


def test_a_timer_set_again_with_its_seq_replaces_the_old_one(store):
    store.write(lambda t: t.put_timer(Timer(1, 1, 30 * S, b"\xa1a")))
    store.write(lambda t: t.put_timer(Timer(1, 1, 10 * S, b"\xa1a")))  # a re-run transaction
    assert [x.due_ns for x in store.read(lambda t: t.due_timers(99 * S))] == [10 * S]


def test_a_timer_record_keeps_its_message_and_set_time_and_delivers_an_info_message():
    timer = Timer(3, 9, 5 * S, b"\xa4tick", 1.25)
    assert timer.to_wire() == {"p": b"\xa4tick", "t": 1.25}
    assert Timer.from_wire(3, 9, 5 * S, timer.to_wire()) == timer
    assert Timer.from_wire(3, 9, 5 * S, {"p": b"\xc0"}).set_at == 0.0
    assert timer.message(7.5).to_wire() == {"k": "info", "p": b"\xa4tick", "t": 7.5}


def test_entries_in_the_timers_db_that_are_not_timers_are_removed_not_fired(tmp_path):
    # Any process of the user can write into the store: such entries must neither crash
    # the timer service nor block the timers behind them.
    from beamish.mailbox import pack
    store = Store(str(tmp_path / "s"))
    store.write(lambda t: t.put_timer(Timer(1, 1, 10 * S, b"\xa1a")))
    with store.env.begin(write=True) as txn:
        db = store.dbs["timers"]
        txn.put(b"\x00", b"short key", db=db)
        txn.put((5 * S).to_bytes(8, "big") + bytes(16), b"\xc1", db=db)  # not msgpack
        txn.put((6 * S).to_bytes(8, "big") + bytes(16), pack({"p": "not bytes"}), db=db)
        txn.put(b"\xff", b"short key sorted last", db=db)
    assert store.read(lambda t: t.next_timer_due()) == 0  # the short key: due at once
    assert store.read(lambda t: t.due_timers(20 * S)) == [Timer(1, 1, 10 * S, b"\xa1a")]
    taken, dropped = store.write(lambda t: t.take_due_timers(20 * S))
    assert taken == [Timer(1, 1, 10 * S, b"\xa1a")] and dropped == 4  # short keys: due now
    assert store.read(lambda t: (t.has_timer(1, 1), t.next_timer_due())) == (False, None)
    store.close()
