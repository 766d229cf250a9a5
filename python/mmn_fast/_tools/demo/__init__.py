"""A user-space ``dmirror``: simulated devices mirror a CPU page table through mmn_fast.

This is the notifier-level core of the kernel's HMM test driver (``lib/test_hmm.c``, SPEC 6.1)
and of its selftests' ``hmm2`` fixture (SPEC 6.2), run against a simulated CPU:

* :class:`Cpu` owns the page table (page index -> :class:`Pte`) and the :class:`~mmn_fast.MM`.
  Every change it makes (write, protect, unmap, migrate to a device, migrate back to system
  memory) happens inside ``mm.invalidate(...)`` over the pages it changes, so each subscriber has
  seen the start before the change and the end after it (R12, R13, R17).
* :class:`Device` keeps a mirror (page -> ``(value, writable)``) under its user lock, and holds
  one interval subscription over its range whose ``invalidate`` drops the mirrored pages, skipping
  MIGRATE invalidations that the device itself owns (R79). Its fault path is the read side of the
  protocol (R25, R28); its snapshot path inserts and removes a temporary subscription per chunk.
* :func:`run_demo` runs a faulting thread against a mutating thread for a while, then checks
  that every mirrored page still equals the page table (T26).

Protocol, as a device uses it
-----------------------------
The three seq operations (R24, R25, R28), per subscription ``sub``::

    set_seq(cur_seq)   in invalidate(), under the user lock: "my mirror is being torn down"
    read_begin()       before reading the page table; waits out an epoch that touched sub
    read_retry(seq)    under the user lock, before committing: true means "start again"

Timeline of one fault round against one invalidation (reader left, writer right)::

    seq = sub.read_begin()
    entries = read page table                    invalidate_range_start:
                                                   lock; sub.set_seq(cur); drop mirror; unlock
                                                 change the page table
    lock                                         invalidate_range_end
    sub.read_retry(seq) is true  -> unlock, again
    ...
    seq = sub.read_begin()       (waits while the epoch that touched sub is open)
    entries = read page table    (sees the change)
    lock; read_retry(seq) false  -> copy entries into the mirror; unlock

Whichever of "commit" and "set_seq" takes the user lock first, the mirror never keeps a page
that an invalidation has started to change: either the commit came first and the callback drops
it, or ``set_seq`` came first and ``read_retry`` is true (pairs with ``Device.invalidate``).

A device's own migration (``MIGRATE`` with ``owner`` = the device) is skipped without
``set_seq``; the migration code updates that device's mirror itself, after the page table, and
only if ``read_retry`` on a seq read before the migration started is false (so that a later
invalidation which reached the device is never overtaken). A migration changes where a page
lives, never its value or permission, so an owner's fault round that raced it commits the same
``(value, writable)``.
"""

from __future__ import annotations

from .cli import add_arguments, main, run_from_args
from .cpu import Cpu
from .device import Device, DeviceBusy, DeviceStats
from .pages import CHUNK_PAGES, FAULT_TIMEOUT, MIRROR_LENGTH, PAGE_SHIFT, PAGE_SIZE, Perm, Pte
from .run import DemoReport, StaleCheck, run_demo

__all__ = [
    "CHUNK_PAGES",
    "FAULT_TIMEOUT",
    "MIRROR_LENGTH",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "Cpu",
    "DemoReport",
    "Device",
    "DeviceBusy",
    "DeviceStats",
    "Perm",
    "Pte",
    "StaleCheck",
    "add_arguments",
    "main",
    "run_demo",
    "run_from_args",
]
