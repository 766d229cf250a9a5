"""Hypothesis fuzz of the Python boundary with hostile values (issue 6; API.md "Input
conventions", SPEC D3, D6).

Every entry point that takes numbers or buffers is fed huge ints, negatives, floats, strings,
None, bools, int subclasses with an odd ``__index__``, objects whose ``__index__`` raises or
returns a non-int, and wrongly typed, mis-sized or non-contiguous buffers. Checked:

- only the documented exceptions come out (``TypeError``, ``ValueError``, ``OverflowError``, or
  the very exception an ``__index__`` raised), never a ``SystemError`` or a Rust panic
  (``pyo3_runtime.PanicException`` is a ``BaseException``, so it fails the check too);
- a call that raises changes nothing: ``invalidate_seq``, ``active_invalidate_ranges``, the
  subscriptions, the native journal (``drain_invalidated``);
- where the input is made of plain ints the outcome is the exact one API.md gives.
"""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmn_fast import MM, Event, IntervalTree, Range

from conftest import Idx

U64 = 1 << 64
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class IndexBoom(Exception):
    """Raised by a hostile ``__index__``; API.md: it propagates."""


class OddInt(int):
    """An int subclass whose ``__index__`` disagrees with its value."""

    def __index__(self):
        return -1

    def __float__(self):
        return float("nan")


class Raiser:
    def __index__(self):
        raise IndexBoom("hostile __index__")


class BadIndex:
    def __index__(self):
        return "not an int"


ALLOWED = (TypeError, ValueError, OverflowError, IndexBoom)

edge_ints = st.sampled_from([0, 1, 2, 0x1000, U64 - 1, U64, U64 + 1, -1, -(1 << 63), 1 << 63, (1 << 200)])
plain_ints = st.one_of(edge_ints, st.integers(-(1 << 70), 1 << 70), st.integers(0, 1 << 16))
hostile = st.one_of(
    plain_ints,
    plain_ints.map(Idx),
    plain_ints.map(OddInt),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.none(),
    st.just(Raiser()),
    st.just(BadIndex()),
    st.just(object()),
    st.just(1 + 2j),
)


def as_u64(x):
    """The integer a well-formed argument stands for (None: not an integer argument)."""
    if type(x) is int or type(x) is bool:
        return int(x)
    if isinstance(x, Idx) and type(x.value) is int:
        return x.value
    return None


def outcome(fn, *args, **kwargs):
    """Call; return ("ok", result) or ("raised", exc), failing on an undocumented exception."""
    try:
        return "ok", fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - checked right here
        assert isinstance(exc, ALLOWED), f"undocumented {type(exc).__name__}: {exc!r} from {fn.__name__}{args}"
        return "raised", exc


def make_mm():
    """An MM with native and callback subscriptions, one of each kind hit by most ranges."""
    mm = MM()
    calls = []
    subs = [
        mm.insert_interval_notifier(0, 0x10000, tag="low"),
        mm.insert_interval_notifier(0x8000, 0x1000, lambda s, r, c: calls.append(c) or True, tag="cb"),
        mm.insert_interval_notifier(U64 - 0x1000, 0x1000, tag="top"),
    ]
    mm.drain_invalidated()
    return mm, subs, calls


def state(mm):
    return (mm.invalidate_seq, mm.active_invalidate_ranges, [(s.start, s.last, s.tag) for s in mm.intervals()])


def assert_unchanged(mm, before, calls):
    assert state(mm) == before
    assert mm.drain_invalidated() == []
    assert calls == []
    mm._check_invariants()


@FUZZ
@given(start=hostile, length=hostile, tag=hostile)
def test_insert_interval_notifier(start, length, tag):
    mm, _, calls = make_mm()
    before = state(mm)
    kind, res = outcome(mm.insert_interval_notifier, start, length, None, tag=tag)
    s, n = as_u64(start), as_u64(length)
    if kind == "raised":
        assert_unchanged(mm, before, calls)
        if s is not None and n is not None:
            assert isinstance(res, OverflowError), res  # D3: outside u64, length 0, or overflow
            assert not (0 <= s < U64 and 0 < n < U64 and s + n - 1 < U64)
    else:
        assert len(mm) == 4 and res.tag is tag
        if s is not None and n is not None:
            assert (res.start, res.length) == (s, n)
        assert res.last - res.start + 1 == res.length and res.last < U64


@FUZZ
@given(start=hostile, end=hostile, event=st.one_of(hostile, st.sampled_from(list(Event))))
def test_invalidate_and_range(start, end, event):
    mm, _, calls = make_mm()
    before = state(mm)
    kind, res = outcome(Range, start, end, event)
    kind2, res2 = outcome(lambda: mm.invalidate(start, end, event).__enter__())
    if kind2 == "ok":
        assert mm.active_invalidate_ranges == 1
        mm.invalidate_range_end(res2)
        assert mm.invalidate_seq % 2 == 0 and mm.active_invalidate_ranges == 0
    else:
        assert_unchanged(mm, before, calls)
    s, e = as_u64(start), as_u64(end)
    ev = as_u64(event) if not isinstance(event, Event) else int(event)
    if s is not None and e is not None and ev is not None and type(event) is not bool:
        valid = 0 <= s < U64 and 0 <= e < U64 and s < e and 0 <= ev <= 6
        assert (kind == "ok") == valid, (start, end, event, res)
        assert (kind2 == "ok") == valid


def u64_buffers():
    """Buffers and sequences for invalidate_many / from_arrays / overlap_many, many hostile."""
    vals = st.lists(st.integers(0, 0x20000), max_size=8)
    good = vals.map(lambda v: array("Q", v))
    return st.one_of(
        good,
        vals.map(lambda v: memoryview(array("Q", v + v))[::2]),  # non-contiguous, valid
        vals.map(lambda v: memoryview(array("Q", v)).toreadonly()),
        vals,  # a list of ints
        vals.map(tuple),
        st.lists(hostile, max_size=4),  # batch items: objects with no __index__ included
        vals.map(lambda v: array("q", v)),
        vals.map(lambda v: array("d", v)),
        vals.map(lambda v: array("I", v)),
        vals.map(lambda v: array("B", [x & 0xFF for x in v])),
        vals.map(lambda v: bytes(array("Q", v))),
        vals.map(lambda v: bytearray(array("Q", v))),
        vals.map(lambda v: memoryview(bytes(array("Q", v))).cast("B")),
        vals.map(lambda v: memoryview(array("Q", v + v)).cast("B").cast("Q", [2, len(v)]) if v else b""),
        st.text(max_size=3),
        st.none(),
        hostile,
    )


def values_of(buf):
    """The u64 list a well-formed batch argument stands for, else None."""
    if isinstance(buf, (bytes, bytearray, str)):
        return None
    if isinstance(buf, array):
        return list(buf) if buf.typecode in "QL" and buf.itemsize == 8 else None
    if isinstance(buf, memoryview):
        return buf.tolist() if buf.format in ("Q", "L") and buf.ndim == 1 and buf.itemsize == 8 else None
    if isinstance(buf, (list, tuple)):
        out = [as_u64(x) for x in buf]
        return out if all(x is not None and 0 <= x < U64 for x in out) else None
    return None


@FUZZ
@given(starts=u64_buffers(), ends=u64_buffers(), event=st.one_of(st.just(Event.UNMAP), hostile))
def test_invalidate_many(starts, ends, event):
    mm, subs, calls = make_mm()
    before = state(mm)
    kind, res = outcome(mm.invalidate_many, starts, ends, event)
    s, e = values_of(starts), values_of(ends)
    if kind == "raised":
        assert_unchanged(mm, before, calls)  # D3: the whole batch is checked first
    if s is not None and e is not None and type(event) in (int, Event) and 0 <= int(event) <= 6:
        valid = len(s) == len(e) and all(a < b for a, b in zip(s, e, strict=True))
        assert (kind == "ok") == valid, (starts, ends, res)
        if valid:
            want = sum(1 for a, b in zip(s, e, strict=True) for sub in subs if sub.start <= b - 1 and a <= sub.last)
            assert res == want
    if kind == "ok":
        assert type(res) is int
        assert mm.invalidate_seq % 2 == 0 and mm.active_invalidate_ranges == 0
        mm._check_invariants()


@FUZZ
@given(starts=u64_buffers(), lasts=u64_buffers(), qs=u64_buffers(), ql=u64_buffers())
def test_tree_batches(starts, lasts, qs, ql):
    kind, tree = outcome(IntervalTree.from_arrays, starts, lasts)
    s, last = values_of(starts), values_of(lasts)
    if s is not None and last is not None:
        valid = len(s) == len(last) and all(a <= b for a, b in zip(s, last, strict=True))
        assert (kind == "ok") == valid, (starts, lasts, tree)
    if kind != "ok":
        return
    assert len(tree) == len(s) if s is not None else True
    kind, res = outcome(tree.overlap_many, qs, ql)
    a, b = values_of(qs), values_of(ql)
    if a is not None and b is not None:
        valid = len(a) == len(b) and all(x <= y for x, y in zip(a, b, strict=True))
        assert (kind == "ok") == valid, (qs, ql, res)
    if kind == "ok":
        idx, handles = res
        assert len(idx) == len(handles)
        items = list(tree)
        if a is not None and s is not None:
            want = sorted((q, h) for q, (x, y) in enumerate(zip(a, b, strict=True)) for h, (u, v) in enumerate(zip(s, last, strict=True)) if u <= y and x <= v)
            assert sorted(zip(idx, handles, strict=True)) == want
        assert all(0 <= h < len(items) for h in handles)


@FUZZ
@given(start=hostile, last=hostile, point=hostile, handle=hostile, value=hostile)
def test_tree_scalars(start, last, point, handle, value):
    tree = IntervalTree()
    h0 = tree.insert(10, 20, "x")
    for fn, args in [
        (tree.insert, (start, last, value)),
        (tree.overlap, (start, last)),
        (tree.count_overlap, (start, last)),
        (tree.stab, (point,)),
    ]:
        outcome(fn, *args)
    try:
        tree.remove(handle)
    except KeyError:
        pass  # API.md: a handle that is not in the tree
    except BaseException as exc:  # noqa: BLE001
        assert isinstance(exc, ALLOWED), repr(exc)
    assert len(tree) == len(list(tree))
    assert h0 == 0


@FUZZ
@given(timeout=st.one_of(hostile, st.just(math.inf), st.just(-math.inf), st.floats(0, 0.01)), seq=hostile, cur=hostile)
def test_read_side(timeout, seq, cur):
    mm, subs, calls = make_mm()
    sub = subs[1]
    before = state(mm)
    kind, got = outcome(sub.read_begin, timeout)  # idle: never waits (R31)
    if kind == "ok":
        assert got % 2 == 1
    elif type(timeout) in (int, float) and not (isinstance(timeout, float) and math.isnan(timeout)) and timeout >= 0:
        pytest.fail(f"read_begin({timeout!r}) raised {got!r}")
    for retry in (sub.read_retry, sub.check_retry):
        kind, r = outcome(retry, seq)
        if type(seq) is int:
            if 0 <= seq < U64:
                assert kind == "ok" and r is (seq != sub.invalidate_seq)
            else:  # can equal no seq: True, or OverflowError by the general u64 rule
                assert (kind, r) == ("ok", True) or isinstance(r, OverflowError)
    kind, r = outcome(sub.set_seq, cur)
    if kind == "raised":
        assert_unchanged(mm, before, calls)
    else:
        sub.set_seq(before_seq := state(mm)[0] - 1)
        assert sub.invalidate_seq == before_seq
    for _ in range(3):
        outcome(mm.insert_interval_notifier, cur, seq, timeout)  # ops=hostile: TypeError or a callable
    mm._check_invariants()


@pytest.mark.parametrize("item", [object(), 1 + 2j, [1]], ids=["object", "complex", "list"])
@pytest.mark.parametrize("call", ["invalidate_many", "from_arrays", "overlap_many"])
def test_sequence_item_without_index_is_type_error(call, item):
    mm, _, calls = make_mm()
    before = state(mm)
    fn = {
        "invalidate_many": mm.invalidate_many,
        "from_arrays": IntervalTree.from_arrays,
        "overlap_many": IntervalTree().overlap_many,
    }[call]
    with pytest.raises(TypeError):
        fn([1, item], [2, 3])
    assert_unchanged(mm, before, calls)
