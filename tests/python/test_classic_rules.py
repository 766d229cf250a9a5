"""Classic ("hlist") mode, one test per rule of SPEC.md 2.H-2.L (R43-R69) and its decisions
(D1, D2, D5-D7, D12) and scenarios (T37-T63). Single-threaded; threads are in
test_classic_threads.py."""

import warnings

import pytest

import mmn_fast
from mmn_fast import MM, Event, Notifier, Range, WouldBlock, _classic, synchronize

START, END, IR = "invalidate_range_start", "invalidate_range_end", "invalidate_range"
CALLBACKS = ("release", START, END, IR, "clear_flush_young", "clear_young", "test_young",
             "change_pte")


def notifier(log, name, methods=CALLBACKS, *, refuse=False, young=False, raises=None):
    """A notifier of a fresh class ``name`` defining exactly ``methods``; each call appends
    ``(name, method, args)`` to ``log``. ``refuse``: the start raises WouldBlock on
    non-blockable ranges. ``raises``: {method: exception} raised after logging."""
    raises = raises or {}

    def make(method):
        def callback(self, *args):
            log.append((name, method, args))
            if method in raises:
                raise raises[method]
            if method == START and refuse and not args[0].blockable:
                raise WouldBlock()
            return young if "young" in method else None
        return callback

    return type(name, (Notifier,), {m: make(m) for m in methods})()


def seen(log, method=None):
    """(name, method) pairs of a log, optionally of one method only."""
    return [(e[0], e[1]) for e in log if method is None or e[1] == method]


@pytest.fixture(autouse=True)
def no_pending_frees():
    """Every test leaves no pending free and no unreported free_notifier exception."""
    yield
    synchronize()


# -- the Notifier class ---------------------------------------------------------------------

def test_notifier_base_defines_no_callback():
    """API.md: the base class defines only alloc_notifier, free_notifier and put."""
    for name in CALLBACKS:
        assert not hasattr(Notifier, name), name
    assert isinstance(Notifier.alloc_notifier(MM()), Notifier)
    assert Notifier().free_notifier() is None


def test_an_attribute_set_to_none_is_undefined(mm):
    """API.md Precise behaviour: defined means ``callable(getattr(n, name, None))``."""
    log = []
    n = notifier(log, "N", [IR, START, END])
    n.invalidate_range = None
    mm.register(n)
    mm.invalidate_range(0, 0x1000)
    with mm.invalidate(0, 0x1000):
        pass
    assert seen(log) == [("N", START), ("N", END)]


# -- H. invalidation ------------------------------------------------------------------------

def test_r43_every_event_walks_newest_first(mm):
    """R43, T43: LIFO for start, end, invalidate_range, young, change_pte, release."""
    log = []
    for name in ("N1", "N2", "N3"):
        mm.register(notifier(log, name))
    with mm.invalidate(0, 0x1000):
        pass
    mm.invalidate_range(0, 0x1000)
    mm.clear_flush_young(0, 0x1000)
    mm.clear_young(0, 0x1000)
    mm.test_young(0)
    mm.change_pte(0, 0)
    mm.release()
    for method in CALLBACKS:
        names = [e[0] for e in log if e[1] == method]
        assert names == ["N3", "N2", "N1"] * (2 if method == IR else 1), method


def test_r44_r49_start_and_end_receive_the_range(mm):
    """R44, R49: start and end get the Range; invalidate_range gets (mm, start, end)."""
    log = []
    mm.register(notifier(log, "N", [START, END, IR]))
    r = Range(0x1000, 0x3000, Event.CLEAR, owner="dev")
    mm.invalidate_range_start(r)
    mm.invalidate_range_end(r)
    assert [e[1] for e in log] == [START, IR, END]
    assert log[1][2] == (mm, 0x1000, 0x3000) and log[1][2][0] is mm
    got = log[0][2][0]
    assert (got.start, got.end, got.event, got.owner, got.blockable) == (
        0x1000, 0x3000, Event.CLEAR, "dev", True)


def test_t37_pairing_rule_three_notifiers_one_refusing(mm):
    """T37, R44, R46, D1: every start is called after the refusal; then every notifier that
    defines end gets it, in list order; never invalidate_range; WouldBlock."""
    log = []
    mm.register(notifier(log, "N3", [START, END, IR]))
    mm.register(notifier(log, "N2", [START, END, IR]))
    mm.register(notifier(log, "N1", [START, IR], refuse=True))
    with pytest.raises(WouldBlock):
        mm.invalidate_range_start(Range(0, 0x1000, blockable=False))
    assert seen(log) == [("N1", START), ("N2", START), ("N3", START), ("N2", END), ("N3", END)]
    assert mm.active_invalidate_ranges == 0
    # The failed start left no pending start behind: a later full pair is exact (D5).
    log.clear()
    with mm.invalidate(0, 0x1000):
        pass
    assert seen(log, END) == [("N2", END), ("N3", END)]
    assert len(seen(log, IR)) == 3


def test_t37_nonblock_variant_returns_false(mm):
    """R20, R46: the same pairing, reported as False."""
    log = []
    mm.register(notifier(log, "OK", [START, END]))
    mm.register(notifier(log, "No", [START], refuse=True))
    assert mm.invalidate_range_start_nonblock(Range(0, 0x1000)) is False
    assert seen(log) == [("No", START), ("OK", START), ("OK", END)]
    assert all(e[2][0].blockable is False for e in log)


def test_t38_refuser_defining_end_warns_with_its_class_name(mm):
    """T38, R45: RuntimeWarning naming the class; its end is called too."""
    log = []
    mm.register(notifier(log, "Peer", [START, END]))
    mm.register(notifier(log, "BadRefuser", [START, END], refuse=True))
    with pytest.warns(RuntimeWarning, match="BadRefuser"):
        assert mm.invalidate_range_start_nonblock(Range(0, 0x1000)) is False
    assert seen(log, END) == [("BadRefuser", END), ("Peer", END)]


def test_t39_several_refusers_one_wouldblock(mm):
    """T39: all starts called, one WouldBlock, ends only where defined."""
    log = []
    mm.register(notifier(log, "R1", [START], refuse=True))
    mm.register(notifier(log, "OK", [START, END]))
    mm.register(notifier(log, "R2", [START], refuse=True))
    with pytest.raises(WouldBlock):
        mm.invalidate_range_start(Range(0, 0x1000, blockable=False))
    assert seen(log) == [("R2", START), ("OK", START), ("R1", START), ("OK", END)]


def test_t41_d2_wouldblock_on_a_blockable_range_is_ignored_with_a_warning(mm):
    """T41, D2: a warning naming the class; the start succeeds; one end each."""
    log = []
    mm.register(notifier(log, "Good", [START, END]))
    mm.register(notifier(log, "Rude", [START, END], raises={START: WouldBlock()}))
    r = Range(0, 0x1000)
    with pytest.warns(RuntimeWarning, match="Rude"):
        mm.invalidate_range_start(r)
    assert mm.active_invalidate_ranges == 1
    mm.invalidate_range_end(r)
    assert seen(log) == [("Rude", START), ("Good", START), ("Rude", END), ("Good", END)]


def test_a_warning_turned_into_an_error_is_collected_like_an_exception(mm):
    """API.md Warnings: the walk goes on, the start fails and pairs, the error is raised."""
    log = []
    mm.register(notifier(log, "Good", [START, END]))
    mm.register(notifier(log, "Rude", [START], raises={START: WouldBlock()}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="Rude"):
            mm.invalidate_range_start(Range(0, 0x1000))
    assert seen(log) == [("Rude", START), ("Good", START), ("Good", END)]
    assert mm.active_invalidate_ranges == 0


def test_t44_r50_end_interleaves_invalidate_range_and_only_end_skips_it(mm):
    """T44, R49, R50."""
    log = []
    mm.register(notifier(log, "N1", [IR, END]))
    mm.register(notifier(log, "N2", [IR, END]))
    r = Range(0, 0x1000)
    mm.invalidate_range_start(r)
    mm.invalidate_range_end(r)
    assert seen(log) == [("N2", IR), ("N2", END), ("N1", IR), ("N1", END)]
    log.clear()
    mm.invalidate_range_start(r)
    mm.invalidate_range_end(r, only_end=True)
    assert seen(log) == [("N2", END), ("N1", END)]


def test_d5_a_start_counts_for_a_notifier_without_invalidate_range_start(mm):
    """D5: the start is given to every listed notifier, whatever it defines."""
    log = []
    mm.register(notifier(log, "EndOnly", [END]))
    with mm.invalidate(0, 0x1000):
        assert log == []
    assert seen(log) == [("EndOnly", END)]


def test_d5_r63_registered_mid_invalidation_gets_no_unmatched_end(mm):
    """D5, T57, Q7: the end of a start it was not given does not reach it; nested starts
    are counted."""
    log = []
    outer = Range(0, 0x1000)
    mm.invalidate_range_start(outer)
    late = notifier(log, "Late", [START, END, IR])
    mm.register(late)
    inner = Range(0x10, 0x20)
    mm.invalidate_range_start(inner)
    mm.invalidate_range_end(inner)
    mm.invalidate_range_end(outer)
    assert seen(log) == [("Late", START), ("Late", IR), ("Late", END)]
    assert log[1][2] == (mm, 0x10, 0x20) and log[2][2][0].start == 0x10


def test_d5_reregistration_drops_pending_starts(mm):
    """D5: pending starts belong to one registration; unregister + register starts at zero."""
    log = []
    n = notifier(log, "N", [START, END])
    mm.register(n)
    r = Range(0, 0x1000)
    mm.invalidate_range_start(r)
    mm.unregister(n)
    mm.register(n)
    mm.invalidate_range_end(r)
    assert seen(log) == [("N", START)]


# -- exceptions, one kind of callback at a time (API.md Errors, D11) -------------------------

class Boom(Exception):
    pass


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt])
def test_d1_start_exception_reaches_every_start_then_pairs_and_raises(mm, exc_type):
    """D1: not a refusal: every start runs, every notifier given the start gets its end
    (invalidate_range_end only), the start raises the first exception, later ones chained."""
    log = []
    first, second = exc_type("first"), Boom("second")
    mm.register(notifier(log, "N1", [START, END, IR], raises={START: second}))
    mm.register(notifier(log, "N2", [START, END, IR]))
    mm.register(notifier(log, "N3", [START, END, IR], raises={START: first}))
    with pytest.raises(exc_type) as info:
        mm.invalidate_range_start(Range(0, 0x1000))
    assert info.value is first and info.value.__context__ is second
    assert seen(log) == [("N3", START), ("N2", START), ("N1", START),
                         ("N3", END), ("N2", END), ("N1", END)]
    assert mm.active_invalidate_ranges == 0


def test_d1_an_exception_wins_over_a_refusal(mm):
    """D1: an exception and a refusal in one start: the exception is raised."""
    log = []
    mm.register(notifier(log, "Refuser", [START], refuse=True))
    mm.register(notifier(log, "Raiser", [START], raises={START: Boom()}))
    with pytest.raises(Boom):
        mm.invalidate_range_start_nonblock(Range(0, 0x1000))
    assert seen(log) == [("Raiser", START), ("Refuser", START)]


def test_end_exceptions_reach_every_notifier_and_both_callbacks(mm):
    """R49, D11: invalidate_range and invalidate_range_end are guarded on their own."""
    log = []
    a, b = Boom("ir"), Boom("end")
    mm.register(notifier(log, "N1", [IR, END]))
    mm.register(notifier(log, "N2", [IR, END], raises={IR: a, END: b}))
    r = Range(0, 0x1000)
    mm.invalidate_range_start(r)
    with pytest.raises(Boom) as info:
        mm.invalidate_range_end(r)
    assert info.value is a and info.value.__context__ is b
    assert seen(log) == [("N2", IR), ("N2", END), ("N1", IR), ("N1", END)]
    assert mm.active_invalidate_ranges == 0


@pytest.mark.parametrize("method,call", [
    (IR, lambda mm: mm.invalidate_range(0, 0x1000)),
    ("clear_flush_young", lambda mm: mm.clear_flush_young(0, 0x1000)),
    ("clear_young", lambda mm: mm.clear_young(0, 0x1000)),
    ("test_young", lambda mm: mm.test_young(0x1000)),
    ("change_pte", lambda mm: mm.change_pte(0x1000, "pte")),
])
def test_event_exceptions_reach_every_notifier(mm, method, call):
    """R53-R57, D11: the walk goes on after an exception, then the first is raised."""
    log = []
    first, second = Boom("first"), ValueError("second")
    mm.register(notifier(log, "N1", [method], raises={method: second}))
    mm.register(notifier(log, "N2", [method]))
    mm.register(notifier(log, "N3", [method], raises={method: first}))
    with pytest.raises(Boom) as info:
        call(mm)
    assert info.value is first and info.value.__context__ is second
    assert seen(log) == [("N3", method), ("N2", method), ("N1", method)]


def test_release_exceptions_reach_every_notifier_and_all_are_unhashed(mm):
    """R60, D11."""
    log = []
    mm.register(notifier(log, "N1", ["release", IR], raises={"release": KeyError("k")}))
    mm.register(notifier(log, "N2", ["release", IR], raises={"release": Boom("b")}))
    with pytest.raises(Boom) as info:
        mm.release()
    assert isinstance(info.value.__context__, KeyError)
    mm.invalidate_range(0, 0x1000)
    assert seen(log) == [("N2", "release"), ("N1", "release")]


def test_a_raising_property_is_a_callback_exception(mm):
    """D11: looking the callback up may raise; collected like any callback exception."""
    log = []

    class Tricky(Notifier):
        @property
        def invalidate_range(self):
            raise Boom("lookup")

    mm.register(notifier(log, "N1", [IR]))
    mm.register(Tricky())
    with pytest.raises(Boom):
        mm.invalidate_range(0, 0x1000)
    assert seen(log) == [("N1", IR)]


# -- I. other events ------------------------------------------------------------------------

def test_r53_invalidate_range_standalone_changes_no_seq(mm):
    """R53, T45."""
    log = []
    mm.register(notifier(log, "N", [IR, START, END]))
    mm.invalidate_range(0x1000, 0x2000)
    assert log == [("N", IR, (mm, 0x1000, 0x2000))]
    assert (mm.invalidate_seq, mm.active_invalidate_ranges) == (2, 0)


@pytest.mark.parametrize("method", ["clear_flush_young", "clear_young"])
def test_r54_r55_d7_clear_young_asks_everyone_and_returns_a_bool(mm, method):
    """R54, R55, D7: no short-circuit; any truthy result makes True (exactly True)."""
    log = []
    mm.register(notifier(log, "N1", [method], young=0))
    mm.register(notifier(log, "N2", [method], young=7))
    mm.register(notifier(log, "N3", [method], young=[]))
    assert getattr(mm, method)(0x1000, 0x2000) is True
    assert log == [(n, method, (mm, 0x1000, 0x2000)) for n in ("N3", "N2", "N1")]


def test_r56_d7_test_young_stops_at_the_first_truthy_result(mm):
    """R56, T47, D7."""
    log = []
    mm.register(notifier(log, "N1", ["test_young"], young=True))
    mm.register(notifier(log, "N2", ["test_young"], young="yes"))
    mm.register(notifier(log, "N3", ["test_young"], young=None))
    assert mm.test_young(0x1234) is True
    assert seen(log) == [("N3", "test_young"), ("N2", "test_young")]


def test_d7_young_false_with_no_notifier_or_none_young(mm):
    """R4, R54-R56."""
    assert mm.clear_young(0, 1) is False and mm.test_young(0) is False
    mm.register(notifier([], "N", ["clear_young", "test_young"], young=0))
    mm.register(Notifier())
    assert mm.clear_young(0, 1) is False and mm.test_young(0) is False


def test_d11_a_raising_truth_value_is_a_callback_exception(mm):
    """D11: taking the truth value of a result may raise; the walk goes on."""

    class Weird:
        def __bool__(self):
            raise Boom("bool")

    log = []
    mm.register(notifier(log, "N1", ["test_young"], young=True))
    mm.register(notifier(log, "N2", ["test_young"], young=Weird()))
    with pytest.raises(Boom):
        mm.test_young(0)
    assert seen(log) == [("N2", "test_young"), ("N1", "test_young")]


def test_r57_change_pte_passes_the_pte_through(mm):
    """R57, T48: (mm, address, pte), pte unchanged."""
    log = []
    mm.register(notifier(log, "N", ["change_pte"]))
    pte = object()
    mm.change_pte(0x1000, pte)
    assert log == [("N", "change_pte", (mm, 0x1000, pte))]
    assert log[0][2][2] is pte


# -- input conventions (API.md) --------------------------------------------------------------

class Index:
    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


@pytest.mark.parametrize("args,exc", [
    ((5, 5), ValueError), ((6, 5), ValueError), ((-1, 5), OverflowError),
    ((0, 2**64), OverflowError), ((0.0, 5), TypeError), (("0", 5), TypeError),
    ((None, 5), TypeError), ((b"\x00", 5), TypeError), ((0, 5.5), TypeError),
])
@pytest.mark.parametrize("method", [IR, "clear_flush_young", "clear_young"])
def test_range_arguments_are_checked_before_anything_runs(mm, method, args, exc):
    log = []
    mm.register(notifier(log, "N", [method]))
    with pytest.raises(exc):
        getattr(mm, method)(*args)
    assert log == []


@pytest.mark.parametrize("bad,exc", [(-1, OverflowError), (2**64, OverflowError),
                                     (1.0, TypeError), ("1", TypeError), (None, TypeError)])
def test_address_arguments_are_checked(mm, bad, exc):
    log = []
    mm.register(notifier(log, "N", ["test_young", "change_pte"]))
    with pytest.raises(exc):
        mm.test_young(bad)
    with pytest.raises(exc):
        mm.change_pte(bad, 0)
    assert log == []


def test_index_objects_and_bools_are_integers(mm):
    """API.md: anything with __index__; an exception from __index__ propagates."""
    log = []
    mm.register(notifier(log, "N", [IR, "test_young"]))
    mm.invalidate_range(False, Index(2**64 - 1))
    mm.test_young(Index(7))
    assert log == [("N", IR, (mm, 0, 2**64 - 1)), ("N", "test_young", (mm, 7))]
    assert type(log[0][2][2]) is int

    class Bad:
        def __index__(self):
            raise Boom()

    with pytest.raises(Boom):
        mm.invalidate_range(Bad(), 5)


# -- J. release ------------------------------------------------------------------------------

def test_r60_release_calls_release_then_unhashes_every_notifier(mm):
    """R60, T51: release(mm) newest first, no start/end, then nothing more is called."""
    log = []
    mm.register(notifier(log, "N1"))
    mm.register(notifier(log, "N2"))
    mm.release()
    assert log == [("N2", "release", (mm,)), ("N1", "release", (mm,))]
    mm.invalidate_range(0, 0x1000)
    mm.invalidate_range_start(Range(0, 0x1000))
    mm.invalidate_range_end(Range(0, 0x1000))
    assert mm.clear_young(0, 0x1000) is False
    assert len(log) == 2
    assert mm.has_notifiers is True


def test_r61_t51_unregister_after_release_calls_no_second_release(mm):
    """R61, T51, Q9: still registered for its owner until unregister, which returns."""
    log = []
    n = notifier(log, "N", ["release"])
    mm.register(n)
    mm.release()
    with pytest.raises(ValueError):
        MM().register(n)  # still registered (R61)
    mm.unregister(n)
    assert seen(log) == [("N", "release")]
    with pytest.raises(ValueError):
        mm.unregister(n)
    other = MM()
    other.register(n)
    other.unregister(n)
    assert seen(log) == [("N", "release")] * 2


def test_d12_a_released_mm_takes_no_new_notifier(mm):
    """D12, T54."""
    mm.release()
    with pytest.raises(ValueError):
        mm.register(Notifier())
    with pytest.raises(ValueError):
        mm.get_notifier(Notifier)
    with pytest.raises(TypeError):
        mm.register(object())


# -- K. register / unregister ------------------------------------------------------------------

def test_r62_r1_register_sets_has_notifiers_for_ever(mm):
    """R1, R4, R62."""
    assert mm.has_notifiers is False
    n = Notifier()
    mm.register(n)
    assert mm.has_notifiers is True
    mm.unregister(n)
    assert mm.has_notifiers is True


def test_r64_t55_unregister_calls_release_once_then_nothing(mm):
    """R64, T55."""
    log = []
    n = notifier(log, "N")
    mm.register(n)
    mm.unregister(n)
    assert log == [("N", "release", (mm,))]
    with mm.invalidate(0, 0x1000):
        pass
    mm.invalidate_range(0, 0x1000)
    mm.change_pte(0, 0)
    mm.release()
    assert len(log) == 1


def test_r64_unregister_with_a_raising_release_still_unregisters(mm):
    log = []
    n = notifier(log, "N", ["release", IR], raises={"release": Boom()})
    mm.register(n)
    with pytest.raises(Boom):
        mm.unregister(n)
    mm.invalidate_range(0, 0x1000)
    assert seen(log) == [("N", "release")]
    mm.register(n)  # it is unregistered: it may be registered again


def test_d6_r65_double_registration_and_unknown_unregister_are_value_errors(mm):
    """D6, R65."""
    n = Notifier()
    mm.register(n)
    with pytest.raises(ValueError):
        mm.register(n)
    with pytest.raises(ValueError):
        MM().register(n)
    with pytest.raises(ValueError):
        MM().unregister(n)  # registered, but elsewhere
    mm.unregister(n)
    with pytest.raises(ValueError):
        mm.unregister(n)
    with pytest.raises(ValueError):
        mm.unregister(Notifier())


@pytest.mark.parametrize("bad", [object(), None, 5, Notifier])
def test_register_and_unregister_take_a_notifier(mm, bad):
    with pytest.raises(TypeError):
        mm.register(bad)
    with pytest.raises(TypeError):
        mm.unregister(bad)
    assert mm.has_notifiers is False


def test_a_copied_notifier_is_not_registered(mm):
    """A copy of a registered notifier is a new, unregistered notifier."""
    import copy

    n = Notifier()
    mm.register(n)
    twin = copy.copy(n)
    with pytest.raises(ValueError):
        twin.put()
    MM().register(twin)


# -- L. get / put / synchronize ----------------------------------------------------------------

def counted(name="Shared"):
    class Counted(Notifier):
        allocs, frees, calls = [], [], []

        @classmethod
        def alloc_notifier(cls, mm):
            cls.allocs.append(mm)
            return cls()

        def free_notifier(self):
            type(self).frees.append(self)

        def invalidate_range(self, mm, start, end):
            type(self).calls.append((IR, start))

        def release(self, mm):
            type(self).calls.append(("release", mm))

    Counted.__name__ = Counted.__qualname__ = name
    return Counted


def test_r66_t58_get_shares_one_instance_and_counts_users(mm):
    """R66, R67, T58: alloc_notifier once (with the MM itself); one free after two puts."""
    cls = counted()
    n = mm.get_notifier(cls)
    assert mm.get_notifier(cls) is n and cls.allocs == [mm] and cls.allocs[0] is mm
    n.put()
    mm.invalidate_range(0, 0x1000)
    assert cls.calls == [(IR, 0)] and cls.frees == []
    n.put()
    synchronize()
    assert cls.frees == [n]
    mm.invalidate_range(0, 0x1000)
    assert len(cls.calls) == 1
    with pytest.raises(ValueError):
        n.put()  # D6: below zero


def test_r66_get_finds_a_registered_notifier_of_exactly_that_class(mm):
    """API.md: get_notifier also finds a register()ed notifier of exactly cls."""
    cls = counted()
    sub = type("Sub", (cls,), {})
    plain = cls()
    child = sub()
    mm.register(plain)
    mm.register(child)
    assert mm.get_notifier(cls) is plain
    assert cls.allocs == []
    plain.put()
    plain.put()  # register's reference: the last put unregisters, without release (R68)
    assert cls.frees == [plain] and (("release", mm) not in cls.calls)
    mm.unregister(child)


def test_r67_get_is_keyed_by_the_class_asked_for(mm):
    """R66: the key is the class passed to get (the kernel's ops), even if alloc_notifier
    returned an instance of another class."""

    class Impl(Notifier):
        pass

    class Front(Notifier):
        @classmethod
        def alloc_notifier(cls, mm):
            return Impl()

    n = mm.get_notifier(Front)
    assert type(n) is Impl and mm.get_notifier(Front) is n
    assert mm.get_notifier(Impl) is not n
    for _ in range(2):
        n.put()
    mm.get_notifier(Impl).put()


def test_r67_get_is_per_mm_and_per_class():
    cls1, cls2 = counted("C1"), counted("C2")
    mm1, mm2 = MM(), MM()
    got = [mm1.get_notifier(cls1), mm2.get_notifier(cls1), mm1.get_notifier(cls2)]
    assert len({id(n) for n in got}) == 3
    for n in got:
        n.put()


def test_t59_put_never_calls_release(mm):
    cls = counted()
    mm.get_notifier(cls).put()
    synchronize()
    assert cls.calls == [] and len(cls.frees) == 1


def test_t60_get_at_uint_max_users_is_overflow_and_changes_nothing(mm):
    """T60, R66: users forced to 2**32-1 by the test hook."""
    cls = counted()
    n = mm.get_notifier(cls)
    _classic._set_users(n, 2**32 - 1)
    with pytest.raises(OverflowError):
        mm.get_notifier(cls)
    _classic._set_users(n, 2)
    n.put()
    assert cls.frees == []
    n.put()
    assert cls.frees == [n]


def test_t61_alloc_failure_registers_nothing(mm):
    """T61, R67: the exception propagates, nothing registered, nothing freed."""
    freed = []

    class Failing(Notifier):
        @classmethod
        def alloc_notifier(cls, mm):
            raise MemoryError("no memory")

        def free_notifier(self):
            freed.append(self)

    with pytest.raises(MemoryError):
        mm.get_notifier(Failing)
    assert mm.has_notifiers is False and freed == []


def test_t62_registration_failure_after_alloc_frees_the_new_notifier(mm):
    """T62, R67: alloc_notifier releases the mm, so the registration fails: ValueError and
    free_notifier called once."""
    freed = []

    class Racy(Notifier):
        @classmethod
        def alloc_notifier(cls, mm):
            mm.release()
            return cls()

        def free_notifier(self):
            freed.append(self)

    with pytest.raises(ValueError):
        mm.get_notifier(Racy)
    synchronize()
    assert len(freed) == 1 and isinstance(freed[0], Racy)


@pytest.mark.parametrize("result", [None, object(), 5])
def test_alloc_notifier_must_return_a_notifier(mm, result):
    class Odd(Notifier):
        @classmethod
        def alloc_notifier(cls, mm):
            return result

    with pytest.raises(TypeError):
        mm.get_notifier(Odd)
    assert mm.has_notifiers is False


def test_alloc_notifier_returning_a_registered_notifier_is_value_error(mm):
    """D6: it belongs to someone else; it is not freed."""
    freed = []

    class Shared(Notifier):
        def free_notifier(self):
            freed.append(self)

    other = Shared()
    MM().register(other)
    Shared.alloc_notifier = classmethod(lambda cls, mm: other)
    with pytest.raises(ValueError):
        mm.get_notifier(Shared)
    assert freed == []


@pytest.mark.parametrize("bad", [object, int, Notifier(), None, "Notifier"])
def test_get_notifier_takes_a_notifier_subclass(mm, bad):
    with pytest.raises(TypeError):
        mm.get_notifier(bad)
    assert mm.has_notifiers is False


def test_d6_put_of_a_never_registered_notifier_is_value_error():
    with pytest.raises(ValueError):
        Notifier().put()


def test_t63_put_inside_release_frees_after_release_returns(mm):
    """T63, R68: the free waits for the calling thread's own release callback."""
    order = []

    class SelfPut(Notifier):
        def release(self, mm):
            self.put()
            order.append("put returned")

        def free_notifier(self):
            order.append("free")

    mm.get_notifier(SelfPut)
    mm.release()
    synchronize()
    assert order == ["put returned", "free"]


def test_put_inside_a_callback_frees_after_it_returns(mm):
    """R68: the same for any callback; the notifier is off the list at once."""
    order = []

    class Once(Notifier):
        def invalidate_range(self, mm, start, end):
            self.put()
            order.append("callback returns")

        def free_notifier(self):
            order.append("free")

    mm.get_notifier(Once)
    mm.invalidate_range(0, 0x1000)
    mm.invalidate_range(0, 0x1000)
    assert order == ["callback returns", "free"]


def test_r69_synchronize_reraises_free_exceptions_once(mm):
    """R69, D8: the first free_notifier exception, later ones chained; then cleared."""
    errors = [Boom("a"), KeyError("b")]

    class Bad(Notifier):
        def free_notifier(self):
            raise errors.pop(0)

    class Bad2(Bad):
        pass

    mm.get_notifier(Bad).put()
    mm.get_notifier(Bad2).put()
    with pytest.raises(Boom) as info:
        synchronize()
    assert isinstance(info.value.__context__, KeyError)
    synchronize()


def test_synchronize_inside_free_notifier_is_runtime_error(mm):
    """A free that waits for itself raises instead of hanging (D6 spirit)."""
    caught = []

    class Eager(Notifier):
        def free_notifier(self):
            with pytest.raises(RuntimeError):
                synchronize()
            caught.append(True)

    mm.get_notifier(Eager).put()
    assert caught == [True]


def test_public_names_are_the_classic_module_ones():
    assert mmn_fast.Notifier is _classic.Notifier
    assert mmn_fast.synchronize is _classic.synchronize


def test_r62_r64_registration_pins_the_mm_and_cycles_are_collected():
    """R62: registration pins the mm (kernel mmgrab) until unregister / the last put (R64,
    R68); an mm and its notifiers dropped together are freed by the cycle collector."""
    import gc
    import weakref

    class Keeper(Notifier):
        def invalidate_range(self, mm, start, end):
            self.mm = mm  # a cycle through the notifier as well

    mm = MM()
    n = Keeper()
    mm.register(n)
    mm.invalidate_range(0, 1)
    ref = weakref.ref(mm)
    del mm, n
    gc.collect()
    assert ref() is None

    mm, n = MM(), Notifier()
    mm.register(n)
    ref = weakref.ref(mm)
    del mm
    gc.collect()
    assert ref() is not None  # pinned by the registration
    ref().unregister(n)
    gc.collect()
    assert ref() is None


def test_q9_release_is_never_called_twice(mm):
    """Q9, R60, R64: a notifier that unregisters itself from its release (during
    mm.release()) is released once, and its unregister returns."""
    log = []

    class SelfUnregister(Notifier):
        def release(self, mm):
            log.append("release")
            mm.unregister(self)
            log.append("unregistered")

    mm.register(SelfUnregister())
    mm.release()
    assert log == ["release", "unregistered"]


def test_r52_classic_start_runs_inside_the_epoch_and_end_after_it_closed(mm):
    """R52, T42: interval invalidate() before the classic start (seq odd, active 1 during
    it); the classic end runs once the interval end closed the epoch (seq even, active 0)."""
    log = []

    class Ops:
        def invalidate(self, sub, rng, cur_seq):
            log.append(("interval", cur_seq))
            sub.set_seq(cur_seq)
            return True

    class Watch(Notifier):
        def invalidate_range_start(self, rng):
            log.append(("start", mm.invalidate_seq, mm.active_invalidate_ranges))

        def invalidate_range_end(self, rng):
            log.append(("end", mm.invalidate_seq, mm.active_invalidate_ranges))

    mm.insert_interval_notifier(0x1000, 0x1000, Ops())
    mm.register(Watch())
    with mm.invalidate(0, 0x4000):
        pass
    assert log == [("interval", 3), ("start", 3, 1), ("end", 4, 0)]


def test_d1_classic_refusal_ends_the_interval_side_first(mm):
    """D1, T40, Q1: the refused start leaves seq even and nothing active, and the pairing
    ends run after the interval end."""
    log = []

    class Ops:
        def invalidate(self, sub, rng, cur_seq):
            sub.set_seq(cur_seq)
            return True

    class Peer(Notifier):
        def invalidate_range_start(self, rng):
            pass

        def invalidate_range_end(self, rng):
            log.append((mm.invalidate_seq, mm.active_invalidate_ranges))

    sub = mm.insert_interval_notifier(0, 0x1000, Ops())
    mm.register(Peer())
    mm.register(notifier([], "Refuser", [START], refuse=True))
    assert mm.invalidate_range_start_nonblock(Range(0, 0x1000)) is False
    assert log == [(4, 0)]
    assert (mm.invalidate_seq, mm.active_invalidate_ranges) == (4, 0)
    sub.remove()
