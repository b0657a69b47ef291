"""`Layered` (the supervisor state's shared children map): it behaves as an immutable
``dict`` in insertion order, whatever its layers hold, and old versions never change."""

from __future__ import annotations

import random

import pytest

from beamish.supervisor._layered import MIN_LAYERS, Draft, Layered, fold_above


def _apply(m: Layered[str, int], ops: list[tuple[str, str, int]]) -> Layered[str, int]:
    d = m.draft()
    for op, key, value in ops:
        if op == "set":
            d[key] = value
        else:
            del d[key]
    return d.freeze()


# (start, ops, expected items in order): dict semantics, one rule each.
CASES = [
    ({"a": 1, "b": 2}, [("set", "a", 9)], [("a", 9), ("b", 2)]),           # keeps its place
    ({"a": 1, "b": 2}, [("set", "c", 3)], [("a", 1), ("b", 2), ("c", 3)]),  # new: last
    ({"a": 1, "b": 2}, [("del", "a", 0)], [("b", 2)]),
    ({"a": 1, "b": 2}, [("del", "a", 0), ("set", "a", 5)], [("b", 2), ("a", 5)]),  # back: last
    ({"a": 1}, [("set", "c", 3), ("del", "c", 0)], [("a", 1)]),
    ({"a": 1}, [("set", "c", 3), ("del", "c", 0), ("set", "c", 4)], [("a", 1), ("c", 4)]),
    ({"a": 1, "b": 2}, [("set", "a", 9), ("del", "a", 0)], [("b", 2)]),    # a new value goes too
    ({"a": 1, "b": 2}, [("set", "c", 3), ("set", "d", 4), ("set", "c", 5)],
     [("a", 1), ("b", 2), ("c", 5), ("d", 4)]),
    ({}, [("set", "x", 1)], [("x", 1)]),
]


@pytest.mark.parametrize(("start", "ops", "expected"), CASES)
def test_updates_follow_dict_order(start, ops, expected):  # type: ignore[no-untyped-def]
    before = Layered(start.items())
    after = _apply(before, ops)
    assert list(after.items()) == expected and len(after) == len(expected)
    assert list(before.items()) == list(start.items())  # the old version is untouched
    for key, value in expected:
        assert key in after and after[key] == value and after.get(key) == value
    for key in {k for _, k, _ in ops} - {k for k, _ in expected}:
        assert key not in after and after.get(key) is None
        with pytest.raises(KeyError):
            after[key]


def test_deleting_a_missing_key_raises():
    draft: Draft[str, int] = Layered([("a", 1)]).draft()
    del draft["a"]
    for key in ("a", "zz"):
        with pytest.raises(KeyError):
            del draft[key]


@pytest.mark.parametrize(("size", "fold"), [(0, MIN_LAYERS), (4095, MIN_LAYERS),
                                            (10_000, 100), (100_000, 316)])
def test_fold_above_is_sqrt_n_with_a_floor(size, fold):  # type: ignore[no-untyped-def]
    assert fold_above(size) == fold


def test_layers_fold_into_a_new_base_and_stay_small():
    m = Layered((f"k{i}", i) for i in range(10_000))
    for i in range(1_000):
        m = m.set(f"k{i % 50}", -i) if i % 2 else m.without(f"k{i}")
        assert m.layered() <= fold_above(10_000) + 1
    assert m.layered() < fold_above(10_000)  # folded at least once on the way


def test_functional_updates_leave_every_version_as_it_was():
    versions = [Layered([("a", 1)])]
    for i in range(200):
        versions.append(versions[-1].set(f"k{i}", i).without(f"k{i - 3}"))
    for i, v in enumerate(versions[1:]):
        assert list(v) == ["a", *[f"k{j}" for j in range(max(0, i - 2), i + 1)]]


@pytest.mark.parametrize("seed", range(8))
def test_random_updates_match_a_dict(seed):  # type: ignore[no-untyped-def]
    """Against the model (a dict copied per version) over many versions and folds."""
    rng = random.Random(seed)
    model = {f"k{i}": i for i in range(rng.choice([0, 10, 300]))}
    m = Layered(model.items())
    history = [(m, dict(model))]
    for _ in range(400):
        ops = []
        for _ in range(rng.randint(1, 6)):
            key = f"k{rng.randrange(400)}"
            if key in model and rng.random() < 0.4:
                del model[key]
                ops.append(("del", key, 0))
            else:
                model[key] = rng.randrange(1000)
                ops.append(("set", key, model[key]))
        m = _apply(m, ops)
        history.append((m, dict(model)))
        assert list(m.items()) == list(model.items()) and len(m) == len(model)
    for version, expected in history:  # none changed after it was made
        assert list(version.items()) == list(expected.items())


@pytest.mark.parametrize(("left", "right", "equal"), [
    (Layered(), Layered(), True),
    (Layered([("a", 1)]), Layered().set("a", 1), True),        # whatever its layers hold
    (Layered([("a", 1), ("b", 2)]), Layered([("b", 2), ("a", 1)]), False),  # order counts
    (Layered([("a", 1)]), Layered([("a", 2)]), False),
])
def test_versions_are_equal_when_their_items_are_in_order(
        left: Layered[str, int], right: Layered[str, int], equal: bool) -> None:
    assert (left == right) is equal
