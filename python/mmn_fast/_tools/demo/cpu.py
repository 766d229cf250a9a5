"""The simulated CPU: the page table, and every change to it inside an invalidation."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from mmn_fast import MM, Event, Range, WouldBlock

from .device import Device
from .pages import PAGE_SHIFT, Pte

#: A hook run inside every CPU invalidation, after its start returned, before the change.
Hook = Callable[["Cpu", Range], None]


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
        run: tuple[int, int, Device] | None = None
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
        owner: Device | None = None,
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
        notes: list[tuple[str, str, int]] | None = getattr(self._local, "notes", None)
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
