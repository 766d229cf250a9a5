"""mmn_fast: the Linux kernel's MMU-notifier scheme (v5.12) for user space.

Interval subscriptions in an augmented interval tree with the ``invalidate_seq`` collision-retry
protocol, classic notifiers with strict start/end pairing, and the tree on its own. See API.md
for the contract and README.md for a tour.
"""

from ._classic import Notifier, synchronize
from ._mm import MM
from ._mmn_fast import IntervalNotifier, Range
from ._tree import IntervalTree
from ._types import Event, WouldBlock
from ._version import __version__

__all__ = [
    "MM",
    "Event",
    "IntervalNotifier",
    "IntervalTree",
    "Notifier",
    "Range",
    "WouldBlock",
    "__version__",
    "synchronize",
]
