"""The registry's listing queries (tests/unit/runtime/test_listing.py, written for LMDB) on
a `PgStore`: the same agents, the same pages, counts and tree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.agents import PgStore
from beamish.runtime.store.records import AgentRecord
from tests.unit.runtime.test_listing import (  # noqa: F401  (collected here, on PostgreSQL)
    AGENTS,
    test_agents_by_supervisor_groups_pages_and_counts,
    test_agents_page,
    test_paging_visits_every_agent_once,
    test_tree_lists_agents_held_by_record_first_within_the_limit,
)


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PgStore]:
    """The agents of test_listing, in cluster "c1" of a fresh database."""
    s = open_postgres_store(pg_dsn, "c1")
    s.write(lambda t: [t.put_agent(AgentRecord(name, i + 1, supervisor=sup, status=status,
                                               order=i))
                       for i, (name, (status, sup)) in enumerate(AGENTS.items())])
    yield s
    s.close()
