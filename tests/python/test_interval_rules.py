"""Interval mode, one test per rule of SPEC.md 2.A-2.G (R1-R42) and 2.P (R81-R84) that Python
can observe, each citing its rule (and the T scenario or D decision it leans on).

R23 is only partly observable (no "must not sleep" section exists in user space; we check
that an interval callback on a non-blockable range may block). R37 (`insert_locked`) has no
counterpart in the API and is not tested.
"""

import random
import threading
import warnings

import pytest

from mmn_fast import MM, Event, Notifier, Range, WouldBlock

from conftest import U64_MAX, Bg, Ops, snapshot, subs_called


def overlap_state(mm):
    return mm.invalidate_seq, mm.active_invalidate_ranges


# -- A. the subscriptions object ------------------------------------------------------------

def test_r01_subscriptions_object_outlives_its_subscribers(mm):
    """R1: the per-mm object is made by the first insert and is not reset when every
    subscription is removed: has_notifiers stays true and seq keeps its value."""
    assert not mm.has_notifiers
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    assert mm.has_notifiers
    with mm.invalidate(0x1000, 0x1001):
        pass
    assert mm.invalidate_seq == 4
    a.remove()
    assert len(mm) == 0
    assert mm.has_notifiers
    assert mm.invalidate_seq == 4
    b = mm.insert_interval_notifier(0x1000, 0x1000, None)
    assert b.invalidate_seq == 3  # seq - 1 of the kept counter, not of a fresh one


def test_r02_fresh_state(mm):
    """R2, T1: a new address space has seq 2, no active range, an empty tree; the first idle
    insert sees that state (its seq is 1)."""
    assert overlap_state(mm) == (2, 0)
    assert len(mm) == 0 and list(mm.intervals()) == []
    assert mm.drain_invalidated() == []
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    assert overlap_state(mm) == (2, 0)
    assert a.invalidate_seq == 1
    assert (a.start, a.last, a.length) == (0x1000, 0x1FFF, 0x1000)
    assert len(mm) == 1


def test_r03_has_itree_persists_after_last_remove(mm):
    """R3, T11: after the last interval subscription is removed, invalidations still count
    in active (the interval side still runs) but call nothing and leave seq alone."""
    ops = Ops()
    mm.insert_interval_notifier(0, 0x10000, ops).remove()
    r = Range(0, 0x10000)
    mm.invalidate_range_start(r)
    assert overlap_state(mm) == (2, 1)
    mm.invalidate_range_end(r)
    assert overlap_state(mm) == (2, 0)
    assert ops.log == []
    assert mm.has_notifiers


def test_r04_fast_path_on_a_fresh_mm(mm):
    """R4, D5, T49: with no subscription every event call works and returns the neutral value;
    starts still count; nothing gets allocated (has_notifiers stays false)."""
    r = Range(0, 0x1000, blockable=False)
    assert mm.invalidate_range_start_nonblock(r) is True
    assert overlap_state(mm) == (2, 1)
    mm.invalidate_range_end(r)
    assert overlap_state(mm) == (2, 0)
    assert mm.clear_young(0, 0x1000) is False
    assert mm.clear_flush_young(0, 0x1000) is False
    assert mm.test_young(0) is False
    assert mm.change_pte(0, object()) is None
    assert mm.invalidate_range(0, 0x1000) is None
    assert mm.invalidate_many([0, 5], [1, 9]) == 0
    assert not mm.has_notifiers


def test_r05_interval_subscribers_only_see_invalidate(mm):
    """R5: the young calls, change_pte and invalidate_range never reach interval
    subscriptions and never move seq."""
    ops = Ops()
    mm.insert_interval_notifier(0, 0x10000, ops)
    mm.insert_interval_notifier(0, 0x10000, None, tag="native")
    before = snapshot(mm)
    mm.clear_young(0, 0x10000)
    mm.clear_flush_young(0, 0x10000)
    mm.test_young(0x10)
    mm.change_pte(0x10, 7)
    mm.invalidate_range(0, 0x10000)
    assert ops.log == [] and mm.drain_invalidated() == []
    assert snapshot(mm) == before


def test_r06_empty_tree_counts_active_but_keeps_seq(mm):
    """R6: with has_itree set and an empty tree, nested starts count active up and down; seq
    never changes."""
    mm.insert_interval_notifier(5, 5, None).remove()
    ranges = [Range(0, U64_MAX), Range(3, 4), Range(U64_MAX - 1, U64_MAX)]
    for n, r in enumerate(ranges, 1):
        mm.invalidate_range_start(r)
        assert overlap_state(mm) == (2, n)
    for n, r in reversed(list(enumerate(ranges))):
        mm.invalidate_range_end(r)
        assert overlap_state(mm) == (2, n)


# -- B. the seq protocol --------------------------------------------------------------------

def test_r07_three_states(mm):
    """R7: idle (0, even) -> partially excluded (>0, even; tree changes at once) -> fully
    excluded (>0, odd; tree changes deferred) -> idle."""
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    assert overlap_state(mm) == (2, 0)                       # idle
    far = Range(0x9000, 0xA000)
    mm.invalidate_range_start(far)
    assert overlap_state(mm) == (2, 1)                       # partially excluded
    a.remove()                                               # tree free to change
    assert len(mm) == 0
    b = mm.insert_interval_notifier(0x1000, 0x1000, Ops())    # R35b makes it fully excluded
    assert overlap_state(mm) == (3, 1)
    c = mm.insert_interval_notifier(0x5000, 0x10, None)
    assert list(mm.intervals()) == [b]                       # frozen: c deferred
    mm.invalidate_range_end(far)
    assert overlap_state(mm) == (4, 0)                       # idle again
    assert list(mm.intervals()) == [b, c]


def test_r08_begin_writing_only_on_overlap_or_partial_insert(mm):
    """R8: seq |= 1 happens for an overlapping start, or an insert while partially excluded;
    a non-overlapping start never makes it odd; an odd seq is left as it is."""
    mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    far, near, near2 = Range(0x8000, 0x9000), Range(0x1000, 0x1001), Range(0x1FFF, 0x2000)
    mm.invalidate_range_start(far)
    assert mm.invalidate_seq == 2
    mm.invalidate_range_start(near)
    assert mm.invalidate_seq == 3
    mm.invalidate_range_start(near2)
    assert mm.invalidate_seq == 3   # already odd: unchanged
    for r in (near2, near, far):
        mm.invalidate_range_end(r)
    assert mm.invalidate_seq == 4


def test_r09_only_the_closing_end_bumps_applies_and_wakes(mm):
    """R9: of nested ends, only the one taking active from 1 to 0 on an odd seq bumps seq and
    applies the deferred list."""
    mm.insert_interval_notifier(0, 0x1000, Ops())
    r1, r2 = Range(0, 0x10), Range(0x20, 0x30)
    mm.invalidate_range_start(r1)
    mm.invalidate_range_start(r2)
    late = mm.insert_interval_notifier(0x100, 0x10, None)
    mm.invalidate_range_end(r1)
    assert overlap_state(mm) == (3, 1)
    assert late not in list(mm.intervals())
    mm.invalidate_range_end(r2)
    assert overlap_state(mm) == (4, 0)
    assert late in list(mm.intervals())


def test_r10_two_per_epoch(mm):
    """R10, T10: ten overlapping invalidations add 20; interleaved non-overlapping ones add
    nothing; nested ones share one epoch."""
    mm.insert_interval_notifier(0x1000, 0x1000, None)
    for _ in range(10):
        with mm.invalidate(0x1000, 0x2000):
            pass
        with mm.invalidate(0x4000, 0x5000):
            pass
    assert mm.invalidate_seq == 22
    with mm.invalidate(0x1000, 0x1001):
        with mm.invalidate(0x1000, 0x1001):
            with mm.invalidate(0x6000, 0x7000):
                assert mm.invalidate_seq == 23
    assert mm.invalidate_seq == 24


def test_r11_active_counts_every_start_and_the_refusal_end(mm):
    """R11: every start counts (overlapping or not), every end uncounts, and so does the
    internal end after a non-blockable refusal."""
    mm.insert_interval_notifier(0, 0x1000, Ops(refuse_nonblock=True))
    outer = Range(0x5000, 0x6000)
    mm.invalidate_range_start(outer)
    assert mm.active_invalidate_ranges == 1
    assert mm.invalidate_range_start_nonblock(Range(0, 0x1000)) is False
    assert overlap_state(mm) == (3, 1)  # the refusal's end only decremented
    mm.invalidate_range_end(outer)
    assert overlap_state(mm) == (4, 0)


# -- C. interval-side invalidation ----------------------------------------------------------

def test_r12_query_is_closed_end_minus_one_and_cur_seq_after_or(mm):
    """R12, T4: an interval [a, b] is hit by [s, e) iff a <= e-1 and s <= b; cur_seq is seq
    after the |= 1."""
    ops = Ops()
    a = mm.insert_interval_notifier(0x1000, 0x1000, ops)
    for s, e, hit in [(0x2000, 0x3000, False), (0, 0x1000, False), (0x1FFF, 0x2000, True),
                      (0, 0x1001, True), (0x1800, 0x1801, True), (0, U64_MAX, True)]:
        seq = mm.invalidate_seq
        ops.log.clear()
        with mm.invalidate(s, e):
            pass
        assert subs_called(ops.log) == ([a] if hit else []), (hex(s), hex(e))
        assert mm.invalidate_seq == seq + (2 if hit else 0)
        if hit:
            assert ops.log[0].cur_seq == seq | 1


def test_r12_pages_that_missed_are_hit_once_a_subscription_enters_them(mm):
    """R12, R35: stores that miss in scattered pages let later stores there skip the walk (the
    page cache); a subscription that enters one of those pages by any of the three insert
    paths (idle, partially excluded, deferred to the closing end) is hit by the next store."""
    ops = Ops()
    fence = mm.insert_interval_notifier(0x100_0000, 0x1000, ops)  # opens epochs below
    pages = {"idle": 0x4000, "partial": 0x20_0000, "deferred": 0x3000_0000}

    def store(at):
        ops.log.clear()
        with mm.invalidate(at, at + 8):
            pass
        return subs_called(ops.log)

    for round_ in range(3):  # walk, learn the page's gap, then skip
        for page in pages.values():
            assert store(page + 8 * round_) == []
    subs = {}
    for name, page in pages.items():
        if name == "idle":
            subs[name] = mm.insert_interval_notifier(page + 0x800, 0x10, ops)
        elif name == "partial":
            with mm.invalidate(0x5000_0000, 0x5000_1000):  # hits nothing: seq stays even
                subs[name] = mm.insert_interval_notifier(page + 0x800, 0x10, ops)
        else:
            r = Range(0x100_0000, 0x100_0008)  # hits the fence: the tree is frozen
            mm.invalidate_range_start(r)
            subs[name] = mm.insert_interval_notifier(page + 0x800, 0x10, ops)
            mm.invalidate_range_end(r)  # attaches it
        assert store(page + 0x808) == [subs[name]], name
        assert store(page + 0x10) == [], name
    assert store(0x100_0000) == [fence]
    mm._check_invariants()


def test_r12_stores_in_pages_never_seen_hit_exactly_what_they_overlap(mm):
    """R12, R35, R39: a store in a page no start saw is answered without a walk when the
    summary of occupied blocks rules it out. Through inserts by the three paths (idle,
    partially excluded, deferred to the closing end), growth of the summary, and removals
    (whose marks go stale until a rebuild), every store in a new page and every range of an
    invalidate_many hits exactly the subscriptions it overlaps."""
    rng = random.Random(11)
    ops = Ops()
    fence = mm.insert_interval_notifier(1 << 50, 0x1000, ops)  # opens epochs, far away
    live = {fence: (1 << 50, (1 << 50) + 0xFFF)}

    def insert(n):
        for _ in range(n):
            s = rng.randrange(1 << 28) << 12
            length = rng.choice([8, 0x1000, 0x9000, 0x4_0000])
            live[mm.insert_interval_notifier(s, length, ops)] = (s, s + length - 1)

    def check(ranges):
        for a, b in ranges:
            ops.log.clear()
            with mm.invalidate(a, b):
                pass
            want = {sub for sub, (s, l) in live.items() if s < b and a <= l}
            assert set(subs_called(ops.log)) == want, (hex(a), hex(b))
        ops.log.clear()
        count = mm.invalidate_many([a for a, _ in ranges], [b for _, b in ranges])
        want = sum(s < b and a <= l for a, b in ranges for s, l in live.values())
        assert count == len(ops.log) == want

    for _ in range(4):
        insert(300)
        with mm.invalidate(0x7000_0000_0000, 0x7000_0000_1000):  # hits nothing: seq even
            insert(30)  # partially excluded
        with mm.invalidate(1 << 50, (1 << 50) + 8):  # hits the fence: the tree is frozen
            insert(30)  # deferred, attached by the closing end
        for sub in rng.sample([s for s in live if s is not fence], 200):
            sub.remove()
            del live[sub]
        # Fresh pages: random ones (nearly all clear), and a page inside each of 100 live
        # subscriptions (the page of its last byte, which no store has seen).
        pages = [rng.randrange(1 << 28) << 12 for _ in range(300)]
        inside = [l & ~0xFFF for s, l in rng.sample(sorted(live.values()), 100)]
        check([(p + 8, p + 16) for p in pages] + [(p, p + 8) for p in inside])
        mm._check_invariants()


def test_r13_order_and_one_cur_seq_per_epoch(mm):
    """R13, T5: callbacks in ascending start whatever the insertion order; every callback of
    every start in one epoch gets the same odd cur_seq, equal to seq when it runs."""
    ops = Ops()
    order = [0x3000, 0x0, 0x2000, 0x1000, 0x1000]
    subs = [mm.insert_interval_notifier(s, 0x800, ops) for s in order]
    r1, r2 = Range(0, 0x4000), Range(0x2000, 0x2001)
    mm.invalidate_range_start(r1)
    mm.invalidate_range_start(r2)
    starts = [h.sub.start for h in ops.log]
    assert starts == [0, 0x1000, 0x1000, 0x2000, 0x3000, 0x2000]
    assert {h.sub for h in ops.log[:5]} == set(subs)
    assert {h.cur_seq for h in ops.log} == {3}
    assert all(h.mm_seq == h.cur_seq for h in ops.log)
    mm.invalidate_range_end(r2)
    mm.invalidate_range_end(r1)


def test_r14_core_does_not_write_python_subscription_seq(mm):
    """R14, T23: a Python callback that skips set_seq leaves the subscription's seq alone, so
    readers miss the invalidation; a native subscription sets it itself."""
    quiet = mm.insert_interval_notifier(0x1000, 0x1000, Ops(set_seq=False))
    native = mm.insert_interval_notifier(0x1000, 0x1000, None)
    s = quiet.read_begin()
    with mm.invalidate(0x1000, 0x2000):
        assert quiet.invalidate_seq == 1
        assert native.invalidate_seq == 3
    assert quiet.read_retry(s) is False


def test_r15_false_on_blockable_is_ignored_with_a_warning(mm):
    """R15, D2, T36: a false result on a blockable range warns, the walk goes on and the start
    succeeds; the caller ends it once."""
    a = Ops()
    b = Ops(result=0)
    c = Ops()
    sa = mm.insert_interval_notifier(0, 0x1000, a)
    sb = mm.insert_interval_notifier(0x1000, 0x1000, b)
    sc = mm.insert_interval_notifier(0x2000, 0x1000, c)
    r = Range(0, 0x3000)
    with pytest.warns(RuntimeWarning):
        assert mm.invalidate_range_start(r) is None
    assert [subs_called(x.log) for x in (a, b, c)] == [[sa], [sb], [sc]]
    assert overlap_state(mm) == (3, 1)
    mm.invalidate_range_end(r)
    assert overlap_state(mm) == (4, 0)


def test_r16_false_on_nonblockable_stops_the_walk(mm):
    """R16, T34: a refusal on a non-blockable range stops the walk at once, does the interval
    end internally, skips the classic starts and fails the start."""
    log = []
    a, b, c = Ops(log), Ops(log, refuse_nonblock=True), Ops(log)
    sa = mm.insert_interval_notifier(0, 0x1000, a)
    sb = mm.insert_interval_notifier(0x1000, 0x1000, b)
    mm.insert_interval_notifier(0x2000, 0x1000, c)
    classic = type("Watcher", (Notifier,), {
        "invalidate_range_start": lambda self, r: log.append("classic start"),
        "invalidate_range_end": lambda self, r: log.append("classic end")})()
    mm.register(classic)
    r = Range(0, 0x3000, blockable=False)
    with pytest.raises(WouldBlock):
        mm.invalidate_range_start(r)
    assert [h.sub for h in log] == [sa, sb]
    assert overlap_state(mm) == (4, 0)
    log.clear()
    assert mm.invalidate_range_start_nonblock(Range(0, 0x3000)) is False
    assert [h.sub for h in log] == [sa, sb]
    assert overlap_state(mm) == (6, 0)
    with pytest.raises(RuntimeError):
        mm.invalidate_range_end(r)  # R20: nothing is left to end
    mm.unregister(classic)


def test_r16_refusal_stops_before_later_native_subscriptions(mm):
    """R13, R16: native subscriptions are walked in the same address order as callback ones:
    those before a refusing callback are invalidated, those after it are not."""
    before = mm.insert_interval_notifier(0, 0x100, None, tag="before")
    mm.insert_interval_notifier(0x100, 0x100, Ops(refuse_nonblock=True))
    after = mm.insert_interval_notifier(0x200, 0x100, None, tag="after")
    seq_after = after.invalidate_seq
    assert mm.invalidate_range_start_nonblock(Range(0, 0x1000)) is False
    assert mm.drain_invalidated() == ["before"]
    assert after.invalidate_seq == seq_after and before.invalidate_seq == 3
    with mm.invalidate(0, 0x1000):
        pass
    assert sorted(mm.drain_invalidated()) == ["after", "before"]
    assert after.invalidate_seq == before.invalidate_seq == 5


def test_r13_r24_long_native_streams_read_as_if_written_at_each_hit(mm):
    """R13, R24: a start records its native hits and writes them later, together; whatever
    reads a subscription (its seq, read_begin, remove, drain_invalidated) sees every hit so
    far, however many starts came in between (here far more than are ever held unwritten)."""
    subs = [mm.insert_interval_notifier(k << 12, 0x1000, None, tag=k) for k in range(16)]
    rng = random.Random(13)
    last_hit = {}
    first_hit = []
    for _ in range(3000):
        k = rng.randrange(16)
        r = Range(k << 12, (k + 2) << 12)  # hits k and, below the last, k + 1
        mm.invalidate_range_start(r)
        cur = mm.invalidate_seq
        mm.invalidate_range_end(r)
        for hit in (k, k + 1)[: 16 - k]:
            last_hit[hit] = cur
            if hit not in first_hit:
                first_hit.append(hit)
    assert [s.invalidate_seq for s in subs] == [last_hit.get(k, 1) for k in range(16)]
    seq = subs[3].read_begin()
    assert seq == last_hit[3] and not subs[3].read_retry(seq)
    subs[5].remove()  # journaled: still drained once, after those still subscribed
    assert mm.drain_invalidated() == [k for k in first_hit if k != 5] + [5]
    assert mm.drain_invalidated() == []
    mm._check_invariants()


def test_r17_closing_end_applies_every_deferred_entry(mm):
    """R17, T17: the closing end applies the deferred inserts and removes together, and the
    tree is in address order afterwards."""
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    z = mm.insert_interval_notifier(0x8000, 0x10, Ops())
    r = Range(0x1000, 0x9000)
    mm.invalidate_range_start(r)
    c = mm.insert_interval_notifier(0x6000, 0x10, None)
    b = mm.insert_interval_notifier(0x0, 0x10, None)
    remover = Bg(z.remove)
    assert remover.blocked()
    assert list(mm.intervals()) == [a, z]
    mm.invalidate_range_end(r)
    remover.join()
    assert list(mm.intervals()) == [b, a, c]
    assert overlap_state(mm) == (4, 0)


def test_r18_interval_side_before_classic_side(mm):
    """R18, R52, T42: in a start every interval callback precedes the first classic start; in
    the end the interval end (seq bump, deferred list) is done before the classic end runs."""
    log = []
    mm.insert_interval_notifier(0, 0x1000, lambda s, r, c: log.append(("interval", c)) or True)
    pending = mm.insert_interval_notifier  # bound now, used from the classic end below

    class Classic(Notifier):
        def invalidate_range_start(self, r):
            log.append(("classic start", mm.invalidate_seq))

        def invalidate_range_end(self, r):
            log.append(("classic end", mm.invalidate_seq, mm.active_invalidate_ranges, len(mm)))

    mm.register(Classic())
    r = Range(0, 0x10)
    mm.invalidate_range_start(r)
    pending(0x5000, 0x10, None)  # deferred; the interval end inserts it
    mm.invalidate_range_end(r)
    assert log == [("interval", 3), ("classic start", 3), ("classic end", 4, 0, 2)]


def test_r19_callbacks_get_the_callers_range_unclipped(mm):
    """R19: a blockable start hands every callback the caller's Range object itself, with all
    fields, not clipped to the subscription."""
    ops = Ops()
    mm.insert_interval_notifier(0x1000, 0x10, ops)
    mm.insert_interval_notifier(0x1008, 0x10, ops)
    vma, owner = object(), object()
    r = Range(0x1004, 0x100C, Event.CLEAR, vma=vma, owner=owner)
    mm.invalidate_range_start(r)
    mm.invalidate_range_end(r)
    assert [h.range for h in ops.log] == [r, r]
    assert all(h.range is r for h in ops.log)
    assert (r.start, r.end, r.event, r.vma, r.owner) == (0x1004, 0x100C, Event.CLEAR, vma, owner)


# -- D. non-blocking mode -------------------------------------------------------------------

def test_r20_nonblock_refusal_needs_no_end(mm):
    """R20, D1: a refused non-blocking start has ended itself (seq even, active 0); a following
    end is an end without a start and raises RuntimeError, changing nothing."""
    mm.insert_interval_notifier(0, 0x1000, Ops(refuse_nonblock=True))
    r = Range(0, 0x1000)
    assert mm.invalidate_range_start_nonblock(r) is False
    before = snapshot(mm)
    assert before[:2] == (4, 0)
    with pytest.raises(RuntimeError):
        mm.invalidate_range_end(r)
    assert snapshot(mm) == before


def test_r21_blockable_start_never_fails_on_refusal(mm):
    """R21: a blockable start whose every subscriber returns false still succeeds (with one
    warning per refusal) and must be ended."""
    for _ in range(3):
        mm.insert_interval_notifier(0, 0x1000, Ops(result=False))
    r = Range(0, 0x1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mm.invalidate_range_start(r) is None
    assert [w.category for w in caught] == [RuntimeWarning] * 3
    assert overlap_state(mm) == (3, 1)
    mm.invalidate_range_end(r)
    assert overlap_state(mm) == (4, 0)


def test_r22_nonblock_clears_blockable_start_honours_it(mm):
    """R22, D13: the non-blocking start shows a new Range equal but for blockable=False and
    leaves the caller's untouched; invalidate_range_start passes blockable as given."""
    ops = Ops()
    mm.insert_interval_notifier(0, 0x1000, ops)
    owner = object()
    r = Range(0, 0x10, Event.SOFT_DIRTY, owner=owner)
    assert mm.invalidate_range_start_nonblock(r) is True
    mm.invalidate_range_end(r)
    seen = ops.log[0].range
    assert seen is not r and r.blockable is True and seen.blockable is False
    assert (seen.start, seen.end, seen.event, seen.owner) == (0, 0x10, Event.SOFT_DIRTY, owner)
    nb = Range(0, 0x10, blockable=False)
    mm.invalidate_range_start(nb)
    mm.invalidate_range_end(nb)
    assert ops.log[1].range is nb and nb.blockable is False


def test_r23_interval_callback_may_block_on_nonblockable_range(mm):
    """R23: interval callbacks run outside any "must not sleep" section: one may block (on a
    lock another thread holds for a while) during a non-blocking start."""
    held = threading.Lock()
    held.acquire()
    releaser = threading.Timer(0.05, held.release)

    def ops(sub, rng, cur_seq):
        assert held.acquire(timeout=5)
        held.release()
        return not rng.blockable

    mm.insert_interval_notifier(0, 0x10, ops)
    releaser.start()
    r = Range(0, 0x10)
    assert mm.invalidate_range_start_nonblock(r) is True
    mm.invalidate_range_end(r)
    releaser.join()


# -- E. the read side -----------------------------------------------------------------------

def test_r24_set_seq_stores_the_value(mm):
    """R24: set_seq is a plain store, visible through invalidate_seq, any u64 value."""
    a = mm.insert_interval_notifier(0, 0x10, Ops())
    for v in (7, 3, U64_MAX, 0, 1):
        assert a.set_seq(v) is None
        assert a.invalidate_seq == v


def test_r25_read_begin_returns_the_seq_read_on_entry(mm):
    """R25, T18, T21: read_begin returns the subscription's seq as read on entry; when that
    equals the odd mm seq it waits for the closing end and still returns the old value."""
    ops = Ops()
    a = mm.insert_interval_notifier(0x1000, 0x1000, ops)
    assert a.read_begin() == 1
    r = Range(0x1000, 0x2000)
    mm.invalidate_range_start(r)
    reader = Bg(a.read_begin)
    assert reader.blocked()
    mm.invalidate_range_end(r)
    assert reader.join() == 3
    assert a.read_retry(3) is False
    assert mm.invalidate_seq == 4


def test_r26_untouched_subscription_never_waits(mm):
    """R26, T22: during an epoch that did not touch it, read_begin returns at once (even with
    timeout=0)."""
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    b = mm.insert_interval_notifier(0x5000, 0x1000, Ops())
    r = Range(0x5000, 0x5001)
    mm.invalidate_range_start(r)
    assert mm.invalidate_seq == 3
    assert a.read_begin(timeout=0) == 1
    with pytest.raises(TimeoutError):
        b.read_begin(timeout=0)
    mm.invalidate_range_end(r)


def test_r27_read_begin_does_not_loop(mm):
    """R27, T24: a reader woken by the closing end returns the old seq even though a new epoch
    touching it has begun since; read_retry is then true."""
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    r1 = Range(0x1000, 0x2000)
    mm.invalidate_range_start(r1)
    reader = Bg(a.read_begin, 5)
    assert reader.blocked()
    mm.invalidate_range_end(r1)
    r2 = Range(0x1000, 0x1001)
    mm.invalidate_range_start(r2)  # epoch 5 touches `a` before or after the reader wakes
    assert a.invalidate_seq == 5
    assert reader.join() == 3       # a looping read_begin would still be waiting here
    assert a.read_retry(3) is True
    mm.invalidate_range_end(r2)


def test_r28_read_retry_is_seq_inequality(mm):
    """R28: read_retry(s) is exactly invalidate_seq != s, for any s."""
    a = mm.insert_interval_notifier(0, 0x10, Ops())
    a.set_seq(41)
    for s, expect in [(41, False), (40, True), (42, True), (0, True), (U64_MAX, True)]:
        assert a.read_retry(s) is expect


def test_r29_check_retry_matches_read_retry(mm):
    """R29: check_retry is the same comparison, callable any number of times."""
    a = mm.insert_interval_notifier(0, 0x10, None)
    s = a.read_begin()
    assert [a.check_retry(s) for _ in range(3)] == [False] * 3
    with mm.invalidate(0, 1):
        pass
    assert [a.check_retry(s) for _ in range(3)] == [True] * 3
    assert a.read_retry(s) is True


def test_r30_retry_after_overlap_not_after_others(mm):
    """R30, T19, T20: read_retry is true after an overlapping invalidation, even once ended,
    and false after any number of non-overlapping ones, ended or open."""
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    b = mm.insert_interval_notifier(0x5000, 0x1000, Ops())
    s = a.read_begin()
    for _ in range(3):
        with mm.invalidate(0x5000, 0x6000):
            pass
    open_b = Range(0x5800, 0x5900)
    mm.invalidate_range_start(open_b)
    assert mm.invalidate_seq % 2 == 1
    assert a.read_retry(s) is False and a.check_retry(s) is False
    mm.invalidate_range_end(open_b)
    with mm.invalidate(0x1FFF, 0x2000):
        pass
    assert a.read_retry(s) is True and a.check_retry(s) is True
    assert b.read_retry(b.read_begin()) is False


def test_r31_all_subscription_seqs_are_odd(mm):
    """R31: whichever path set it (idle insert, partial insert, deferred insert, callback,
    native), every subscription seq is odd; so an idle read_begin never waits."""
    subs = [mm.insert_interval_notifier(0, 0x10, Ops())]
    with mm.invalidate(0, 1):
        pass
    subs.append(mm.insert_interval_notifier(0x10, 0x10, None))          # idle: seq - 1
    far = Range(0x9000, 0x9001)
    mm.invalidate_range_start(far)
    subs.append(mm.insert_interval_notifier(0x20, 0x10, None))          # partial
    subs.append(mm.insert_interval_notifier(0x30, 0x10, Ops()))         # deferred
    mm.invalidate_range_end(far)
    with mm.invalidate(0, 0x40):
        pass
    for s in subs:
        assert s.invalidate_seq % 2 == 1
        assert s.read_begin(timeout=0) == s.invalidate_seq


def test_r32_read_begin_from_own_callback_is_runtime_error(mm):
    """R32, D6: read_begin from inside an invalidation callback of the same thread, when it
    would wait, raises RuntimeError; when it would not wait, it returns."""
    got = {}

    def ops(sub, rng, cur_seq):
        got["before"] = sub.read_begin()        # seq not yet set: no wait
        sub.set_seq(cur_seq)
        try:
            sub.read_begin()
        except RuntimeError as exc:
            got["after"] = exc
        return True

    a = mm.insert_interval_notifier(0, 0x10, ops)
    with mm.invalidate(0, 1):
        pass
    assert got["before"] == 1
    assert isinstance(got["after"], RuntimeError)
    assert a.invalidate_seq == 3 and overlap_state(mm) == (4, 0)


# -- F. insert ------------------------------------------------------------------------------

def test_r33_insert_checks_length_and_fills_fields(mm):
    """R33, D3, T13: length 0 and an overflowing last are OverflowError and create nothing;
    otherwise last = start + length - 1 and ops / tag / mm are kept."""
    for start, length in [(0, 0), (U64_MAX, 2), (2, U64_MAX)]:
        with pytest.raises(OverflowError):
            mm.insert_interval_notifier(start, length, Ops())
    assert not mm.has_notifiers and len(mm) == 0
    ops, tag = Ops(), object()
    a = mm.insert_interval_notifier(0x10, 0x20, ops, tag=tag)
    assert (a.start, a.last, a.length) == (0x10, 0x2F, 0x20)
    assert a.ops is ops and a.tag is tag and a.mm is mm


def test_r34_no_insert_after_release(mm):
    """R34, D12, T54: once released, the mm takes no new subscription (ValueError, nothing
    changes), but existing ones can still be removed."""
    a = mm.insert_interval_notifier(0, 0x10, Ops())
    mm.release()
    before = snapshot(mm)
    with pytest.raises(ValueError):
        mm.insert_interval_notifier(0x100, 0x10, None)
    assert snapshot(mm) == before
    a.remove()
    assert len(mm) == 0
    fresh = MM()
    fresh.release()
    with pytest.raises(ValueError):
        fresh.insert_interval_notifier(0, 1, None)
    assert len(fresh) == 0


def test_r35_three_insert_cases(mm):
    """R35, T12, T14, T15: (a) idle: in the tree, seq - 1; (b) partially excluded: seq |= 1, in
    the tree, the new odd seq; (c) fully excluded: deferred, the odd seq."""
    mm.insert_interval_notifier(0, 1, None)
    for _ in range(3):
        with mm.invalidate(0, 1):
            pass
    assert mm.invalidate_seq == 8
    a = mm.insert_interval_notifier(0x1000, 0x10, Ops())
    assert a.invalidate_seq == 7 and a in list(mm.intervals())        # (a)
    far = Range(0x9000, 0x9001)
    mm.invalidate_range_start(far)
    b = mm.insert_interval_notifier(0x2000, 0x10, Ops())
    assert mm.invalidate_seq == 9
    assert b.invalidate_seq == 9 and b in list(mm.intervals())        # (b)
    c = mm.insert_interval_notifier(0x3000, 0x10, Ops())
    assert c.invalidate_seq == 9 and c not in list(mm.intervals())    # (c)
    mm.invalidate_range_end(far)
    assert c in list(mm.intervals()) and mm.invalidate_seq == 10


def test_r36_pending_insert_is_invisible_and_blocks_readers(mm):
    """R36, T14, T16: a deferred subscription is not called by starts during the rest of the
    epoch, its reader would wait until the end, and after the end it is called normally."""
    a_ops, b_ops = Ops(), Ops()
    mm.insert_interval_notifier(0x1000, 0x1000, a_ops)
    r = Range(0x1000, 0x2000)
    mm.invalidate_range_start(r)
    b = mm.insert_interval_notifier(0x1800, 0x100, b_ops)
    with pytest.raises(TimeoutError):
        b.read_begin(timeout=0.01)
    with mm.invalidate(0x1800, 0x1900):
        pass
    assert b_ops.log == [] and len(a_ops.log) == 2
    mm.invalidate_range_end(r)
    assert b.read_begin(timeout=0) == 3 and b.read_retry(3) is False
    with mm.invalidate(0x1800, 0x1801):
        pass
    assert subs_called(b_ops.log) == [b]


def test_r38_address_limits(mm):
    """R38, T13: the top byte alone, [0, 2**64-2] and [1, 2**64-1] are valid subscriptions and
    are reached by ranges touching their edges."""
    top = mm.insert_interval_notifier(U64_MAX, 1, None, tag="top")
    low = mm.insert_interval_notifier(0, U64_MAX, None, tag="low")
    high = mm.insert_interval_notifier(1, U64_MAX, None, tag="high")
    assert (top.last, low.last, high.last) == (U64_MAX, U64_MAX - 1, U64_MAX)
    assert mm.invalidate_many([U64_MAX - 1], [U64_MAX]) == 2   # [2**64-2]: low, high
    assert sorted(mm.drain_invalidated()) == ["high", "low"]
    assert mm.invalidate_many([0], [1]) == 1
    assert mm.drain_invalidated() == ["low"]


# -- G. remove ------------------------------------------------------------------------------

def test_r39_three_remove_cases(mm):
    """R39, T27, T28, T30: (c) seq even (idle or partially excluded): removed at once; (a) a
    pending insert: dropped at once, never enters the tree; (b) in the tree while odd: waits."""
    a = mm.insert_interval_notifier(0x1000, 0x10, Ops())
    a.remove()                                             # (c), idle
    assert len(mm) == 0 and mm.invalidate_seq == 2
    b = mm.insert_interval_notifier(0x1000, 0x10, Ops())
    far = Range(0x9000, 0x9001)
    mm.invalidate_range_start(far)
    b.remove()                                             # (c), partially excluded
    assert len(mm) == 0 and mm.invalidate_seq == 2
    c_ops = Ops()
    c = mm.insert_interval_notifier(0x2000, 0x10, c_ops)    # partial insert: now odd
    d_ops = Ops()
    d = mm.insert_interval_notifier(0x2000, 0x10, d_ops)    # deferred
    d.remove()                                             # (a)
    waiter = Bg(c.remove)                                  # (b)
    assert waiter.blocked()
    mm.invalidate_range_end(far)
    waiter.join()
    assert len(mm) == 0
    with mm.invalidate(0, U64_MAX):
        pass
    assert c_ops.log == [] and d_ops.log == []


def test_r40_pending_removal_still_called_until_the_end(mm):
    """R40, T29: while a remove waits, the subscription stays listed and new overlapping starts
    in the same epoch still call it; after remove returns it is never called again."""
    ops = Ops()
    a = mm.insert_interval_notifier(0x1000, 0x1000, ops)
    r1 = Range(0x1000, 0x1001)
    mm.invalidate_range_start(r1)
    waiter = Bg(a.remove)
    assert waiter.blocked()
    assert list(mm.intervals()) == [a]
    with mm.invalidate(0x1800, 0x1801):
        pass
    assert len(ops.log) == 2
    mm.invalidate_range_end(r1)
    waiter.join()
    with mm.invalidate(0, U64_MAX):
        pass
    assert len(ops.log) == 2


def test_r41_remove_returns_after_the_tree_update(mm):
    """R41, D4, T31: when a waiting remove returns, the subscription is already gone from
    mm.intervals() and len(mm)."""
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    keep = mm.insert_interval_notifier(0x5000, 0x10, None)
    r = Range(0x1000, 0x2000)
    mm.invalidate_range_start(r)

    def remove_and_look():
        a.remove()
        return list(mm.intervals()), len(mm)

    waiter = Bg(remove_and_look)
    assert waiter.blocked()
    mm.invalidate_range_end(r)
    assert waiter.join() == ([keep], 1)


def test_r42_remove_twice_and_from_callback(mm):
    """R42, D6, T32, T33: a second remove is ValueError; a remove from the subscription's own
    callback that would wait is RuntimeError; both change nothing."""
    errors = []

    def ops(sub, rng, cur_seq):
        try:
            sub.remove()
        except RuntimeError as exc:
            errors.append(exc)
        return True

    a = mm.insert_interval_notifier(0, 0x10, ops)
    with mm.invalidate(0, 1):
        pass
    assert len(errors) == 1 and list(mm.intervals()) == [a]
    assert overlap_state(mm) == (4, 0)
    a.remove()
    before = snapshot(mm)
    with pytest.raises(ValueError):
        a.remove()
    assert snapshot(mm) == before


# -- P. summary invariants ------------------------------------------------------------------

def _walk(mm):
    """A scripted mix of every transition, yielding after each step."""
    ops = Ops(refuse_nonblock=True)
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    yield
    b = mm.insert_interval_notifier(0x3000, 0x1000, ops)
    yield
    far, near = Range(0x9000, 0x9001), Range(0x1000, 0x1001)
    mm.invalidate_range_start(far)
    yield
    c = mm.insert_interval_notifier(0x5000, 0x10, None)
    yield
    d = mm.insert_interval_notifier(0x6000, 0x10, None)
    yield
    mm.invalidate_range_start(near)
    yield
    assert mm.invalidate_range_start_nonblock(Range(0x3000, 0x3001)) is False
    yield
    d.remove()
    yield
    mm.invalidate_range_end(far)
    yield
    mm.invalidate_range_end(near)
    yield
    for s in (a, b, c):
        s.remove()
        yield


def test_r81_state_invariant_after_every_step(mm):
    """R81: at every step, active == 0 implies seq even and seq odd implies active >= 1 (and
    the core's own check, which includes an empty deferred list when even, passes)."""
    for _ in _walk(mm):
        seq, active = overlap_state(mm)
        assert active > 0 or seq % 2 == 0
        assert seq % 2 == 0 or active >= 1
        mm._check_invariants()


def test_r82_seq_moves_only_by_or_one_and_plus_one(mm):
    """R82: seq never decreases, and each step moves it by |= 1 and/or += 1 only."""
    prev = mm.invalidate_seq
    for _ in _walk(mm):
        seq = mm.invalidate_seq
        assert seq >= prev
        assert seq in {prev, prev | 1, (prev | 1) + 1}
        prev = seq


def test_r83_cur_seq_odd_and_equal_to_seq(mm):
    """R83: every cur_seq is odd and equals mm.invalidate_seq at the moment of the call, for
    blockable, non-blocking, nested, batch and release invalidations."""
    ops = Ops()
    for s in range(0, 0x4000, 0x800):
        mm.insert_interval_notifier(s, 0x900, ops)
    with mm.invalidate(0, 0x1000):
        mm.invalidate_range_start_nonblock(Range(0x800, 0x2000))
        mm.invalidate_range_end(Range(0x800, 0x2000))
    mm.invalidate_many([0, 0x3000, 0x100], [0x10, 0x4000, 0x200])
    mm.release()
    assert len(ops.log) > 10
    assert all(h.cur_seq % 2 == 1 and h.cur_seq == h.mm_seq for h in ops.log)


def test_r84_tree_contents_change_only_while_even(mm):
    """R84: mm.intervals() is exactly the inserted-and-not-removed subscriptions, in start
    order, and its contents never change at a step where seq is odd before and after."""
    prev_seq, prev_items = mm.invalidate_seq, []
    for _ in _walk(mm):
        items = list(mm.intervals())
        assert [s.start for s in items] == sorted(s.start for s in items)
        assert len(items) == len(mm)
        if prev_seq % 2 == 1 and mm.invalidate_seq == prev_seq:
            assert items == prev_items
        prev_seq, prev_items = mm.invalidate_seq, items
    assert len(mm) == 0
