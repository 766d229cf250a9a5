"""The small public value types: ``Event`` and ``WouldBlock`` (API.md). ``Range`` is native."""

from __future__ import annotations

import enum
import errno
from typing import Any


class Event(enum.IntEnum):
    """``enum mmu_notifier_event``, kernel order and values (SPEC 1.4, T64)."""

    UNMAP = 0
    CLEAR = 1
    PROTECTION_VMA = 2
    PROTECTION_PAGE = 3
    SOFT_DIRTY = 4
    RELEASE = 5
    MIGRATE = 6


class WouldBlock(BlockingIOError):
    """A subscriber refused a non-blockable invalidation (the kernel's ``-EAGAIN``).

    Raised by a non-blockable ``MM.invalidate_range_start`` that a subscriber refused, and by a
    ``Notifier.invalidate_range_start`` to refuse.
    """

    def __init__(self, *args: Any) -> None:
        if not args:
            args = (errno.EAGAIN, "operation would block: non-blockable range refused")
        super().__init__(*args)
        if self.errno is None:
            self.errno = errno.EAGAIN


def _range_from_fields(start: int, end: int, event: int, blockable: bool, vma: Any, owner: Any) -> Any:
    """Unpickle a ``Range``."""
    from ._mmn_fast import Range

    return Range(start, end, event, blockable=blockable, vma=vma, owner=owner)
