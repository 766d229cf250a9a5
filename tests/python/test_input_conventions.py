"""Input conventions, round two (issue 10, item 9; API.md "Input conventions"):
``range.blockable is bool(blockable)`` (None included); a BaseException raised while converting
a ``timeout`` propagates as itself; ``update_to_read_only()`` is False for a vma without
``readable``; ``ops.invalidate`` is looked up at each call."""

from __future__ import annotations

import pytest

from mmn_fast import Event, Range

from conftest import Ops


@pytest.mark.parametrize("blockable", [None, 0, "", [], False, 1, "x", True])
def test_blockable_is_bool_of_argument(mm, blockable):
    assert Range(0, 1, blockable=blockable).blockable is bool(blockable)
    assert Range.migrate(0, 1, None, blockable=blockable).blockable is bool(blockable)
    with mm.invalidate(0, 1, blockable=blockable) as r:
        assert r.blockable is bool(blockable)


def test_blockable_omitted_is_true(mm):
    assert Range(0, 1).blockable is True and Range.migrate(0, 1, None).blockable is True
    assert mm.invalidate(0, 1).range.blockable is True


class Raises:
    def __init__(self, exc):
        self.exc = exc

    def __float__(self):
        raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, ZeroDivisionError, MemoryError])
def test_timeout_conversion_exceptions_propagate(mm, exc):
    sub = mm.insert_interval_notifier(0, 0x10, Ops())
    with pytest.raises(exc):
        sub.read_begin(timeout=Raises(exc()))
    with pytest.raises(exc):
        sub.read_begin(Raises(exc()))


def test_timeout_without_float_is_type_error(mm):
    sub = mm.insert_interval_notifier(0, 0x10, Ops())
    with pytest.raises(TypeError):
        sub.read_begin(timeout=object())


class Vma:
    pass


def test_update_to_read_only_without_readable_is_false():
    assert Range(0, 1, Event.PROTECTION_VMA, vma=Vma()).update_to_read_only() is False


def test_update_to_read_only_other_errors_propagate():
    class Bad:
        @property
        def readable(self):
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        Range(0, 1, Event.PROTECTION_VMA, vma=Bad()).update_to_read_only()


def test_replaced_invalidate_is_called(mm):
    """``ops.invalidate`` is looked up at every call: a method replaced after insert (on the
    instance or the class) is the one called."""

    class Dev:
        def invalidate(self, sub, rng, cur):
            calls.append("old")
            return True

    calls = []
    dev = Dev()
    mm.insert_interval_notifier(0, 0x10, dev)
    with mm.invalidate(0, 1):
        pass
    dev.invalidate = lambda sub, rng, cur: calls.append("instance") or True
    with mm.invalidate(0, 1):
        pass
    del dev.invalidate
    Dev.invalidate = lambda self, sub, rng, cur: calls.append("class") or True
    with mm.invalidate(0, 1):
        pass
    assert calls == ["old", "instance", "class"]


def test_invalidate_removed_after_insert_is_collected_error(mm):
    """If ``ops`` later has no callable ``invalidate`` and is not callable, the call raises
    TypeError (collected like a callback exception); callable ops fall back to ops itself."""

    class Dev:
        def invalidate(self, sub, rng, cur):
            return True

    dev = Dev()
    mm.insert_interval_notifier(0, 0x10, dev)
    dev.invalidate = None
    with pytest.raises(TypeError):
        with mm.invalidate(0, 1):
            pass
    assert mm.active_invalidate_ranges == 0 and mm.invalidate_seq % 2 == 0
