"""Garbage collection and memory, the one GC suite (issue 13; API.md "Re-entrancy and
threads"): MM, IntervalNotifier, IntervalTree, Range and the ``invalidate()`` context manager
take part in the cyclic collector (every Python object they hold is visited, whatever their
locks are doing: issue 10, items 6 and 7), so cycles through them are freed by gc.collect()
even while subscriptions are inserted, live objects are never taken for garbage while other
threads run native batches, and creating and dropping subscriptions and MMs does not grow
memory (issue 6)."""

from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc
import weakref

import pytest

from mmn_fast import MM, IntervalTree, Range

from conftest import Ops


class CycleOps:
    """Ops that point back at the mm: mm -> sub -> ops -> mm."""

    def __init__(self, mm):
        self.mm = mm
        self.calls = 0

    def invalidate(self, sub, rng, cur_seq):
        self.calls += 1
        sub.set_seq(cur_seq)
        return True


def collect():
    for _ in range(3):
        gc.collect()


def test_weakrefs_to_mm_and_subscription():
    """API: MM and IntervalNotifier support weak references; the refs die with the objects."""
    mm = MM()
    sub = mm.insert_interval_notifier(0, 0x10, None)
    rmm, rsub = weakref.ref(mm), weakref.ref(sub)
    assert rmm() is mm and rsub() is sub
    sub.remove()
    del sub
    collect()
    assert rsub() is None
    del mm
    collect()
    assert rmm() is None


def test_cycle_through_ops_is_collected_while_inserted():
    """API: mm -> subscription -> ops -> mm (and ops -> subscription) is freed by gc.collect()
    while the subscription is still in the tree."""
    mm = MM()
    ops = CycleOps(mm)
    sub = mm.insert_interval_notifier(0, 0x10, ops)
    ops.sub = sub
    with mm.invalidate(0, 1):
        pass
    assert ops.calls == 1
    refs = [weakref.ref(x) for x in (mm, sub, ops)]
    del mm, sub, ops
    collect()
    assert [r() for r in refs] == [None, None, None]


@pytest.mark.parametrize("where", ["tag", "bound method ops", "closure ops"])
def test_other_cycles_are_collected(where):
    """API: every Python object an MM or a subscription holds is visited: a cycle through
    the tag, a bound method, or a closure is collected as well."""
    mm = MM()
    if where == "tag":
        sub = mm.insert_interval_notifier(0, 0x10, None, tag=[mm])
    elif where == "bound method ops":
        sub = mm.insert_interval_notifier(0, 0x10, CycleOps(mm).invalidate)
    else:
        sub = mm.insert_interval_notifier(0, 0x10, lambda s, r, c: mm is not None)  # noqa: F821 - the closure over mm is the cycle
    refs = [weakref.ref(mm), weakref.ref(sub)]
    del mm, sub
    collect()
    assert [r() for r in refs] == [None, None]


def test_cycle_with_pending_insert_and_journal_is_collected():
    """API: objects held only by the deferred list, by an open epoch or by the native journal
    (a tag not yet drained) are also visited; the whole graph is collected."""
    mm = MM()
    mm.insert_interval_notifier(0, 0x10, CycleOps(mm))

    class Tag:
        pass

    tag = Tag()
    tag.mm = mm
    native = mm.insert_interval_notifier(0x20, 0x10, None, tag=tag)
    with mm.invalidate(0x20, 0x21):
        pass
    native.remove()  # its tag is now only in the journal
    r = Range(0, 1)
    mm.invalidate_range_start(r)
    pending = mm.insert_interval_notifier(0x40, 0x10, CycleOps(mm))
    assert pending not in list(mm.intervals())
    refs = [weakref.ref(x) for x in (mm, tag, pending, native)]
    del mm, tag, pending, native
    collect()
    assert [x() for x in refs] == [None] * 4


def test_subscription_keeps_its_mm_alive():
    """A subscription holds its mm: the mm lives as long as a subscription handle does."""
    mm = MM()
    sub = mm.insert_interval_notifier(0, 0x10, Ops())
    rmm = weakref.ref(mm)
    del mm
    collect()
    assert rmm() is not None and sub.mm is rmm()
    sub.remove()
    del sub
    collect()
    assert rmm() is None


# --- Range and the invalidate() context manager take part in GC (issue 10, item 7) ---------


class Device:
    pass


def _assert_collected(*objs):
    refs = [weakref.ref(o) for o in objs]
    del objs
    collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_cycle_through_range_owner_is_collected():
    """A device that keeps ``self.inflight = Range.migrate(..., owner=self)``."""
    dev = Device()
    dev.inflight = Range.migrate(0, 0x1000, dev)
    refs = [weakref.ref(dev)]
    del dev
    collect()
    assert refs[0]() is None


def test_cycle_through_range_vma_is_collected():
    vma = Device()
    vma.readable = True
    vma.last = Range(0, 0x1000, 2, vma=vma)
    refs = [weakref.ref(vma)]
    del vma
    collect()
    assert refs[0]() is None


def test_cycle_through_range_tag_is_collected():
    """A subscription tagged with ``Range(..., owner=mm)``: mm -> sub -> tag -> mm."""
    mm = MM()
    sub = mm.insert_interval_notifier(0, 0x10, None, tag=Range(0, 0x10, owner=mm))
    refs = [weakref.ref(mm), weakref.ref(sub)]
    del mm, sub
    collect()
    assert [r() for r in refs] == [None, None]


class CachingMM(MM):
    pass


@pytest.mark.parametrize("entered", [False, True])
def test_cycle_through_invalidation_is_collected(entered):
    """An MM subclass that caches ``self.flush_all = self.invalidate(...)``."""
    mm = CachingMM()
    mm.insert_interval_notifier(0, 0x10, CycleOps(mm))
    mm.flush_all = mm.invalidate(0, 2**64 - 1, owner=mm)
    if entered:
        with mm.flush_all:
            pass
    refs = [weakref.ref(mm)]
    del mm
    collect()
    assert refs[0]() is None


def test_cycle_through_tree_value_is_collected():
    tree = IntervalTree()
    holder = Device()
    holder.tree = tree
    tree.insert(0, 1, holder)
    refs = [weakref.ref(tree), weakref.ref(holder)]
    del tree, holder
    collect()
    assert [r() for r in refs] == [None, None]


# --- Traversal does not depend on lock state (issue 10, item 6) ----------------------------


class Watched:
    """A tag, ops or value whose weakref callback records that the collector freed it."""

    freed: list = []

    def __init__(self, name):
        self.name = name
        self.ref = weakref.ref(self, lambda r, n=name: Watched.freed.append(n))

    def invalidate(self, sub, rng, cur_seq):
        sub.set_seq(cur_seq)
        return True


def test_live_objects_survive_collection_during_native_batches():
    """While other threads run native ``invalidate_many`` batches (the mm lock held, GIL
    released) and overlap_many (tree lock held, GIL released), gc.collect() never frees a live
    subscription, ops, tag or tree value: the objects only the mm (or tree) holds are reported
    by traversal whatever the lock state."""
    from array import array

    Watched.freed = []
    mms = [MM() for _ in range(2)]
    for mm in mms:
        for i in range(2000):
            mm.insert_interval_notifier(i * 0x1000, 0x1000, tag=Watched(f"tag{i}"))
        for i in range(0, 2000, 100):
            mm.insert_interval_notifier(i * 0x1000, 0x10, Watched(f"ops{i}"), tag=Watched(f"t{i}"))
    tree = IntervalTree.from_arrays(array("Q", range(0, 40000, 2)), array("Q", range(1, 40001, 2)),
                                    [Watched(f"v{i}") for i in range(20000)])
    starts = array("Q", range(0, 2000 * 0x1000, 0x1000))
    ends = array("Q", (s + 0x800 for s in starts))
    qs, ql = array("Q", range(0, 40000, 7)), array("Q", range(3, 40003, 7))
    stop = threading.Event()

    def batches(mm):
        while not stop.is_set():
            mm.invalidate_many(starts, ends)

    def queries():
        while not stop.is_set():
            tree.overlap_many(qs, ql)

    threads = [threading.Thread(target=batches, args=(mm,), daemon=True) for mm in mms]
    threads.append(threading.Thread(target=queries, daemon=True))
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and not Watched.freed:
            gc.collect()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert Watched.freed == []
    assert all(len(mm) == 2020 for mm in mms) and len(tree) == 20000
    assert all(isinstance(v.name, str) for _, _, v in tree.overlap(0, 40000))
    for mm in mms:
        assert all(isinstance(s.tag.name, str) for s in mm.intervals())
        mm._check_invariants()


# --- Memory stays flat (issue 6) ------------------------------------------------------------

BUDGET = 6.0  # seconds for the subscription loop
MAX_SUBS = 1_000_000
ROUNDS = 4
MMS_PER_ROUND = 1500
RSS_SLACK = 8 << 20  # bytes of RSS growth allowed after warm-up (allocator noise)
PY_SLACK = 512 << 10  # bytes of traced Python heap growth allowed after warm-up


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def churn_subscriptions(mm: MM, n: int) -> None:
    """Insert and remove ``n`` subscriptions (every 16th with Python ops), some invalidated
    (journaled, called back) first."""
    ops = Ops()
    for i in range(n // 100):
        subs = [
            mm.insert_interval_notifier((i * 100 + j) * 0x1000, 0x1000, ops if j % 16 == 0 else None, tag=j)
            for j in range(100)
        ]
        if i % 8 == 0:
            mm.invalidate_many([i * 100 * 0x1000], [(i * 100 + 50) * 0x1000])  # journals 50
            with mm.invalidate(i * 100 * 0x1000, (i * 100 + 1) * 0x1000):
                pass
        for s in subs:
            s.remove()
        if i % 8 == 0:
            mm.drain_invalidated()
        ops.log.clear()


def churn_mms(n: int) -> list[weakref.ref]:
    """``n`` MMs with subscriptions, in cycles of several shapes, all dropped; their weakrefs."""
    refs = []
    for i in range(n):
        mm = MM()
        holder = []

        def ops(sub, rng, cur, holder=holder):
            sub.set_seq(cur)
            return True

        sub = mm.insert_interval_notifier(0, 0x1000, ops, tag=mm if i % 2 else None)
        mm.insert_interval_notifier(0x1000, 0x1000)  # native
        if i % 4 == 0:
            mm.insert_interval_notifier(0x2000, 0x10, CycleOps(mm))
        holder.append(mm)  # mm -> sub -> ops -> holder -> mm
        if i % 3 == 0:
            with mm.invalidate(0, 0x2000):
                pass
        refs.append(weakref.ref(mm))
        del mm, sub, ops, holder
    return refs


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.timeout(90)
def test_subscriptions_and_mms_keep_memory_flat(capsys):
    """API: subscriptions (as many as fit in BUDGET seconds, up to a million) and thousands of
    MMs (half in cycles) created and dropped leave the Python heap (tracemalloc) and the process
    RSS (native allocations) flat after a warm-up round; every MM in a cycle is collected."""
    mm = MM()
    tracemalloc.start()
    try:
        # Calibrate, traced: how many subscriptions fit in the budget (also the warm-up).
        t0 = time.perf_counter()
        churn_subscriptions(mm, 10_000)
        per_sec = 10_000 / (time.perf_counter() - t0)
        n = max(100, int(min(MAX_SUBS, per_sec * BUDGET) / ROUNDS) // 100 * 100)
        churn_mms(MMS_PER_ROUND)
        collect()
        base_rss, (base_py, _) = rss(), tracemalloc.get_traced_memory()
        total = 0
        for _ in range(ROUNDS):
            churn_subscriptions(mm, n)
            total += n
            refs = churn_mms(MMS_PER_ROUND)
            collect()
            assert all(r() is None for r in refs), "an MM in a cycle was not collected"
        end_py, _ = tracemalloc.get_traced_memory()
        end_rss = rss()
    finally:
        tracemalloc.stop()
    assert len(mm) == 0 and mm.invalidate_seq % 2 == 0 and mm.active_invalidate_ranges == 0
    mm._check_invariants()
    with capsys.disabled():
        print(
            f"\nresources: {total} subscriptions and {ROUNDS * MMS_PER_ROUND} MMs after warm-up; "
            f"Python heap {end_py - base_py:+,} B, RSS {end_rss - base_rss:+,} B"
        )
    assert end_py - base_py < PY_SLACK
    assert end_rss - base_rss < RSS_SLACK


def test_traversal_reports_the_same_references_while_a_batch_holds_the_lock():
    """Issue 10, item 6, asserted directly: what the collector's traversal of an MM reports
    (gc.get_referents) is the same while a native batch on another thread holds its lock (GIL
    released) as when it is idle."""
    from array import array

    mm = MM()
    subs = [mm.insert_interval_notifier(i * 0x1000, 0x1000, tag=("tag", i)) for i in range(1000)]
    subs.append(mm.insert_interval_notifier(0x1000_0000, 0x1000, CycleOps(mm), tag="ops"))
    idle = sorted(map(id, gc.get_referents(mm)))
    assert len(idle) >= 2 * len(subs)
    starts = array("Q", (i % 1000 * 0x1000 for i in range(300_000)))
    ends = array("Q", (s + 0x10 for s in starts))
    done = threading.Event()

    def batch():
        for _ in range(3):
            mm.invalidate_many(starts, ends)
        done.set()

    t = threading.Thread(target=batch, daemon=True)
    t.start()
    seen = 0
    while not done.is_set():
        assert sorted(map(id, gc.get_referents(mm))) == idle
        seen += 1
    t.join(30)
    assert seen > 0 and len(mm.drain_invalidated()) == 1000
