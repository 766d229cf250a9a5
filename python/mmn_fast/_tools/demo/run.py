"""One run of the demo: a faulting thread against a mutating thread, then the checks."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mmn_fast import Event, Range

from .cpu import Cpu, Hook
from .device import Device, DeviceBusy, DeviceStats
from .pages import CHUNK_PAGES, PAGE_SHIFT, pages_end, pages_in


class StaleCheck:
    """A :class:`Cpu` hook: after each invalidation's start, no device that the start reached
    (its subscription overlaps, and the range is not its own migration) may still mirror a page
    of the range."""

    def __init__(self) -> None:
        self.checked = 0
        self.stale: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, cpu: Cpu, rng: Range) -> None:
        first, stop = rng.start >> PAGE_SHIFT, pages_end(rng.end)
        for device in list(cpu.devices):
            if not device.overlaps(rng):
                continue
            if rng.event == Event.MIGRATE and rng.owner is device:
                continue
            with device.lock:
                stale = pages_in(device.mirror, first, stop)
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
