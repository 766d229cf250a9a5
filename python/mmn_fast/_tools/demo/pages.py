"""Pages and page-table entries: the units every other part of the demo counts in."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .device import Device



PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
#: Pages per fault or snapshot round (the driver's chunk size).
CHUNK_PAGES = 64
#: Seconds a fault or snapshot loop may spend retrying (the kernel's HMM_RANGE_DEFAULT_TIMEOUT).
FAULT_TIMEOUT = 1.0
#: The driver's subscription length: the whole address space but its top page.
MIRROR_LENGTH = (1 << 64) - PAGE_SIZE

#: What a device mirrors of a page: ``(value, writable)``.
MirrorEntry = tuple[int, bool]



class Pte(NamedTuple):
    """One page-table entry of the simulated CPU."""

    value: int
    writable: bool
    #: Where the page lives: ``None`` for system memory, else the device holding it.
    device: Device | None = None

    def mirrored(self) -> MirrorEntry:
        """What a device mirror keeps of this entry (the location is not part of it)."""
        return (self.value, self.writable)


class Perm(enum.IntFlag):
    """A snapshot's per-page report (the driver's permission bytes, in our own encoding)."""

    NONE = 0
    READ = 1
    WRITE = 2
    DEVICE_LOCAL = 4
    DEVICE_REMOTE = 8
    ERROR = 16



def pages_in(mirror: dict[int, MirrorEntry], first: int, stop: int) -> list[int]:
    """The mirrored pages in ``[first, stop)``, by whichever scan is shorter."""
    if stop - first > len(mirror):
        return [page for page in mirror if first <= page < stop]
    return [page for page in range(first, stop) if page in mirror]


def visible(entries: dict[int, Pte]) -> dict[int, MirrorEntry]:
    return {page: pte.mirrored() for page, pte in entries.items()}


def pages_end(end: int) -> int:
    """The first page index at or after the byte address ``end``."""
    return (end + PAGE_SIZE - 1) >> PAGE_SHIFT
