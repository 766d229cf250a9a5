"""Garbage collection and memory (API.md "Re-entrancy and threads"): MM and IntervalNotifier
support weak references and the cyclic collector (every Python object they hold is visited),
so cycles through them are freed by gc.collect() even while subscriptions are inserted, and
creating and dropping subscriptions and MMs does not grow memory."""

import gc
import os
import tracemalloc
import weakref

import pytest

from mmn_fast import MM, Range

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
    """API: mm -> subscription -> ops -> mm is freed by gc.collect() while the subscription is
    still in the tree."""
    mm = MM()
    ops = CycleOps(mm)
    sub = mm.insert_interval_notifier(0, 0x10, ops)
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


def _rss_kib():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _churn(n_subs, n_mms):
    mm = MM()
    ops = Ops()
    for i in range(n_subs):
        sub = mm.insert_interval_notifier(i % 4096, 1 + i % 64, ops if i % 2 else None, tag=i)
        if i % 1000 == 0:
            with mm.invalidate(0, 0x2000):
                pass
            mm.drain_invalidated()
        sub.remove()
    for _ in range(n_mms):
        other = MM()
        other.insert_interval_notifier(0, 0x10, CycleOps(other))
        other.insert_interval_notifier(0x10, 0x10, None)
    ops.log.clear()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_churn_keeps_memory_flat():
    """API: 100k subscriptions and 1000 MMs (with cycles) created and dropped leave Python
    allocations (tracemalloc) and the process RSS (native allocations) flat."""
    _churn(2000, 50)  # warm up caches and allocator pools
    collect()
    tracemalloc.start()
    try:
        base_py = tracemalloc.get_traced_memory()[0]
        base_rss = _rss_kib()
        _churn(100_000, 1000)
        collect()
        grown_py = tracemalloc.get_traced_memory()[0] - base_py
        grown_rss = _rss_kib() - base_rss
    finally:
        tracemalloc.stop()
    assert grown_py < 64 * 1024, f"Python memory grew by {grown_py} bytes"
    assert grown_rss < 2 * 1024, f"RSS grew by {grown_rss} KiB"
