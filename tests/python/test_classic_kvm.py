"""A KVM-style classic notifier as a second client of classic mode (SPEC 6.3).

KVM keeps ``count`` (invalidations in progress), ``seq`` (bumped at every end) and, for the
hva-aware retry, the hull of the ranges being invalidated. A guest fault reads ``seq``,
translates without the lock, then commits under the lock unless ``retry`` says otherwise."""

import threading
import time

import pytest

from mmn_fast import MM, Notifier, Range, WouldBlock, synchronize


class Kvm(Notifier):
    """One VM's notifier: shadow page table ``shadow`` (hva -> pfn) and accessed bits."""

    def __init__(self):
        self.lock = threading.Lock()  # KVM's mmu_lock
        self.seq = 0  # mmu_notifier_seq
        self.count = 0  # mmu_notifier_count
        self.range_start = self.range_end = 0
        self.shadow = {}
        self.accessed = set()

    # -- the notifier side (KVM never refuses, so it may define the end, R45) --
    def invalidate_range_start(self, rng):
        with self.lock:
            self.count += 1
            if self.count == 1:
                self.range_start, self.range_end = rng.start, rng.end
            else:  # widened to the hull, never narrowed while count > 0
                self.range_start = min(self.range_start, rng.start)
                self.range_end = max(self.range_end, rng.end)
            for hva in [h for h in self.shadow if rng.start <= h < rng.end]:
                del self.shadow[hva]

    def invalidate_range_end(self, rng):
        with self.lock:
            self.seq += 1
            self.count -= 1
            assert self.count >= 0, "end without start"

    def change_pte(self, mm, address, pte):
        with self.lock:
            self.seq += 1
            if address in self.shadow:
                self.shadow[address] = pte

    def clear_young(self, mm, start, end):
        with self.lock:
            young = {h for h in self.accessed if start <= h < end}
            self.accessed -= young
            return bool(young)

    clear_flush_young = clear_young

    def test_young(self, mm, address):
        with self.lock:
            return address in self.accessed

    def release(self, mm):
        with self.lock:
            self.shadow.clear()

    # -- the fault side --
    def retry(self, mmu_seq):
        return self.count != 0 or self.seq != mmu_seq

    def retry_hva(self, mmu_seq, hva):
        if self.count and self.range_start <= hva < self.range_end:
            return True
        return self.seq != mmu_seq

    def fault(self, hva, host):
        """Map hva as the guest would: retry until a translation commits; return tries."""
        # KVM retries without bound; a deadline (not a try count) keeps the test bounded
        # without making it depend on how often a loaded machine switches threads.
        deadline = time.monotonic() + 10.0
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            mmu_seq = self.seq
            pfn = host.get(hva)  # may sleep in the kernel: no lock held
            with self.lock:
                if self.retry_hva(mmu_seq, hva):
                    continue
                self.shadow[hva] = pfn
                self.accessed.add(hva)
                return tries
            time.sleep(0)  # a retry re-enters the guest: let the writer run
        raise AssertionError("fault never committed")


@pytest.fixture
def vm():
    mm = MM()
    kvm = Kvm()
    mm.register(kvm)
    yield mm, kvm
    mm.unregister(kvm)
    synchronize()


def test_retry_while_invalidating_and_after_each_end(vm):
    """6.3: retry is true while any invalidation runs and after each completed end."""
    mm, kvm = vm
    mmu_seq = kvm.seq
    assert not kvm.retry(mmu_seq)
    r = Range(0x1000, 0x2000)
    mm.invalidate_range_start(r)
    assert kvm.retry(mmu_seq) and kvm.count == 1
    mm.invalidate_range_end(r)
    assert kvm.count == 0 and kvm.retry(mmu_seq)
    assert not kvm.retry(kvm.seq)


def test_hva_retry_uses_the_widened_hull(vm):
    """6.3: nested invalidations widen [range_start, range_end); outside it only seq counts."""
    mm, kvm = vm
    mmu_seq = kvm.seq
    a, b = Range(0x1000, 0x2000), Range(0x8000, 0x9000)
    mm.invalidate_range_start(a)
    mm.invalidate_range_start(b)
    assert (kvm.range_start, kvm.range_end) == (0x1000, 0x9000)
    assert kvm.retry_hva(mmu_seq, 0x5000)  # inside the hull, between the two ranges
    assert not kvm.retry_hva(mmu_seq, 0xA000)
    mm.invalidate_range_end(b)
    assert (kvm.range_start, kvm.range_end) == (0x1000, 0x9000)  # never narrowed
    assert kvm.retry_hva(mmu_seq, 0xA000)  # seq moved at the end
    mm.invalidate_range_end(a)
    assert kvm.count == 0 and kvm.seq == mmu_seq + 2


def test_invalidation_zaps_shadow_entries_and_faults_remap(vm):
    mm, kvm = vm
    host = {0x1000: "p1", 0x3000: "p3"}
    assert kvm.fault(0x1000, host) == 1 and kvm.fault(0x3000, host) == 1
    with mm.invalidate(0x1000, 0x2000):
        host[0x1000] = "p1'"
        assert kvm.shadow == {0x3000: "p3"}
    kvm.fault(0x1000, host)
    assert kvm.shadow == {0x1000: "p1'", 0x3000: "p3"}


def test_young_and_change_pte_reach_the_vm(vm):
    """R54-R57 through a real client: accessed bits are cleared, change_pte bumps seq."""
    mm, kvm = vm
    kvm.fault(0x1000, {0x1000: "p"})
    assert mm.test_young(0x1000) is True
    assert mm.clear_young(0, 0x2000) is True
    assert mm.clear_flush_young(0, 0x2000) is False
    seq = kvm.seq
    with mm.invalidate(0x1000, 0x2000):
        mm.change_pte(0x1000, "new")
    assert kvm.seq == seq + 2


def test_a_refusing_peer_leaves_kvm_balanced(vm):
    """R46, T37: an OOM-reaper-style refusal: KVM's start is still called and then its end,
    so count returns to 0 and a fault racing with it retries once."""
    mm, kvm = vm

    class Reaper(Notifier):
        def invalidate_range_start(self, rng):
            if not rng.blockable:
                raise WouldBlock()

    mm.register(Reaper())
    mmu_seq = kvm.seq
    with pytest.raises(WouldBlock):
        mm.invalidate_range_start(Range(0, 0x1000, blockable=False))
    assert kvm.count == 0 and kvm.seq == mmu_seq + 1
    assert kvm.retry(mmu_seq) and not kvm.retry(kvm.seq)


def test_vm_destruction_drops_the_shadow_tables():
    """R64, Q9: unregister calls release once."""
    mm, kvm = MM(), Kvm()
    mm.register(kvm)
    kvm.fault(0x1000, {0x1000: "p"})
    mm.unregister(kvm)
    assert kvm.shadow == {}
    with mm.invalidate(0, 0x2000):
        pass
    assert kvm.count == 0 and kvm.seq == 0


def test_faults_never_commit_a_stale_translation(vm):
    """6.3 under threads: host pages change only between start and end; every committed
    shadow entry is the host's current value once the writers stop."""
    mm, kvm = vm
    pages = range(0x1000, 0x9000, 0x1000)
    host = {hva: (hva, 0) for hva in pages}
    stop = threading.Event()
    errors = []

    def writer():
        gen = 0
        while not stop.is_set():
            gen += 1
            for hva in pages:
                with mm.invalidate(hva, hva + 0x1000):
                    host[hva] = (hva, gen)
                time.sleep(0.0005)  # let faults commit now and then (KVM retries, unbounded)

    def guest():
        try:
            while not stop.is_set():
                for hva in pages:
                    kvm.fault(hva, host)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=f, daemon=True) for f in (writer, guest, guest)]
    for t in threads:
        t.start()
    stop.wait(0.5)
    stop.set()
    for t in threads:
        t.join(5.0)
        assert not t.is_alive()
    assert errors == []
    assert kvm.count == 0
    for hva, pfn in kvm.shadow.items():
        assert pfn == host[hva], hex(hva)
