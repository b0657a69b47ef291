"""The owner's re-check reads only the replicated agents that need it (`due_agents`):
those that should run, have mail, or are marked to be woken; idle registered agents are
never read. Against a real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from beamish.mailbox import pack
from beamish.runtime.node.cluster_node import _SHOULD_RUN
from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.postgres.recheck import SHOULD_RUN_STATUSES, due_agents
from beamish.runtime.store.records import AgentRecord, Message


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PgStore]:
    s = open_postgres_store(pg_dsn, "c1")
    yield s
    s.close()


def _msg() -> Message:
    return Message("cast", pack(1), time.time())


# name, status, mail, wake -> expected (has_mail, woken), or None: not read
CASES = [
    ("idle", "sleeping", False, False, None),
    ("stopped", "stopped", False, False, None),
    ("running", "running", False, False, (False, False)),
    ("starting", "starting", False, False, (False, False)),
    ("restarting", "restarting", False, False, (False, False)),
    ("running-mail", "running", True, False, (True, False)),
    ("sleeping-mail", "sleeping", True, False, (True, False)),
    ("sleeping-woken", "sleeping", False, True, (False, True)),
    ("sleeping-both", "sleeping", True, True, (True, True)),
    ("stopped-mail", "stopped", True, False, (True, False)),  # the node decides: not run
]


def test_only_agents_that_should_run_have_mail_or_a_wake_are_read(store: PgStore):
    def setup(t):  # type: ignore[no-untyped-def]
        for i, (name, status, mail, wake, _) in enumerate(CASES):
            t.put_agent(AgentRecord(name, 100 + i, status=status))
            if mail:
                t.append(100 + i, _msg())
                t.append(100 + i, _msg())
            if wake:
                t.put_wake(100 + i, name)
        for i in range(2000):  # registered, asleep, empty mailbox: never read
            t.put_agent(AgentRecord(f"s{i}", 10_000 + i, status="sleeping"))
    store.write(setup)
    got = {d.record.name: (d.has_mail, d.woken) for d in due_agents(store)}
    assert got == {name: want for name, *_, want in CASES if want is not None}


def test_a_mailbox_emptied_by_its_agent_no_longer_makes_it_due(store: PgStore):
    store.write(lambda t: (t.put_agent(AgentRecord("a", 7, status="sleeping")),
                           t.append(7, _msg())))
    assert [d.record.name for d in due_agents(store)] == ["a"]
    store.write(lambda t: t.remove_many(7, [s for s, _ in t.peek(7)]))
    assert due_agents(store) == []


def test_the_partial_index_holds_the_statuses_the_node_starts():
    assert set(SHOULD_RUN_STATUSES) == {str(s) for s in _SHOULD_RUN}
