"""T67: random single-threaded programs against a small, obviously-correct model of the interval
protocol (SPEC 2.B-2.G): seq, active count, tree contents, deferred inserts/removes, every
subscription's seq and the native drain_invalidated journal. After every step R81-R84 are
checked on both sides, plus mm._check_invariants(); inside every callback cur_seq must equal
mm.invalidate_seq (R83).

Only remove cases that do not wait (R39a, R39c) and read_begin calls that do not wait (R25)
are generated; the waiting cases are in test_threads.py.

Callback order among equal starts is unspecified (R13), so a subscription that refuses
non-blockable ranges is given a start no other live subscription has: the set of callbacks
made before a refusal is then determined.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
)

from mmn_fast import MM, Event, Range, WouldBlock

SPACE = 64  # addresses 0 .. SPACE-1 (plus ranges reaching a little past it)


@dataclass(eq=False)
class ModelSub:
    """The model's view of one subscription."""

    real: object
    start: int
    last: int
    kind: str          # "py", "refuser" or "native"
    tag: int
    seq: int
    where: str         # "tree", "pending" (deferred insert) or "gone"
    read: int | None = None  # the last value read_begin returned


class Model:
    """The interval protocol, written as plainly as possible (SPEC R7-R42)."""

    def __init__(self):
        self.seq = 2
        self.active = 0
        self.subs: list[ModelSub] = []     # every live subscription, insertion order
        self.journal: list[ModelSub] = []  # natives hit since the last drain, each once

    def tree(self):
        return [s for s in self.subs if s.where == "tree"]

    def overlapping(self, start, end):
        hits = [s for s in self.tree() if s.start <= end - 1 and start <= s.last]
        return sorted(hits, key=lambda s: s.start)

    def insert(self, sub):
        if self.active == 0:                       # R35a
            sub.seq, sub.where = self.seq - 1, "tree"
        elif self.seq % 2 == 0:                    # R35b
            self.seq |= 1
            sub.seq, sub.where = self.seq, "tree"
        else:                                      # R35c
            sub.seq, sub.where = self.seq, "pending"
        self.subs.append(sub)

    def remove_waits(self, sub):
        return self.seq % 2 == 1 and sub.where == "tree"   # R39b

    def remove(self, sub):
        assert not self.remove_waits(sub)
        sub.where = "gone"                         # R39a drops, R39c removes
        self.subs.remove(sub)

    def start(self, start, end, blockable):
        """R12-R16. Returns (called subscriptions, refused, warnings expected)."""
        self.active += 1
        hits = self.overlapping(start, end)
        if hits:
            self.seq |= 1
        called, warn = [], 0
        for sub in hits:
            called.append(sub)
            if sub.kind == "refuser" and not blockable:
                self.end()                         # R16: internal end
                return called, True, warn
            if sub.kind == "refuser":
                warn += 1                          # R15: ignored, warned
                continue
            sub.seq = self.seq                     # set_seq(cur_seq), or the native store
            if sub.kind == "native" and sub not in self.journal:
                self.journal.append(sub)
        return called, False, warn

    def end(self):
        """R17: the closing end bumps seq and applies the deferred list."""
        self.active -= 1
        if self.active == 0 and self.seq % 2 == 1:
            self.seq += 1
            for sub in self.subs:
                if sub.where == "pending":
                    sub.where = "tree"
            # a pending removal is applied by the remove() that waits for it; the machine
            # never generates one (R39b waits)


class IntervalMachine(RuleBasedStateMachine):
    subs = Bundle("subs")

    def __init__(self):
        super().__init__()
        self.mm = MM()
        self.model = Model()
        self.open: list[Range] = []
        self.calls: list[tuple] = []   # (sub, cur_seq, mm seq, odd active) from callbacks
        self.next_tag = 0
        self.prev_seq = 2
        self.prev_tree: list = []

    # -- callbacks ---------------------------------------------------------------------------

    def _ops(self, refuser):
        def invalidate(sub, rng, cur_seq):
            mm = sub.mm
            self.calls.append((sub, cur_seq, mm.invalidate_seq, mm.active_invalidate_ranges))
            if refuser:
                return False
            sub.set_seq(cur_seq)
            return True

        return invalidate

    def _take_calls(self):
        calls, self.calls = self.calls, []
        for _sub, cur_seq, mm_seq, active in calls:
            assert cur_seq % 2 == 1 and cur_seq == mm_seq, (cur_seq, mm_seq)   # R83
            assert active >= 1
        return [c[0] for c in calls]

    def _by_real(self, real):
        return next(s for s in self.model.subs if s.real is real)

    # -- rules -------------------------------------------------------------------------------

    @rule(target=subs, start=st.integers(0, SPACE - 1), length=st.integers(1, 16),
          kind=st.sampled_from(["py", "py", "native", "native", "refuser"]))
    def insert(self, start, length, kind):
        used = {s.start: s.kind for s in self.model.subs}
        if kind == "refuser" and start in used or used.get(start) == "refuser":
            start = next((a for a in range(SPACE) if a not in used), None)
            if start is None:
                return multiple()
        self.next_tag += 1
        tag = self.next_tag
        ops = None if kind == "native" else self._ops(kind == "refuser")
        real = self.mm.insert_interval_notifier(start, length, ops, tag=tag)
        sub = ModelSub(real, start, start + length - 1, kind, tag, seq=0, where="")
        self.model.insert(sub)
        assert real.invalidate_seq == sub.seq
        return sub

    @rule(sub=subs)
    def remove(self, sub):
        if sub.where == "gone" or self.model.remove_waits(sub):
            return  # the waiting case (R39b) is in test_threads.py
        sub.real.remove()
        self.model.remove(sub)

    @rule(sub=subs)
    def remove_again_is_value_error(self, sub):
        if sub.where != "gone":
            return
        try:
            sub.real.remove()
        except ValueError:
            pass
        else:
            raise AssertionError("second remove() did not raise ValueError")

    @rule(start=st.integers(0, SPACE + 8), length=st.integers(1, 24),
          mode=st.sampled_from(["blockable", "nonblock", "unblockable range"]))
    def start(self, start, length, mode):
        """R12-R16, R20-R22: the blockable start, the non-blocking start, and the plain start
        of a Range whose blockable is False (WouldBlock on refusal)."""
        end = start + length
        rng = Range(start, end, Event.UNMAP, blockable=mode != "unblockable range")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if mode == "nonblock":
                ok = self.mm.invalidate_range_start_nonblock(rng)
            else:
                try:
                    ok = self.mm.invalidate_range_start(rng) is None
                except WouldBlock:
                    assert mode == "unblockable range"
                    ok = False
        called, refused, warn = self.model.start(start, end, blockable=mode == "blockable")
        assert ok is (not refused)
        assert [w.category for w in caught] == [RuntimeWarning] * warn
        got = self._take_calls()
        want = [s.real for s in called if s.kind != "native"]
        assert sorted(map(id, got)) == sorted(map(id, want))
        assert [self._by_real(r).start for r in got] == sorted(self._by_real(r).start for r in got)
        if not refused:
            self.open.append(rng)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def end(self, data):
        rng = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
        self.mm.invalidate_range_end(rng)
        self.model.end()
        assert self._take_calls() == []

    @precondition(lambda self: not self.open)
    @rule()
    def end_without_start_is_runtime_error(self):
        seq = self.mm.invalidate_seq
        try:
            self.mm.invalidate_range_end(Range(0, 1))
        except RuntimeError:
            pass
        else:
            raise AssertionError("unmatched end did not raise RuntimeError")
        assert self.mm.invalidate_seq == seq and self.mm.active_invalidate_ranges == 0

    @rule(starts=st.lists(st.integers(0, SPACE + 8), max_size=4), length=st.integers(1, 24))
    def invalidate_many(self, starts, length):
        ends = [s + length for s in starts]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            count = self.mm.invalidate_many(starts, ends)
        want, warn = 0, 0
        for s, e in zip(starts, ends, strict=True):
            called, refused, w = self.model.start(s, e, blockable=True)
            assert not refused
            self.model.end()
            want += len(called)
            warn += w
        assert count == want
        assert len(caught) == warn
        self._take_calls()

    @rule(sub=subs)
    def read_begin(self, sub):
        if sub.where == "gone" or sub.seq == self.model.seq:
            return  # R25: it would wait
        got = sub.real.read_begin(timeout=0)
        assert got == sub.seq
        sub.read = got

    @rule(sub=subs)
    def read_retry(self, sub):
        if sub.where == "gone" or sub.read is None:
            return
        want = sub.seq != sub.read          # R28, R30
        assert sub.real.read_retry(sub.read) is want
        assert sub.real.check_retry(sub.read) is want

    @rule(sub=subs, value=st.integers(1, 40).map(lambda v: 2 * v + 1))
    def set_seq(self, sub, value):
        if sub.where == "gone":
            return
        sub.real.set_seq(value)
        sub.seq = value

    @rule()
    def drain(self):
        got = self.mm.drain_invalidated()
        want = [s.tag for s in self.model.journal]
        assert sorted(got) == sorted(want)
        self.model.journal = []

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def matches_model(self):
        mm, model = self.mm, self.model
        seq, active = mm.invalidate_seq, mm.active_invalidate_ranges
        assert (seq, active) == (model.seq, model.active)
        assert active == len(self.open)
        # R81
        assert active > 0 or seq % 2 == 0
        assert seq % 2 == 0 or active >= 1
        if seq % 2 == 0:
            assert not any(s.where == "pending" for s in model.subs)
        # R82 (one step may run several epochs, e.g. invalidate_many)
        assert seq >= self.prev_seq
        # R84
        tree = list(mm.intervals())
        assert len(tree) == len(mm)
        assert sorted(map(id, tree)) == sorted(id(s.real) for s in model.tree())
        assert [t.start for t in tree] == sorted(t.start for t in tree)
        if self.prev_seq % 2 == 1 and seq == self.prev_seq:
            assert sorted(map(id, tree)) == sorted(map(id, self.prev_tree))
        for s in model.subs:
            assert s.real.invalidate_seq == s.seq, (s.kind, s.where)
        mm._check_invariants()
        self.prev_seq, self.prev_tree = seq, tree

    def teardown(self):
        while self.open:
            self.mm.invalidate_range_end(self.open.pop())
            self.model.end()
        assert self.mm.invalidate_seq == self.model.seq and self.model.seq % 2 == 0
        for s in list(self.model.subs):
            s.real.remove()
            self.model.remove(s)
        assert len(self.mm) == 0
        self.mm._check_invariants()


IntervalMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_interval_model = IntervalMachine.TestCase
