"""Fencing's pure decision (`first_stale`): which fence the shard rows read in a commit's
transaction no longer honour; and the StaleEpoch error it becomes."""

from __future__ import annotations

import pytest

from beamish.runtime.errors import ERRORS, StaleEpoch, StoreError
from beamish.runtime.store.postgres.fencing import Fence, ItemResult, ShardRow, first_stale

F3 = Fence(3, "n1", 5)
F4 = Fence(4, "n1", 2)


@pytest.mark.parametrize(("fences", "rows", "stale"), [
    ((), (), None),                                              # unfenced: nothing to check
    ((F3,), (ShardRow(3, "n1", 5),), None),                      # owner and epoch hold
    ((F3,), (ShardRow(3, "n2", 6),), (F3, ShardRow(3, "n2", 6))),  # taken over
    ((F3,), (ShardRow(3, "n1", 6),), (F3, ShardRow(3, "n1", 6))),  # re-granted: old epoch
    ((F3,), (ShardRow(3, "n2", 5),), (F3, ShardRow(3, "n2", 5))),  # owner changed alone
    ((F3,), (ShardRow(3, None, 6),), (F3, ShardRow(3, None, 6))),  # released
    ((F3,), (), (F3, None)),                                      # no row: never granted
    ((F3, F4), (ShardRow(3, "n1", 5), ShardRow(4, "n1", 2)), None),  # every fence holds
    ((F3, F4), (ShardRow(4, "n1", 3), ShardRow(3, "n1", 5)), (F4, ShardRow(4, "n1", 3))),
    ((F3, F4), (ShardRow(3, "n2", 6), ShardRow(4, "n2", 3)), (F3, ShardRow(3, "n2", 6))),
])
def test_first_stale(fences, rows, stale):  # type: ignore[no-untyped-def]
    assert first_stale(fences, rows) == stale


@pytest.mark.parametrize(("owner", "current", "says"), [
    ("n2", 6, "the shard is owned by 'n2' at epoch 6"),
    (None, 6, "the shard has no owner (epoch 6)"),
    (None, None, "the shard has no row"),
])
def test_stale_epoch_says_what_happened_and_what_to_do(owner, current, says):  # type: ignore[no-untyped-def]
    err = StaleEpoch(3, "n1", 5, owner, current)
    assert isinstance(err, StoreError) and ERRORS["StaleEpoch"] is StaleEpoch
    assert "node 'n1' holds shard 3 at epoch 5" in str(err) and says in str(err)
    assert "nothing was committed" in str(err) and "What to do" in str(err)
    assert (err.owner, err.current) == (owner or "", -1 if current is None else current)


def test_an_item_result_gives_its_value_or_raises_its_error():
    assert ItemResult(value=4).get() == 4 and ItemResult(value=4).ok
    failed: ItemResult[int] = ItemResult(error=StaleEpoch(3, "n1", 5, "n2", 6))
    assert not failed.ok
    with pytest.raises(StaleEpoch):
        failed.get()
