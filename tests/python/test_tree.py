"""IntervalTree on its own (SPEC section 5, API.md "IntervalTree"): every operation checked
against a brute-force list of closed intervals, with hypothesis; handles, KeyError, u64
extremes, and the buffer kinds the batch calls accept. Bad arguments are in test_bad_input.py."""

import random
from array import array

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mmn_fast import IntervalTree

from conftest import U64_MAX


class Brute:
    """The oracle: a dict handle -> (start, last, value), scanned in full for every query."""

    def __init__(self):
        self.items = {}

    def overlap(self, qs, ql):
        return sorted((s, l, v) for s, l, v in self.items.values() if s <= ql and qs <= l)

    def overlap_items(self, qs, ql):
        return sorted((h, s, l, v) for h, (s, l, v) in self.items.items() if s <= ql and qs <= l)

    def handles_overlapping(self, qs, ql):
        return sorted(h for h, (s, l, _) in self.items.items() if s <= ql and qs <= l)


def check_order(rows):
    """Answers come in ascending start (order among equal starts is unspecified)."""
    starts = [r[0] for r in rows]
    assert starts == sorted(starts)


# Coordinates cluster near 0, near the top of u64 and in a small middle band, so that
# overlaps, equal starts and the extremes are all common.
coord = st.one_of(st.integers(0, 40), st.integers(U64_MAX - 40, U64_MAX),
                  st.integers(2**63 - 20, 2**63 + 20))


@st.composite
def interval(draw):
    a, b = draw(coord), draw(coord)
    return (min(a, b), max(a, b))


class TreeMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tree = IntervalTree()
        self.brute = Brute()
        self.counter = 0

    @rule(iv=interval())
    def insert(self, iv):
        self.counter += 1
        value = self.counter
        h = self.tree.insert(iv[0], iv[1], value)
        assert isinstance(h, int) and h >= 0
        assert h not in self.brute.items  # a handle names one live interval
        self.brute.items[h] = (iv[0], iv[1], value)

    @precondition(lambda self: self.brute.items)
    @rule(data=st.data())
    def remove(self, data):
        h = data.draw(st.sampled_from(sorted(self.brute.items)))
        assert self.tree.remove(h) is None
        del self.brute.items[h]
        with pytest.raises(KeyError):
            self.tree.remove(h)

    @rule(q=interval())
    def overlap(self, q):
        got = self.tree.overlap(*q)
        check_order(got)
        assert sorted(got) == self.brute.overlap(*q)
        assert self.tree.count_overlap(*q) == len(got)
        with_handles = self.tree.overlap(*q, handles=True)
        check_order([r[1:] for r in with_handles])
        assert sorted(with_handles) == self.brute.overlap_items(*q)
        assert [r[1:] for r in with_handles] == got  # the same answer, handle in front

    @rule(q=interval(), by_stab=st.booleans())
    def remove_what_a_query_found(self, q, by_stab):
        """Issue 13: removing every handle a query returned empties what it found."""
        if by_stab:
            q = (q[0], q[0])
            found = self.tree.stab(q[0], handles=True)
        else:
            found = self.tree.overlap(*q, handles=True)
        for h, s, l, v in found:
            assert self.brute.items[h] == (s, l, v)
            self.tree.remove(h)
            del self.brute.items[h]
        assert self.tree.overlap(*q) == []
        assert self.tree.count_overlap(*q) == 0

    @rule(p=coord)
    def stab(self, p):
        got = self.tree.stab(p)
        check_order(got)
        assert sorted(got) == self.brute.overlap(p, p)
        assert sorted(self.tree.stab(p, handles=True)) == self.brute.overlap_items(p, p)

    @rule(qs=st.lists(interval(), max_size=5))
    def overlap_many(self, qs):
        idx, handles = self.tree.overlap_many([q[0] for q in qs], [q[1] for q in qs])
        assert len(idx) == len(handles)
        want = sorted((i, h) for i, q in enumerate(qs) for h in self.brute.handles_overlapping(*q))
        assert sorted(zip(idx, handles, strict=True)) == want

    @invariant()
    def contents(self):
        rows = list(self.tree)
        check_order(rows)
        assert sorted(rows) == sorted(self.brute.items.values())
        items = self.tree.items()
        assert [r[1:] for r in items] == rows
        assert sorted(items) == sorted((h, *row) for h, row in self.brute.items.items())
        assert len(self.tree) == len(self.brute.items)
        self.tree._check_invariants()  # the tree's, and one value per handle slot


TreeMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
test_tree_against_brute_force = TreeMachine.TestCase


@settings(max_examples=60, deadline=None)
@given(ivs=st.lists(interval(), max_size=40), queries=st.lists(interval(), max_size=10))
def test_from_arrays_matches_inserts(ivs, queries):
    """from_arrays builds the same tree as inserts; handle i is interval i; overlap_many
    answers every query as overlap does."""
    starts = array("Q", [s for s, _ in ivs])
    lasts = array("Q", [l for _, l in ivs])
    tree = IntervalTree.from_arrays(starts, lasts, [f"v{i}" for i in range(len(ivs))])
    assert len(tree) == len(ivs)
    assert sorted(tree) == sorted((s, l, f"v{i}") for i, (s, l) in enumerate(ivs))
    idx, handles = tree.overlap_many(array("Q", [q[0] for q in queries]),
                                     array("Q", [q[1] for q in queries]))
    got = sorted(zip(idx, handles, strict=True))
    want = sorted((qi, i) for qi, (qs, ql) in enumerate(queries)
                  for i, (s, l) in enumerate(ivs) if s <= ql and qs <= l)
    assert got == want
    for i in range(len(ivs)):
        tree.remove(i)
    assert len(tree) == 0 and list(tree) == []


def test_empty_tree():
    """An empty tree answers every query with nothing."""
    t = IntervalTree()
    assert len(t) == 0 and list(t) == []
    assert t.overlap(0, U64_MAX) == [] and t.stab(7) == [] and t.count_overlap(0, U64_MAX) == 0
    idx, handles = t.overlap_many([0, 5], [U64_MAX, 5])
    assert (list(idx), list(handles)) == ([], [])


def test_closed_endpoints_and_single_points():
    """[start, last] is closed on both sides; start == last is one point."""
    t = IntervalTree()
    t.insert(10, 20, "a")
    t.insert(21, 21, "p")
    assert [v for _, _, v in t.stab(10)] == ["a"]
    assert [v for _, _, v in t.stab(20)] == ["a"]
    assert [v for _, _, v in t.stab(21)] == ["p"]
    assert t.stab(9) == [] and t.stab(22) == []
    assert t.overlap(0, 9) == [] and t.count_overlap(20, 21) == 2


def test_u64_extremes():
    """Intervals and queries at 0 and 2**64-1 work, including the whole space."""
    t = IntervalTree()
    whole = t.insert(0, U64_MAX, "whole")
    top = t.insert(U64_MAX, U64_MAX, "top")
    bottom = t.insert(0, 0, "bottom")
    assert [v for *_, v in t.stab(U64_MAX)] == ["whole", "top"]
    assert sorted(v for *_, v in t.stab(0)) == ["bottom", "whole"]
    assert t.count_overlap(1, U64_MAX - 1) == 1
    idx, handles = t.overlap_many([U64_MAX], [U64_MAX])
    assert list(idx) == [0, 0] and sorted(handles) == sorted([whole, top])
    assert idx.typecode == "Q" and handles.typecode == "Q"
    t.remove(whole)
    assert t.count_overlap(0, U64_MAX) == 2
    assert bottom != top


def test_values_are_kept_by_identity():
    """The value objects come back as the very objects given (including unhashable ones and
    None by default)."""
    t = IntervalTree()
    v = [1, 2]
    t.insert(1, 2, v)
    t.insert(3, 4)
    assert t.overlap(0, 10)[0][2] is v
    assert t.stab(3) == [(3, 4, None)]


def test_remove_unknown_handles_is_key_error():
    """KeyError for a handle never issued or already removed; the tree is unchanged."""
    t = IntervalTree()
    h = t.insert(1, 2, "x")
    for bad in (h + 1, 10**6, U64_MAX):
        with pytest.raises(KeyError):
            t.remove(bad)
    assert list(t) == [(1, 2, "x")]
    t.remove(h)
    with pytest.raises(KeyError):
        t.remove(h)
    assert len(t) == 0


@pytest.mark.parametrize(("n", "shape"), [(3000, "pages"), (3000, "extremes"),
                                          (1 << 17, "user space"), ((1 << 17) + 1, "user space")])
def test_large_from_arrays_orders_like_the_inputs(n, shape):
    """from_arrays past the small-input sort, in both of the build's key forms: start and index
    packed in one word when both fit (page-aligned starts; starts below 2**47 with 2**17
    intervals), pairs otherwise (starts near 2**64; 2**17 + 1 intervals below 2**47). Every
    interval keeps its index as handle, and the tree lists them by start, ties by index."""
    rng = random.Random(n)
    starts = []
    for i in range(n):
        if shape == "pages":
            starts.append(rng.randrange(1 << 28) << 12)
        elif shape == "extremes":
            starts.append(rng.choice([0, U64_MAX - 9, rng.randrange(U64_MAX - 9)]))
        else:
            starts.append((1 << 47) - 1 if i == 0 else rng.randrange(1 << 47))
    lasts = [s + rng.randrange(10) for s in starts]
    tree = IntervalTree.from_arrays(array("Q", starts), array("Q", lasts))
    got = [(h, s, l) for h, s, l, _ in tree.items()]
    assert got == sorted(((i, s, l) for i, (s, l) in enumerate(zip(starts, lasts, strict=True))),
                         key=lambda row: (row[1], row[0]))
    tree._check_invariants()


def test_from_arrays_handles_are_indices():
    """API: for from_arrays the handle of an interval is its index, usable with remove."""
    t = IntervalTree.from_arrays([5, 1, 3], [6, 2, 4], ["a", "b", "c"])
    assert list(t) == [(1, 2, "b"), (3, 4, "c"), (5, 6, "a")]
    t.remove(0)
    assert list(t) == [(1, 2, "b"), (3, 4, "c")]
    idx, handles = t.overlap_many([0], [10])
    assert sorted(handles) == [1, 2]
    assert list(IntervalTree.from_arrays([7], [8])) == [(7, 8, None)]


def test_none_values_read_as_none_on_every_path_and_keep_their_slots_apart():
    """API: an interval inserted or built without a value has the value None, whatever read
    path, also in a slot that held another value before (the tree keeps no reference for
    None); values of the wrong length are refused even when empty."""
    t = IntervalTree.from_arrays([5, 1, 3], [6, 2, 4])
    assert list(t) == [(1, 2, None), (3, 4, None), (5, 6, None)]
    assert t.items() == [(1, 1, 2, None), (2, 3, 4, None), (0, 5, 6, None)]
    assert t.overlap(0, 10) == list(t) and t.stab(3) == [(3, 4, None)]
    t._check_invariants()
    valued = t.insert(10, 11, "v")
    t.remove(valued)
    again = t.insert(12, 13)  # takes the freed slot: no stale "v"
    assert again & 0xFFFF_FFFF == valued & 0xFFFF_FFFF
    assert t.stab(12) == [(12, 13, None)]
    t.insert(14, 15, None)
    assert t.stab(14) == [(14, 15, None)]
    t._check_invariants()
    with pytest.raises(ValueError, match="different lengths"):
        IntervalTree.from_arrays([1, 2], [3, 4], [])
    with pytest.raises(ValueError, match="different lengths"):
        IntervalTree.from_arrays([1, 2], [3, 4], ["a"])


def test_query_handles_after_from_arrays_are_indices():
    """Issue 13: overlap/stab/items with handles give from_arrays' indices, which remove takes;
    without the keyword the answers keep their (start, last, value) shape."""
    t = IntervalTree.from_arrays([5, 1, 3], [6, 2, 4], ["a", "b", "c"])
    assert t.items() == [(1, 1, 2, "b"), (2, 3, 4, "c"), (0, 5, 6, "a")]
    assert t.overlap(2, 5, handles=True) == [(1, 1, 2, "b"), (2, 3, 4, "c"), (0, 5, 6, "a")]
    assert t.overlap(2, 5) == [(1, 2, "b"), (3, 4, "c"), (5, 6, "a")]
    assert t.overlap(2, 5, handles=False) == t.overlap(2, 5)
    assert t.stab(3, handles=True) == [(2, 3, 4, "c")]
    assert t.stab(3) == [(3, 4, "c")]
    for h, *_ in t.overlap(3, 5, handles=True):
        t.remove(h)
    assert t.items() == [(1, 1, 2, "b")]
    with pytest.raises(TypeError):
        t.overlap(1, 2, True)  # keyword-only: a positional flag is refused


def _buffers():
    base = array("Q", [1, 100, 3, 200, 5, 300, U64_MAX, U64_MAX])
    evens = memoryview(base)[::2]
    odds = memoryview(base)[1::2]
    yield "array", array("Q", evens.tolist()), array("Q", odds.tolist())
    yield "memoryview", memoryview(array("Q", evens.tolist())), memoryview(array("Q", odds.tolist()))
    yield "strided memoryview", evens, odds
    yield "read-only cast", memoryview(bytes(array("Q", evens.tolist()))).cast("Q"), \
        memoryview(bytes(array("Q", odds.tolist()))).cast("Q")
    yield "list", evens.tolist(), odds.tolist()
    yield "tuple", tuple(evens.tolist()), tuple(odds.tolist())
    if array("L").itemsize == 8:
        yield "array L", array("L", evens.tolist()), array("L", odds.tolist())


@pytest.mark.parametrize("kind,starts,lasts", list(_buffers()), ids=[b[0] for b in _buffers()])
def test_buffer_kinds(kind, starts, lasts):
    """A buffer of u64 may be an array('Q'), any memoryview of Q items (strided, read-only),
    array('L') where it is 8 bytes, or a sequence of ints; all give the same answers."""
    want = [(1, 100, None), (3, 200, None), (5, 300, None), (U64_MAX, U64_MAX, None)]
    t = IntervalTree.from_arrays(starts, lasts)
    assert list(t) == want
    idx, handles = t.overlap_many(starts, lasts)
    assert sorted(zip(idx, handles, strict=True)) == [(q, h) for q in range(3) for h in range(3)] + [(3, 3)]


def test_numpy_buffers():
    """numpy uint64 arrays, strided views and uint64 scalars are accepted; a signed dtype is
    TypeError."""
    np = pytest.importorskip("numpy")
    data = np.array([1, 100, 3, 200, 5, 300], dtype=np.uint64)
    t = IntervalTree.from_arrays(data[::2], data[1::2])
    assert list(t) == [(1, 100, None), (3, 200, None), (5, 300, None)]
    idx, handles = t.overlap_many(np.array([150], dtype=np.uint64), np.array([160], dtype=np.uint64))
    assert sorted(zip(idx, handles, strict=True)) == [(0, 1), (0, 2)]
    h = t.insert(np.uint64(7), np.uint64(U64_MAX), "np")
    assert t.stab(U64_MAX) == [(7, U64_MAX, "np")] and isinstance(h, int)
    with pytest.raises(TypeError):
        IntervalTree.from_arrays(data.astype(np.int64), data.astype(np.int64))
