"""``MM``: one address space. The interval side and the invalidation entry points are native
(``_mmn_fast.MMCore``); classic mode is ``_classic.ClassicList``, reached by the core through
``self._classic`` only while a classic notifier is registered."""

from __future__ import annotations

import weakref
from typing import Any

from ._classic import ClassicList, Notifier
from ._mmn_fast import MMCore
from ._types import Event


class MM(MMCore):
    """One address space and its subscriptions (the kernel's ``mm_struct`` as far as
    ``mmu_notifier`` sees it). See API.md for every method."""

    def __init__(self) -> None:
        self._classic = ClassicList(weakref.ref(self))
        self._set_classic_hooks(self._classic)

    # Classic mode (SPEC 2.H-2.L): the list of notifiers lives in ClassicList.
    def register(self, notifier: Notifier) -> None:
        """``mmu_notifier_register`` (R62-R65)."""
        self._classic.register(notifier)

    def unregister(self, notifier: Notifier) -> None:
        """``mmu_notifier_unregister`` (R64): calls ``release`` if still registered, then waits
        for the notifier's callbacks running on other threads."""
        self._classic.unregister(notifier)

    def get_notifier(self, cls: type[Notifier]) -> Notifier:
        """``mmu_notifier_get`` (R66, R67): the shared instance of ``cls`` on this mm."""
        return self._classic.get_notifier(cls)

    def invalidate_range(self, start: int, end: int) -> None:
        """``mmu_notifier_invalidate_range`` (R53): classic notifiers only."""
        self._classic.invalidate_range(start, end)

    def clear_flush_young(self, start: int, end: int) -> bool:
        """``mmu_notifier_clear_flush_young`` (R54, D7)."""
        return self._classic.clear_flush_young(start, end)

    def clear_young(self, start: int, end: int) -> bool:
        """``mmu_notifier_clear_young`` (R55, D7)."""
        return self._classic.clear_young(start, end)

    def test_young(self, address: int) -> bool:
        """``mmu_notifier_test_young`` (R56, D7)."""
        return self._classic.test_young(address)

    def change_pte(self, address: int, pte: Any) -> None:
        """``mmu_notifier_change_pte`` (R57)."""
        self._classic.change_pte(address, pte)

    def invalidate_many(self, starts: Any, ends: Any, event: Any = Event.UNMAP) -> int:
        """Start + end for each range ``[starts[i], ends[i])`` in order; returns the interval
        callbacks made. Native subscriptions are handled with the GIL released."""
        return self._invalidate_many(starts, ends, event)

    def __repr__(self) -> str:
        return (
            f"<MM seq={self.invalidate_seq} active={self.active_invalidate_ranges} "
            f"intervals={len(self)}>"
        )
