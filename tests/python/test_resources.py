"""Resource safety (issue 6; API.md "Re-entrancy and threads": weak references, the cyclic GC,
"creating and dropping subscriptions and MMs does not grow memory").

A loop creates and drops native subscriptions (as many as fit in ``BUDGET`` seconds, up to a
million) and thousands of MMs, some tied into mm -> subscription -> ops -> mm cycles; after a
warm-up round, later rounds must keep memory flat: the Python heap (``tracemalloc``) and the
process RSS (``/proc/self/statm``) may not grow by more than a small slack.
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
import weakref

import pytest

from mmn_fast import MM

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
    """Insert and remove ``n`` native subscriptions, some invalidated (journaled) first."""
    for i in range(n // 100):
        subs = [mm.insert_interval_notifier((i * 100 + j) * 0x1000, 0x1000, tag=j) for j in range(100)]
        if i % 8 == 0:
            mm.invalidate_many([i * 100 * 0x1000], [(i * 100 + 50) * 0x1000])  # journals 50
        for s in subs:
            s.remove()
        if i % 8 == 0:
            mm.drain_invalidated()


def churn_mms(n: int) -> list[weakref.ref]:
    """``n`` MMs with subscriptions, half of them in cycles, all dropped; their weakrefs."""
    refs = []
    for i in range(n):
        mm = MM()
        holder = []

        def ops(sub, rng, cur, holder=holder):
            sub.set_seq(cur)
            return True

        sub = mm.insert_interval_notifier(0, 0x1000, ops, tag=mm if i % 2 else None)
        mm.insert_interval_notifier(0x1000, 0x1000)  # native
        holder.append(mm)  # mm -> sub -> ops -> holder -> mm
        if i % 3 == 0:
            with mm.invalidate(0, 0x2000):
                pass
        refs.append(weakref.ref(mm))
        del mm, sub, ops, holder
    return refs


@pytest.mark.timeout(90)
def test_subscriptions_and_mms_keep_memory_flat(capsys):
    mm = MM()
    tracemalloc.start()
    try:
        # Calibrate, traced: how many subscriptions fit in the budget (also the warm-up).
        t0 = time.perf_counter()
        churn_subscriptions(mm, 10_000)
        per_sec = 10_000 / (time.perf_counter() - t0)
        n = max(100, int(min(MAX_SUBS, per_sec * BUDGET) / ROUNDS) // 100 * 100)
        churn_mms(MMS_PER_ROUND)
        gc.collect()
        base_rss, (base_py, _) = rss(), tracemalloc.get_traced_memory()
        total = 0
        for _ in range(ROUNDS):
            churn_subscriptions(mm, n)
            total += n
            refs = churn_mms(MMS_PER_ROUND)
            gc.collect()
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


def test_cycle_through_inserted_subscription_is_collected():
    """mm -> subscription -> ops -> mm, with the subscription still inserted (API.md)."""

    class Ops:
        def invalidate(self, sub, rng, cur):
            return True

    mm = MM()
    ops = Ops()
    sub = mm.insert_interval_notifier(0, 0x1000, ops)
    ops.mm, ops.sub = mm, sub
    refs = [weakref.ref(x) for x in (mm, sub, ops)]
    del mm, sub, ops
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
