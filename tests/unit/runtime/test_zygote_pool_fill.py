"""The zygote's pool fill (`zygote.fill_pools`): one object of each obmalloc size class it
means to take, each exactly that size."""

import sys
from collections.abc import Iterator

import pytest

from beamish.runtime.agent import zygote


@pytest.fixture
def filled() -> Iterator[list[object]]:
    zygote.fill_pools(per_class=2)
    try:
        yield zygote._pool_fill[-1]
    finally:
        zygote._pool_fill.pop()


@pytest.mark.parametrize("size", [32, 48, 64, 128, 256, 496, 512])
def test_each_size_class_is_taken_by_objects_of_exactly_its_size(
        filled: list[object], size: int) -> None:
    assert sum(1 for obj in filled if _allocated(obj) == size) == 2


def test_every_class_from_32_to_512_bytes_and_nothing_else(filled: list[object]) -> None:
    assert sorted({_allocated(obj) for obj in filled}) == list(range(32, 513, 16))


def _allocated(obj: object) -> int:
    """Bytes obmalloc hands out for ``obj`` (its size rounded up to the 16-byte class)."""
    return -(-sys.getsizeof(obj) // 16) * 16
