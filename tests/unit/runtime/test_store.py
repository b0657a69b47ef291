"""The LMDB store: records, mailbox order, map growth across processes. The tests that take
the ``store`` fixture are the store interface's contract: tests/cluster/test_pg_store.py runs
them on PostgreSQL too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from beamish.runtime.store.lmdb import INITIAL_MAP_SIZE, Store
from beamish.runtime.store.records import Message


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store(str(tmp_path / "s"))
    yield s
    s.close()


def test_mailbox_is_ordered_and_removal_is_by_seq(store):
    seqs = store.write(lambda t: [t.append(7, Message("cast", bytes([i]), 0.0)) for i in range(5)])
    assert seqs == [1, 2, 3, 4, 5]
    store.write(lambda t: t.remove(7, 1))
    head = store.read(lambda t: t.peek(7, 2))
    assert [s for s, _ in head] == [2, 3] and head[0][1].payload == b"\x01"
    assert store.read(lambda t: (t.depth(7), t.depth(8), t.tail(7))) == (4, 0, 6)


def test_state_and_processed_commit_together(store):
    store.write(lambda t: t.put_state(3, 2, b"\x81\xa1n\x01", 10))
    assert store.read(lambda t: (t.get_state(3), t.processed(3))) == ((2, b"\x81\xa1n\x01", 10), 10)


def test_map_grows_past_its_initial_size_and_other_processes_follow(tmp_path):
    path = str(tmp_path / "s")
    store = Store(path)
    blob = b"x" * 65536
    total = 0
    while total < 2 * INITIAL_MAP_SIZE:
        store.write(lambda t: [t.append(1, Message("cast", blob, 0.0)) for _ in range(64)])
        total += 64 * len(blob)
    assert store.map_size() > INITIAL_MAP_SIZE and store.resizes >= 1
    # Another process with the old map size adopts the new one (MapResizedError handled).
    code = ("import sys; from beamish.runtime.store.lmdb import Store; "
            "from beamish.runtime.store.records import Message; s = Store(sys.argv[1]); "
            "s.write(lambda t: t.append(1, Message('cast', b'y' * 65536, 0.0))); "
            "print(s.read(lambda t: t.depth(1)))")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert int(out) == total // 65536 + 1
    assert store.read(lambda t: t.depth(1)) == total // 65536 + 1
    store.close()


def test_a_list_appended_at_once_gets_consecutive_seqs_after_single_appends(store):
    packed = [Message("cast", bytes([i]), 0.0).packed() for i in range(4)]
    got = store.write(lambda t: (t.append_packed(7, packed[0]),
                                 t.append_packed_many(7, packed[1:]),
                                 t.append_packed_many(7, []),
                                 t.append_packed_many(8, packed[:2])))
    assert got == (1, 2, 5, 1)
    assert store.read(lambda t: [t.message_packed(7, s) for s in (1, 2, 3, 4, 5)]) == \
        [*packed, None]
    assert store.read(lambda t: (t.tail(7), t.tail(8), t.depth(8))) == (5, 3, 2)


def test_removing_a_group_removes_its_messages_and_their_attempt_counts(store):
    packed = [Message("cast", bytes([i]), 0.0).packed() for i in range(4)]
    store.write(lambda t: (t.append_packed_many(7, packed), t.append_packed_many(8, packed)))
    store.write(lambda t: t.remove_many(7, [1, 2]))  # no attempts on record: none looked up
    store.write(lambda t: (t.bump_attempts(7, 3), t.bump_attempts(8, 3)))
    store.write(lambda t: t.remove_many(7, [3]))
    assert store.read(lambda t: ([s for s, _ in t.peek(7)], t.attempts(7, 3), t.attempts(8, 3),
                                 t.depth(8))) == ([4], 0, 1, 4)
