"""`encode_batch`: what a ``cast_many`` commits, and the items it refuses before anything is
written (one test per rule; the sends themselves are in tests/integration)."""

from __future__ import annotations

from typing import Any

import pytest

from beamish.mailbox import unpack
from beamish.runtime.errors import BadMessage, ConfigError, MessageTooLarge
from beamish.runtime.messaging.messenger import encode_batch
from beamish.runtime.store.records import Message

LIMIT = 1024


def _payloads(batch: dict[str, list[bytes]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, packed in batch.items():
        records = [Message.from_packed(p) for p in packed]
        assert all(isinstance(r, Message) and r.kind == "cast" for r in records)
        out[name] = [unpack(r.payload) for r in records]
    return out


@pytest.mark.parametrize(("items", "expected"), [
    ([], {}),
    ([("a", 1)], {"a": [1]}),
    ([("a", 1), ("b", 2), ("a", 3)], {"a": [1, 3], "b": [2]}),  # each agent in list order
    ((["b", {"x": [1]}], ["a", None]), {"b": [{"x": [1]}], "a": [None]}),  # any sequence
    (iter([("a", "x"), ("a", "y")]), {"a": ["x", "y"]}),  # any iterable
])
def test_items_are_grouped_by_agent_in_list_order(items: Any, expected: dict[str, Any]) -> None:
    batch = encode_batch(items, LIMIT)
    assert _payloads(batch) == expected
    assert list(batch) == list(expected)  # names in order of first appearance


@pytest.mark.parametrize(("items", "error", "match"), [
    ("ab", ConfigError, "not str"),
    ({"a": 1}, ConfigError, "not dict"),
    (5, ConfigError, "not int"),
    ([("a", 1), "a"], ConfigError, "item 1 is str"),
    ([("a", 1, 2)], ConfigError, "item 0 is tuple"),
    ([("a", 1), ("no such name!", 2)], ConfigError, "cast_many item 1: name"),
    ([("a", 1), (3, 2)], ConfigError, "cast_many item 1: name"),
    ([("a", 1), ("b", object())], BadMessage, "cast_many item 1 .*'b'"),
    ([("a", {(1, 2): 3})], BadMessage, "cast_many item 0"),
    ([("a", 1), ("a", b"x" * LIMIT)], MessageTooLarge, "cast_many item 1"),
])
def test_an_item_that_cannot_be_sent_is_named(items: Any, error: type[Exception],
                                              match: str) -> None:
    with pytest.raises(error, match=match):
        encode_batch(items, LIMIT)
