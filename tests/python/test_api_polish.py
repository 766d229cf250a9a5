"""API polish (issue 13, items 2 and 4): one ValueError subclass per refusal, a hashable and
picklable Range, every public class at home in ``mmn_fast``, ``Invalidation`` exported, and the
classic-mode bridge (``ClassicHooks``) the native core calls."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

import mmn_fast
from mmn_fast import (
    MM,
    AlreadyRegisteredError,
    EmptyRangeError,
    Event,
    IntervalTree,
    Invalidation,
    Notifier,
    NotRegisteredError,
    Range,
    ReleasedError,
    SubscriptionRemovedError,
)
from mmn_fast._classic import ClassicList
from mmn_fast._types import ClassicHooks

REFUSALS = [EmptyRangeError, SubscriptionRemovedError, ReleasedError, NotRegisteredError,
            AlreadyRegisteredError]


def accept(sub: Any, rng: Range, cur_seq: int) -> bool:
    sub.set_seq(cur_seq)
    return True


class Logged(Notifier):
    def __init__(self) -> None:
        self.log: list[str] = []

    def invalidate_range_start(self, rng: Range) -> None:
        self.log.append("start")

    def invalidate_range_end(self, rng: Range) -> None:
        self.log.append("end")

    def release(self, mm: Any) -> None:
        self.log.append("release")


# -- exceptions -------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", REFUSALS)
def test_each_refusal_is_an_exported_value_error_at_home_in_mmn_fast(exc: type) -> None:
    assert issubclass(exc, ValueError)
    assert exc.__name__ in mmn_fast.__all__
    assert exc.__module__ == "mmn_fast"
    assert exc.__doc__
    assert pickle.loads(pickle.dumps(exc("m"))).args == ("m",)


def test_distinct_refusals_are_distinct_classes() -> None:
    assert len(set(REFUSALS)) == len(REFUSALS)
    for a in REFUSALS:
        for b in REFUSALS:
            assert issubclass(a, b) == (a is b)


@pytest.mark.parametrize("make", [
    lambda mm: Range(5, 5),
    lambda mm: Range(6, 5),
    lambda mm: Range.migrate(6, 5, owner=None),
    lambda mm: mm.invalidate(6, 5),
    lambda mm: mm.invalidate_range(6, 5),  # classic mode (Python)
    lambda mm: mm.invalidate_many([0, 6], [1, 5]),  # a batch: the bad item's index is named
])
def test_empty_range_is_empty_range_error_and_changes_nothing(mm: MM, make: Any) -> None:
    before = (mm.invalidate_seq, mm.active_invalidate_ranges)
    with pytest.raises(EmptyRangeError):
        make(mm)
    assert (mm.invalidate_seq, mm.active_invalidate_ranges) == before


@pytest.mark.parametrize("call", [
    lambda t: t.insert(6, 5),
    lambda t: t.overlap(6, 5),
    lambda t: t.count_overlap(6, 5),
    lambda t: t.overlap_many([0, 6], [1, 5]),
    lambda t: IntervalTree.from_arrays([0, 6], [1, 5]),
])
def test_tree_start_after_last_is_empty_range_error(call: Any) -> None:
    tree = IntervalTree()
    tree.insert(0, 10, "kept")
    with pytest.raises(EmptyRangeError):
        call(tree)
    assert list(tree) == [(0, 10, "kept")]


def test_removed_subscription_refusals(mm: MM) -> None:
    sub = mm.insert_interval_notifier(0, 10, accept)
    sub.remove()
    with pytest.raises(SubscriptionRemovedError):
        sub.remove()
    with pytest.raises(SubscriptionRemovedError):
        sub.set_seq(2)
    with pytest.raises(ValueError):  # still a ValueError (API.md)
        sub.remove()


def test_released_mm_refusals(mm: MM) -> None:
    mm.release()
    with pytest.raises(ReleasedError):
        mm.release()
    with pytest.raises(ReleasedError):
        mm.insert_interval_notifier(0, 10, accept)
    with pytest.raises(ReleasedError):
        mm.register(Logged())
    with pytest.raises(ReleasedError):
        mm.get_notifier(Logged)


def test_registration_refusals(mm: MM) -> None:
    n = Logged()
    with pytest.raises(NotRegisteredError):
        mm.unregister(n)
    mm.register(n)
    with pytest.raises(AlreadyRegisteredError):
        mm.register(n)
    mm.unregister(n)
    with pytest.raises(NotRegisteredError):
        n.put()


# -- Range ------------------------------------------------------------------------------------


def test_equal_ranges_hash_equal() -> None:
    owner = object()
    a = Range(0x1000, 0x2000, Event.CLEAR, blockable=False, vma=("vma", 1), owner=owner)
    b = Range(0x1000, 0x2000, 1, blockable=0, vma=("vma", 1), owner=owner)
    assert a == b and hash(a) == hash(b)
    assert len({a, b, Range(0x1000, 0x2000)}) == 2
    assert {a: 1}[b] == 1


def test_range_with_unhashable_field_is_unhashable_like_a_tuple() -> None:
    with pytest.raises(TypeError):
        hash(Range(0, 1, vma=[]))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_range_pickles_through_the_native_module(protocol: int) -> None:
    r = Range(0, 2**64 - 1, Event.MIGRATE, blockable=False, vma=("v", 2), owner="drv")
    data = pickle.dumps(r, protocol)
    assert b"_range_from_fields" not in data and b"mmn_fast._types" not in data
    back = pickle.loads(data)
    assert type(back) is Range and back == r and hash(back) == hash(r)
    assert back.event is Event.MIGRATE


# -- public names -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(mmn_fast.__all__) - {"__version__", "synchronize"}))
def test_every_public_class_lives_in_mmn_fast(name: str) -> None:
    obj = getattr(mmn_fast, name)
    assert isinstance(obj, type)
    assert obj.__module__ == "mmn_fast"
    assert getattr(mmn_fast, obj.__qualname__) is obj  # where pickle looks it up


def test_event_pickles_by_its_public_home() -> None:
    assert pickle.loads(pickle.dumps(Event.SOFT_DIRTY)) is Event.SOFT_DIRTY


def test_invalidate_returns_the_exported_invalidation(mm: MM) -> None:
    cm = mm.invalidate(0, 10)
    assert type(cm) is Invalidation
    with cm as rng:
        assert rng == Range(0, 10)
        assert mm.active_invalidate_ranges == 1
    assert mm.active_invalidate_ranges == 0


# -- the classic bridge -----------------------------------------------------------------------


def test_classic_list_implements_the_hooks_protocol_exactly() -> None:
    for name in ("start", "abort", "end", "release"):
        want = inspect.signature(getattr(ClassicHooks, name))
        got = inspect.signature(getattr(ClassicList, name))
        assert len(got.parameters) == len(want.parameters), name


class Interrupting:
    """Hooks that raise KeyboardInterrupt once, on entry to `name`, before doing anything (as
    a signal landing on a hook's first instruction), and otherwise delegate."""

    def __init__(self, inner: ClassicList, name: str) -> None:
        self.inner, self.name, self.fired = inner, name, 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.inner, name)
        if name != self.name:
            return real

        def hook(*args: Any) -> Any:
            if not self.fired:
                self.fired += 1
                raise KeyboardInterrupt
            return real(*args)

        return hook


def test_interrupt_on_entry_to_end_still_ends_every_classic_start(mm: MM) -> None:
    n = Logged()
    mm.register(n)
    mm._set_classic_hooks(Interrupting(mm._classic, "end"))
    rng = Range(0, 10)
    mm.invalidate_range_start(rng)
    with pytest.raises(KeyboardInterrupt):
        mm.invalidate_range_end(rng)
    assert n.log == ["start", "end"]  # the end owed was made: pairing holds
    assert mm.active_invalidate_ranges == 0
    mm._set_classic_hooks(mm._classic)


def test_interrupt_on_entry_to_abort_still_ends_the_started(mm: MM) -> None:
    class Refuses(Notifier):  # R45: a notifier that may refuse defines no end
        def __init__(self) -> None:
            self.log: list[str] = []

        def invalidate_range_start(self, rng: Range) -> None:
            self.log.append("start")
            raise mmn_fast.WouldBlock()

    first, second = Logged(), Refuses()
    mm.register(first)
    mm.register(second)
    mm._set_classic_hooks(Interrupting(mm._classic, "abort"))
    with pytest.raises(KeyboardInterrupt):  # the interrupt is raised, not lost
        mm.invalidate_range_start(Range(0, 10, blockable=False))
    assert first.log == ["start", "end"] and second.log == ["start"]
    assert mm.active_invalidate_ranges == 0
    mm._set_classic_hooks(mm._classic)


def test_interrupt_on_entry_to_release_still_releases(mm: MM) -> None:
    n = Logged()
    mm.register(n)
    mm._set_classic_hooks(Interrupting(mm._classic, "release"))
    with pytest.raises(KeyboardInterrupt):
        mm.release()
    assert n.log == ["release"]
    mm._set_classic_hooks(mm._classic)


def test_interrupt_on_entry_to_start_starts_nothing(mm: MM) -> None:
    n = Logged()
    mm.register(n)
    mm._set_classic_hooks(Interrupting(mm._classic, "start"))
    with pytest.raises(KeyboardInterrupt):
        mm.invalidate_range_start(Range(0, 10))
    assert n.log == []  # nothing started, so nothing is owed
    assert mm.active_invalidate_ranges == 0  # the interval side ended itself
    mm._set_classic_hooks(mm._classic)


# -- callback exceptions, chained in Rust -----------------------------------------------------


def test_callback_exceptions_chain_in_order_without_cycles(mm: MM) -> None:
    errors = [KeyError("a"), OSError("b"), TypeError("c")]

    def raiser(exc: BaseException) -> Any:
        def ops(sub: Any, rng: Range, cur_seq: int) -> bool:
            raise exc
        return ops

    for i, exc in enumerate(errors):
        mm.insert_interval_notifier(i * 10, 10, raiser(exc))
    with pytest.raises(KeyError) as info:
        mm.invalidate_range_start(Range(0, 30))
    assert info.value is errors[0]
    assert errors[0].__context__ is errors[1] and errors[1].__context__ is errors[2]
    assert errors[2].__context__ is None
    assert mm.active_invalidate_ranges == 0


def test_an_exception_already_on_the_chain_is_not_linked_again(mm: MM) -> None:
    a, b, c = KeyError("a"), OSError("b"), TypeError("c")
    a.__context__ = c  # c already on a's chain: linking it again would make a cycle
    for i, exc in enumerate((a, b, c)):
        mm.insert_interval_notifier(i * 10, 10, lambda s, r, q, exc=exc: (_ for _ in ()).throw(exc))
    with pytest.raises(KeyError) as info:
        mm.invalidate_range_start(Range(0, 30))
    assert info.value is a
    assert a.__context__ is c and c.__context__ is b and b.__context__ is None
    assert mm.active_invalidate_ranges == 0


def test_no_rust_file_imports_the_python_package():
    """Issue 13: the bindings point one way. Python types the native module needs (``Event``,
    ``WouldBlock``, the classic hooks) are handed to it once; no Rust file imports a module of
    ``mmn_fast`` by name."""
    import pathlib
    import re

    rust = pathlib.Path(__file__).resolve().parents[2] / "rust"
    if not rust.is_dir():
        pytest.skip("no source tree beside the tests")
    offenders = [
        str(p.relative_to(rust))
        for p in rust.rglob("*.rs")
        if re.search(r'import\(\s*"mmn_fast', p.read_text())
    ]
    assert offenders == []
