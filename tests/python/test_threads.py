"""Interval mode with real threads (SPEC R25, R36, R39b, R41, D4, D10; T16, T21, T25, T26,
T29, T31). Every wait is bounded (conftest.JOIN); no test can hang."""

import random
import threading
import time

import pytest

from mmn_fast import MM, Range

from conftest import JOIN, Bg, Ops, wait_until


def test_blocked_read_begin_releases_the_gil(mm):
    """R25, D10, T21: a read_begin waiting for the closing end does not hold the GIL: a pure
    Python counting thread makes progress the whole time; the reader returns the epoch's seq
    once the end runs."""
    a = mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    r = Range(0x1000, 0x2000)
    mm.invalidate_range_start(r)
    stop = threading.Event()
    ticks = [0]

    def count():
        while not stop.is_set():
            ticks[0] += 1

    counter = Bg(count)
    reader = Bg(a.read_begin, JOIN)
    try:
        assert reader.blocked(0.05)
        before = ticks[0]
        time.sleep(0.2)
        during = ticks[0] - before
        assert not reader.done.is_set()
        assert during > 50, f"counter thread starved while read_begin waited ({during})"
    finally:
        mm.invalidate_range_end(r)
        stop.set()
    assert reader.join() == 3
    counter.join()
    assert a.read_retry(3) is False


def test_read_begin_timeout_then_epoch_still_closes(mm):
    """R25, T25: a read_begin(timeout) that runs out raises TimeoutError after about that long,
    leaves no waiter behind, and the closing end and later reads work as usual."""
    a = mm.insert_interval_notifier(0, 0x1000, Ops())
    r = Range(0, 0x1000)
    mm.invalidate_range_start(r)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        a.read_begin(0.1)
    elapsed = time.monotonic() - t0
    assert 0.09 <= elapsed < JOIN
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        a.read_begin(timeout=0)
    assert time.monotonic() - t0 < 1.0
    assert (mm.invalidate_seq, mm.active_invalidate_ranges) == (3, 1)
    mm.invalidate_range_end(r)
    assert (mm.invalidate_seq, mm.active_invalidate_ranges) == (4, 0)
    assert a.read_begin(timeout=0) == 3
    mm._check_invariants()


def test_timed_out_reader_does_not_disturb_a_patient_one(mm):
    """R25, R77: two readers wait on one epoch; the one with a short timeout gives up, the
    other is still woken by the closing end."""
    a = mm.insert_interval_notifier(0, 0x1000, Ops())
    r = Range(0, 0x10)
    mm.invalidate_range_start(r)
    patient = Bg(a.read_begin, JOIN)
    hasty = Bg(a.read_begin, 0.05)
    with pytest.raises(TimeoutError):
        hasty.join()
    assert patient.blocked(0.05)
    mm.invalidate_range_end(r)
    assert patient.join() == 3


def test_remove_waits_and_returns_after_leaving_the_tree():
    """R39b, R41, D4, T29, T31: a remove during an epoch blocks; it returns only once the
    subscription has left mm.intervals(); repeated with random timing."""
    rnd = random.Random(1234)
    for i in range(150):
        mm = MM()
        ops = Ops()
        a = mm.insert_interval_notifier(0x1000, 0x1000, ops)
        other = mm.insert_interval_notifier(0x1800, 0x10, None)
        r = Range(0x1000, 0x2000)
        mm.invalidate_range_start(r)
        entered = threading.Event()

        def remove():
            entered.set()
            a.remove()
            return [s is a for s in mm.intervals()], len(mm)

        waiter = Bg(remove)
        assert entered.wait(JOIN)
        if i % 30 == 0:
            assert waiter.blocked()
            assert list(mm.intervals()) == [a, other]
        time.sleep(rnd.random() * 0.002)
        mm.invalidate_range_end(r)
        assert waiter.join() == ([False], 1), i
        with mm.invalidate(0, 0x10000):
            pass
        assert len(ops.log) == 1
        mm._check_invariants()


def test_insert_from_another_thread_during_an_epoch(mm):
    """R35c, R36, T14: an insert from another thread while the tree is frozen returns at once,
    stays out of mm.intervals() until the closing end, then appears and is called."""
    ops = Ops()
    mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    r = Range(0x1000, 0x2000)
    mm.invalidate_range_start(r)
    late = Bg(mm.insert_interval_notifier, 0x1800, 0x100, ops).join()
    assert late not in list(mm.intervals()) and len(mm) == 1
    reader = Bg(late.read_begin, JOIN)
    assert reader.blocked()
    mm.invalidate_range_end(r)
    assert reader.join() == 3
    assert late in list(mm.intervals()) and len(mm) == 2
    with mm.invalidate(0x1800, 0x1801):
        pass
    assert [h.sub for h in ops.log] == [late]


def test_remove_of_pending_insert_from_a_thread_does_not_wait(mm):
    """R39a, T30: removing a still-deferred subscription from another thread returns at once,
    and the subscription never enters the tree."""
    ops = Ops()
    mm.insert_interval_notifier(0, 0x1000, Ops())
    r = Range(0, 0x10)
    mm.invalidate_range_start(r)
    pending = mm.insert_interval_notifier(0, 0x10, ops)
    remover = Bg(pending.remove)
    assert remover.done.wait(JOIN)
    remover.join()
    mm.invalidate_range_end(r)
    assert pending not in list(mm.intervals())
    with mm.invalidate(0, 0x10):
        pass
    assert ops.log == []


def test_second_remove_is_value_error_while_first_waits(mm):
    """R42, D6, API remove(): a second remove raises ValueError at once even while the first
    is still waiting for the closing end."""
    a = mm.insert_interval_notifier(0, 0x1000, Ops())
    r = Range(0, 0x10)
    mm.invalidate_range_start(r)
    first = Bg(a.remove)
    assert first.blocked()
    t0 = time.monotonic()
    with pytest.raises(ValueError):
        a.remove()
    assert time.monotonic() - t0 < 1.0
    assert not first.done.is_set()
    mm.invalidate_range_end(r)
    first.join()
    assert len(mm) == 0


def test_reader_loop_never_commits_a_stale_mapping():
    """T26, R28, R30: driver-style readers (read_begin, compute from the backing store, user
    lock, read_retry, commit) race a writer that changes the store inside start/end; under the
    user lock a committed value always equals the store, and after the run every device entry
    is either invalidated or current."""
    mm = MM()
    pages = 8
    backing = [0] * pages          # the "CPU page table"; changed only between start and end
    device = {}                    # the mirror; changed only under `lock`
    lock = threading.Lock()

    def invalidate(sub, rng, cur_seq):
        with lock:
            sub.set_seq(cur_seq)
            for p in range(rng.start, rng.end):
                device.pop(p, None)
        return True

    sub = mm.insert_interval_notifier(0, pages, invalidate)
    stop = threading.Event()
    stats = {"commits": 0, "retries": 0, "writes": 0, "stale": []}

    def reader(seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            p = rnd.randrange(pages)
            s = sub.read_begin(JOIN)
            value = backing[p]
            time.sleep(0)
            with lock:
                if sub.read_retry(s):
                    stats["retries"] += 1
                    continue
                if backing[p] != value:
                    stats["stale"].append((p, value, backing[p]))
                device[p] = value
                stats["commits"] += 1

    def writer():
        rnd = random.Random(99)
        writes = 0
        while not stop.is_set():
            p = rnd.randrange(pages)
            span = rnd.randint(1, 3)
            with mm.invalidate(p, min(pages, p + span)):
                for q in range(p, min(pages, p + span)):
                    backing[q] += 1
                time.sleep(0)
            writes += 1
            stats["writes"] = writes
            time.sleep(rnd.random() * 0.001)  # let readers commit between writes
        return writes

    readers = [Bg(reader, seed) for seed in range(3)]
    w = Bg(writer)
    assert wait_until(lambda: min(stats["commits"], stats["writes"]) >= 200
                      and stats["retries"] >= 5, 10.0), stats
    stop.set()
    writes = w.join()
    for t in readers:
        t.join()
    assert stats["stale"] == []
    assert writes >= 200
    with lock:
        for p, value in device.items():
            assert value == backing[p], p
    assert (mm.invalidate_seq % 2, mm.active_invalidate_ranges) == (0, 0)
    mm._check_invariants()


def test_nested_writers_from_many_threads_keep_the_counters_sound():
    """R10, R11, R81, T68 (small): writer threads running overlapping start/end pairs and a
    thread inserting/removing subscriptions; afterwards active is 0, seq even, and no callback
    ever ran for a subscription after its remove() returned."""
    mm = MM()
    removed = set()
    late_calls = []

    def invalidate(sub, rng, cur_seq):
        if id(sub) in removed:
            late_calls.append(sub)
        sub.set_seq(cur_seq)
        return True

    base = mm.insert_interval_notifier(0, 0x100, invalidate)
    stop = threading.Event()

    def writer(seed):
        rnd = random.Random(seed)
        n = 0
        while not stop.is_set():
            s = rnd.randrange(0x100)
            with mm.invalidate(s, s + rnd.randint(1, 0x20)):
                with mm.invalidate(0x80, 0x90):
                    n += 1
        return n

    def churn():
        rnd = random.Random(7)
        n = 0
        keep = []
        while not stop.is_set():
            sub = mm.insert_interval_notifier(rnd.randrange(0x100), rnd.randint(1, 0x20),
                                              invalidate)
            sub.remove()
            removed.add(id(sub))
            keep.append(sub)  # keep ids unique for the test
            n += 1
        return n

    writers = [Bg(writer, i) for i in range(4)]
    churner = Bg(churn)
    time.sleep(0.5)
    stop.set()
    assert all(w.join() > 0 for w in writers)
    assert churner.join() > 0
    assert late_calls == []
    assert wait_until(lambda: mm.active_invalidate_ranges == 0, 1.0)
    assert mm.invalidate_seq % 2 == 0
    assert list(mm.intervals()) == [base]
    mm._check_invariants()


@pytest.mark.parametrize("batches", [False, True], ids=["pairs", "pairs+invalidate_many"])
def test_native_hits_from_many_threads_read_as_if_written_at_each_hit(batches):
    """R13, R24, R25, R28: native hits are logged and written to their subscriptions later;
    with writers, readers and a drainer on other threads, every reader still sees each hit
    (read_begin / read_retry / invalidate_seq write the log out first), every drain names a
    subscription once, and at rest every subscription's seq is that of the last epoch that hit
    it and every one that was hit was drained.

    With ``batches`` one writer runs ``invalidate_many`` instead, whose ranges open and close
    epochs of their own when no other writer is active (``run_found_natives``) and join an open
    one otherwise: a range's cur_seq is then only known to be at least ``seq | 1`` read before
    the call, so at rest each seq is checked against that bound (and the mm's seq) instead."""
    mm = MM()
    pages = 64
    subs = [mm.insert_interval_notifier(p, 1, None, tag=p) for p in range(pages)]
    record_lock = threading.Lock()
    last_hit = {}                  # page -> the highest cur_seq of a start that hit it
    stop = threading.Event()
    drained = set()
    errors = []

    def writer(seed):
        rnd = random.Random(seed)
        for _ in range(2000):
            p = rnd.randrange(pages)
            r = Range(p, min(pages, p + rnd.randint(1, 4)))
            mm.invalidate_range_start(r)
            cur = mm.invalidate_seq  # our start keeps its epoch open: this is its cur_seq
            with record_lock:
                for q in range(r.start, r.end):
                    last_hit[q] = max(last_hit.get(q, 0), cur)
            if cur % 2 == 0 or mm.invalidate_seq != cur:  # R8a, R17: open until our end
                errors.append(("epoch closed under an active start", cur, mm.invalidate_seq))
            mm.invalidate_range_end(r)

    def batch_writer(seed):
        rnd = random.Random(seed)
        for _ in range(200):
            firsts = [rnd.randrange(pages) for _ in range(rnd.randint(1, 40))]
            ends = [min(pages, p + rnd.randint(1, 4)) for p in firsts]
            floor = mm.invalidate_seq | 1  # no range of the batch hits with less
            hits = mm.invalidate_many(firsts, ends)
            if hits != sum(e - p for p, e in zip(firsts, ends, strict=True)):  # one-page subscriptions
                errors.append(("invalidate_many count", hits, firsts, ends))
            with record_lock:
                for p, e in zip(firsts, ends, strict=True):
                    for q in range(p, e):
                        last_hit[q] = max(last_hit.get(q, 0), floor)

    def hit_so_far(p):
        with record_lock:
            return last_hit.get(p, 1)

    def reader(seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            p = rnd.randrange(pages)
            before = hit_so_far(p)
            s = subs[p].read_begin(JOIN)
            if s % 2 == 0 or s < before:  # R31; a hit recorded before read_begin is seen
                errors.append(("read_begin", p, s, before))
            after = hit_so_far(p)
            if after > s and not subs[p].read_retry(s):  # R28: hit since read_begin
                errors.append(("read_retry", p, s, after))

    def drainer():
        while not stop.is_set():
            got = mm.drain_invalidated()
            if len(got) != len(set(got)):
                errors.append(("drained twice in one drain", got))
            drained.update(got)
            time.sleep(0.005)  # a drain writes the log out: leave it to build up between

    helpers = [Bg(reader, 1), Bg(reader, 2), Bg(drainer)]
    writers = [Bg(writer, seed) for seed in range(3 - batches)]
    if batches:
        writers.append(Bg(batch_writer, 3))
    for w in writers:
        w.join(60)
    stop.set()
    for h in helpers:
        h.join()
    drained.update(mm.drain_invalidated())
    assert errors == []
    assert drained == set(last_hit)
    seqs = [s.invalidate_seq for s in subs]
    if batches:
        assert all(s % 2 == 1 and last_hit.get(p, 1) <= s < mm.invalidate_seq for p, s in enumerate(seqs))
    else:
        assert seqs == [last_hit.get(p, 1) for p in range(pages)]
    assert (mm.invalidate_seq % 2, mm.active_invalidate_ranges) == (0, 0)
    mm._check_invariants()
