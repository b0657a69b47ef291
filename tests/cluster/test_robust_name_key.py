"""lock_key(): one lock per (cluster, name), never shared by two of them (pure)."""

from __future__ import annotations

import pytest

from beamish.runtime.store.postgres.names import lock_key


@pytest.mark.parametrize(("a", "b"), [
    (("c", "x"), ("c", "y")),  # two names of one cluster
    (("c1", "x"), ("c2", "x")),  # one name in two clusters
    (("a:b", "c"), ("a", "b:c")),  # a separator inside a part
    (("a", "1:b"), ("a:1", "b")),
])
def test_lock_keys_differ(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert lock_key(*a) != lock_key(*b)


def test_lock_key_is_stable() -> None:
    assert lock_key("c", "x") == lock_key("c", "x")
