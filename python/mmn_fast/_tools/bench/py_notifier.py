"""The notifier a user would write without mmn_fast: the interval side of the kernel's
``mmu_notifier`` scheme in pure Python on top of the ``intervaltree`` package.

It is the benchmark baseline of ``python -m mmn_fast bench`` (issue 7: "a pure-Python
implementation of our own notifier API on top of ``intervaltree``"). It keeps the parts of the
protocol that cost something on the hot path (the odd/even ``invalidate_seq``, the count of active
ranges, the deferred list, native subscriptions recorded for ``drain_invalidated``) and leaves out
what a benchmark never reaches (threads, classic notifiers, waits). It is not a second
implementation to test against: ``tests/`` has the oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from intervaltree import Interval, IntervalTree  # type: ignore[import-untyped, import-not-found, unused-ignore]


class PyRange:
    """``Range(start, end)``: half-open ``[start, end)``."""

    __slots__ = ("blockable", "end", "event", "start")

    def __init__(self, start: int, end: int, event: int = 0, blockable: bool = True) -> None:
        if start >= end:
            raise ValueError("start >= end")
        self.start = start
        self.end = end
        self.event = event
        self.blockable = blockable


class PySubscription:
    """An interval subscription: ``[start, start + length - 1]`` and its callback or tag."""

    __slots__ = ("interval", "invalidate_seq", "mm", "ops", "tag")

    def __init__(self, mm: PyMM, start: int, length: int, ops: Callable[..., Any] | None, tag: Any) -> None:
        self.mm = mm
        self.interval = Interval(start, start + length, self)
        self.ops = ops
        self.tag = tag
        self.invalidate_seq = mm.invalidate_seq

    def set_seq(self, cur_seq: int) -> None:
        self.invalidate_seq = cur_seq

    def remove(self) -> None:
        self.mm._remove(self)


class PyMM:
    """The interval side of ``mmn_fast.MM`` in pure Python (no threads, no classic mode)."""

    def __init__(self) -> None:
        self.tree = IntervalTree()
        self.invalidate_seq = 2
        self.active_invalidate_ranges = 0
        self._deferred: list[tuple[bool, PySubscription]] = []
        self._invalidated: list[Any] = []
        self._seen: set[int] = set()

    def __len__(self) -> int:
        return len(self.tree)

    def insert_interval_notifier(
        self, start: int, length: int, ops: Callable[..., Any] | None = None, *, tag: Any = None
    ) -> PySubscription:
        if length <= 0 or start + length > 1 << 64:
            raise OverflowError("length == 0 or the interval passes 2**64-1")
        sub = PySubscription(self, start, length, ops, tag)
        if self.invalidate_seq & 1:  # an invalidation is walking the tree: defer
            sub.invalidate_seq = self.invalidate_seq - 1
            self._deferred.append((True, sub))
        else:
            self.tree.add(sub.interval)
        return sub

    def _remove(self, sub: PySubscription) -> None:
        if self.invalidate_seq & 1:
            self._deferred.append((False, sub))
        else:
            self.tree.discard(sub.interval)

    def invalidate_range_start(self, rng: PyRange) -> None:
        self._start(rng)

    def _start(self, rng: PyRange) -> int:
        """The start of ``rng``; returns the number of subscriptions it reached."""
        self.active_invalidate_ranges += 1
        hits = self.tree.overlap(rng.start, rng.end)
        if hits:
            self.invalidate_seq |= 1  # as the kernel: odd only when a subscription is hit
        cur_seq = self.invalidate_seq
        for iv in hits:
            sub = iv.data
            if sub.ops is None:
                sub.invalidate_seq = cur_seq
                if id(sub) not in self._seen:
                    self._seen.add(id(sub))
                    self._invalidated.append(sub.tag)
            else:
                sub.ops(sub, rng, cur_seq)
        return len(hits)

    def invalidate_range_end(self, rng: PyRange) -> None:
        if not self.active_invalidate_ranges:
            raise RuntimeError("no invalidation is running")
        self.active_invalidate_ranges -= 1
        if self.active_invalidate_ranges == 0 and self.invalidate_seq & 1:
            self.invalidate_seq += 1
            for inserting, sub in self._deferred:
                if inserting:
                    self.tree.add(sub.interval)
                else:
                    self.tree.discard(sub.interval)
            self._deferred.clear()

    def invalidate_many(self, starts: Any, ends: Any, event: int = 0) -> int:
        calls = 0
        for s, e in zip(starts, ends, strict=True):
            rng = PyRange(s, e, event)
            calls += self._start(rng)
            self.invalidate_range_end(rng)
        return calls

    def drain_invalidated(self) -> list[Any]:
        out, self._invalidated = self._invalidated, []
        self._seen.clear()
        return out
