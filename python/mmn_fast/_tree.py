"""``IntervalTree``: the augmented interval tree, usable on its own (API.md).

Invariant (issue 10): this layer holds no lock of its own; the native core copies what a query
needs under its lock and builds Python objects after releasing it, and waits for its lock with
the GIL released, so values' finalizers, gc callbacks and other threads may use the same tree at
any time."""

from __future__ import annotations

from array import array
from typing import Any

from ._mmn_fast import IntervalTreeCore


class IntervalTree(IntervalTreeCore):
    """Closed intervals ``[start, last]`` over u64 with a Python value each.

    ``insert`` / ``remove`` are O(log n); ``overlap`` / ``stab`` O(log n + k), answers in
    ascending ``start``. ``overlap(..., handles=True)``, ``stab(..., handles=True)`` and
    ``items()`` give ``(handle, start, last, value)``, so that what a query found can be
    removed.
    """

    @classmethod
    def from_arrays(cls, starts: Any, lasts: Any, values: Any = None) -> IntervalTree:
        """Build from two buffers of u64 (or sequences of ints); the handle of interval ``i``
        is ``i``. O(n): a radix sort by start, then full nodes level by level."""
        tree = cls()
        tree._load(starts, lasts, values)
        return tree

    def overlap_many(self, starts: Any, lasts: Any) -> tuple[array[int], array[int]]:
        """The matches of many queries ``[starts[i], lasts[i]]`` at once: two ``array('Q')`` of
        equal length, (query index, handle), computed with the GIL released."""
        return self._overlap_many(starts, lasts)

    def __repr__(self) -> str:
        return f"<IntervalTree len={len(self)}>"
