"""One ``mm.invalidate(...)`` object entered twice (issue 10, item 3; API.md "MM"): a second
entry while the first is still open (nested, or from another thread) raises RuntimeError before
starting anything; every accepted entry is paired with exactly one end; the object may be
entered again once it has been exited. Hang-prone cases run in a child process (childproc)."""

from __future__ import annotations

import threading

import pytest

from childproc import Cases
from mmn_fast import MM

from conftest import Ops


def _state(mm):
    return (mm.invalidate_seq, mm.active_invalidate_ranges)


def case_nested_entry_raises_and_starts_nothing():
    mm = MM()
    ops = Ops()
    sub = mm.insert_interval_notifier(0, 0x1000, ops)
    cm = mm.invalidate(0, 0x1000)
    with cm:
        inside = _state(mm)
        calls = len(ops.log)
        with pytest.raises(RuntimeError):
            with cm:
                raise AssertionError("body of the second entry ran")
        assert _state(mm) == inside and len(ops.log) == calls
    assert mm.invalidate_seq % 2 == 0 and mm.active_invalidate_ranges == 0
    sub.remove()  # returns: nothing left odd
    mm._check_invariants()


def case_entry_from_two_threads_pairs():
    mm = MM()
    sub = mm.insert_interval_notifier(0, 0x1000, Ops())
    cm = mm.invalidate(0, 0x1000)
    entered, release = threading.Event(), threading.Event()
    errors = []

    def first():
        with cm:
            entered.set()
            release.wait(5)

    t = threading.Thread(target=first, daemon=True)
    t.start()
    assert entered.wait(5)
    try:
        with cm:
            pass
    except RuntimeError as exc:
        errors.append(exc)
    assert mm.active_invalidate_ranges == 1
    release.set()
    t.join(5)
    assert len(errors) == 1
    assert mm.invalidate_seq % 2 == 0 and mm.active_invalidate_ranges == 0
    sub.remove()


def case_many_threads_hammer_one_object():
    mm = MM()
    sub = mm.insert_interval_notifier(0, 0x1000, None)
    cm = mm.invalidate(0, 0x1000)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                with cm as r:
                    assert r is cm.range
            except RuntimeError:
                pass

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    threading.Event().wait(0.3)
    stop.set()
    for t in threads:
        t.join(5)
    assert mm.invalidate_seq % 2 == 0 and mm.active_invalidate_ranges == 0
    sub.remove()
    mm._check_invariants()


def case_reentry_after_exit_and_after_failed_start():
    mm = MM()

    class Refuse:
        def invalidate(self, sub, rng, cur):
            return False

    mm.insert_interval_notifier(0, 0x1000, Refuse())
    cm = mm.invalidate(0, 0x1000, blockable=False)
    for _ in range(2):  # a failed start leaves the object enterable again
        with pytest.raises(BlockingIOError):
            with cm:
                pass
    ok = mm.invalidate(0x2000, 0x3000)
    for _ in range(3):
        with ok:
            assert mm.active_invalidate_ranges == 1
    assert mm.invalidate_seq % 2 == 0 and mm.active_invalidate_ranges == 0


def case_exit_without_enter_is_a_no_op():
    mm = MM()
    cm = mm.invalidate(0, 0x1000)
    assert cm.__exit__(None, None, None) is False
    assert mm.active_invalidate_ranges == 0


CASES = Cases(__name__)


@pytest.mark.parametrize("name", sorted(n for n in list(globals()) if n.startswith("case_")))
def test_case(name):
    CASES.check(name)
