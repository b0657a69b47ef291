"""The store interface's contract on PostgreSQL: the store tests of tests/unit (written
for LMDB, each taking a ``store`` fixture) run here against a `PgStore` on a real server,
a fresh database per test; then what only the PostgreSQL store has: several clusters in
one database, rows no beamish process wrote, and the rule that only this package imports
psycopg."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from beamish.mailbox import pack
from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.records import AgentRecord, Message, Timer
from tests.unit.node.test_event_log import (  # noqa: F401  (collected here, on PostgreSQL)
    test_a_filtered_page_reads_past_what_does_not_match,
    test_a_lower_cap_drops_the_oldest_at_the_next_commit,
    test_a_page_holds_the_kept_events_after_a_seq,
    test_a_reopened_log_numbers_on_from_the_stored_latest,
    test_an_event_carries_what_was_emitted,
    test_concurrent_emits_get_consecutive_seqs,
    test_pages_cover_the_log_once,
    test_readers_see_only_what_is_committed,
    test_the_writer_commits_soon_and_close_commits_the_rest,
)
from tests.unit.runtime.test_sessions_store import (  # noqa: F401
    test_a_fired_timer_marks_a_sleeping_agents_wake_in_its_transaction,
    test_a_lost_sleeps_fallback_sleeps_only_that_exits_record_and_keeps_its_failure,
    test_wakes_pages_on_after_the_last_id_and_a_scan_finds_a_mark_past_the_first_page,
    test_wakes_table_put_list_delete_and_erase,
)
from tests.unit.runtime.test_store import (  # noqa: F401
    test_a_list_appended_at_once_gets_consecutive_seqs_after_single_appends,
    test_mailbox_is_ordered_and_removal_is_by_seq,
    test_removing_a_group_removes_its_messages_and_their_attempt_counts,
    test_state_and_processed_commit_together,
)
from tests.unit.runtime.test_timers import (  # noqa: F401
    test_a_timer_set_again_with_its_seq_replaces_the_old_one,
    test_timers_are_found_earliest_first_cancelled_by_id_and_erased_with_their_agent,
)

S = 1_000_000_000


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PgStore]:
    """The contract's store: cluster "c1" of a fresh database."""
    s = open_postgres_store(pg_dsn, "c1")
    yield s
    s.close()


def test_two_clusters_in_one_database_keep_their_own_rows_and_counters(pg_dsn):
    a, b = open_postgres_store(pg_dsn, "a"), open_postgres_store(pg_dsn, "b")
    try:
        a.write(lambda t: (t.put_agent(AgentRecord("x", t.next_counter("agent_id"))),
                           t.append(1, Message("cast", b"a", 0.0))))
        assert b.read(lambda t: (t.get_agent("x"), t.depth(1), t.tail(1))) == (None, 0, 1)
        assert b.write(lambda t: t.next_counter("agent_id")) == 1
        assert a.write(lambda t: t.next_counter("agent_id")) == 2
    finally:
        a.close()
        b.close()


def test_a_reply_is_taken_once_and_swept_once_expired(store):
    from beamish.runtime.store.records import Reply
    store.write(lambda t: (t.put_reply(b"m1", Reply(True, 10.0, b"\x01")),
                           t.put_reply_packed(b"m2", pack(Reply(True, 30.0, b"\x02").to_wire())),
                           t.put_reply_packed(b"m3", pack({"ok": True, "v": b"\x03"}))))
    assert store.read(lambda t: sorted(t.expired_replies(20.0))) == [b"m1"]
    assert store.read(lambda t: sorted(t.expired_replies(1e12))) == [b"m1", b"m2"]  # m3: never
    assert store.write(lambda t: (t.pop_reply(b"m2"), t.pop_reply(b"m2"))) == \
        (Reply(True, 30.0, b"\x02"), None)
    store.write(lambda t: t.delete_reply(b"m1"))
    assert store.read(lambda t: t.expired_replies(1e12)) == []


def test_dead_letters_failures_and_attempts_are_per_agent_and_erased_with_it(store):
    from beamish.runtime._types import Failure
    from beamish.runtime.store.records import DeadLetter, FailureReport
    failure = Failure(kind="exception", message="boom")
    letter = DeadLetter(Message("cast", b"x", 1.0), failure, 2.0)
    store.write(lambda t: (t.put_dead(1, 5, letter), t.put_dead(1, 3, letter),
                           t.put_dead(2, 1, letter), t.bump_attempts(1, 9),
                           t.put_failure(1, FailureReport("handle", 3, failure)),
                           t.put_state(1, 1, b"\x80", 4), t.put_wake(1, "a"),
                           t.put_timer(Timer(1, 1, 5 * S, b"\xa1a"))))
    assert store.read(lambda t: ([s for s, _ in t.dead(1)], t.dead_count(1), t.dead_count(2),
                                 t.attempts(1, 9))) == ([3, 5], 2, 1, 1)
    assert store.read(lambda t: t.dead(1)[0][1]) == letter
    assert store.write(lambda t: (t.delete_dead(1, 3), t.delete_dead(1, 3))) == (True, False)
    assert store.write(lambda t: (t.pop_failure(1), t.pop_failure(1))) == \
        (FailureReport("handle", 3, failure), None)
    store.write(lambda t: (t.put_failure(1, FailureReport("init")), t.erase_agent_data(1)))
    assert store.write(lambda t: (t.dead(1), t.attempts(1, 9), t.pop_failure(1),
                                  t.get_state(1), t.wakes(), t.timers(1), t.dead_count(2))) == \
        ([], 0, None, None, [], [], 1)


def test_agents_routes_supervisors_and_status_counts(store):
    from beamish.runtime._types import AgentStatus
    from beamish.runtime.store.records import SupervisorRecord
    store.write(lambda t: [t.put_agent(AgentRecord(n, i, status=s)) for i, (n, s) in enumerate(
        [("b", AgentStatus.RUNNING), ("a", AgentStatus.STOPPED), ("é", AgentStatus.RUNNING),
         ("Z", AgentStatus.RUNNING)], 1)])
    # Names sort as bytes, as LMDB's keys do ("Z" < "a" < "b" < "é").
    assert [r.name for r in store.read(lambda t: t.agents())] == ["Z", "a", "b", "é"]
    assert store.read(lambda t: (t.get_route("a"), t.get_route("nobody"))) == ((2, "stopped"),
                                                                               None)
    assert store.read(lambda t: t.status_counts()) == {"running": 3, "stopped": 1}
    store.write(lambda t: t.delete_agent("a"))
    assert store.read(lambda t: (t.get_agent("a"), t.get_route("a"))) == (None, None)
    sup = SupervisorRecord("jobs")
    store.write(lambda t: (t.put_sup(sup), t.put_sup(SupervisorRecord("all"))))
    assert store.read(lambda t: ([s.name for s in t.sups()], t.get_sup("jobs"))) == \
        (["all", "jobs"], sup)
    store.write(lambda t: t.delete_sup("jobs"))
    assert store.read(lambda t: t.get_sup("jobs")) is None


def test_kinds_between_and_messages_by_seq(store):
    store.write(lambda t: (t.append(3, Message("cast", b"a", 0.0)),
                           t.append(3, Message.call(b"b", b"id", "r", 9.0, 0.0)),
                           t.append_packed(3, b"\xc1"), t.append(3, Message("info", b"", 0.0))))
    assert store.read(lambda t: t.kinds_between(3, 2, 4)) == {2: "call", 3: "malformed",
                                                              4: "info"}
    assert store.read(lambda t: (t.message(3, 2).reply_to, t.message(3, 9),
                                 t.message_packed(3, 3))) == ("r", None, b"\xc1")


def test_rows_in_the_timers_table_that_are_not_timers_are_removed_not_fired(store, pg_dsn):
    store.write(lambda t: t.put_timer(Timer(1, 1, 10 * S, b"\xa1a")))
    with psycopg.connect(pg_dsn) as conn:
        for seq, raw in ((2, b"\xc1"), (3, pack({"p": "not bytes"})), (4, pack([1]))):
            conn.execute("INSERT INTO beamish_timers VALUES ('c1', 1, %s, %s, %s)",
                         (seq, (4 + seq) * S, raw))
    assert store.read(lambda t: t.next_timer_due()) == 6 * S
    assert store.read(lambda t: t.due_timers(20 * S)) == [Timer(1, 1, 10 * S, b"\xa1a")]
    taken, dropped = store.write(lambda t: t.take_due_timers(20 * S))
    assert taken == [Timer(1, 1, 10 * S, b"\xa1a")] and dropped == 3
    assert store.read(lambda t: (t.has_timer(1, 1), t.next_timer_due())) == (False, None)


def test_a_write_that_raises_commits_nothing(store):
    def fails(t):  # type: ignore[no-untyped-def]
        t.append(1, Message("cast", b"x", 0.0))
        raise KeyError("the handler's own error")
    with pytest.raises(KeyError):
        store.write(fails)
    assert store.read(lambda t: (t.depth(1), t.tail(1))) == (0, 1)


def test_only_the_postgres_package_imports_psycopg():
    runtime = Path(__file__).resolve().parents[2] / "runtime"
    wrong = []
    for path in sorted(runtime.rglob("*.py")):
        if path.parent.name == "postgres" and path.parent.parent.name == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level \
                else []
            wrong += [f"{path.relative_to(runtime)}:{node.lineno}" for n in names
                      if n.split(".")[0] == "psycopg"]
    assert wrong == []
    # And the LMDB user's import path never loads it.
    code = ("import sys; import beamish.runtime, beamish.runtime.store; "
            "import beamish.runtime.store.postgres.fencing; "
            "print('psycopg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False", out.stderr
