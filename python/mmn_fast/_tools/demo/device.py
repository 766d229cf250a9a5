"""A simulated device: its mirror, its interval subscription, its fault and snapshot paths."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmn_fast import Event, IntervalNotifier, Range

from .pages import (
    FAULT_TIMEOUT,
    MIRROR_LENGTH,
    PAGE_SHIFT,
    MirrorEntry,
    Perm,
    Pte,
    pages_end,
    pages_in,
    visible,
)

if TYPE_CHECKING:
    from .cpu import Cpu


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
            dropped = self._drop(rng.start >> PAGE_SHIFT, pages_end(rng.end))
        finally:
            self.lock.release()
        self._count(invalidations=1, pages_dropped=dropped)
        self.cpu.note(self.name, "dropped", dropped)
        return True

    def _drop(self, first: int, stop: int) -> int:
        """Drop mirror entries of pages ``[first, stop)``; the caller holds ``self.lock``."""
        doomed = pages_in(self.mirror, first, stop)
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
        after_read: Callable[[int], None] | None = None,
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
        after_read: Callable[[int], None] | None = None,
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

    def _perm(self, pte: Pte | None) -> Perm:
        if pte is None:
            return Perm.ERROR
        if pte.device is not None and pte.device is not self:
            return Perm.DEVICE_REMOTE
        perm = Perm.READ | Perm.WRITE if pte.writable else Perm.READ
        return perm | Perm.DEVICE_LOCAL if pte.device is self else perm

    def _read_begin(self, deadline: float, sub: IntervalNotifier | None = None) -> int:
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
        if visible(now) != visible(entries):
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
