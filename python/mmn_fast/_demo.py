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

import argparse
import enum
import itertools
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (
    Callable,
    NamedTuple,
    Optional,
    TextIO,
)

from . import MM, Event, IntervalNotifier, Range, WouldBlock

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
#: A hook run inside every CPU invalidation, after its start returned, before the change.
Hook = Callable[["Cpu", Range], None]


class Pte(NamedTuple):
    """One page-table entry of the simulated CPU."""

    value: int
    writable: bool
    #: Where the page lives: ``None`` for system memory, else the device holding it.
    device: Optional[Device] = None

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


class DeviceBusy(TimeoutError):
    """A fault or snapshot loop ran out of time retrying (the driver's ``-EBUSY``)."""


@dataclass
class DeviceStats:
    """Counters of one device; updated under the device's stats lock, read when idle."""

    faults: int = 0
    """Fault rounds committed."""
    pages_mirrored: int = 0
    """Pages copied into the mirror by committed fault rounds."""
    retries: int = 0
    """Fault rounds thrown away because ``read_retry`` was true."""
    migrated_back: int = 0
    """Pages a fault moved back to system memory from another device first."""
    busy: int = 0
    """Fault or snapshot loops that hit ``FAULT_TIMEOUT``."""
    snapshots: int = 0
    """Snapshot chunks committed (one temporary subscription each)."""
    snapshot_retries: int = 0
    """Snapshot rounds thrown away because ``read_retry`` was true."""
    commit_mismatches: int = 0
    """Commits whose page-table read differed from the page table under the lock (must be 0)."""
    invalidations: int = 0
    """Calls of the main subscription's ``invalidate`` that tore the mirror down."""
    pages_dropped: int = 0
    """Mirror entries those calls dropped."""
    own_migrations_skipped: int = 0
    """MIGRATE invalidations owned by this device, skipped without ``set_seq`` (R79)."""
    refused: int = 0
    """Non-blockable invalidations refused because the user lock was busy."""
    migrated_in: int = 0
    """Pages the migration code put into the mirror."""
    migrations_raced: int = 0
    """Migrations whose mirror update was dropped because a later invalidation reached us."""


class Device:
    """A simulated device that mirrors the CPU's pages (one ``dmirror`` open file).

    The mirror and the subscription's seq are guarded by ``lock`` (the user lock). Creating a
    device inserts its interval subscription into ``cpu.mm``; :meth:`close` removes it. The
    device itself is the subscription's ``ops``.
    """

    def __init__(
        self, cpu: Cpu, name: str, *, start: int = 0, length: int = MIRROR_LENGTH
    ) -> None:
        self.cpu = cpu
        self.name = name
        #: The user lock: held by ``invalidate`` around ``set_seq`` and by every commit.
        self.lock = threading.Lock()
        #: page index -> ``(value, writable)``; read or write it only under ``lock``.
        self.mirror: dict[int, MirrorEntry] = {}
        self.stats = DeviceStats()
        self._stats_lock = threading.Lock()
        self.sub: IntervalNotifier = cpu.mm.insert_interval_notifier(start, length, self, tag=name)
        cpu.devices.append(self)

    def __repr__(self) -> str:
        return f"<Device {self.name} mirrored={len(self.mirror)}>"

    def close(self) -> None:
        """Remove the subscription (waits out a running epoch) and detach from the CPU."""
        self.sub.remove()
        self.cpu.devices.remove(self)

    def overlaps(self, rng: Range) -> bool:
        """Whether this device's subscription overlaps ``rng`` (so its ``invalidate`` runs)."""
        return self.sub.start <= rng.end - 1 and rng.start <= self.sub.last

    # -- the invalidation side ----------------------------------------------------------------

    def invalidate(self, sub: IntervalNotifier, rng: Range, cur_seq: int) -> bool:
        """The subscription's callback: tear down the mirrored pages of ``rng``.

        Runs on the invalidating thread with no core lock held. Skips (true, no ``set_seq``) a
        MIGRATE that this device owns (R79, R80); otherwise takes the user lock, or only tries it
        on a non-blockable range and refuses (false) when it is busy (R16). Pairs with the
        ``read_retry`` of :meth:`fault`.
        """
        if rng.event == Event.MIGRATE and rng.owner is self:
            self._count(own_migrations_skipped=1)
            self.cpu.note(self.name, "skipped (own migration)", 0)
            return True
        if not self.lock.acquire(blocking=rng.blockable):
            self._count(refused=1)
            self.cpu.note(self.name, "refused (lock busy)", 0)
            return False
        try:
            sub.set_seq(cur_seq)
            dropped = self._drop(rng.start >> PAGE_SHIFT, _pages_end(rng.end))
        finally:
            self.lock.release()
        self._count(invalidations=1, pages_dropped=dropped)
        self.cpu.note(self.name, "dropped", dropped)
        return True

    def _drop(self, first: int, stop: int) -> int:
        """Drop mirror entries of pages ``[first, stop)``; the caller holds ``self.lock``."""
        doomed = _pages_in(self.mirror, first, stop)
        for page in doomed:
            del self.mirror[page]
        return len(doomed)

    def migrated_in(self, seq: int, entries: dict[int, Pte]) -> int:
        """The migration code's own mirror update, after the page table changed.

        ``seq`` is ``self.sub.read_begin()`` taken before the migration's invalidation started.
        Called from inside that invalidation, with no user lock held. Returns the pages added (0
        when a later invalidation reached this device meanwhile).
        """
        with self.lock:
            if self.sub.read_retry(seq):
                self._count(migrations_raced=1)
                return 0
            for page, pte in entries.items():
                self.mirror[page] = pte.mirrored()
        self._count(migrated_in=len(entries))
        return len(entries)

    # -- the read side ------------------------------------------------------------------------

    def fault(
        self,
        first: int,
        npages: int,
        *,
        timeout: float = FAULT_TIMEOUT,
        after_read: Optional[Callable[[int], None]] = None,
    ) -> int:
        """Mirror the present pages of ``[first, first + npages)``; returns how many.

        The driver's fault loop (SPEC 6.1): ``read_begin``, read the page table without the user
        lock (moving pages that live on another device back to system memory first), take the
        lock, and commit only if ``read_retry`` is false. Must not be called with ``self.lock``
        held nor from inside an invalidation callback (R32). ``after_read(attempt)``, when given,
        runs between the read and the lock (a test hook that forces an interleaving).
        Raises :class:`DeviceBusy` after ``timeout`` seconds of retrying.
        """
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:  # Loop invariant: nothing of this call is in the mirror yet.
            seq = self._read_begin(deadline)
            entries = self.cpu.read_ptes(first, npages)
            foreign = [p for p, pte in entries.items() if pte.device not in (None, self)]
            if foreign:
                moved = self.cpu.migrate_to_ram(foreign)
                self._count(migrated_back=moved)
                continue
            if after_read is not None:
                after_read(attempt)
            attempt += 1
            with self.lock:
                if self.sub.read_retry(seq):
                    self._count(retries=1)
                    continue
                self._check_commit(first, npages, entries)
                for page, pte in entries.items():
                    self.mirror[page] = pte.mirrored()
            self._count(faults=1, pages_mirrored=len(entries))
            return len(entries)

    def snapshot(
        self,
        first: int,
        npages: int,
        *,
        timeout: float = FAULT_TIMEOUT,
        after_read: Optional[Callable[[int], None]] = None,
    ) -> list[Perm]:
        """Report the pages of ``[first, first + npages)`` without mirroring them.

        The driver's snapshot (SPEC 6.1): a temporary subscription covering exactly the chunk is
        inserted, the fault loop runs against its seq, and it is removed again, so inserts and
        removes happen while other threads invalidate. Same caller contract as :meth:`fault`.
        """
        deadline = time.monotonic() + timeout
        ops, tag = _SnapshotOps(self), f"{self.name}/snapshot"
        tmp = self.cpu.mm.insert_interval_notifier(
            first << PAGE_SHIFT, npages << PAGE_SHIFT, ops, tag=tag
        )
        try:
            attempt = 0
            while True:  # Loop invariant: tmp is inserted (or pending) and nothing is reported.
                seq = self._read_begin(deadline, tmp)
                entries = self.cpu.read_ptes(first, npages)
                if after_read is not None:
                    after_read(attempt)
                attempt += 1
                with self.lock:
                    if tmp.read_retry(seq):
                        self._count(snapshot_retries=1)
                        continue
                    self._check_commit(first, npages, entries)
                self._count(snapshots=1)
                return [self._perm(entries.get(page)) for page in range(first, first + npages)]
        finally:
            tmp.remove()

    def _perm(self, pte: Optional[Pte]) -> Perm:
        if pte is None:
            return Perm.ERROR
        if pte.device is not None and pte.device is not self:
            return Perm.DEVICE_REMOTE
        perm = Perm.READ | Perm.WRITE if pte.writable else Perm.READ
        return perm | Perm.DEVICE_LOCAL if pte.device is self else perm

    def _read_begin(self, deadline: float, sub: Optional[IntervalNotifier] = None) -> int:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            return (sub or self.sub).read_begin(remaining)
        except TimeoutError:
            self._count(busy=1)
            message = f"{self.name}: still colliding with invalidations at the deadline"
            raise DeviceBusy(message) from None

    def _check_commit(self, first: int, npages: int, entries: dict[int, Pte]) -> None:
        """Under ``self.lock`` with ``read_retry`` false, no change to these pages can have
        started since they were read (T26); count it if the page table says otherwise."""
        now = self.cpu.read_ptes(first, npages)
        if _visible(now) != _visible(entries):
            self._count(commit_mismatches=1)

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)


class _SnapshotOps:
    """Ops of a snapshot's temporary subscription: ``set_seq`` under the user lock, no MIGRATE
    filter, nothing to tear down (SPEC 6.1)."""

    def __init__(self, device: Device) -> None:
        self.device = device

    def invalidate(self, sub: IntervalNotifier, rng: Range, cur_seq: int) -> bool:
        device = self.device
        if not device.lock.acquire(blocking=rng.blockable):
            device.cpu.note(f"{device.name}/snapshot", "refused (lock busy)", 0)
            return False
        try:
            sub.set_seq(cur_seq)
        finally:
            device.lock.release()
        device.cpu.note(f"{device.name}/snapshot", "seq set", 0)
        return True


@dataclass
class _Trace:
    """What the CPU's invalidations did: totals, and a few sample lines per operation."""

    samples_per_op: int
    by_op: Counter[str] = field(default_factory=Counter)
    by_event: Counter[str] = field(default_factory=Counter)
    reached: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    sampled: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, rng: Range, notes: list[tuple[str, str, int]], refused: bool) -> None:
        with self.lock:
            self.by_op[op] += 1
            self.by_event[rng.event.name] += 1
            for who, action, _ in notes:
                self.reached[(who, action)] += 1
            if self.sampled[op] >= self.samples_per_op:
                return
            self.sampled[op] += 1
        owner = f" owner={rng.owner.name}" if isinstance(rng.owner, Device) else ""
        flags = "" if rng.blockable else " non-blockable"
        reached = "; ".join(
            f"{who}: {action} {pages}" if action == "dropped" else f"{who}: {action}"
            for who, action, pages in notes
        )
        outcome = " => WouldBlock" if refused else ""
        line = (
            f"{op:<12} [{rng.start:#09x}, {rng.end:#09x}) {rng.event.name}{owner}{flags}"
            f" -> {reached or 'no subscriber'}{outcome}"
        )
        with self.lock:
            self.samples.append(line)


class Cpu:
    """The simulated CPU: the page table and the address space the devices subscribe to.

    Every method that changes the page table is one invalidation (or one per run of pages) over
    exactly the pages it changes; page-table writers are serialised by an internal lock taken
    inside the invalidation, after its start. Safe to call from any thread, never from inside an
    invalidation callback.
    """

    def __init__(self, *, samples_per_op: int = 2) -> None:
        self.mm = MM()
        self.devices: list[Device] = []
        #: Run inside every invalidation after its start returned (see :class:`StaleCheck`).
        self.hooks: list[Hook] = []
        self._pt: dict[int, Pte] = {}
        self._pt_lock = threading.Lock()
        self._values = itertools.count(1)
        self._local = threading.local()
        self._trace = _Trace(samples_per_op)

    # -- reading ------------------------------------------------------------------------------

    def read_ptes(self, first: int, npages: int) -> dict[int, Pte]:
        """The present entries of ``[first, first + npages)``, read without any lock (each entry
        is read atomically; the set as a whole may be torn by a concurrent change)."""
        table = self._pt
        found = ((page, table.get(page)) for page in range(first, first + npages))
        return {page: pte for page, pte in found if pte is not None}

    def page_table(self) -> dict[int, Pte]:
        """A consistent copy of the whole page table."""
        with self._pt_lock:
            return dict(self._pt)

    # -- changing (each one an invalidation) --------------------------------------------------

    def write(self, first: int, npages: int) -> None:
        """Store a fresh value into every page of the range, mapping it writable in system
        memory (the CPU replaces the pages: ``Event.CLEAR``)."""
        with self._change("write", first, npages, Event.CLEAR):
            for page in range(first, first + npages):
                self._pt[page] = Pte(next(self._values), True)

    def protect(self, first: int, npages: int, *, writable: bool = False) -> None:
        """Change the permission of the present pages (``Event.PROTECTION_PAGE``)."""
        with self._change("protect", first, npages, Event.PROTECTION_PAGE):
            for page in range(first, first + npages):
                pte = self._pt.get(page)
                if pte is not None:
                    self._pt[page] = Pte(pte.value, writable, pte.device)

    def unmap(self, first: int, npages: int, *, blockable: bool = True) -> bool:
        """Unmap the range (``Event.UNMAP``). Non-blockable (an OOM reaper's unmap): returns
        False, changing nothing, when a subscriber refused."""
        op = "unmap" if blockable else "reap"
        try:
            with self._change(op, first, npages, Event.UNMAP, blockable=blockable):
                for page in range(first, first + npages):
                    self._pt.pop(page, None)
        except WouldBlock:
            return False
        return True

    def migrate(self, first: int, npages: int, device: Device) -> int:
        """Move the range's pages that are in system memory into ``device``'s memory (one MIGRATE
        invalidation owned by ``device``); returns how many moved. Holes and pages on another
        device stay where they are. ``device``'s subscription skips the invalidation and its
        mirror is updated here, after the page table (see the module's protocol notes)."""
        seq = device.sub.read_begin()
        with self._change("migrate", first, npages, Event.MIGRATE, owner=device):
            moved: dict[int, Pte] = {}
            for page in range(first, first + npages):
                pte = self._pt.get(page)
                if pte is not None and pte.device is None:
                    moved[page] = self._pt[page] = Pte(pte.value, pte.writable, device)
            device.migrated_in(seq, moved)
        return len(moved)

    def migrate_to_ram(self, pages: Sequence[int]) -> int:
        """Move the given pages back from the device holding them to system memory: one MIGRATE
        invalidation per run of consecutive pages on one device, owned by that device (the
        device-private page fault of the driver). Returns how many moved."""
        moved = 0
        for first, npages, device in self._runs(sorted(pages)):
            with self._change("migrate-back", first, npages, Event.MIGRATE, owner=device):
                for page in range(first, first + npages):
                    pte = self._pt.get(page)
                    if pte is not None and pte.device is device:
                        self._pt[page] = Pte(pte.value, pte.writable)
                        moved += 1
        return moved

    def _runs(self, pages: list[int]) -> Iterator[tuple[int, int, Device]]:
        run: Optional[tuple[int, int, Device]] = None
        for page in pages:
            pte = self._pt.get(page)
            if pte is None or pte.device is None:
                continue
            if run is not None and run[0] + run[1] == page and run[2] is pte.device:
                run = (run[0], run[1] + 1, run[2])
                continue
            if run is not None:
                yield run
            run = (page, 1, pte.device)
        if run is not None:
            yield run

    @contextmanager
    def _change(
        self,
        op: str,
        first: int,
        npages: int,
        event: Event,
        *,
        owner: Optional[Device] = None,
        blockable: bool = True,
    ) -> Iterator[Range]:
        """One invalidation over pages ``[first, first + npages)``: start, hooks, the change
        (the ``with`` body, under the page-table lock), end. Records what the start reached."""
        notes: list[tuple[str, str, int]] = []
        self._local.notes = notes
        start, end = first << PAGE_SHIFT, (first + npages) << PAGE_SHIFT
        invalidation = self.mm.invalidate(start, end, event, owner=owner, blockable=blockable)
        try:
            with invalidation as rng:
                self._local.notes = None
                for hook in tuple(self.hooks):  # a hook may add or remove hooks
                    hook(self, rng)
                with self._pt_lock:
                    yield rng
        except WouldBlock:
            self._trace.record(op, invalidation.range, notes, refused=True)
            raise
        finally:
            self._local.notes = None
        self._trace.record(op, rng, notes, refused=False)

    def note(self, who: str, action: str, pages: int) -> None:
        """Called by subscriber callbacks: what this thread's running start made ``who`` do."""
        notes: Optional[list[tuple[str, str, int]]] = getattr(self._local, "notes", None)
        if notes is not None:
            notes.append((who, action, pages))

    # -- results ------------------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Every mirrored page of every device equals the page table (T26); returns the
        differences. Call when no thread is changing or faulting."""
        table = self.page_table()
        problems = []
        for device in self.devices:
            with device.lock:
                for page, entry in sorted(device.mirror.items()):
                    pte = table.get(page)
                    if pte is None or pte.mirrored() != entry:
                        problems.append(
                            f"{device.name}: page {page:#x} mirrors {entry}, CPU has {pte}"
                        )
        return problems


class StaleCheck:
    """A :class:`Cpu` hook: after each invalidation's start, no device that the start reached
    (its subscription overlaps, and the range is not its own migration) may still mirror a page
    of the range."""

    def __init__(self) -> None:
        self.checked = 0
        self.stale: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, cpu: Cpu, rng: Range) -> None:
        first, stop = rng.start >> PAGE_SHIFT, _pages_end(rng.end)
        for device in list(cpu.devices):
            if not device.overlaps(rng):
                continue
            if rng.event == Event.MIGRATE and rng.owner is device:
                continue
            with device.lock:
                stale = _pages_in(device.mirror, first, stop)
            with self._lock:
                self.checked += 1
                self.stale.extend(f"{device.name}: page {p:#x} after start of {rng}" for p in stale)


@dataclass
class DemoReport:
    """The outcome of :func:`run_demo`."""

    seconds: float
    seed: int
    npages: int
    invalidations: int
    by_op: dict[str, int]
    by_event: dict[str, int]
    reached: dict[tuple[str, str], int]
    samples: list[str]
    devices: dict[str, DeviceStats]
    mirrored_pages: int
    mismatches: list[str]
    stale: list[str]
    stale_checks: int

    @property
    def retries(self) -> int:
        """Fault and snapshot rounds thrown away by ``read_retry``, all devices."""
        return sum(s.retries + s.snapshot_retries for s in self.devices.values())

    @property
    def commit_mismatches(self) -> int:
        return sum(s.commit_mismatches for s in self.devices.values())

    @property
    def ok(self) -> bool:
        """The mirrors match the page table, nothing stale survived a start, every commit saw
        the page table it read."""
        return not self.mismatches and not self.stale and self.commit_mismatches == 0

    def lines(self) -> list[str]:
        """The human summary, one string per line."""
        rate = self.invalidations / self.seconds if self.seconds > 0 else 0.0
        ops = ", ".join(f"{op} {n}" for op, n in sorted(self.by_op.items()))
        events = ", ".join(f"{ev} {n}" for ev, n in sorted(self.by_event.items()))
        reached = sorted(self.reached.items())
        out = [
            f"device mirror: {len(self.devices)} devices mirror {self.npages} pages of one MM "
            f"for {self.seconds:.2f} s (seed {self.seed})",
            "what invalidations reached (samples):",
            *(f"  {line}" for line in self.samples),
            "subscribers reached: "
            + "; ".join(f"{who} {action} {n}x" for (who, action), n in reached),
        ]
        for name, st in self.devices.items():
            out.append(
                f"{name}: {st.faults} fault rounds ({st.pages_mirrored} pages), "
                f"{st.retries} retried, {st.migrated_back} pages migrated back, {st.busy} busy; "
                f"{st.snapshots} snapshots ({st.snapshot_retries} retried); "
                f"invalidated {st.invalidations}x ({st.pages_dropped} pages dropped), "
                f"{st.own_migrations_skipped} own migrations skipped "
                f"({st.migrated_in} pages migrated in), {st.refused} refused"
            )
        out += [
            f"invalidations: {self.invalidations} in {self.seconds:.2f} s = {rate:.0f} per second "
            f"({ops}; {events})",
            f"retries forced: {self.retries}",
        ]
        if self.ok:
            out.append(
                f"check: OK: {self.mirrored_pages} mirrored pages match the page table; "
                f"no stale page after {self.stale_checks} invalidation starts; every commit "
                f"saw the page table it read"
            )
        else:
            problems = self.mismatches[:5] + self.stale[:5]
            out.append(
                f"check: FAILED: {len(self.mismatches)} mismatched pages, {len(self.stale)} stale "
                f"pages, {self.commit_mismatches} commit mismatches"
            )
            out += [f"  {p}" for p in problems]
        return out


def run_demo(
    seconds: float = 3.0,
    seed: int = 0,
    *,
    npages: int = 1024,
    chunk: int = CHUNK_PAGES,
    max_change: int = 16,
    snapshot_ratio: float = 0.2,
    hooks: Sequence[Hook] = (),
) -> DemoReport:
    """Fault random chunks into two devices on one thread while another thread writes,
    protects, unmaps (blocking and not) and migrates random ranges, for ``seconds``; then check
    the mirrors. Faults and snapshots take aligned ``chunk``-page chunks; CPU changes cover 1 to
    ``max_change`` pages. ``seed`` fixes each thread's choice of operations (their interleaving is
    the scheduler's). ``hooks`` run inside every invalidation (see :class:`StaleCheck`, which is
    always installed). An exception in either thread stops both and is re-raised here."""
    if not npages >= chunk >= 1 or max_change < 1:
        raise ValueError("need npages >= chunk >= 1 and max_change >= 1")
    cpu = Cpu()
    stale_check = StaleCheck()
    cpu.hooks += [stale_check, *hooks]
    devices = [Device(cpu, "dev0"), Device(cpu, "dev1")]
    cpu.write(0, npages)
    stop = threading.Event()
    errors: list[BaseException] = []

    def faulter(rng: random.Random) -> None:
        while not stop.is_set():
            device = rng.choice(devices)
            first = rng.randrange(npages // chunk) * chunk
            try:
                if rng.random() < snapshot_ratio:
                    device.snapshot(first, chunk)
                else:
                    device.fault(first, chunk)
            except DeviceBusy:
                pass

    def mutator(rng: random.Random) -> None:
        while not stop.is_set():
            first = rng.randrange(npages)
            n = rng.randint(1, min(max_change, npages - first))
            roll = rng.random()
            if roll < 0.35:
                cpu.write(first, n)
            elif roll < 0.55:
                cpu.protect(first, n, writable=rng.random() < 0.3)
            elif roll < 0.70:
                cpu.unmap(first, n)
            elif roll < 0.90:
                cpu.migrate(first, n, rng.choice(devices))
            else:
                cpu.unmap(first, n, blockable=False)

    def guarded(body: Callable[[random.Random], None], rng: random.Random) -> None:
        try:
            body(rng)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=guarded, args=(faulter, random.Random(f"{seed}/fault"))),
        threading.Thread(target=guarded, args=(mutator, random.Random(f"{seed}/cpu"))),
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    if errors:
        raise errors[0]

    mismatches = cpu.verify()
    mirrored = sum(len(d.mirror) for d in devices)
    mm = cpu.mm
    if mm.invalidate_seq % 2 or mm.active_invalidate_ranges or len(mm) != len(devices):
        mismatches.append(f"MM not idle after the run: {mm!r}")
    trace = cpu._trace
    report = DemoReport(
        seconds=elapsed,
        seed=seed,
        npages=npages,
        invalidations=sum(trace.by_op.values()),
        by_op=dict(trace.by_op),
        by_event=dict(trace.by_event),
        reached=dict(trace.reached),
        samples=list(trace.samples),
        devices={d.name: d.stats for d in devices},
        mirrored_pages=mirrored,
        mismatches=mismatches,
        stale=list(stale_check.stale),
        stale_checks=stale_check.checked,
    )
    for device in devices:
        device.close()
    return report


def _pages_in(mirror: dict[int, MirrorEntry], first: int, stop: int) -> list[int]:
    """The mirrored pages in ``[first, stop)``, by whichever scan is shorter."""
    if stop - first > len(mirror):
        return [page for page in mirror if first <= page < stop]
    return [page for page in range(first, stop) if page in mirror]


def _visible(entries: dict[int, Pte]) -> dict[int, MirrorEntry]:
    return {page: pte.mirrored() for page, pte in entries.items()}


def _pages_end(end: int) -> int:
    """The first page index at or after the byte address ``end``."""
    return (end + PAGE_SIZE - 1) >> PAGE_SHIFT


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a finite number of seconds >= 0: {text!r}")
    return value


def _pages(text: str) -> int:
    value = int(text)
    if value < CHUNK_PAGES:
        raise argparse.ArgumentTypeError(f"need at least {CHUNK_PAGES} pages: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (shared by ``python -m mmn_fast demo`` and
    ``examples/device_mirror.py``)."""
    parser.add_argument("--seconds", type=_seconds, default=3.0, help="how long to run (default 3)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of both threads' choices (default 0)"
    )
    parser.add_argument(
        "--pages", type=_pages, default=1024, help="pages in the page table (default 1024)"
    )


def run_from_args(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Run the demo as ``args`` say and print the summary to ``out`` (default stdout); 0 when
    every check passed, else 1."""
    report = run_demo(args.seconds, args.seed, npages=args.pages)
    for line in report.lines():
        print(line, file=out or sys.stdout)
    return 0 if report.ok else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``examples/device_mirror.py``'s entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))

