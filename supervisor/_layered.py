"""An immutable ordered mapping whose one-key updates cost O(sqrt n), not a copy of n.

A supervisor's state is immutable (``decide`` is pure and returns a new one), and with
100,000 children a plain ``dict`` copy per event costs milliseconds. `Layered` shares a
base ``dict`` between versions and keeps the few keys that changed since in small layers
(replaced values, removed keys, keys added at the end); when the layers outgrow about
sqrt(n) keys, the next version folds them into a new base (one C-level ``dict`` copy).
An update copies only the layers: O(sqrt n), and the folds add O(sqrt n) per update
amortized. Order is a ``dict``'s: a replaced key keeps its place, a new key (or one
removed and added again) goes to the end.

`Draft` is the mutable working copy one ``decide`` call (or one shell update) edits;
``freeze()`` makes the next immutable version. No version is ever mutated after it is
made, so readers on other threads need no lock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

MIN_LAYERS = 64
"""Layers up to this many keys never fold (below ~4,000 keys, sqrt n is smaller)."""


def fold_above(size: int) -> int:
    """How many layered keys a version over a base of ``size`` keys may hold before the
    next version folds them into a new base (pure)."""
    return max(MIN_LAYERS, math.isqrt(size))


class Layered(Generic[K, V]):
    """An immutable mapping in insertion order, sharing its base with its versions.

    Build one with ``Layered(items)`` (or ``Layered.of(dict)``, which takes ownership of
    the dict); derive new versions with `set`, `without`, or a `draft`.
    """

    __slots__ = ("_base", "_over", "_gone", "_tail")

    def __init__(self, items: Iterable[tuple[K, V]] = ()) -> None:
        """Build it from ``(key, value)`` pairs (a later pair for a key replaces an
        earlier one, in the earlier one's place, as ``dict`` does)."""
        self._base: dict[K, V] = dict(items)
        self._over: dict[K, V] = {}  # new values of keys of the base, in their place
        self._gone: frozenset[K] | set[K] = frozenset()  # keys of the base not in their place
        self._tail: dict[K, V] = {}  # keys after the base's, in order

    @classmethod
    def of(cls, base: dict[K, V]) -> Layered[K, V]:
        """A version over ``base``, which the caller must never change again."""
        new: Layered[K, V] = cls.__new__(cls)
        new._base, new._over, new._gone, new._tail = base, {}, frozenset(), {}
        return new

    def __getitem__(self, key: K) -> V:
        if self._tail and key in self._tail:
            return self._tail[key]
        if self._gone and key in self._gone:
            raise KeyError(key)
        if self._over and key in self._over:
            return self._over[key]
        return self._base[key]

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key``, or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        if self._tail and key in self._tail:
            return True
        return key in self._base and not (self._gone and key in self._gone)

    def __iter__(self) -> Iterator[K]:
        if not self._gone and not self._tail:
            return iter(self._base)
        return self._keys()

    def _keys(self) -> Iterator[K]:
        gone = self._gone
        for key in self._base:
            if key not in gone:
                yield key
        yield from self._tail

    def __len__(self) -> int:
        return len(self._base) - len(self._gone) + len(self._tail)

    def items(self) -> Iterator[tuple[K, V]]:
        """``(key, value)`` pairs in order."""
        for key in self:
            yield key, self[key]

    def layered(self) -> int:
        """How many keys its layers hold (0 right after a fold)."""
        return len(self._over) + len(self._gone) + len(self._tail)

    def draft(self) -> Draft[K, V]:
        """A mutable copy (copies the layers only)."""
        return Draft(self)

    def set(self, key: K, value: V) -> Layered[K, V]:
        """A new version with ``key`` set to ``value``."""
        draft = Draft(self)
        draft[key] = value
        return draft.freeze()

    def without(self, key: K) -> Layered[K, V]:
        """A new version without ``key`` (the same one if it is not there)."""
        if key not in self:
            return self
        draft = Draft(self)
        del draft[key]
        return draft.freeze()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layered):
            return NotImplemented
        return self is other or list(self.items()) == list(other.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Layered({dict(self.items())!r})"


class Draft(Generic[K, V]):
    """A mutable working copy of a `Layered` version: the ``dict`` operations a
    supervisor's decision needs, then `freeze`."""

    __slots__ = ("_base", "_over", "_gone", "_tail")

    def __init__(self, of: Layered[K, V]) -> None:
        """Start from version ``of`` (its base is shared, its layers copied)."""
        self._base = of._base
        self._over = dict(of._over)
        self._gone = set(of._gone)
        self._tail = dict(of._tail)

    def __getitem__(self, key: K) -> V:
        if key in self._tail:
            return self._tail[key]
        if key in self._gone:
            raise KeyError(key)
        if key in self._over:
            return self._over[key]
        return self._base[key]

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key``, or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self._tail or (key in self._base and key not in self._gone)

    def __setitem__(self, key: K, value: V) -> None:
        if key in self._tail or key not in self._base or key in self._gone:
            self._tail[key] = value  # new, or removed from the base and added again: last
        else:
            self._over[key] = value

    def __delitem__(self, key: K) -> None:
        if key in self._tail:
            del self._tail[key]
        elif key in self._base and key not in self._gone:
            self._gone.add(key)
            self._over.pop(key, None)
        else:
            raise KeyError(key)

    def __iter__(self) -> Iterator[K]:
        gone = self._gone
        for key in self._base:
            if key not in gone:
                yield key
        yield from list(self._tail)

    def __len__(self) -> int:
        return len(self._base) - len(self._gone) + len(self._tail)

    def items(self) -> Iterator[tuple[K, V]]:
        """``(key, value)`` pairs in order."""
        for key in self:
            yield key, self[key]

    def freeze(self) -> Layered[K, V]:
        """The immutable version it now describes; its layers fold into a new base when
        they exceed `fold_above` keys. The draft must not be used afterwards."""
        new: Layered[K, V] = Layered.__new__(Layered)
        if len(self._over) + len(self._gone) + len(self._tail) <= fold_above(len(self._base)):
            new._base, new._over, new._gone, new._tail = (self._base, self._over, self._gone,
                                                           self._tail)
            return new
        base = dict(self._base)  # one C-level copy; the layers apply in O(their size)
        for key in self._gone:
            del base[key]
        base.update(self._over)  # keys still in the base: they keep their place
        base.update(self._tail)  # after them, in order (a key removed above comes last)
        new._base, new._over, new._gone, new._tail = base, {}, frozenset(), {}
        return new
