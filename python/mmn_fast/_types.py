"""The small public value types defined in Python: ``Event`` and ``WouldBlock`` (API.md).

``Range`` and the ``ValueError`` subclasses are native. ``WouldBlock`` is handed to the native
module once, below (it needs an ``__init__``, which a native exception cannot have under the
stable ABI).
"""

from __future__ import annotations

import enum
import errno
from typing import Any

from . import _mmn_fast


class Event(enum.IntEnum):
    """What an invalidation is for: the kernel's ``enum mmu_notifier_event``, same order and values.

    Wherever an event is taken, an ``Event`` or an int in ``0..6`` is accepted; any other int
    raises ``ValueError``. Ranges always hand back the ``Event`` member.
    """

    UNMAP = 0
    CLEAR = 1
    PROTECTION_VMA = 2
    PROTECTION_PAGE = 3
    SOFT_DIRTY = 4
    RELEASE = 5
    MIGRATE = 6


class WouldBlock(BlockingIOError):
    """A subscriber refused a non-blockable invalidation (the kernel's ``-EAGAIN``).

    Raised by ``MM.invalidate_range_start`` on a non-blockable range that a subscriber refused
    (the invalidation is then over: do not call ``invalidate_range_end``). A classic
    ``Notifier.invalidate_range_start`` raises it to refuse a non-blockable range. ``errno`` is
    always ``errno.EAGAIN``, also when raised with no arguments.
    """

    def __init__(self, *args: Any) -> None:
        if not args:
            args = (errno.EAGAIN, "operation would block: non-blockable range refused")
        super().__init__(*args)
        if self.errno is None:
            self.errno = errno.EAGAIN


_mmn_fast.set_would_block(WouldBlock)
