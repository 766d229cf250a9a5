"""The native module (Rust, PyO3). Use the public names of ``mmn_fast`` instead."""

import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, Protocol, final, overload

from typing_extensions import disjoint_base

from ._types import ClassicHooks, Event, WouldBlock

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

__all__ = [
    "AlreadyRegisteredError",
    "EmptyRangeError",
    "IntervalNotifier",
    "IntervalTreeCore",
    "Invalidation",
    "MMCore",
    "NODE_BYTES",
    "NotRegisteredError",
    "Range",
    "ReleasedError",
    "SUB_NODE_BYTES",
    "SubscriptionRemovedError",
    "_range",
    "combine",
    "set_event",
    "set_would_block",
]

NODE_BYTES: int
SUB_NODE_BYTES: int

# -- types only the stub knows (no runtime names) ------------------------------------------------

class _InvalidateOps(Protocol):
    """An ``ops`` object: its ``invalidate`` is looked up at each call."""

    def invalidate(self, sub: IntervalNotifier, range: Range, cur_seq: int, /) -> object: ...

#: What ``insert_interval_notifier`` takes as ``ops``: an object with ``invalidate``, or a
#: callable called as ``ops(sub, range, cur_seq)``. The result counts by its truth value.
_Ops = _InvalidateOps | Callable[[IntervalNotifier, Range, int], object]

#: Addresses in bulk: a buffer of unsigned 64-bit integers (``array("Q")``, numpy ``uint64``),
#: read in place, or any iterable of ints.
_U64s = Buffer | Iterable[int]

# -- exceptions --------------------------------------------------------------------------------

class EmptyRangeError(ValueError):
    """A range or interval that holds no address: ``start >= end`` for a half-open range,
    ``start > last`` for a closed interval. Raised before anything changes."""

class SubscriptionRemovedError(ValueError):
    """The subscription was removed: a second ``IntervalNotifier.remove()`` (raised at once,
    even while the first still waits), or ``set_seq`` on a removed subscription."""

class ReleasedError(ValueError):
    """The address space was released (``MM.release()`` has begun): it takes no new
    subscription or notifier, and a second ``release()`` is refused."""

class NotRegisteredError(ValueError):
    """A classic notifier that is not registered on this address space: ``unregister`` of a
    stranger, or ``put()`` with no reference left."""

class AlreadyRegisteredError(ValueError):
    """A classic notifier registered twice, or an ``alloc_notifier()`` that returned a notifier
    already registered."""

# -- classes ------------------------------------------------------------------------------------

@final
class Range:
    """The kernel's ``mmu_notifier_range``: the half-open ``[start, end)`` being invalidated,
    why (``event``), whether subscribers may sleep (``blockable``), and the caller's ``vma`` and
    ``owner`` (the kernel's ``migrate_pgmap_owner``).

    Immutable, hashable (equal ranges hash equal; a range whose ``vma`` or ``owner`` is
    unhashable is unhashable too), picklable. Building one costs one small allocation.

    :raises EmptyRangeError: ``start >= end`` (a ``ValueError``).
    :raises OverflowError: ``start`` or ``end`` outside ``0..2**64``.
    :raises ValueError: an ``event`` that is not an ``Event`` or an int in ``0..6``.
    """

    def __new__(
        cls,
        start: int,
        end: int,
        event: Event | int = ...,
        *,
        blockable: object = ...,
        vma: object = None,
        owner: object = None,
    ) -> Range:
        """``blockable`` is ``bool(blockable)`` (None is False); omitted, it is True."""
    @staticmethod
    def migrate(start: int, end: int, owner: object, *, blockable: object = ..., vma: object = None) -> Range:
        """A ``MIGRATE`` range carrying the migrating driver's ``owner``
        (``mmu_notifier_range_init_migrate``); raises as the constructor does."""
    @property
    def start(self) -> int:
        """The first address."""
    @property
    def end(self) -> int:
        """One past the last address."""
    @property
    def event(self) -> Event:
        """Why the range is invalidated, always an ``Event`` member."""
    @property
    def blockable(self) -> bool:
        """Whether subscribers may sleep; a subscriber may refuse a non-blockable range."""
    @property
    def vma(self) -> Any:
        """The caller's ``vma`` object, or None."""
    @property
    def owner(self) -> Any:
        """The migrating driver's ``owner``, or None."""
    def update_to_read_only(self) -> bool:
        """``mmu_notifier_range_update_to_read_only``: true only for a ``PROTECTION_VMA`` range
        whose ``vma`` is given and still readable (``vma.readable`` is true; a ``vma`` without
        ``readable`` is not). Raises what reading ``vma.readable`` raises, except
        ``AttributeError``."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Callable[..., Range], tuple[int, int, int, bool, Any, Any]]: ...

@final
class IntervalNotifier:
    """One interval subscription (the kernel's ``mmu_interval_notifier``), returned by
    ``MM.insert_interval_notifier``; never built directly.

    Once removed it stays readable: its attributes keep their last values, and
    ``invalidate_seq``, ``read_begin``, ``read_retry`` and ``check_retry`` answer as they did
    just before ``remove()``. Each method takes the address space's lock once, briefly.
    """

    @property
    def mm(self) -> Any:
        """The ``MM`` it subscribes to."""
    @property
    def start(self) -> int:
        """The first address covered."""
    @property
    def last(self) -> int:
        """The last address covered (inclusive)."""
    @property
    def length(self) -> int:
        """``last - start + 1``."""
    @property
    def ops(self) -> Any:
        """The ``ops`` given at insert; None for a native subscription."""
    @property
    def tag(self) -> Any:
        """The ``tag`` given at insert (what ``MM.drain_invalidated`` reports)."""
    @property
    def invalidate_seq(self) -> int:
        """This subscription's seq: what ``read_begin`` would return now, without waiting."""
    def read_begin(self, timeout: float | None = None) -> int:
        """``mmu_interval_read_begin``: this subscription's seq as read on entry. If the running
        invalidation already called ``set_seq`` on it (or it was inserted during one), first
        waits, with the GIL released, until that invalidation ends. Does not loop: check the
        result with ``read_retry`` under your lock.

        :param timeout: seconds >= 0; None, ``inf`` or a value too large mean no limit.
        :raises TimeoutError: ``timeout`` ran out first.
        :raises RuntimeError: called from an invalidation callback of this mm, where it would
            wait for itself.
        :raises ValueError: a negative or NaN ``timeout`` (``TypeError``: a bool or non-number).
        """
    def read_retry(self, seq: int) -> bool:
        """``mmu_interval_read_retry``: true if an invalidation rewrote the seq since ``seq``
        (``read_begin``'s result). Call it under the lock your ``invalidate`` holds around
        ``set_seq``. :raises TypeError: ``seq`` is not an int."""
    def check_retry(self, seq: int) -> bool:
        """``mmu_interval_check_retry``: as ``read_retry``, callable without your lock; true is
        reliable, false proves nothing."""
    def set_seq(self, cur_seq: int) -> None:
        """``mmu_interval_set_seq``: call from your ``invalidate`` with its ``cur_seq``, under
        your lock. :raises SubscriptionRemovedError: the subscription was removed."""
    def remove(self) -> None:
        """``mmu_interval_notifier_remove``: when it returns the subscription is out of the tree
        and its ``invalidate`` is never called again. During an invalidation that may call it,
        it waits (GIL released) for that invalidation to end; otherwise it costs one tree
        removal, O(log n).

        :raises SubscriptionRemovedError: a second ``remove()``, at once, even while the first
            still waits.
        :raises RuntimeError: from an invalidation callback of this mm, when it would have to
            wait for that invalidation; nothing changes.
        """

@final
class Invalidation:
    """What ``MM.invalidate(...)`` returns: ``with mm.invalidate(start, end) as range:`` calls
    ``invalidate_range_start(range)`` on entry and ``invalidate_range_end(range)`` on exit, even
    when the body raises (the body's exception propagates).

    Each accepted entry is paired with exactly one end. A start that fails (a refusal raises
    ``WouldBlock``, or a callback raised) runs neither the body nor the end. Entering the
    object again while it is entered (nested, or from another thread) raises ``RuntimeError``
    before starting anything; once exited it may be entered again.
    """

    @property
    def range(self) -> Range:
        """The range subscribers receive."""
    def __enter__(self) -> Range:
        """Start the invalidation; returns its range. Raises what ``invalidate_range_start``
        raises (then nothing is left to end), or ``RuntimeError`` while already entered."""
    def __exit__(self, exc_type: object, exc: object, tb: object, /) -> bool:
        """End the invalidation; returns False (the body's exception propagates). Raises what
        ``invalidate_range_end`` raises (callback exceptions, chained)."""

@disjoint_base
class MMCore:
    """The native half of ``mmn_fast.MM`` (see ``MM``)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> MMCore: ...
    def insert_interval_notifier(
        self, start: int, length: int, ops: _Ops | None = None, *, tag: object = None
    ) -> IntervalNotifier:
        """``mmu_interval_notifier_insert``: subscribe ``[start, start + length - 1]``.

        ``ops.invalidate(sub, range, cur_seq)`` (looked up at each call, so a replaced method is
        the one called) or ``ops(sub, range, cur_seq)`` is called for every invalidation that
        overlaps; it must call ``sub.set_seq(cur_seq)`` under your lock and return true, or
        return false to refuse a non-blockable range. ``ops=None`` makes a native subscription:
        its invalidation runs entirely in Rust and ``drain_invalidated`` reports its ``tag``.
        Inserted during an invalidation, it joins the tree when that ends. Costs O(log n).

        :raises OverflowError: ``length == 0`` or ``start + length - 1`` past ``2**64 - 1``.
        :raises TypeError: ``ops`` has no callable ``invalidate`` and is not callable.
        :raises ReleasedError: the address space was released.
        """
    def invalidate_range_start(self, range: Range) -> None:
        """``mmu_notifier_invalidate_range_start``: call every overlapping subscription (in
        address order), then the classic notifiers; pair it with ``invalidate_range_end``.
        Costs O(log n + k) for k overlapping subscriptions, plus their callbacks.

        :raises WouldBlock: a subscriber refused a non-blockable range; the start has ended
            itself, so do not call ``invalidate_range_end``.
        :raises Exception: what the callbacks raised (the first, the others chained on its
            ``__context__``); the start has ended itself, as for a refusal.
        """
    def invalidate_range_start_nonblock(self, range: Range) -> bool:
        """``mmu_notifier_invalidate_range_start_nonblock``: as ``invalidate_range_start`` with
        subscribers shown a non-blockable range; returns False instead of raising
        ``WouldBlock`` (then do not call ``invalidate_range_end``)."""
    def invalidate_range_end(self, range: Range, *, only_end: bool = False) -> None:
        """``mmu_notifier_invalidate_range_end`` (``_only_end`` with ``only_end=True``): end an
        invalidation started with ``invalidate_range_start``; the last end of an epoch applies
        deferred inserts and removals and wakes the waiters.

        :raises RuntimeError: no invalidation is running; nothing changes.
        :raises Exception: what classic notifiers raised, chained.
        """
    def invalidate(
        self,
        start: int,
        end: int,
        event: Event | int = ...,
        *,
        blockable: object = ...,
        owner: object = None,
        vma: object = None,
    ) -> Invalidation:
        """A context manager pairing start and end over ``Range(start, end, event, ...)``.
        Raises as ``Range`` does, before anything starts."""
    def _invalidate_many(self, starts: _U64s, ends: _U64s, event: Event | int) -> int: ...
    def release(self) -> None:
        """``mmu_notifier_release``: the address space goes away. Interval subscribers get one
        ``RELEASE`` invalidation over every address, then classic notifiers their ``release``;
        afterwards the mm takes no new subscription or notifier.

        :raises ReleasedError: a second ``release()``.
        :raises Exception: what the callbacks raised, chained (every callback still ran).
        """
    def drain_invalidated(self) -> list[Any]:
        """The tags of native subscriptions invalidated since the last drain, each once per
        drain, and forgets them. Costs O(entries)."""
    def intervals(self) -> Iterator[IntervalNotifier]:
        """The interval subscriptions in the tree, in address order: a snapshot taken under the
        lock, O(n)."""
    def __len__(self) -> int:
        """The number of interval subscriptions in the tree."""
    @property
    def invalidate_seq(self) -> int:
        """The address space's seq: odd while an invalidation runs."""
    @property
    def active_invalidate_ranges(self) -> int:
        """Starts not yet ended."""
    @property
    def has_notifiers(self) -> bool:
        """``mm_has_notifiers``: true once anything subscribed, for ever."""
    @property
    def _released(self) -> bool: ...
    def _set_classic(self, on: bool) -> None: ...
    def _set_classic_hooks(self, hooks: ClassicHooks[Any]) -> None: ...
    def _check_invariants(self) -> None: ...
    def _side_bytes(self) -> int: ...

def combine(errors: list[BaseException]) -> BaseException:
    """Chain ``errors[1:]`` on the ``__context__`` of ``errors[0]`` and return it (not API)."""

def set_event(cls: type[Event]) -> None:
    """Hand the ``Event`` enum to the native module (once, at import; not API)."""

def set_would_block(cls: type[WouldBlock]) -> None:
    """Hand the ``WouldBlock`` class to the native module (once, at import; not API)."""

def _range(start: int, end: int, event: int, blockable: bool, vma: object, owner: object) -> Range:
    """Rebuild a pickled ``Range`` (not API)."""

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
    def _check_invariants(self) -> None: ...
