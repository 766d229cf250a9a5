"""The native module (Rust, PyO3). Use the public names of ``mmn_fast`` instead."""

from array import array
from collections.abc import Iterator
from typing import Any, Literal, final, overload

from typing_extensions import disjoint_base

from ._types import Event

__all__ = ["IntervalNotifier", "IntervalTreeCore", "Invalidation", "MMCore", "NODE_BYTES", "Range", "SUB_NODE_BYTES"]

NODE_BYTES: int
SUB_NODE_BYTES: int

@final
class Range:
    """The kernel's ``mmu_notifier_range``: a half-open ``[start, end)`` with its event and flags.
    Immutable; ``start >= end`` is ``ValueError``; ``blockable`` is ``bool(blockable)`` (None is
    False), omitted it is True."""

    def __new__(
        cls,
        start: int,
        end: int,
        event: Event | int = ...,
        *,
        blockable: object = ...,
        vma: Any = None,
        owner: Any = None,
    ) -> Range: ...
    @staticmethod
    def migrate(start: int, end: int, owner: Any, *, blockable: object = ..., vma: Any = None) -> Range:
        """A ``MIGRATE`` range carrying the migrating driver's ``owner``."""
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def event(self) -> Event: ...
    @property
    def blockable(self) -> bool: ...
    @property
    def vma(self) -> Any: ...
    @property
    def owner(self) -> Any: ...
    def update_to_read_only(self) -> bool:
        """True only for a ``PROTECTION_VMA`` range whose ``vma`` is given and readable (a vma
        without ``readable`` is not)."""
    def __eq__(self, other: object) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]: ...

@final
class IntervalNotifier:
    """An interval subscription, returned by ``MM.insert_interval_notifier``. Once removed it
    stays readable: ``invalidate_seq``, ``read_begin``, ``read_retry`` and ``check_retry``
    answer as they did just before (``set_seq`` raises ``ValueError``)."""

    @property
    def mm(self) -> Any: ...
    @property
    def start(self) -> int: ...
    @property
    def last(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def ops(self) -> Any: ...
    @property
    def tag(self) -> Any: ...
    @property
    def invalidate_seq(self) -> int: ...
    def read_begin(self, timeout: float | None = None) -> int:
        """This subscription's seq; waits (GIL released) while the current epoch touched it."""
    def read_retry(self, seq: int) -> bool:
        """True if an invalidation rewrote the seq since ``seq`` (call under your lock)."""
    def check_retry(self, seq: int) -> bool:
        """As ``read_retry`` without your lock: true is reliable, false proves nothing."""
    def set_seq(self, cur_seq: int) -> None:
        """Call from ``invalidate`` with its ``cur_seq``, under your lock."""
    def remove(self) -> None:
        """Remove; waits for the closing end during an epoch. Never called back afterwards."""

@final
class Invalidation:
    """``with mm.invalidate(...) as range``: start on enter, end on exit.

    Each accepted entry is paired with exactly one end. Entering the object again while it is
    entered (nested, or from another thread) raises ``RuntimeError`` before starting anything;
    once exited it may be entered again."""

    @property
    def range(self) -> Range: ...
    def __enter__(self) -> Range: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...

@disjoint_base
class MMCore:
    """The native half of ``mmn_fast.MM``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> MMCore: ...
    def insert_interval_notifier(
        self, start: int, length: int, ops: Any = None, *, tag: Any = None
    ) -> IntervalNotifier:
        """Subscribe ``[start, start + length - 1]``; ``ops=None`` makes a native subscription.
        ``ops.invalidate`` is looked up at each call (a replaced method is the one called)."""
    def invalidate_range_start(self, range: Range) -> None:
        """Start an invalidation; a refused non-blockable start raises ``WouldBlock``."""
    def invalidate_range_start_nonblock(self, range: Range) -> bool:
        """A non-blockable start; False when a subscriber refused (then do not call end)."""
    def invalidate_range_end(self, range: Range, *, only_end: bool = False) -> None:
        """End an invalidation started with ``invalidate_range_start``."""
    def invalidate(
        self,
        start: int,
        end: int,
        event: Event | int = ...,
        *,
        blockable: object = ...,
        owner: Any = None,
        vma: Any = None,
    ) -> Invalidation:
        """A context manager pairing start and end."""
    def _invalidate_many(self, starts: Any, ends: Any, event: Event | int) -> int: ...
    def release(self) -> None:
        """The address space goes away: RELEASE to interval subscribers, then classic releases."""
    def drain_invalidated(self) -> list[Any]:
        """The tags of native subscriptions invalidated since the last drain, once each."""
    def intervals(self) -> Iterator[IntervalNotifier]:
        """The interval subscriptions in the tree, in address order."""
    def __len__(self) -> int: ...
    @property
    def invalidate_seq(self) -> int: ...
    @property
    def active_invalidate_ranges(self) -> int: ...
    @property
    def has_notifiers(self) -> bool: ...
    @property
    def _released(self) -> bool: ...
    def _set_classic(self, on: bool) -> None: ...
    def _check_invariants(self) -> None: ...

@disjoint_base
class IntervalTreeCore:
    """The native half of ``mmn_fast.IntervalTree``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> IntervalTreeCore: ...
    def insert(self, start: int, last: int, value: Any = None) -> int:
        """Add ``[start, last]`` with ``value``; returns its handle."""
    def remove(self, handle: int) -> None:
        """Remove the interval ``handle`` names; ``KeyError`` if it is not in the tree."""
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[int, int, Any]]: ...
    def items(self) -> list[tuple[int, int, int, Any]]:
        """``(handle, start, last, value)`` of every interval, ascending start."""
    @overload
    def overlap(
        self, start: int, last: int, *, handles: Literal[False] = False
    ) -> list[tuple[int, int, Any]]: ...
    @overload
    def overlap(
        self, start: int, last: int, *, handles: Literal[True]
    ) -> list[tuple[int, int, int, Any]]: ...
    @overload
    def overlap(
        self, start: int, last: int, *, handles: bool
    ) -> list[tuple[int, int, Any]] | list[tuple[int, int, int, Any]]:
        """Every interval overlapping ``[start, last]``, ascending start, as ``(start, last,
        value)``; with ``handles=True`` as ``(handle, start, last, value)``, whose handle
        ``remove`` takes."""
    def count_overlap(self, start: int, last: int) -> int: ...
    @overload
    def stab(
        self, point: int, *, handles: Literal[False] = False
    ) -> list[tuple[int, int, Any]]: ...
    @overload
    def stab(self, point: int, *, handles: Literal[True]) -> list[tuple[int, int, int, Any]]: ...
    @overload
    def stab(
        self, point: int, *, handles: bool
    ) -> list[tuple[int, int, Any]] | list[tuple[int, int, int, Any]]:
        """The intervals containing ``point``, tuples as in ``overlap``."""
    def _load(self, starts: Any, lasts: Any, values: Any | None) -> None: ...
    def _overlap_many(self, starts: Any, lasts: Any) -> tuple[array[int], array[int]]: ...
