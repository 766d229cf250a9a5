"""GC hostility (issue 10, "Proof"): every public method of MM (classic registration calls
included), IntervalNotifier, Range, IntervalTree and the ``invalidate()`` context manager runs
while the collector runs at every allocation and its hooks (gc.callbacks, finalizers of cyclic
garbage, weakref callbacks) call back into the same object and into another one; once on one
thread, once with a second thread working on the same objects. Each case runs in a child
process under a watchdog (childproc): a deadlock fails in seconds. A case checks the answers
of the method under test and the invariants afterwards, not only that nothing hung."""

from __future__ import annotations

import gc
import pickle
import threading
import weakref

import pytest

from childproc import Cases
from mmn_fast import MM, Event, IntervalTree, Notifier, Range, synchronize


class _Garbage:
    """Cyclic garbage whose finalizer and weakref callback run ``action``."""

    def __init__(self, action):
        self.me = self
        self.action = action
        self.ref = weakref.ref(self, lambda r, a=action: a())

    def __del__(self):
        self.action()


class Hostile:
    """While active: threshold 1 (a collection at every allocation); each collection runs
    ``reentry`` from gc.callbacks and leaves new cyclic garbage whose finalizer and weakref
    callback run it again during the next one. Re-entries are spread over the block (one in
    ``every`` chances, so that calls late in the block see them too), at most ``budget``."""

    def __init__(self, reentry, budget=400, every=3):
        self.reentry, self.budget, self.every, self.runs, self.errors = reentry, budget, every, 0, []
        self.chances = 0
        self.busy = threading.local()

    def act(self):
        if self.runs >= self.budget or getattr(self.busy, "on", False):
            return
        self.chances += 1
        if self.chances % self.every:
            return
        self.runs += 1
        self.busy.on = True
        try:
            self.reentry()
        except BaseException as exc:  # reported by __exit__
            self.errors.append(exc)
        finally:
            self.busy.on = False

    def hook(self, phase, info):
        if phase == "start":
            self.act()
        elif self.runs < self.budget:
            _Garbage(self.act)

    def __enter__(self):
        gc.collect()
        self.old = gc.get_threshold()
        gc.callbacks.append(self.hook)
        gc.set_threshold(1)
        return self

    def __exit__(self, *exc):
        gc.set_threshold(*self.old)
        gc.callbacks.remove(self.hook)
        gc.collect()
        assert self.runs > 0, "the hooks never ran"
        assert not self.errors, f"a re-entrant call failed: {self.errors[0]!r}"


class Dev:
    """Interval ops that record their calls and set the seq."""

    def __init__(self):
        self.calls = 0

    def invalidate(self, sub, rng, cur_seq):
        self.calls += 1
        sub.set_seq(cur_seq)
        return True


class Classic(Notifier):
    def __init__(self):
        self.starts = self.ends = 0

    def invalidate_range_start(self, rng):
        self.starts += 1

    def invalidate_range_end(self, rng):
        self.ends += 1

    def clear_young(self, mm, start, end):
        return True

    def clear_flush_young(self, mm, start, end):
        return True

    def test_young(self, mm, address):
        return True


class Shared(Classic):
    @classmethod
    def alloc_notifier(cls, mm):
        return cls()


def _mm_reentry(mm, other, tree):
    """What hooks do to the MM under test (reads, inserts that never wait, drains) and to an
    idle other MM and a tree (anything)."""
    kept, drained = [], []

    def reentry():
        _ = mm.invalidate_seq, mm.active_invalidate_ranges, len(mm), mm.has_notifiers, repr(mm)
        for s in list(mm.intervals())[:3]:
            s.read_retry(s.invalidate_seq)
            s.check_retry(0)
        kept.append(mm.insert_interval_notifier(0x7000_0000 + len(kept) * 0x1000, 0x1000, tag=len(kept)))
        drained.extend(mm.drain_invalidated())
        s = other.insert_interval_notifier(0, 0x1000, Dev())
        with other.invalidate(0, 0x10):
            pass
        s.read_begin(timeout=1)
        s.remove()
        other.invalidate_many([0], [0x10])
        n = Classic()
        other.register(n)
        other.unregister(n)
        other.get_notifier(Shared).put()
        tree.remove(tree.insert(5, 6, [tree]))
        tree.overlap(0, 100)

    reentry.drained = drained
    return reentry, kept


def _with_second_thread(work, body):
    """Run ``work`` in a loop on a second thread while ``body()`` runs here."""
    stop = threading.Event()
    errors = []

    def loop():
        try:
            while not stop.is_set():
                work()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        body()
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive() and errors == []


def _check_mm(mm):
    assert mm.invalidate_seq % 2 == 0 and mm.active_invalidate_ranges == 0
    mm._check_invariants()


def _mm_methods(threaded):
    mm, other, tree = MM(), MM(), IntervalTree()
    dev = Dev()
    subs = [mm.insert_interval_notifier(i * 0x1000, 0x1000, dev if i % 2 else None, tag=i) for i in range(64)]
    classic = Classic()
    mm.register(classic)
    reentry, kept = _mm_reentry(mm, other, tree)

    def body():
        with Hostile(reentry):
            r = Range(0, 0x4000, Event.CLEAR, owner=dev)
            calls = dev.calls
            mm.invalidate_range_start(r)
            mm.invalidate_range_end(r)
            assert dev.calls >= calls + 2
            assert mm.invalidate_range_start_nonblock(Range(0, 0x1000)) is True
            mm.invalidate_range_end(Range(0, 0x1000))
            with mm.invalidate(0x1000, 0x3000, vma=None) as rr:
                assert rr.start == 0x1000 and mm.active_invalidate_ranges >= 1
            assert mm.invalidate_many(list(range(0, 0x40000, 0x1000)), list(range(0x10, 0x40010, 0x1000))) >= 32
            assert set(mm.drain_invalidated()) | set(reentry.drained) >= {0, 2, 4}
            assert len(list(mm.intervals())) >= 64 and len(mm) >= 64
            mm.invalidate_range(0, 0x1000)
            assert mm.clear_flush_young(0, 0x1000) is True
            assert mm.clear_young(0, 0x1000) is True
            assert mm.test_young(0) is True
            mm.change_pte(0, 1)
            n = Classic()
            mm.register(n)
            mm.unregister(n)
            mm.get_notifier(Shared).put()
            synchronize()
            # Pairing is checked once the second thread has stopped: its own start may be
            # pending right now.
            assert classic.starts >= 3
            s = mm.insert_interval_notifier(0x100000, 0x1000, dev)
            s.remove()
            mm._check_invariants()  # seq parity waits for the second thread to stop
            doomed = MM()
            d = Dev()
            doomed.insert_interval_notifier(0, 0x1000, d)
            doomed.register(Classic())
            doomed.release()
            assert d.calls == 1 and doomed._released

    if threaded:
        def work():
            with mm.invalidate(0x20000, 0x21000):
                pass
            mm.invalidate_many([0x30000], [0x31000])
            _ = list(mm.intervals()), mm.invalidate_seq, tree.overlap(0, 10)
        _with_second_thread(work, body)
    else:
        body()
    assert classic.starts == classic.ends
    for s in subs + kept:
        s.remove()
    mm.unregister(classic)
    _check_mm(mm)
    assert len(mm) == 0
    mm.release()
    _check_mm(other)


def case_mm_methods_one_thread():
    _mm_methods(False)


def case_mm_methods_two_threads():
    _mm_methods(True)


def _subscription_methods(threaded):
    mm, other, tree = MM(), MM(), IntervalTree()
    dev = Dev()
    reentry, kept = _mm_reentry(mm, other, tree)
    subs = [mm.insert_interval_notifier(i * 0x1000, 0x1000, dev if i % 2 else None, tag=[i]) for i in range(16)]

    def body():
        with Hostile(reentry):
            for s in subs:
                seq = s.read_begin(timeout=5)
                assert not s.check_retry(seq) or mm.invalidate_seq != 0
                with mm.invalidate(s.start, s.start + 1):
                    pass
                assert s.read_retry(seq) and s.check_retry(seq)
                assert s.invalidate_seq % 2 == 1
                assert (s.mm, s.last - s.start + 1, s.length) == (mm, 0x1000, 0x1000)
                _ = s.ops, s.tag, repr(s)
            with mm.invalidate(0, 0x1000):
                subs[0].set_seq(mm.invalidate_seq)
            for s in subs:
                before = (s.invalidate_seq, s.read_begin(timeout=5))
                s.remove()
                after = (s.invalidate_seq, s.read_begin(timeout=5))
                # With a second thread, its invalidation may reach s before the removal.
                assert threaded or after == before
                with mm.invalidate(s.start, s.start + 1):
                    pass  # cannot reach a removed subscription: it answers as it did
                assert (s.invalidate_seq, s.read_begin(timeout=5)) == after

    if threaded:
        def work():
            for s in subs:
                try:
                    s.read_retry(s.read_begin(timeout=5))
                except ValueError:
                    pass
            with mm.invalidate(0, 0x10000):
                pass
        _with_second_thread(work, body)
    else:
        body()
    for s in kept:
        s.remove()
    _check_mm(mm)
    assert len(mm) == 0


def case_subscription_methods_one_thread():
    _subscription_methods(False)


def case_subscription_methods_two_threads():
    _subscription_methods(True)


class Vma:
    readable = True


def _range_methods(threaded):
    mm, other, tree = MM(), MM(), IntervalTree()
    reentry, kept = _mm_reentry(mm, other, tree)
    vma = Vma()

    def body():
        with Hostile(reentry):
            for i in range(20):
                r = Range(i, i + 0x10, Event.PROTECTION_VMA, blockable=i % 2, vma=vma, owner=mm)
                m = Range.migrate(i, i + 0x10, mm, blockable=None, vma=vma)
                assert (r.start, r.end, r.event, r.blockable, r.vma, r.owner) == (i, i + 0x10, Event.PROTECTION_VMA, bool(i % 2), vma, mm)
                assert (m.event, m.blockable, m.owner) == (Event.MIGRATE, False, mm)
                assert r.update_to_read_only() is True and m.update_to_read_only() is False
                assert r == Range(i, i + 0x10, 2, blockable=bool(i % 2), vma=vma, owner=mm) and r != m
                assert "PROTECTION_VMA" in repr(r)
                assert pickle.loads(pickle.dumps(Range(i, i + 1, blockable=False))) == Range(i, i + 1, blockable=False)

    if threaded:
        _with_second_thread(lambda: [Range(0, 1, vma=vma) == Range(0, 1) for _ in range(10)], body)
    else:
        body()
    for s in kept:
        s.remove()


def case_range_methods_one_thread():
    _range_methods(False)


def case_range_methods_two_threads():
    _range_methods(True)


def _tree_methods(threaded):
    from array import array

    tree, other_mm = IntervalTree(), MM()
    mine = []

    def reentry():
        # The same tree: queries and writes of its own; the other objects: anything.
        tree.overlap(0, 2**64 - 1)
        tree.stab(3)
        _ = len(tree), tree.count_overlap(0, 10), list(tree)[:2]
        mine.append(tree.insert(2**40, 2**40 + 1, ("hook", len(mine))))
        if len(mine) > 1:
            tree.remove(mine.pop(0))
        tree.overlap_many([0, 5], [1, 9])
        s = other_mm.insert_interval_notifier(0, 0x1000, Dev())
        with other_mm.invalidate(0, 0x10):
            pass
        s.remove()

    handles = [tree.insert(i * 4, i * 4 + 7, ("v", i)) for i in range(200)]

    def body():
        with Hostile(reentry):
            for i in range(0, 200, 10):
                got = tree.overlap(i * 4, i * 4)
                assert [v for _, _, v in got if v[0] == "v"] == [("v", j) for j in (i - 1, i) if j >= 0]
                assert [v for _, _, v in tree.stab(i * 4 + 5)] == [("v", i), ("v", i + 1)][: 2 if i < 199 else 1]
                assert tree.count_overlap(i * 4, i * 4) == len(got)
            entries = list(tree)
            assert [v for _, _, v in entries if v[0] == "v"] == [("v", i) for i in range(200)]
            for h in handles[:100]:
                tree.remove(h)
            with pytest.raises(KeyError):
                tree.remove(handles[0])
            built = IntervalTree.from_arrays(array("Q", [0, 10]), array("Q", [5, 20]), ["a", "b"])
            assert list(built) == [(0, 5, "a"), (10, 20, "b")]
            idx, hs = built.overlap_many([4], [12])
            assert list(idx) == [0, 0] and sorted(hs) == [0, 1]
            # Hooks and the second thread add intervals of their own (values not tagged "v").
            assert sum(v[0] == "v" for _, _, v in tree) == 100 and "IntervalTree" in repr(tree)

    if threaded:
        def work():
            tree.overlap(0, 1000)
            h = tree.insert(2**50, 2**50 + 1, "t")
            list(tree)
            tree.remove(h)
        _with_second_thread(work, body)
    else:
        body()
    for h in mine:
        tree.remove(h)
    assert len(tree) == 100


def case_tree_methods_one_thread():
    _tree_methods(False)


def case_tree_methods_two_threads():
    _tree_methods(True)


def _invalidation_methods(threaded):
    mm, other, tree = MM(), MM(), IntervalTree()
    dev = Dev()
    sub = mm.insert_interval_notifier(0, 0x1000, dev)
    reentry, kept = _mm_reentry(mm, other, tree)
    cm = mm.invalidate(0, 0x1000, owner=dev)

    def body():
        with Hostile(reentry):
            for _ in range(10):
                calls = dev.calls
                with cm as r:
                    assert r is cm.range and r.owner is dev and mm.active_invalidate_ranges >= 1
                    with pytest.raises(RuntimeError):
                        cm.__enter__()
                assert dev.calls >= calls + 1
            assert cm.__exit__(None, None, None) is False

    if threaded:
        def work():
            with mm.invalidate(0, 0x1000):
                pass
        _with_second_thread(work, body)
    else:
        body()
    sub.remove()
    for s in kept:
        s.remove()
    _check_mm(mm)


def case_invalidation_methods_one_thread():
    _invalidation_methods(False)


def case_invalidation_methods_two_threads():
    _invalidation_methods(True)


CASES = Cases(__name__, per_case=15.0)


@pytest.mark.parametrize("name", sorted(n for n in list(globals()) if n.startswith("case_")))
def test_case(name):
    CASES.check(name)
