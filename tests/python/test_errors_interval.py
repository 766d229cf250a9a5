"""Exceptions and warnings from interval callbacks (API.md "Errors" and "Warnings", SPEC D1,
D2, D6, D11, R15, R16, R32, R42): the exception object is re-raised as it is, later ones
are chained on __context__, the walk goes on, and the MM is consistent afterwards (seq even,
active 0, deferred inserts and removes applied, waiters woken)."""

import warnings

import pytest

from mmn_fast import Notifier, Range, WouldBlock

from conftest import JOIN, Bg, Ops, snapshot, subs_called


class Boom(Exception):
    pass


def raising(exc, log=None):
    """Ops that set_seq, log and raise ``exc``."""
    def ops(sub, rng, cur_seq):
        sub.set_seq(cur_seq)
        if log is not None:
            log.append(sub)
        raise exc
    return ops


def chain(exc):
    """exc and everything reachable through __context__."""
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__context__
    return out


def assert_idle(mm):
    assert mm.invalidate_seq % 2 == 0
    assert mm.active_invalidate_ranges == 0
    mm._check_invariants()


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt, SystemExit, WouldBlock])
@pytest.mark.parametrize("how", ["start", "nonblock", "context manager"])
def test_raise_reaches_everyone_and_ends_itself(mm, exc_type, how):
    """D1, D11: an exception (also a BaseException, also WouldBlock, which is not a refusal)
    is re-raised as the same object after every other interval subscriber and classic start
    ran; the start has ended itself, so no end is owed."""
    exc = exc_type()
    log, classic_log = [], []
    early = mm.insert_interval_notifier(0, 0x10, Ops(log))
    bad = mm.insert_interval_notifier(0x10, 0x10, raising(exc))
    late = mm.insert_interval_notifier(0x20, 0x10, Ops(log))
    native = mm.insert_interval_notifier(0x30, 0x10, None, tag="n")
    classic = type("C", (Notifier,), {
        "invalidate_range_start": lambda self, r: classic_log.append("start"),
        "invalidate_range_end": lambda self, r: classic_log.append("end")})()
    mm.register(classic)
    r = Range(0, 0x40)
    body_ran = []
    with pytest.raises(exc_type) as info:
        if how == "start":
            mm.invalidate_range_start(r)
        elif how == "nonblock":
            mm.invalidate_range_start_nonblock(r)
        else:
            with mm.invalidate(0, 0x40):
                body_ran.append(True)
    assert info.value is exc
    assert body_ran == []
    assert subs_called(log) == [early, late]
    assert native.invalidate_seq == 3 and mm.drain_invalidated() == ["n"]
    assert bad.invalidate_seq == 3
    assert classic_log == ["start", "end"]          # D1: its end was delivered by the start
    assert mm.invalidate_seq == 4
    assert_idle(mm)
    with pytest.raises(RuntimeError):
        mm.invalidate_range_end(r)
    mm.unregister(classic)


def test_bool_of_result_raises(mm):
    """D11: an exception from taking the truth value of a result is a callback exception: the
    walk goes on, it is re-raised, the MM is consistent."""
    class Liar:
        def __bool__(self):
            raise Boom("no truth")

    after = Ops()
    mm.insert_interval_notifier(0, 0x10, lambda s, r, c: Liar())
    mm.insert_interval_notifier(0x8, 0x10, after)
    with pytest.raises(Boom, match="no truth"):
        mm.invalidate_range_start_nonblock(Range(0, 0x10))
    assert len(after.log) == 1
    assert mm.invalidate_seq == 4
    assert_idle(mm)


def test_truthy_and_falsy_results_count_by_truth_value(mm):
    """API "Ops": a result counts by its truth value ([] refuses, "yes" accepts)."""
    mm.insert_interval_notifier(0, 0x10, lambda s, r, c: "yes")
    assert mm.invalidate_range_start_nonblock(Range(0, 1)) is True
    mm.invalidate_range_end(Range(0, 1))
    mm.insert_interval_notifier(0x20, 0x10, lambda s, r, c: [])
    assert mm.invalidate_range_start_nonblock(Range(0x20, 0x21)) is False
    assert_idle(mm)


def test_several_raise_first_wins_later_are_chained(mm):
    """API "Errors": the first exception is raised; every later one is reachable through
    __context__, appended at the end of the chain without overwriting the links already
    there."""
    first = Boom("first")
    try:
        raise KeyError("cause of first")
    except KeyError as caught:
        inner = caught
        try:
            raise first
        except Boom:
            pass
        assert first.__context__ is inner
    second, third = ValueError("second"), KeyboardInterrupt()
    for i, exc in enumerate([first, second, third]):
        mm.insert_interval_notifier(i * 0x10, 0x10, raising(exc))
    with pytest.raises(Boom) as info:
        with mm.invalidate(0, 0x30):
            pass
    assert info.value is first
    got = chain(first)
    assert got[:2] == [first, inner]
    assert second in got and third in got
    assert got.index(second) < got.index(third)
    assert_idle(mm)


def test_refusal_and_exception_exception_wins(mm):
    """D1: an exception wins over a refusal in the same start; the walk stops at the refusal
    (R16) but the exception before it is what the caller gets."""
    after = Ops()
    mm.insert_interval_notifier(0, 0x10, raising(Boom()))
    mm.insert_interval_notifier(0x10, 0x10, Ops(refuse_nonblock=True))
    mm.insert_interval_notifier(0x20, 0x10, after)
    with pytest.raises(Boom):
        mm.invalidate_range_start_nonblock(Range(0, 0x30))
    assert after.log == []
    assert_idle(mm)


def test_exception_applies_deferred_inserts_and_removes(mm):
    """D1: a start that fails and closes the epoch applies the deferred list: an insert made
    during it is in the tree afterwards, a remove waiting in another thread returns and its
    subscription is gone."""
    victim = mm.insert_interval_notifier(0x100, 0x10, Ops())
    made = {}

    def ops(sub, rng, cur_seq):
        sub.set_seq(cur_seq)
        made["late"] = mm.insert_interval_notifier(0x200, 0x10, None)
        made["remover"] = Bg(victim.remove)
        assert made["remover"].blocked()
        raise Boom()

    mm.insert_interval_notifier(0, 0x10, ops)
    with pytest.raises(Boom):
        mm.invalidate_range_start(Range(0, 0x200))
    made["remover"].join()
    assert [s.start for s in mm.intervals()] == [0, 0x200]
    assert victim not in list(mm.intervals())
    assert_idle(mm)


def test_exception_wakes_readers(mm):
    """D1: readers waiting on the epoch that a failing start closes are woken, and get the
    epoch's seq."""
    box = {}

    def ops(sub, rng, cur_seq):
        sub.set_seq(cur_seq)
        box["reader"] = Bg(sub.read_begin, JOIN)
        assert box["reader"].blocked()
        raise KeyboardInterrupt

    mm.insert_interval_notifier(0, 0x10, ops)
    with pytest.raises(KeyboardInterrupt):
        mm.invalidate_range_start(Range(0, 1))
    assert box["reader"].join() == 3
    assert_idle(mm)


def test_exception_inside_a_wider_epoch_only_uncounts(mm):
    """D1, R11: a failing start nested in an open epoch decrements active only; the epoch
    stays open until the outer end."""
    mm.insert_interval_notifier(0, 0x10, Ops())
    mm.insert_interval_notifier(0x100, 0x10, raising(Boom()))
    outer = Range(0, 1)
    mm.invalidate_range_start(outer)
    with pytest.raises(Boom):
        mm.invalidate_range_start(Range(0x100, 0x101))
    assert (mm.invalidate_seq, mm.active_invalidate_ranges) == (3, 1)
    mm.invalidate_range_end(outer)
    assert mm.invalidate_seq == 4
    assert_idle(mm)


def test_exception_in_invalidate_many_stops_the_batch(mm):
    """API invalidate_many: a range whose start raises stops the batch; the ranges before it
    are done (started and ended), the ones after are not run."""
    good = Ops()
    mm.insert_interval_notifier(0, 0x10, good)
    mm.insert_interval_notifier(0x100, 0x10, raising(Boom()))
    with pytest.raises(Boom):
        mm.invalidate_many([0, 0x100, 0], [1, 0x101, 1])
    assert len(good.log) == 1
    assert mm.invalidate_seq == 6  # two epochs: range 0, then the failing range 1
    assert_idle(mm)


def test_exception_during_release(mm):
    """API release: an exception from an interval callback is re-raised after the whole
    release ran; the mm is consistent and released."""
    after = Ops()
    mm.insert_interval_notifier(0, 0x10, raising(Boom()))
    keep = mm.insert_interval_notifier(0x10, 0x10, after)
    with pytest.raises(Boom):
        mm.release()
    assert len(after.log) == 1
    assert_idle(mm)
    with pytest.raises(ValueError):
        mm.insert_interval_notifier(0, 1, None)
    keep.remove()


def test_remove_self_from_callback_uncaught(mm):
    """R42, D6, T32: remove() of the subscription from its own callback raises RuntimeError
    (it would wait for itself); uncaught, it is the start's exception; the subscription
    stays and can be removed normally afterwards."""
    mm.insert_interval_notifier(0, 0x10, lambda s, r, c: s.remove())
    with pytest.raises(RuntimeError):
        with mm.invalidate(0, 1):
            pass
    assert len(mm) == 1
    assert_idle(mm)
    next(iter(mm.intervals())).remove()
    assert len(mm) == 0


def test_remove_from_callback_only_fails_when_it_would_wait(mm):
    """API "Errors": from a callback, remove() of another in-tree subscription (would wait)
    is RuntimeError, remove() of a pending insert does not wait and succeeds."""
    other = mm.insert_interval_notifier(0x100, 0x10, Ops())
    results = []

    def ops(sub, rng, cur_seq):
        sub.set_seq(cur_seq)
        pending = mm.insert_interval_notifier(0x200, 0x10, None)
        pending.remove()
        results.append("pending removed")
        try:
            other.remove()
        except RuntimeError:
            results.append("RuntimeError")
        return True

    mm.insert_interval_notifier(0, 0x10, ops)
    with mm.invalidate(0, 1):
        pass
    assert results == ["pending removed", "RuntimeError"]
    assert [s.start for s in mm.intervals()] == [0, 0x100]
    assert_idle(mm)


def test_remove_and_read_begin_from_classic_callback_when_even(mm):
    """API "Errors": in a callback that runs while seq is even (a classic start of a range
    that overlapped no interval), remove() and read_begin() do not wait and just work."""
    a = mm.insert_interval_notifier(0x1000, 0x10, Ops())
    got = []

    class C(Notifier):
        def invalidate_range_start(self, r):
            got.append(a.read_begin())
            a.remove()
            got.append(len(mm))

    mm.register(C())
    with mm.invalidate(0, 1):
        pass
    assert got == [1, 0]
    assert_idle(mm)


def test_read_begin_of_untouched_sub_from_callback(mm):
    """API "Errors": read_begin() of a subscription the epoch did not touch does not wait, so
    it works from a callback; of a touched one it is RuntimeError."""
    untouched = mm.insert_interval_notifier(0x100, 0x10, None)
    # Before the callback subscription in tree order (R13), so already invalidated when it runs.
    touched = mm.insert_interval_notifier(0, 0x10, None)
    got = []

    def ops(sub, rng, cur_seq):
        got.append(untouched.read_begin())
        try:
            touched.read_begin()
        except RuntimeError:
            got.append("RuntimeError")
        return True

    mm.insert_interval_notifier(0x8, 0x10, ops)
    with mm.invalidate(0, 0x20):
        pass
    assert got == [1, "RuntimeError"]
    assert_idle(mm)


def test_read_begin_from_other_thread_callback_is_allowed(mm):
    """API "Errors": the RuntimeError is only for the thread running the invalidation; another
    thread's read_begin during the callback waits as usual and returns after the end."""
    a = mm.insert_interval_notifier(0, 0x10, Ops())
    box = {}

    def hook(sub, rng, cur_seq):
        box["reader"] = Bg(a.read_begin, JOIN)
        assert box["reader"].blocked()

    mm.insert_interval_notifier(0, 0x10, Ops(hook=hook))
    with mm.invalidate(0, 1):
        pass
    assert box["reader"].join() == 3


# -- warnings -------------------------------------------------------------------------------

def test_false_on_blockable_warns_naming_the_subscription(mm):
    """R15, D2, API "Warnings": one RuntimeWarning per false result on a blockable range,
    whose text identifies the subscription ([start, last])."""
    mm.insert_interval_notifier(0xABC000, 0x1000, Ops(result=False))
    with pytest.warns(RuntimeWarning, match="(?i)0xabc000.*0xabcfff"):
        with mm.invalidate(0xABC000, 0xABC001):
            pass
    assert_idle(mm)


def test_false_during_release_and_batch_warns(mm):
    """API "Warnings": invalidate_many and release() warn on a false result too, and go on."""
    after = Ops()
    mm.insert_interval_notifier(0, 0x10, Ops(result=None))
    mm.insert_interval_notifier(0x10, 0x10, after)
    with pytest.warns(RuntimeWarning):
        assert mm.invalidate_many([0], [0x20]) == 2
    with pytest.warns(RuntimeWarning):
        mm.release()
    assert len(after.log) == 2
    assert_idle(mm)


def test_no_warning_for_refusal_or_success(mm):
    """API "Warnings": a refusal on a non-blockable range and a true result warn nothing."""
    mm.insert_interval_notifier(0, 0x10, Ops(refuse_nonblock=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mm.invalidate_range_start_nonblock(Range(0, 1)) is False
        with pytest.raises(WouldBlock):
            mm.invalidate_range_start(Range(0, 1, blockable=False))
        with mm.invalidate(0, 1):
            pass
    assert caught == []
    assert_idle(mm)


def test_warning_turned_error_is_collected_like_an_exception(mm):
    """API "Warnings": a warning made an error by the filters is collected like a callback
    exception: the walk goes on, the MM is consistent, then it is raised."""
    after = Ops()
    mm.insert_interval_notifier(0, 0x10, Ops(result=False))
    mm.insert_interval_notifier(0x10, 0x10, after)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning):
            with mm.invalidate(0, 0x20):
                pass
    assert len(after.log) == 1
    assert mm.invalidate_seq == 4
    assert_idle(mm)


def test_mm_usable_after_every_kind_of_failure(mm):
    """D1, D11: after a run of failing starts of every kind the MM behaves as new: inserts go
    straight into the tree, readers do not wait, a clean invalidation is +2."""
    mm.insert_interval_notifier(0, 0x10, raising(Boom()))
    mm.insert_interval_notifier(0x10, 0x10, Ops(refuse_nonblock=True))
    for call in (lambda: mm.invalidate_range_start(Range(0, 0x20)),
                 lambda: mm.invalidate_range_start_nonblock(Range(0, 0x20)),
                 lambda: mm.invalidate_many([0], [0x20])):
        with pytest.raises(Boom):
            call()
    assert mm.invalidate_range_start_nonblock(Range(0x10, 0x20)) is False
    assert_idle(mm)
    before = snapshot(mm)
    fresh = mm.insert_interval_notifier(0x100, 0x10, None)
    assert fresh in list(mm.intervals()) and fresh.read_begin(timeout=0) == before[0] - 1
    with mm.invalidate(0x100, 0x101):
        pass
    assert mm.invalidate_seq == before[0] + 2
