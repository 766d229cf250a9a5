"""API.md "Input conventions", a buffer of u64: every kind the batch calls
(``IntervalTree.from_arrays``, ``overlap_many``, ``MM.invalidate_many``) read in place, every
kind they refuse, and that a refused batch changes nothing (D3).

The accepted kinds are checked against the same batch given as a list of ints; the batches
come in a short form and in a long one (past the length decoded with the GIL released).
"""

from __future__ import annotations

import ctypes
import sys
from array import array

import pytest

from mmn_fast import MM, IntervalTree

U64_MAX = 2**64 - 1
LONG = 5000  # > the Rust side's DETACH_MIN (4096): decoded with the GIL released


def _unaligned(values):
    """A read-write memoryview of Q items starting one byte into its storage."""
    raw = bytearray(8 * len(values) + 1)
    view = memoryview(raw)[1:].cast("Q")
    view[:] = array("Q", values)
    return view


def _strided(values):
    """A memoryview of every other item of an array twice as long."""
    base = array("Q", [0]) * (2 * len(values))
    view = memoryview(base)[::2]
    view[:] = array("Q", values)
    return view


def _reversed(values):
    """A memoryview with a negative stride."""
    return memoryview(array("Q", values[::-1]))[::-1]


def _ctypes(values):
    return (ctypes.c_uint64 * len(values))(*values)


def _read_only(values):
    return memoryview(bytes(array("Q", values))).cast("Q")


KINDS = {
    "list": list,
    "tuple": tuple,
    "generator": lambda v: (x for x in v),
    "array Q": lambda v: array("Q", v),
    "memoryview": lambda v: memoryview(array("Q", v)),
    "read-only memoryview": _read_only,
    "strided memoryview": _strided,
    "negative-stride memoryview": _reversed,
    "unaligned memoryview": _unaligned,
    "ctypes c_uint64 (format <Q)": _ctypes,
}
if array("L").itemsize == 8:
    KINDS["array L"] = lambda v: array("L", v)


NUMPY_KINDS = ["numpy uint64", "numpy explicit native order", "numpy every third",
               "numpy reversed", "numpy column of 2-D"]


def _numpy_kinds():
    np = pytest.importorskip("numpy")
    native = "<u8" if sys.byteorder == "little" else ">u8"
    return {
        "numpy uint64": lambda v: np.array(v, dtype=np.uint64),
        "numpy explicit native order": lambda v: np.array(v, dtype=native),
        "numpy every third": lambda v: np.repeat(np.array(v, dtype=np.uint64), 3)[::3],
        "numpy reversed": lambda v: np.array(v[::-1], dtype=np.uint64)[::-1],
        "numpy column of 2-D": lambda v: np.array([v, v], dtype=np.uint64).T[:, 0],
    }


def _intervals(n):
    """n closed intervals with u64 extremes among them."""
    starts = [(i * 0x1000) % (2**63) for i in range(n)]
    lasts = [s + 0x17FF for s in starts]
    starts[-1], lasts[-1] = U64_MAX, U64_MAX
    return starts, lasts


def _all_kinds():
    return list(KINDS.items())


@pytest.fixture(params=["short", "long"])
def size(request):
    return 3 if request.param == "short" else LONG


def _check_kind(make, size):
    starts, lasts = _intervals(size)
    want_tree = IntervalTree.from_arrays(starts, lasts)
    got_tree = IntervalTree.from_arrays(make(starts), make(lasts), range(size))
    assert [(s, l) for s, l, _ in got_tree] == [(s, l) for s, l, _ in want_tree]
    assert [v for *_, v in got_tree] == sorted(range(size), key=lambda i: (starts[i], lasts[i]))

    idx, handles = got_tree.overlap_many(make(starts), make(lasts))
    want_idx, want_handles = want_tree.overlap_many(starts, lasts)
    assert isinstance(idx, array) and idx.typecode == "Q"
    assert isinstance(handles, array) and handles.typecode == "Q"
    assert list(zip(idx, handles, strict=True)) == list(zip(want_idx, want_handles, strict=True))

    starts_r = starts[:-1] + [U64_MAX - 1]
    ends = [s + 0x1800 for s in starts[:-1]] + [U64_MAX]
    mm_want, mm_got = MM(), MM()
    for mm in (mm_want, mm_got):
        mm.insert_interval_notifier(0x2000, 0x1000, None, tag="a")
    assert mm_got.invalidate_many(make(starts_r), make(ends)) == mm_want.invalidate_many(starts_r, ends)
    assert mm_got.invalidate_seq == mm_want.invalidate_seq
    assert mm_got.drain_invalidated() == mm_want.drain_invalidated()


@pytest.mark.parametrize("kind,make", _all_kinds(), ids=[k for k, _ in _all_kinds()])
def test_accepted_kinds_give_the_same_answers(kind, make, size):
    """API "buffer of u64": any stride, alignment, read-only or not, ctypes' '<Q', 'L' where it
    is 8 bytes, and sequences of ints: all the same as a list, in each batch call."""
    _check_kind(make, size)


@pytest.mark.parametrize("kind", NUMPY_KINDS)
def test_numpy_kinds(kind, size):
    """API "buffer of u64": numpy uint64 arrays, contiguous or not ('L' / '<Q' formats)."""
    _check_kind(_numpy_kinds()[kind], size)


def _refused():
    yield "bytes", b"\0" * 8
    yield "bytearray", bytearray(8)
    yield "str", "12"
    yield "memoryview of bytes", memoryview(b"\0" * 8)
    yield "array q", array("q", [1])
    yield "array I", array("I", [1, 2])
    yield "array d", array("d", [1.0])
    yield "ctypes c_int64", (ctypes.c_int64 * 1)(1)
    yield "ctypes c_uint32", (ctypes.c_uint32 * 2)(1, 2)
    yield "ctypes c_double", (ctypes.c_double * 1)(1.0)
    yield "2-D memoryview", memoryview(array("Q", [1, 2, 3, 4])).cast("B").cast("Q", (2, 2))
    yield "0-D memoryview", memoryview(array("Q", [1])).cast("B").cast("Q", ())
    yield "ctypes structure of one u64", (_Word * 1)()


class _Word(ctypes.Structure):
    _fields_ = [("v", ctypes.c_uint64)]


def _numpy_refused():
    np = pytest.importorskip("numpy")
    other = ">u8" if sys.byteorder == "little" else "<u8"
    return {
        "numpy int64": np.array([1], dtype=np.int64),
        "numpy float64": np.array([1.0]),
        "numpy uint32": np.array([1], dtype=np.uint32),
        "numpy foreign byte order": np.array([1], dtype=other),
        "numpy 2-D": np.array([[1]], dtype=np.uint64),
    }


def _bad_mm():
    """An MM with one native subscription at [0x1000, 0x1fff] and a snapshot of its state."""
    mm = MM()
    mm.insert_interval_notifier(0x1000, 0x1000, None, tag="a")

    def state():
        return (mm.invalidate_seq, mm.active_invalidate_ranges, mm.drain_invalidated())

    return mm, state


def _assert_refused(bad, exc):
    """`bad` in either position of each batch call: `exc`, and nothing changed (D3)."""
    good = [0x1000]
    mm, state = _bad_mm()
    before = state()
    tree = IntervalTree.from_arrays([0x1000], [0x1FFF], ["v"])
    for args in ((bad, good), (good, bad)):
        with pytest.raises(exc):
            mm.invalidate_many(*args)
        assert state() == before
        with pytest.raises(exc):
            IntervalTree.from_arrays(*args)
        with pytest.raises(exc):
            tree.overlap_many(*args)
        assert list(tree) == [(0x1000, 0x1FFF, "v")]


@pytest.mark.parametrize("kind,bad", list(_refused()), ids=[k for k, _ in _refused()])
def test_refused_kinds_are_type_error(kind, bad):
    """API "buffer of u64": other item formats or byte orders, bytes/bytearray/str, and
    buffers that are not one-dimensional are TypeError; nothing changes."""
    _assert_refused(bad, TypeError)


@pytest.mark.parametrize("kind", ["numpy int64", "numpy float64", "numpy uint32",
                                  "numpy foreign byte order", "numpy 2-D"])
def test_numpy_refused_kinds(kind):
    """API "buffer of u64": numpy arrays of another dtype, byte order or shape: TypeError."""
    _assert_refused(_numpy_refused()[kind], TypeError)


@pytest.mark.parametrize("kind,make", _all_kinds(), ids=[k for k, _ in _all_kinds()])
def test_different_lengths_are_value_error(kind, make):
    """API: two buffers of different lengths are ValueError; nothing changes."""
    mm, state = _bad_mm()
    before = state()
    with pytest.raises(ValueError, match="different lengths"):
        mm.invalidate_many(make([0x1000] * LONG), make([0x1001] * (LONG - 1)))
    assert state() == before
    with pytest.raises(ValueError, match="different lengths"):
        IntervalTree.from_arrays(make([1, 2]), make([3]))
    with pytest.raises(ValueError, match="different lengths"):
        IntervalTree().overlap_many(make([1]), make([]))


@pytest.mark.parametrize("kind,make", _all_kinds(), ids=[k for k, _ in _all_kinds()])
def test_bad_pair_at_the_end_of_a_long_batch_changes_nothing(kind, make):
    """D3: the whole batch is checked before the first range runs, also when it is decoded
    with the GIL released; the error names the pair."""
    mm, state = _bad_mm()
    before = state()
    starts = [0x1000] * LONG
    ends = [0x1001] * (LONG - 1) + [0x1000]  # the last range is empty
    with pytest.raises(ValueError, match=f"range {LONG - 1}"):
        mm.invalidate_many(make(starts), make(ends))
    assert state() == before
    lasts = [0x1001] * (LONG - 1) + [0xFFF]  # the last interval has start > last
    with pytest.raises(ValueError, match=f"interval {LONG - 1}"):
        IntervalTree.from_arrays(make(starts), make(lasts))


def test_buffers_are_released_when_the_call_returns():
    """The batch calls hold a buffer only while they read it: afterwards the array can be
    resized again (an exported array refuses with BufferError)."""
    starts, lasts = array("Q", [1, 5]), array("Q", [2, 6])
    tree = IntervalTree.from_arrays(starts, lasts)
    tree.overlap_many(starts, lasts)
    MM().invalidate_many(starts, array("Q", [3, 7]))
    with pytest.raises(ValueError):
        MM().invalidate_many(starts, array("Q", [1, 7]))
    starts.append(9)
    lasts.append(10)
    assert len(starts) == len(lasts) == 3


def test_callback_may_resize_the_batch_buffers():
    """invalidate_many has decoded (copied) its batch before the first callback runs: a
    callback that grows the arrays it was given neither fails nor changes the batch."""
    starts, ends = array("Q", [0x1000, 0x1000]), array("Q", [0x1001, 0x1001])
    seen = []

    def invalidate(sub, rng, cur_seq):
        seen.append((rng.start, rng.end))
        starts.extend([0x1000] * 100)
        ends.extend([0x1001] * 100)
        return True

    mm = MM()
    mm.insert_interval_notifier(0x1000, 0x1000, invalidate)
    assert mm.invalidate_many(starts, ends) == 2
    assert seen == [(0x1000, 0x1001)] * 2
    assert len(starts) == 202
