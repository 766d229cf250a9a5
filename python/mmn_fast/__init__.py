"""mmn_fast: the Linux kernel's MMU-notifier scheme (v5.12) for user space.

Interval subscriptions in an augmented interval tree with the ``invalidate_seq`` collision-retry
protocol, classic notifiers with strict start/end pairing, and the tree on its own. Every
refusal of bad input is a ``ValueError`` subclass named for it (``EmptyRangeError``,
``SubscriptionRemovedError``, ``ReleasedError``, ``NotRegisteredError``,
``AlreadyRegisteredError``), so ``except ValueError`` still catches them all.
"""

from ._classic import Notifier, synchronize
from ._mm import MM
from ._mmn_fast import (
    AlreadyRegisteredError,
    EmptyRangeError,
    IntervalNotifier,
    Invalidation,
    NotRegisteredError,
    Range,
    ReleasedError,
    SubscriptionRemovedError,
)
from ._tree import IntervalTree
from ._types import Event, WouldBlock
from ._version import __version__

# Every public class reports the package as its home (how users import it, and where pickle
# finds it); the native ones say so in their `#[pyclass(module = "mmn_fast")]`.
for _cls in (MM, Event, IntervalTree, Notifier, WouldBlock):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "MM",
    "AlreadyRegisteredError",
    "EmptyRangeError",
    "Event",
    "IntervalNotifier",
    "IntervalTree",
    "Invalidation",
    "NotRegisteredError",
    "Notifier",
    "Range",
    "ReleasedError",
    "SubscriptionRemovedError",
    "WouldBlock",
    "__version__",
    "synchronize",
]
