"""``MM``: one address space. The interval side and the invalidation entry points are native
(``_mmn_fast.MMCore``); classic mode is ``_classic.ClassicList``, handed to the core once as its
``ClassicHooks`` (``_types``) and called only while a classic notifier is registered."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from ._classic import ClassicList, Notifier
from ._mmn_fast import MMCore
from ._types import Event

if TYPE_CHECKING:
    from ._mmn_fast import _U64s


class MM(MMCore):
    """One address space and its subscriptions: the kernel's ``mm_struct`` as far as
    ``mmu_notifier`` sees it.

    Interval subscriptions (``insert_interval_notifier``) are called only for invalidations
    that overlap them, found in an interval tree in O(log n + k); classic notifiers
    (``register``) see every invalidation. An ``MM`` with no classic notifier pays nothing for
    classic mode. Safe to share between threads; no lock is held while your callbacks run.
    """

    def __init__(self) -> None:
        self._classic = ClassicList(weakref.ref(self))
        self._set_classic_hooks(self._classic)

    # Classic mode (SPEC 2.H-2.L): the list of notifiers lives in ClassicList.
    def register(self, notifier: Notifier) -> None:
        """``mmu_notifier_register``: add ``notifier`` (newest first) to every later
        invalidation of this mm.

        :raises AlreadyRegisteredError: it is registered already.
        :raises ReleasedError: the mm was released.
        :raises TypeError: ``notifier`` is not a ``Notifier``.
        """
        self._classic.register(notifier)

    def unregister(self, notifier: Notifier) -> None:
        """``mmu_notifier_unregister``: calls ``notifier.release(mm)`` if the mm was not
        released yet, then waits for the notifier's callbacks running on other threads.

        :raises NotRegisteredError: it is not registered here.
        """
        self._classic.unregister(notifier)

    def get_notifier(self, cls: type[Notifier]) -> Notifier:
        """``mmu_notifier_get``: the one registered instance of ``cls`` on this mm, made with
        ``cls.alloc_notifier(mm)`` and registered on first use; each call takes a reference
        that ``put()`` gives back.

        :raises ReleasedError: the mm was released.
        :raises AlreadyRegisteredError: ``alloc_notifier`` returned a registered notifier.
        """
        return self._classic.get_notifier(cls)

    def invalidate_range(self, start: int, end: int) -> None:
        """``mmu_notifier_invalidate_range``: calls ``invalidate_range(mm, start, end)`` of
        every classic notifier (interval subscriptions are not called).

        :raises EmptyRangeError: ``start >= end``.
        """
        self._classic.invalidate_range(start, end)

    def clear_flush_young(self, start: int, end: int) -> bool:
        """``mmu_notifier_clear_flush_young``: asks every classic notifier; true if any
        answered true (each is asked, whatever the others answered)."""
        return self._classic.clear_flush_young(start, end)

    def clear_young(self, start: int, end: int) -> bool:
        """``mmu_notifier_clear_young``: as ``clear_flush_young`` without the flush."""
        return self._classic.clear_young(start, end)

    def test_young(self, address: int) -> bool:
        """``mmu_notifier_test_young``: true if a classic notifier says ``address`` was
        accessed."""
        return self._classic.test_young(address)

    def change_pte(self, address: int, pte: object) -> None:
        """``mmu_notifier_change_pte``: hands ``pte`` to every classic notifier's
        ``change_pte(mm, address, pte)``."""
        self._classic.change_pte(address, pte)

    def invalidate_many(self, starts: _U64s, ends: _U64s, event: Event | int = Event.UNMAP) -> int:
        """Start + end for each range ``[starts[i], ends[i])`` in order; returns the interval
        callbacks made (a subscription hit by two ranges counts twice).

        ``starts`` and ``ends`` are buffers of unsigned 64-bit ints (read in place) or
        iterables of ints. Native subscriptions are handled in Rust with the GIL released, a
        chunk of ranges per lock hold: the cheapest way to invalidate many ranges.

        :raises ValueError: the two have different lengths, or a range has ``start >= end``
            (checked for the whole batch before anything changes).
        :raises Exception: what a callback raised: the batch stops at that range, which has
            ended itself (earlier ranges stay done).
        """
        return self._invalidate_many(starts, ends, event)

    def __repr__(self) -> str:
        return (
            f"<MM seq={self.invalidate_seq} active={self.active_invalidate_ranges} "
            f"intervals={len(self)}>"
        )
