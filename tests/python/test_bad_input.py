"""Every argument is checked at the boundary (API.md "Input conventions", SPEC D3, D6, Q3, Q6):
each bad call raises the documented exception AND changes nothing (seq, active count, tree,
subscription seqs, has_notifiers, callbacks, the native journal)."""

import math
from array import array

import pytest

from mmn_fast import MM, Event, IntervalTree, Range

from conftest import U64_MAX, Idx, Ops, snapshot


class Boom(Exception):
    pass


class BadIdx:
    """__index__ raises: the exception must propagate unchanged."""

    def __index__(self):
        raise Boom("from __index__")


class LooksLikeRange:
    """Has every attribute of a Range but is not one."""

    start, end, event, blockable, vma, owner = 0x1000, 0x2000, Event.UNMAP, True, None, None


# (value, exception) for an integer argument that must be a u64
BAD_INTS = [
    pytest.param(-1, OverflowError, id="negative"),
    pytest.param(2**64, OverflowError, id="2**64"),
    pytest.param(-(2**70), OverflowError, id="huge-negative"),
    pytest.param(1.0, TypeError, id="float"),
    pytest.param(math.nan, TypeError, id="nan"),
    pytest.param("1", TypeError, id="str"),
    pytest.param(b"\x01", TypeError, id="bytes"),
    pytest.param(None, TypeError, id="None"),
    pytest.param(BadIdx(), Boom, id="raising-__index__"),
]


class World:
    """An mm with a Python subscription A on [0x1000, 0x1fff] and a native one B on
    [0x1800, 0x18ff], both touched once (seq 4)."""

    def __init__(self):
        self.mm = MM()
        self.ops = Ops()
        self.a = self.mm.insert_interval_notifier(0x1000, 0x1000, self.ops, tag="A")
        self.b = self.mm.insert_interval_notifier(0x1800, 0x100, None, tag="B")
        with self.mm.invalidate(0x1800, 0x1801):
            pass
        self.mm.drain_invalidated()
        self.ops.log.clear()
        self.before = snapshot(self.mm)

    def unchanged(self):
        assert snapshot(self.mm) == self.before
        assert self.ops.log == []
        assert self.mm.drain_invalidated() == []
        self.mm._check_invariants()


@pytest.fixture
def world():
    return World()


def enter(cm):
    with cm:
        raise AssertionError("the body must not run")


INT_SITES = {
    "insert.start": lambda w, v: w.mm.insert_interval_notifier(v, 0x10, None),
    "insert.length": lambda w, v: w.mm.insert_interval_notifier(0x100, v, Ops()),
    "Range.start": lambda w, v: w.mm.invalidate_range_start(Range(v, U64_MAX)),
    "Range.end": lambda w, v: w.mm.invalidate_range_start(Range(0, v)),
    "Range.migrate.start": lambda w, v: Range.migrate(v, U64_MAX, "me"),
    "invalidate.start": lambda w, v: enter(w.mm.invalidate(v, U64_MAX)),
    "invalidate.end": lambda w, v: enter(w.mm.invalidate(0, v)),
    "invalidate_range.start": lambda w, v: w.mm.invalidate_range(v, U64_MAX),
    "invalidate_range.end": lambda w, v: w.mm.invalidate_range(0, v),
    "clear_young.start": lambda w, v: w.mm.clear_young(v, U64_MAX),
    "clear_flush_young.end": lambda w, v: w.mm.clear_flush_young(0, v),
    "test_young": lambda w, v: w.mm.test_young(v),
    "change_pte.address": lambda w, v: w.mm.change_pte(v, 0),
    "set_seq": lambda w, v: w.a.set_seq(v),
    "set_seq.native": lambda w, v: w.b.set_seq(v),
    "invalidate_many.starts[1]": lambda w, v: w.mm.invalidate_many([0x1000, v], [0x1001, U64_MAX]),
    "invalidate_many.ends[0]": lambda w, v: w.mm.invalidate_many([0x1000], [v]),
}


@pytest.mark.parametrize("site", sorted(INT_SITES))
@pytest.mark.parametrize("value,exc", BAD_INTS)
def test_integer_arguments(world, site, value, exc):
    """API "Input conventions", D3: outside u64 is OverflowError, floats / str / bytes / None
    are TypeError, a raising __index__ propagates; nothing changes."""
    with pytest.raises(exc):
        INT_SITES[site](world, value)
    world.unchanged()


@pytest.mark.parametrize("site", ["read_retry", "check_retry"])
@pytest.mark.parametrize("value", [1.0, "1", None, b"1", [1]], ids=repr)
def test_retry_seq_of_wrong_type(world, site, value):
    """API read_retry/check_retry: seq is an int; anything else is TypeError."""
    with pytest.raises(TypeError):
        getattr(world.a, site)(value)
    world.unchanged()


@pytest.mark.parametrize("site", ["read_retry", "check_retry"])
def test_retry_seq_accepts_index_objects(world, site):
    """API "Input conventions": an integer argument is anything with __index__ (also numpy
    integer scalars); a raising __index__ propagates."""
    s = world.a.read_begin()
    assert getattr(world.a, site)(Idx(s)) is False
    assert getattr(world.a, site)(Idx(s + 2)) is True
    with pytest.raises(Boom):
        getattr(world.a, site)(BadIdx())
    np = pytest.importorskip("numpy")
    assert getattr(world.a, site)(np.uint64(s)) is False
    assert getattr(world.a, site)(np.int64(s + 2)) is True


@pytest.mark.parametrize("site", ["read_retry", "check_retry"])
@pytest.mark.parametrize("value", [-1, 2**64])
def test_retry_seq_outside_u64(world, site, value):
    """API: values outside u64 raise OverflowError."""
    with pytest.raises(OverflowError):
        getattr(world.a, site)(value)
    world.unchanged()


def test_integer_likes_are_accepted(world):
    """API "Input conventions": bools and __index__ objects are integers."""
    mm = world.mm
    s = mm.insert_interval_notifier(True, Idx(0x10), None, tag="idx")
    assert (s.start, s.last) == (1, 0x10) and type(s.start) is int
    r = Range(Idx(0x1000), Idx(0x1001), Idx(int(Event.CLEAR)))
    assert (r.start, r.end, r.event) == (0x1000, 0x1001, Event.CLEAR)
    mm.invalidate_range_start(r)
    mm.invalidate_range_end(r)
    assert world.ops.log[0].range is r
    with mm.invalidate(False, Idx(2)):
        pass
    assert mm.drain_invalidated() == ["idx"]
    world.a.set_seq(Idx(41))
    assert world.a.invalidate_seq == 41
    assert mm.invalidate_many([Idx(0x1000), True], array("Q", [0x1001, 2])) == 2


def test_numpy_integers_are_accepted(world):
    """API "Input conventions": numpy integer scalars and uint64 arrays are accepted."""
    np = pytest.importorskip("numpy")
    s = world.mm.insert_interval_notifier(np.uint64(0x3000), np.int32(0x10), None)
    assert s.last == 0x300F
    arr = np.array([0x1000, 0x3000, 0x1800, 0x9000], dtype=np.uint64)
    assert world.mm.invalidate_many(arr[::2], arr[::2] + np.uint64(1)) == 3  # A; A and B
    with pytest.raises(TypeError):
        world.mm.invalidate_many(arr.astype(np.float64), arr.astype(np.float64))


@pytest.mark.parametrize("start,length", [(0, 0), (U64_MAX, 2), (2, U64_MAX), (1 << 63, (1 << 63) + 1),
                                          (U64_MAX, U64_MAX)])
def test_insert_length_zero_or_overflowing(start, length):
    """R33, D3, Q3, T13: length 0 or start + length - 1 > 2**64-1 is OverflowError and a fresh
    mm gets nothing (not even has_notifiers)."""
    mm = MM()
    before = snapshot(mm)
    with pytest.raises(OverflowError):
        mm.insert_interval_notifier(start, length, Ops())
    assert snapshot(mm) == before and not mm.has_notifiers


@pytest.mark.parametrize("ops", [5, "invalidate", object(), type("NoneAttr", (), {"invalidate": None})(),
                                 type("IntAttr", (), {"invalidate": 3})()], ids=repr)
def test_insert_with_unusable_ops(ops):
    """API "Ops": neither a callable invalidate nor callable itself is TypeError at insert,
    and nothing is created."""
    mm = MM()
    before = snapshot(mm)
    with pytest.raises(TypeError):
        mm.insert_interval_notifier(0, 0x10, ops)
    assert snapshot(mm) == before


def test_ops_callable_with_non_callable_invalidate_is_called_itself(mm):
    """API "Ops": when getattr(ops, "invalidate") is not callable, ops itself is called."""
    calls = []

    class Odd:
        invalidate = 7

        def __call__(self, sub, rng, cur_seq):
            calls.append(cur_seq)
            return True

    mm.insert_interval_notifier(0, 0x10, Odd())
    with mm.invalidate(0, 1):
        pass
    assert calls == [3]


RANGE_PAIRS = {
    "Range": lambda w, s, e: Range(s, e),
    "Range.migrate": lambda w, s, e: Range.migrate(s, e, None),
    "invalidate": lambda w, s, e: enter(w.mm.invalidate(s, e)),
    "invalidate_range": lambda w, s, e: w.mm.invalidate_range(s, e),
    "clear_young": lambda w, s, e: w.mm.clear_young(s, e),
    "clear_flush_young": lambda w, s, e: w.mm.clear_flush_young(s, e),
    "invalidate_many": lambda w, s, e: w.mm.invalidate_many([0x1000, s], [0x1001, e]),
}


@pytest.mark.parametrize("site", sorted(RANGE_PAIRS))
@pytest.mark.parametrize("start,end", [(0x1800, 0x1800), (0x1801, 0x1800), (U64_MAX, U64_MAX),
                                       (U64_MAX, 0), (1, 0)])
def test_range_pair_start_not_below_end(world, site, start, end):
    """API, D3, Q6: a range pair with start >= end is ValueError; a batch checks every pair
    before it runs any (the valid first pair did not invalidate A)."""
    with pytest.raises(ValueError):
        RANGE_PAIRS[site](world, start, end)
    world.unchanged()


@pytest.mark.parametrize("event,exc", [(7, ValueError), (-1, ValueError), (2**64, ValueError),
                                       (1.0, TypeError), ("UNMAP", TypeError),
                                       (None, TypeError), (BadIdx(), Boom)], ids=repr)
@pytest.mark.parametrize("site", ["Range", "invalidate", "invalidate_many", "invalidate_many empty"])
def test_invalid_event(world, site, event, exc):
    """API: an event is an Event or an int in 0..6; any other int is ValueError, other types
    TypeError; invalidate_many checks it first, even for an empty batch."""
    calls = {
        "Range": lambda: Range(0x1000, 0x2000, event),
        "invalidate": lambda: enter(world.mm.invalidate(0x1000, 0x2000, event)),
        "invalidate_many": lambda: world.mm.invalidate_many([0x1000], [0x2000], event),
        "invalidate_many empty": lambda: world.mm.invalidate_many([], [], event),
    }
    with pytest.raises(exc):
        calls[site]()
    world.unchanged()


def test_valid_events_by_int(world):
    """T64: ints 0..6 are the Events of the same value."""
    for value in range(7):
        r = Range(0x1000, 0x1001, value)
        assert r.event == value and r.event is Event(value)


@pytest.mark.parametrize("obj", [LooksLikeRange(), None, (0x1000, 0x2000), "range", 0x1000],
                         ids=repr)
@pytest.mark.parametrize("call", ["invalidate_range_start", "invalidate_range_start_nonblock"])
def test_start_of_something_not_a_range(world, obj, call):
    """API "Range": an object that only looks like a Range is TypeError; nothing changes."""
    with pytest.raises(TypeError):
        getattr(world.mm, call)(obj)
    world.unchanged()


@pytest.mark.parametrize("obj", [LooksLikeRange(), None, (0x1000, 0x2000)], ids=repr)
def test_end_of_something_not_a_range(world, obj):
    """API: invalidate_range_end of a non-Range is TypeError and does not end the open
    invalidation."""
    r = Range(0x1000, 0x2000)
    world.mm.invalidate_range_start(r)
    open_state = snapshot(world.mm)
    with pytest.raises(TypeError):
        world.mm.invalidate_range_end(obj)
    assert snapshot(world.mm) == open_state
    world.mm.invalidate_range_end(r)
    assert world.mm.active_invalidate_ranges == 0


def test_end_with_nothing_running(world):
    """D6, R51: invalidate_range_end (also only_end) without a running invalidation is
    RuntimeError and changes nothing."""
    for only_end in (False, True):
        with pytest.raises(RuntimeError):
            world.mm.invalidate_range_end(Range(0x1000, 0x2000), only_end=only_end)
    world.unchanged()


def test_remove_twice(world):
    """R42, D6, T33: a second remove() is ValueError and changes nothing."""
    world.b.remove()
    world.before = snapshot(world.mm)
    for _ in range(2):
        with pytest.raises(ValueError):
            world.b.remove()
    world.unchanged()


def test_insert_after_release(world):
    """D12, T54: insert and a second release() after release() are ValueError."""
    world.mm.release()
    world.ops.log.clear()
    world.mm.drain_invalidated()
    world.before = snapshot(world.mm)
    with pytest.raises(ValueError):
        world.mm.insert_interval_notifier(0, 1, None)
    with pytest.raises(ValueError):
        world.mm.release()
    world.unchanged()


@pytest.mark.parametrize("timeout,exc", [(-1, ValueError), (-0.001, ValueError),
                                         (math.nan, ValueError), (-math.inf, ValueError),
                                         (True, TypeError), (False, TypeError),
                                         ("1", TypeError), (b"", TypeError), ([], TypeError),
                                         (1j, TypeError)], ids=repr)
def test_read_begin_bad_timeout(world, timeout, exc):
    """API read_begin: NaN or a negative number is ValueError; a bool or a non-number is
    TypeError; nothing changes."""
    with pytest.raises(exc):
        world.a.read_begin(timeout)
    with pytest.raises(exc):
        world.a.read_begin(timeout=timeout)
    world.unchanged()


@pytest.mark.parametrize("timeout", [None, 0, 0.0, 1, 2.5, math.inf, 1e300, 2**70], ids=repr)
def test_read_begin_good_timeout(world, timeout):
    """API read_begin: None, any number >= 0, inf or a too-large value are valid."""
    assert world.a.read_begin(timeout) == world.a.invalidate_seq == 3
    assert world.a.read_begin(timeout=timeout) == 3


BAD_BUFFERS = [
    pytest.param(b"\0" * 8, TypeError, id="bytes"),
    pytest.param(bytearray(8), TypeError, id="bytearray"),
    pytest.param(array("q", [1]), TypeError, id="array-q"),
    pytest.param(array("I", [1, 2]), TypeError, id="array-I"),
    pytest.param(array("d", [1.0]), TypeError, id="array-d"),
    pytest.param(memoryview(bytearray(8)), TypeError, id="memoryview-B"),
    pytest.param(memoryview(array("Q", [1, 2, 3, 4])).cast("B").cast("Q", (2, 2)), TypeError,
                 id="2d"),
    pytest.param(None, TypeError, id="None"),
    pytest.param(7, TypeError, id="int"),
    pytest.param("12", TypeError, id="str"),
    pytest.param([1.5], TypeError, id="float-item"),
    pytest.param([None], TypeError, id="None-item"),
    pytest.param([-1], OverflowError, id="negative-item"),
    pytest.param([2**64], OverflowError, id="big-item"),
    pytest.param([BadIdx()], Boom, id="raising-item"),
    pytest.param([1, 2], ValueError, id="length-mismatch"),
]


@pytest.mark.parametrize("buf,exc", BAD_BUFFERS)
@pytest.mark.parametrize("position", ["first", "second"])
def test_invalidate_many_bad_buffer(world, buf, exc, position):
    """API "buffer of u64": other item formats, bytes/bytearray, non-u64 items are rejected,
    lengths must match; the batch runs nothing."""
    good = [0x1FFF]
    args = (buf, [U64_MAX]) if position == "first" else (good, buf)
    with pytest.raises(exc):
        world.mm.invalidate_many(*args)
    world.unchanged()


# -- IntervalTree ---------------------------------------------------------------------------

@pytest.fixture
def tree():
    t = IntervalTree()
    t.insert(10, 20, "a")
    t.insert(15, 15, "b")
    return t


TREE_INT_SITES = {
    "insert.start": lambda t, v: t.insert(v, U64_MAX, "x"),
    "insert.last": lambda t, v: t.insert(0, v, "x"),
    "overlap.start": lambda t, v: t.overlap(v, U64_MAX),
    "overlap.last": lambda t, v: t.overlap(0, v),
    "count_overlap": lambda t, v: t.count_overlap(0, v),
    "stab": lambda t, v: t.stab(v),
}


@pytest.mark.parametrize("site", sorted(TREE_INT_SITES))
@pytest.mark.parametrize("value,exc", BAD_INTS)
def test_tree_integer_arguments(tree, site, value, exc):
    """API "IntervalTree" + input conventions; the tree is unchanged."""
    before = list(tree)
    with pytest.raises(exc):
        TREE_INT_SITES[site](tree, value)
    assert list(tree) == before


@pytest.mark.parametrize("call", ["insert", "overlap", "count_overlap"])
def test_tree_start_above_last(tree, call):
    """API: start > last is ValueError everywhere (start == last is a point)."""
    before = list(tree)
    with pytest.raises(ValueError):
        getattr(tree, call)(21, 20)
    assert list(tree) == before
    assert getattr(tree, call)(20, 20) is not None


@pytest.mark.parametrize("handle", [0.0, "0", None], ids=repr)
def test_tree_remove_handle_of_wrong_type(tree, handle):
    """API input conventions: floats, strings and None are TypeError for an integer
    argument (the handle); the tree is unchanged."""
    before = list(tree)
    with pytest.raises(TypeError):
        tree.remove(handle)
    assert list(tree) == before


def test_tree_remove_accepts_index_handle(tree):
    """API input conventions: a handle given as an __index__ object names that handle."""
    h = tree.insert(1, 2, "c")
    tree.remove(Idx(h))
    assert [v for *_, v in tree] == ["a", "b"]


@pytest.mark.parametrize("buf,exc", BAD_BUFFERS)
@pytest.mark.parametrize("call", ["from_arrays", "overlap_many"])
def test_tree_batch_bad_buffer(tree, buf, exc, call):
    """API "buffer of u64" for the tree's batch calls; the tree is unchanged."""
    before = list(tree)
    with pytest.raises(exc):
        if call == "from_arrays":
            IntervalTree.from_arrays([0], buf)
        else:
            tree.overlap_many(buf, [U64_MAX])
    assert list(tree) == before


def test_tree_batch_start_above_last_and_values_length():
    """API: from_arrays/overlap_many reject start > last in any pair; from_arrays' values must
    have the arrays' length."""
    with pytest.raises(ValueError):
        IntervalTree.from_arrays([1, 5], [2, 4])
    with pytest.raises(ValueError):
        IntervalTree.from_arrays([1, 5], [2, 6], ["only one"])
    with pytest.raises(ValueError):
        IntervalTree.from_arrays([1], [2], ["a", "b"])
    t = IntervalTree.from_arrays([1], [2])
    with pytest.raises(ValueError):
        t.overlap_many([0, 3], [5, 2])
