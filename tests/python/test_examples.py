"""The device-mirror example (SPEC 6.1, T23, T26) and ``python -m mmn_fast``.

The mirror's own checks (``StaleCheck``, ``Cpu.verify``) are not trusted here: the stale-page
check and the final comparison are written again below, against the public state of the
simulated CPU and devices. Interleavings that must force a retry are made deterministic with a
hook between a fault's page-table read and its lock, or with events between two threads.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import mmn_fast
from mmn_fast import Event, Range
from mmn_fast import __main__ as cli
from mmn_fast._tools.demo import PAGE_SHIFT, Cpu, Device, Perm, Pte, StaleCheck, run_demo

ROOT = Path(__file__).resolve().parents[2]


class StaleProbe:
    """Hook run inside every CPU invalidation after its start returned: no device the start
    reached (overlapping subscription, not the owner of a MIGRATE) still mirrors a page of the
    range. Remembers every device it saw, and how many checks of each kind it made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stale: list[str] = []
        self.devices: set[Device] = set()
        self.checks: dict[str, int] = {"checked": 0, "owner skipped": 0}
        self.events: set[Event] = set()

    def __call__(self, cpu: Cpu, rng: Range) -> None:
        first = rng.start >> PAGE_SHIFT
        stop = (rng.end - 1 >> PAGE_SHIFT) + 1
        for device in list(cpu.devices):
            with self.lock:
                self.devices.add(device)
                self.events.add(rng.event)
            if not (device.sub.start <= rng.end - 1 and rng.start <= device.sub.last):
                continue
            if rng.event == Event.MIGRATE and rng.owner is device:
                with self.lock:
                    self.checks["owner skipped"] += 1
                continue
            with device.lock:
                found = sorted(p for p in device.mirror if first <= p < stop)
            with self.lock:
                self.checks["checked"] += 1
                self.stale += [f"{device.name} page {p:#x} survived {rng!r}" for p in found]


def mirror_differences(cpu: Cpu, devices: set[Device]) -> list[str]:
    table = cpu.page_table()
    out = []
    for device in devices:
        for page, (value, writable) in device.mirror.items():
            pte = table.get(page)
            if pte is None or (pte.value, pte.writable) != (value, writable):
                out.append(f"{device.name} page {page:#x}: mirror {(value, writable)}, CPU {pte}")
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_demo_run_keeps_mirrors_coherent(seed: int) -> None:
    """T26 end to end: concurrent faults, snapshots and CPU changes for a short while; no page
    survives the start of an invalidation covering it, and the mirrors match at the end."""
    probe = StaleProbe()
    seen_cpu: list[Cpu] = []

    def keep_cpu(cpu: Cpu, rng: Range) -> None:
        if not seen_cpu:
            seen_cpu.append(cpu)

    report = run_demo(0.3, seed, npages=256, hooks=[probe, keep_cpu])
    assert probe.stale == [], f"seed {seed}: {probe.stale[:5]}"
    assert probe.checks["checked"] > 0 and probe.checks["owner skipped"] > 0, probe.checks
    assert {Event.UNMAP, Event.CLEAR, Event.PROTECTION_PAGE, Event.MIGRATE} <= probe.events
    assert len(probe.devices) == 2
    assert mirror_differences(seen_cpu[0], probe.devices) == [], f"seed {seed}"
    assert sum(len(d.mirror) for d in probe.devices) == report.mirrored_pages
    assert report.ok, report.lines()
    assert report.commit_mismatches == 0
    assert sum(s.faults for s in report.devices.values()) > 0
    assert sum(s.snapshots for s in report.devices.values()) > 0
    assert report.invalidations == sum(report.by_op.values()) > 0
    mm = seen_cpu[0].mm
    assert len(mm) == 0 and mm.active_invalidate_ranges == 0 and mm.invalidate_seq % 2 == 0


def make(npages: int = 64, ndevices: int = 1) -> tuple[Cpu, list[Device], StaleProbe]:
    cpu = Cpu()
    probe = StaleProbe()
    cpu.hooks.append(probe)
    devices = [Device(cpu, f"dev{i}") for i in range(ndevices)]
    cpu.write(0, npages)
    return cpu, devices, probe


def test_fault_retries_after_an_invalidation_between_read_and_lock() -> None:
    """Forced interleaving on one thread: the CPU protects pages after the fault read them and
    before it took the lock; read_retry is true, the round is thrown away, and the second
    round commits the new permission."""
    cpu, (dev,), probe = make()

    def protect_once(attempt: int) -> None:
        if attempt == 0:
            cpu.protect(0, 8)

    assert dev.fault(0, 64, after_read=protect_once) == 64
    assert dev.stats.retries == 1 and dev.stats.faults == 1
    assert all(dev.mirror[p] == (cpu.page_table()[p].value, False) for p in range(8))
    assert all(dev.mirror[p][1] for p in range(8, 64))
    assert probe.stale == [] and mirror_differences(cpu, {dev}) == []


def test_snapshot_retries_and_removes_its_subscription() -> None:
    cpu, (dev,), probe = make()

    def unmap_once(attempt: int) -> None:
        if attempt == 0:
            assert len(cpu.mm) == 2  # the main subscription and the snapshot's
            cpu.unmap(3, 1)

    perms = dev.snapshot(0, 8, after_read=unmap_once)
    assert dev.stats.snapshot_retries == 1 and dev.stats.snapshots == 1
    assert perms[3] == Perm.ERROR
    assert perms[:3] == [Perm.READ | Perm.WRITE] * 3
    assert len(cpu.mm) == 1 and dev.mirror == {}
    assert probe.stale == []


def test_retries_under_contention_between_threads() -> None:
    """Two threads, ordered by events: the CPU thread unmaps the chunk exactly while the fault
    thread sits between its read and its lock, so at least one retry must happen; the mirror
    ends up without the unmapped pages."""
    cpu, (dev, other), probe = make(ndevices=2)
    read_done = threading.Event()
    changed = threading.Event()
    results: list[int] = []

    def hold(attempt: int) -> None:
        if attempt == 0:
            read_done.set()
            assert changed.wait(10)

    fault = threading.Thread(target=lambda: results.append(dev.fault(0, 64, after_read=hold)))
    fault.start()
    assert read_done.wait(10)
    cpu.unmap(10, 6)
    changed.set()
    fault.join(10)
    assert not fault.is_alive()
    assert dev.stats.retries >= 1
    assert results == [58]
    assert not any(10 <= p < 16 for p in dev.mirror)
    assert probe.stale == [] and mirror_differences(cpu, {dev, other}) == []


def test_fault_during_an_open_invalidation_waits_for_its_end() -> None:
    """R25/T21 through the mirror: a fault that starts while an invalidation that reached the
    device is open blocks in read_begin, and after the end it sees the change."""
    cpu, (dev,), _ = make()
    dev.fault(0, 64)
    started: list[threading.Thread] = []
    results: list[int] = []

    def start_fault(cpu: Cpu, rng: Range) -> None:
        if rng.event != Event.UNMAP or started:
            return
        thread = threading.Thread(target=lambda: results.append(dev.fault(0, 64)))
        started.append(thread)
        thread.start()
        thread.join(0.1)
        assert thread.is_alive(), "a fault committed while an invalidation of its pages was open"

    cpu.hooks.append(start_fault)
    cpu.unmap(0, 32)
    started[0].join(10)
    assert results == [32]
    assert sorted(dev.mirror) == list(range(32, 64))


def test_migrate_owner_skips_and_the_other_device_drops() -> None:
    """R79, T23: a MIGRATE owned by dev0 leaves dev0's mirror and seq alone (its migration code
    fills the mirror) while dev1 is invalidated normally; dev1 faulting those pages moves them
    back to system memory with a MIGRATE owned by dev0, which dev0 skips again."""
    cpu, (dev0, dev1), probe = make(16, ndevices=2)
    dev0.fault(0, 16)
    dev1.fault(0, 16)
    before0 = dict(dev0.mirror)
    seq0, seq1 = dev0.sub.read_begin(), dev1.sub.read_begin()
    torn0, torn1 = dev0.stats.invalidations, dev1.stats.invalidations

    assert cpu.migrate(0, 8, dev0) == 8
    assert dev0.mirror == before0
    assert dev0.stats.own_migrations_skipped == 1 and dev0.stats.invalidations == torn0
    assert dev1.stats.own_migrations_skipped == 0 and dev1.stats.invalidations == torn1 + 1
    assert not dev0.sub.read_retry(seq0)
    assert dev1.sub.read_retry(seq1)
    assert sorted(dev1.mirror) == list(range(8, 16))
    assert all(cpu.page_table()[p].device is dev0 for p in range(8))
    assert probe.checks["owner skipped"] == 1 and probe.stale == []

    assert dev0.snapshot(6, 4) == [Perm.READ | Perm.WRITE | Perm.DEVICE_LOCAL] * 2 + [
        Perm.READ | Perm.WRITE
    ] * 2
    assert dev1.snapshot(6, 4)[:2] == [Perm.DEVICE_REMOTE] * 2

    assert dev1.fault(0, 8) == 8
    assert dev1.stats.migrated_back == 8
    assert dev0.stats.own_migrations_skipped == 2 and dev0.mirror == before0
    assert all(cpu.page_table()[p].device is None for p in range(16))
    assert mirror_differences(cpu, {dev0, dev1}) == [] and probe.stale == []


def test_migration_fills_the_owner_mirror_unless_raced() -> None:
    cpu, (dev0, dev1), probe = make(16, ndevices=2)
    assert cpu.migrate(0, 4, dev0) == 4
    assert sorted(dev0.mirror) == [0, 1, 2, 3] and dev0.stats.migrated_in == 4

    def unmap_during_migration(cpu: Cpu, rng: Range) -> None:
        if rng.event == Event.MIGRATE and rng.start == 8 << PAGE_SHIFT:
            cpu.hooks.remove(unmap_during_migration)
            cpu.unmap(9, 1)  # a later invalidation reaching dev0 while its migration runs

    cpu.hooks.append(unmap_during_migration)
    assert cpu.migrate(8, 4, dev0) == 3
    assert dev0.stats.migrations_raced == 1
    assert sorted(dev0.mirror) == [0, 1, 2, 3]
    assert mirror_differences(cpu, {dev0, dev1}) == [] and probe.stale == []


def test_non_blockable_unmap_is_refused_while_the_user_lock_is_held() -> None:
    cpu, (dev,), probe = make(8)
    dev.fault(0, 8)
    table = cpu.page_table()
    with dev.lock:
        assert cpu.unmap(0, 4, blockable=False) is False
    assert cpu.page_table() == table and len(dev.mirror) == 8
    assert dev.stats.refused == 1
    assert cpu.mm.invalidate_seq % 2 == 0 and cpu.mm.active_invalidate_ranges == 0
    assert cpu.unmap(0, 4, blockable=False) is True
    assert sorted(dev.mirror) == [4, 5, 6, 7] and probe.stale == []


class ForgetfulDevice(Device):
    """A broken driver: its invalidate neither calls set_seq nor drops anything."""

    def invalidate(self, sub: mmn_fast.IntervalNotifier, rng: Range, cur_seq: int) -> bool:
        return True


def test_the_checks_catch_a_driver_that_ignores_invalidations() -> None:
    """The probes above can fail: a device that ignores its callback keeps stale pages, which the
    probe, the library's own StaleCheck and Cpu.verify all report."""
    cpu = Cpu()
    probe, builtin = StaleProbe(), StaleCheck()
    cpu.hooks += [probe, builtin]
    dev = ForgetfulDevice(cpu, "broken")
    cpu.write(0, 4)
    seq = dev.sub.read_begin()
    assert dev.fault(0, 4) == 4
    cpu.protect(1, 2)
    assert len(probe.stale) == 2 and len(builtin.stale) == 2
    assert len(cpu.verify()) == 2 and len(mirror_differences(cpu, {dev})) == 2
    assert not dev.sub.read_retry(seq)  # no set_seq: readers cannot notice either


def test_pte_is_what_the_mirror_keeps() -> None:
    assert Pte(7, False).mirrored() == (7, False)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_cli_demo_prints_the_summary() -> None:
    proc = run("-m", "mmn_fast", "demo", "--seconds", "0.5", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    heads = [line.split(":")[0] for line in lines if not line.startswith(" ")]
    expected = [
        "what invalidations reached (samples)",
        "subscribers reached",
        "dev0",
        "dev1",
        "invalidations",
        "retries forced",
        "check",
    ]
    assert [h for h in heads if h in expected] == expected, proc.stdout
    samples = [line for line in lines if line.startswith("  ")]
    assert 0 < len(samples) <= 20
    assert any("MIGRATE owner=" in s and "skipped (own migration)" in s for s in samples)
    assert any(line.startswith("invalidations: ") and " per second " in line for line in lines)
    assert any(line.startswith("check: OK") for line in lines), proc.stdout
    assert proc.stderr == ""


def test_example_script_runs() -> None:
    proc = run(str(ROOT / "examples" / "device_mirror.py"), "--seconds", "0.2", "--pages", "128")
    assert proc.returncode == 0, proc.stderr
    assert "check: OK" in proc.stdout


def test_cli_version() -> None:
    proc = run("-m", "mmn_fast", "--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"mmn_fast {mmn_fast.__version__}"


@pytest.mark.parametrize("argv", [["bench"], ["bench", "--help"], ["bench", "--quick", "x"]])
def test_cli_bench_without_its_module_exits_2(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_BENCH_MODULE", "mmn_fast._no_such_bench")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "mmn_fast._no_such_bench is missing" in err


def test_cli_bench_hands_its_arguments_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "fake_bench.py").write_text(
        "seen = []\ndef main(argv):\n    seen.append(argv)\n    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "_BENCH_MODULE", "fake_bench")
    assert cli.main(["bench", "--quick", "-k", "tree"]) == 3
    assert sys.modules.pop("fake_bench").seen == [["--quick", "-k", "tree"]]


@pytest.mark.parametrize("argv", [[], ["demo", "--seconds", "-1"], ["demo", "--seconds", "nan"]])
def test_cli_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err
