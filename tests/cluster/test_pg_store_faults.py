"""The PostgreSQL store when the server goes away: a real server killed (SIGKILL) or
stopped under a writer, then started again. A ledger of every write's outcome is checked
against what is stored, exactly: every acknowledged write is there, no write reported
failed is, and each write whose commit outcome was unknown is there exactly when the
server says it committed. A commit cut off in flight is reported as unknown (never as
done nor as failed), and the store serves again once the server is back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from beamish.runtime.errors import CommitOutcomeUnknown, StoreUnavailable
from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.postgres.fencing import Fence, GroupItem
from beamish.runtime.store.records import Message

CLUSTER = "c1"
FENCE = Fence(3, "n1", 5)


def _cast(payload: bytes) -> Message:
    return Message("cast", payload, 0.0)


def _store(dsn: str) -> PgStore:
    store = open_postgres_store(dsn, CLUSTER, FENCE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO beamish_shards (cluster, shard, owner, epoch) VALUES "
                     "(%s, 3, 'n1', 5) ON CONFLICT DO NOTHING", (CLUSTER,))
    return store


class Ledger:
    """What each write was told: acknowledged, failed (nothing committed), or unknown
    (with its commit's number in the store)."""

    def __init__(self) -> None:
        self.acked: list[bytes] = []
        self.failed: list[bytes] = []
        self.unknown: dict[bytes, int] = {}

    def check(self, store: PgStore) -> dict[str, int]:
        """Compare with the stored mailbox exactly; return the counts."""
        stored = [m.payload for _, m in store.read(lambda t: t.peek(1, 10_000_000))]
        assert len(stored) == len(set(stored)), "a write applied twice"
        outcomes = {n: store.commit_outcome(n) for n in set(self.unknown.values())}
        assert None not in outcomes.values(), outcomes
        committed = {p for p, n in self.unknown.items() if outcomes[n]}
        assert set(stored) == set(self.acked) | committed
        assert not set(stored) & set(self.failed)
        return {"acked": len(self.acked), "failed": len(self.failed),
                "unknown": len(self.unknown), "unknown_committed": len(committed)}


def _restart(pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the server again, as a server of the machine, not a process of this test:
    without the test session's mark, which the leak check looks for."""
    with monkeypatch.context() as m:
        m.delenv("BEAMISH_TEST_SESSION", raising=False)
        pg_server.start()


def _write_one(store: PgStore, payloads: list[bytes]) -> None:
    store.write(lambda t: t.append(1, _cast(payloads[0])))


def _write_group(store: PgStore, payloads: list[bytes]) -> None:
    results = store.write_group([GroupItem(lambda t, p=p: t.append(1, _cast(p)), (FENCE,))
                                 for p in payloads])
    for r in results:
        r.get()  # no item may fail alone here


@pytest.mark.parametrize("how", ["kill", "stop"])
@pytest.mark.parametrize(("per_write", "write"), [(1, _write_one), (10, _write_group)],
                         ids=["write", "write_group"])
@pytest.mark.cluster_long
def test_a_server_restart_under_a_writer_loses_no_acknowledged_write(
        pg_server, pg_dsn, monkeypatch, how: str, per_write: int,
        write: Callable[[PgStore, list[bytes]], None]) -> None:
    store = _store(pg_dsn)
    ledger = Ledger()
    warmed, down_seen, back, done, stop = (threading.Event() for _ in range(5))
    acked_after_restart = [0]
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            payloads = [b"w%d" % (i + k) for k in range(per_write)]
            i += per_write
            try:
                write(store, payloads)
            except StoreUnavailable:
                ledger.failed += payloads
                down_seen.set()
                stop.wait(0.02)  # pacing while the server is down, not a synchronisation
                continue
            except CommitOutcomeUnknown as exc:
                ledger.unknown.update({p: exc.commit for p in payloads})
                down_seen.set()
                continue
            except BaseException as exc:  # the test fails on it below
                errors.append(exc)
                return
            ledger.acked += payloads
            if len(ledger.acked) >= 30 * per_write:
                warmed.set()
            if back.is_set():
                acked_after_restart[0] += 1
                if acked_after_restart[0] >= 30:
                    done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert warmed.wait(60), errors
        if how == "kill":
            pg_server.kill()
        else:
            pg_server.stop()
        assert down_seen.wait(60), errors
        _restart(pg_server, monkeypatch)
        back.set()
        assert done.wait(60), errors
    finally:
        stop.set()
        thread.join(60)
        if not pg_server.running():
            _restart(pg_server, monkeypatch)
    assert errors == []
    counts = ledger.check(store)
    print(how, write.__name__, counts)  # shown with -s: what the faults hit
    assert counts["acked"] >= 60 * per_write and counts["failed"] + counts["unknown"] >= 1
    store.close()


def test_a_commit_cut_off_in_flight_is_reported_unknown_and_resolved_later(pg_dsn):
    """The connection dies during the COMMIT itself (a deferred trigger, fired by the
    commit, ends its own backend): the write is neither acknowledged nor failed, but
    unknown; the store reconnects at its next use and says how it ended."""
    store = _store(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("""CREATE FUNCTION t_die() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL;
                        END $$""")
        conn.execute("CREATE CONSTRAINT TRIGGER t_die AFTER INSERT ON beamish_mailbox "
                     "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.agent_id = 666) "
                     "EXECUTE FUNCTION t_die()")
    try:
        assert store.write(lambda t: t.append(1, _cast(b"before"))) == 1
        with pytest.raises(CommitOutcomeUnknown) as err:
            store.write(lambda t: (t.append(1, _cast(b"cut")), t.append(666, _cast(b"x"))))
        assert err.value.commit > 0 and "may or may not have committed" in str(err.value)
        assert store.commit_outcome(err.value.commit) is False  # the backend died first
        assert store.write(lambda t: t.append(1, _cast(b"after"))) == 2  # the tail: unmoved
        assert store.read(lambda t: [m.payload for _, m in t.peek(1)]) == [b"before", b"after"]
        committed = store.write(lambda t: t.append(1, _cast(b"more")))
        assert committed == 3
    finally:
        store.close()


@pytest.mark.cluster_long
def test_a_commit_in_flight_when_the_server_is_killed_is_unknown_until_it_is_back(
        pg_server, pg_dsn, monkeypatch):
    """A commit waits inside the server (a deferred trigger waits for a lock the test
    holds) when the server is SIGKILLed: the writer is told the outcome is unknown; once
    the server is back, the store reconnects and says it did not commit."""
    from tests.conftest import wait_until
    store = _store(f"{pg_dsn}?application_name=writer")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("""CREATE FUNCTION t_wait() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN PERFORM pg_advisory_xact_lock_shared(42); RETURN NULL;
                        END $$""")
        conn.execute("CREATE CONSTRAINT TRIGGER t_wait AFTER INSERT ON beamish_mailbox "
                     "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.agent_id = 2) "
                     "EXECUTE FUNCTION t_wait()")
    outcome: list[BaseException] = []

    def writer() -> None:
        try:
            store.write(lambda t: (t.append(1, _cast(b"in flight")), t.append(2, _cast(b"x"))))
        except Exception as exc:  # checked below
            outcome.append(exc)

    admin = psycopg.connect(pg_dsn, autocommit=True)
    thread = threading.Thread(target=writer)
    try:
        assert store.write(lambda t: t.append(1, _cast(b"before"))) == 1
        admin.execute("SELECT pg_advisory_lock(42)")
        thread.start()
        wait_until(lambda: admin.execute(
            "SELECT wait_event_type, query FROM pg_stat_activity WHERE application_name = "
            "'writer'").fetchone() == ("Lock", "COMMIT"), what="the commit to wait")
        pg_server.kill()
        thread.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], CommitOutcomeUnknown), outcome
        with pytest.raises(StoreUnavailable):  # still down
            store.commit_outcome(outcome[0].commit)
        _restart(pg_server, monkeypatch)
        assert store.commit_outcome(outcome[0].commit) is False
        assert store.read(lambda t: [m.payload for _, m in t.peek(1)]) == [b"before"]
    finally:
        admin.close()
        if not pg_server.running():
            _restart(pg_server, monkeypatch)
        store.close()


def test_a_server_that_cannot_be_reached_is_store_unavailable_never_a_driver_error(
        pg_server, pg_dsn, monkeypatch):
    from pgserver import free_port  # scripts/, on the path by conftest
    with pytest.raises(StoreUnavailable, match="unavailable.*nothing was committed"):
        open_postgres_store(f"postgresql://postgres@127.0.0.1:{free_port()}/x", CLUSTER)
    store = _store(pg_dsn)
    try:
        pg_server.stop()
        try:
            with pytest.raises(StoreUnavailable):
                store.write(lambda t: t.append(1, _cast(b"x")))
            with pytest.raises(StoreUnavailable):
                store.read(lambda t: t.depth(1))
        finally:
            _restart(pg_server, monkeypatch)
        assert store.write(lambda t: t.append(1, _cast(b"y"))) == 1  # reconnected
    finally:
        store.close()

