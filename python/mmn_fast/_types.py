"""The small public value types defined in Python: ``Event`` and ``WouldBlock`` (API.md).

``Range`` and the ``ValueError`` subclasses are native. ``Event`` and ``WouldBlock`` are handed
to the native module once, below, so that it never imports this package: ``Event`` is an
``enum.IntEnum`` (an enum of the standard library, which users compare, iterate and pickle as
such), and ``WouldBlock`` needs an ``__init__``, which a native exception cannot have under the
stable ABI.
"""

from __future__ import annotations

import enum
import errno
from typing import Any, Protocol, TypeVar

from . import _mmn_fast
from ._mmn_fast import Range

Token = TypeVar("Token")


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



class ClassicHooks(Protocol[Token]):
    """What the native core calls of classic mode (``rust/bindings/classic.rs``), handed over
    once by ``MM.__init__``; ``_classic.ClassicList`` implements it.

    Called with no core lock held and only while a classic notifier is registered. Every hook
    catches the exceptions of its work and returns them (the core raises them, chained, API.md
    "Errors"); a hook raises only when an exception lands before it did anything, and then the
    core calls ``abort``, ``end`` or ``release`` again (their callbacks are owed).
    """

    def start(self, rng: Range, /) -> tuple[Token, bool, list[BaseException]]:
        """The classic starts of ``rng``: ``(token, refused, errors)``; ``token`` names the
        notifiers given the start, for ``abort``."""
        ...

    def abort(self, token: Token, rng: Range, /) -> list[BaseException]:
        """The ends owed by a start that failed, to the notifiers ``token`` names (R46, D1)."""
        ...

    def end(self, rng: Range, only_end: bool, /) -> list[BaseException]:
        """The classic ends of ``rng`` (R49, R50)."""
        ...

    def release(self) -> list[BaseException]:
        """The classic side of ``MM.release()`` (R60, R61)."""
        ...


_mmn_fast.set_event(Event)
_mmn_fast.set_would_block(WouldBlock)
