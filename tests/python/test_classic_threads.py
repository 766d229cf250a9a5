"""Classic mode with real threads (R64, R68, R69, D5, D8, D10, T56-T58, T63).

Every wait is bounded (WAIT); "still blocked" is checked over BLOCKED seconds, which only
ever makes a test pass more slowly, never wrongly."""

import _thread
import signal
import threading
import time

import pytest

from mmn_fast import MM, Notifier, Range, synchronize

WAIT = 5.0  # the longest a test waits for something that should happen
BLOCKED = 0.2  # how long a call must stay blocked to count as blocked


class Bg:
    """fn(*args) on a daemon thread, keeping its result or exception."""

    def __init__(self, fn, *args):
        self.result = self.error = None
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(fn, args), daemon=True).start()

    def _run(self, fn, args):
        try:
            self.result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc
        finally:
            self.done.set()

    def blocked(self):
        return not self.done.wait(BLOCKED)

    def join(self):
        assert self.done.wait(WAIT), "background call did not finish"
        if self.error is not None:
            raise self.error
        return self.result


class Gate(Notifier):
    """invalidate_range blocks until ``go`` is set; records what happened in ``log``."""

    def __init__(self, log):
        self.log = log
        self.entered = threading.Event()
        self.go = threading.Event()

    def invalidate_range(self, mm, start, end):
        self.entered.set()
        assert self.go.wait(WAIT)
        self.log.append("callback returns")

    def release(self, mm):
        self.log.append("release")

    def free_notifier(self):
        self.log.append("free")


@pytest.fixture(autouse=True)
def no_pending_frees():
    yield
    synchronize()


def test_t56_unregister_waits_for_a_callback_on_another_thread(mm):
    """T56, R64, D10: release first, then the wait; afterwards no callback."""
    log = []
    n = Gate(log)
    mm.register(n)
    walk = Bg(mm.invalidate_range, 0, 0x1000)
    assert n.entered.wait(WAIT)
    unreg = Bg(mm.unregister, n)
    assert unreg.blocked()
    assert log == ["release"]
    n.go.set()
    walk.join()
    unreg.join()
    assert log == ["release", "callback returns"]
    mm.invalidate_range(0, 0x1000)
    assert log == ["release", "callback returns"]


def _unregister_interrupted(mm):
    """One try: unregister waits for a callback held on another thread, and Ctrl-C arrives
    0.1 s later. Returns how it ended: "interrupted" (KeyboardInterrupt out of the wait, before
    the callback returned), or what happened instead."""
    n = Gate([])
    # No release callback: an interrupt landing in one (a late timer on a loaded machine)
    # counts as that callback's exception (D11) and is re-raised only after the wait.
    n.release = None
    mm.register(n)
    walk = Bg(mm.invalidate_range, 0, 0x1000)
    assert n.entered.wait(WAIT)
    timer = threading.Timer(0.1, _thread.interrupt_main)
    outcome = "returned without waiting"
    timer.start()
    try:
        mm.unregister(n)
        outcome = "returned after the wait" if walk.done.is_set() else outcome
        time.sleep(1)  # an interrupt that comes late lands here
        outcome += ", not interrupted"
    except KeyboardInterrupt:
        outcome = "interrupted" if not walk.done.is_set() else "interrupted after the wait"
    finally:
        timer.cancel()
        n.go.set()
        walk.join()
    with pytest.raises(ValueError):
        mm.unregister(n)  # it was unregistered before the wait began
    return outcome


def test_unregister_wait_is_interruptible(mm):
    """D10: the wait of unregister lets Ctrl-C (KeyboardInterrupt) reach the caller. Up to
    three tries: a stray delay of the timer thread must not fail the check; a wait that holds
    Ctrl-C off fails every try."""
    # Python installs its SIGINT handler only when SIGINT is not ignored at start-up (a job
    # run in the background by a shell ignores it); interrupt_main() needs the handler.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        outcomes = [_unregister_interrupted(mm)]
        while outcomes[-1] != "interrupted" and len(outcomes) < 3:
            outcomes.append(_unregister_interrupted(mm))
    finally:
        signal.signal(signal.SIGINT, old)
    assert outcomes[-1] == "interrupted", outcomes


def test_unregister_from_its_own_callback(mm):
    """API.md: unregister waits only for other threads, so a notifier may unregister itself;
    the walk goes on to the others."""
    log = []

    class Quitter(Notifier):
        def invalidate_range(self, mm, start, end):
            log.append("quitter")
            mm.unregister(self)
            log.append("unregistered")

        def release(self, mm):
            log.append("release")

    class Other(Notifier):
        def invalidate_range(self, mm, start, end):
            log.append("other")

    mm.register(Other())
    mm.register(Quitter())
    Bg(mm.invalidate_range, 0, 0x1000).join()
    assert log == ["quitter", "release", "unregistered", "other"]
    mm.invalidate_range(0, 0x1000)
    assert log[-1] == "other" and log.count("quitter") == 1


def test_a_notifier_unregistered_during_a_walk_is_not_called_later_in_it(mm):
    """API.md: the walk began with it on the list; it is skipped once unregistered."""
    log = []

    class Old(Notifier):
        def invalidate_range(self, mm, start, end):
            log.append("old")

    old = Old()

    class New(Notifier):
        def invalidate_range(self, mm, start, end):
            log.append("new")
            mm.unregister(old)

    mm.register(old)
    mm.register(New())
    mm.invalidate_range(0, 0x1000)
    assert log == ["new"]


def test_registration_never_waits_for_a_running_walk(mm):
    """The read side is a snapshot: register/unregister of other notifiers and other walks
    proceed while a callback is blocked; a notifier registered meanwhile is not called by
    the running walk."""
    log = []
    gate = Gate(log)
    mm.register(gate)
    walk = Bg(mm.invalidate_range, 0, 0x1000)
    assert gate.entered.wait(WAIT)

    class Late(Notifier):
        def invalidate_range(self, mm, start, end):
            log.append("late")

    late = Late()
    Bg(mm.register, late).join()
    Bg(mm.clear_young, 0, 0x1000).join()
    gate.go.set()
    walk.join()
    assert log == ["callback returns"]
    Bg(mm.unregister, late).join()


def test_put_never_waits_and_the_free_waits_for_the_callback(mm):
    """R68, T58: put() returns while the callback runs; free_notifier only after it
    returned; synchronize() waits for that (R69, D8)."""
    log = []

    class Shared(Gate):
        @classmethod
        def alloc_notifier(cls, mm):
            return cls(log)

    n = mm.get_notifier(Shared)
    walk = Bg(mm.invalidate_range, 0, 0x1000)
    assert n.entered.wait(WAIT)
    Bg(n.put).join()
    sync = Bg(synchronize)
    assert sync.blocked()
    assert log == []
    n.go.set()
    walk.join()
    sync.join()
    assert log == ["callback returns", "free"]


def test_synchronize_waits_for_frees_of_every_mm():
    """R69: not only the caller's mm."""
    log = []

    class Shared(Gate):
        @classmethod
        def alloc_notifier(cls, mm):
            return cls(log)

    mms = [MM(), MM()]
    got = [mm.get_notifier(Shared) for mm in mms]
    walk = Bg(mms[1].invalidate_range, 0, 0x1000)
    assert got[1].entered.wait(WAIT)
    for n in got:
        n.put()
    assert log == ["free"]
    sync = Bg(synchronize)
    assert sync.blocked()
    got[1].go.set()
    walk.join()
    sync.join()
    assert log == ["free", "callback returns", "free"]


def test_t63_put_from_release_on_another_thread(mm):
    """T63: mm.release() on a worker, put() from release, no deadlock, free after."""
    log = []

    class SelfPut(Notifier):
        def release(self, mm):
            self.put()
            log.append("release")

        def free_notifier(self):
            log.append("free")

    mm.get_notifier(SelfPut)
    Bg(mm.release).join()
    Bg(synchronize).join()
    assert log == ["release", "free"]


def test_d5_no_notifier_ever_gets_more_ends_than_starts_under_churn(mm):
    """D5, R64 stress: invalidations on several threads while notifiers come and go; each
    notifier's ends never exceed its starts, and nothing reaches it after unregister."""
    problems = []
    stop = threading.Event()

    class Counter(Notifier):
        def __init__(self):
            self.lock = threading.Lock()
            self.starts = self.ends = 0
            self.gone = False

        def invalidate_range_start(self, rng):
            with self.lock:
                self.starts += 1
                if self.gone:
                    problems.append("start after unregister")

        def invalidate_range_end(self, rng):
            with self.lock:
                self.ends += 1
                if self.ends > self.starts:
                    problems.append("end without start")
                if self.gone:
                    problems.append("end after unregister")

    def invalidator(i):
        r = Range(i * 0x1000, (i + 1) * 0x1000)
        while not stop.is_set():
            mm.invalidate_range_start(r)
            mm.invalidate_range_end(r)

    def churner():
        while not stop.is_set():
            n = Counter()
            mm.register(n)
            time.sleep(0.001)
            mm.unregister(n)
            n.gone = True

    workers = [Bg(invalidator, i) for i in range(3)] + [Bg(churner) for _ in range(2)]
    time.sleep(0.5)
    stop.set()
    for w in workers:
        w.join()
    assert problems == []
    assert mm.active_invalidate_ranges == 0


def test_one_registration_wins_across_threads_and_mms():
    """D6, R65: a notifier is registered on at most one mm, even under a race."""
    n = Notifier()
    mms = [MM() for _ in range(8)]
    barrier = threading.Barrier(len(mms))

    def attempt(mm):
        barrier.wait(WAIT)
        mm.register(n)

    calls = [Bg(attempt, mm) for mm in mms]
    outcomes = []
    for c in calls:
        try:
            c.join()
            outcomes.append("ok")
        except ValueError:
            outcomes.append("taken")
    assert outcomes.count("ok") == 1


def test_concurrent_get_notifier_shares_one_instance(mm):
    """R66, R67: racing gets all receive one instance; surplus allocations are freed."""
    frees = []
    barrier = threading.Barrier(8)

    class Shared(Notifier):
        def free_notifier(self):
            frees.append(self)

    def get():
        barrier.wait(WAIT)
        return mm.get_notifier(Shared)

    got = [c.join() for c in [Bg(get) for _ in range(8)]]
    assert len({id(n) for n in got}) == 1
    assert got[0] not in frees
    for n in got:
        n.put()
    synchronize()
    assert frees.count(got[0]) == 1
