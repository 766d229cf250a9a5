"""Threaded stress of one MM, both modes (issue 6; SPEC T68, R7-R42, R81-R84, D4, D5, D10).

Threads, for a bounded time, each with its own ``random.Random(seed + n)``:

- writers: nested (1-3 deep) and parallel invalidations: ``mm.invalidate`` context managers,
  explicit ``invalidate_range_start``/``_end``, ``invalidate_range_start_nonblock``, and small
  ``invalidate_many`` batches; between start and end each writer changes the "page table"
  (``Stress.pte``) for its range, as the core mm does;
- readers: the T26 loop (``read_begin``, read the page table, under the user lock commit the
  snapshot to the mirror unless ``read_retry``) on their own subscriptions;
- churn: inserts and removes of callback, native and refusing subscriptions;
- classic: ``register``/``unregister`` and ``get_notifier``/``put`` of counting notifiers;
- collector (issue 10): ``gc.collect()`` loops over cyclic garbage carrying ``weakref.finalize``
  callbacks that insert, remove and ``read_begin`` interval subscriptions and register and
  put classic notifiers on the same MM. The collection threshold is lowered, so the
  finalizers also run on the other threads, wherever an allocation starts a collection (inside
  callbacks and walks included). There they read (without waiting) and register/put at once,
  and hand inserts and removes to the collector thread: a remove could wait for the
  invalidation its own thread holds open, and both take this harness's own locks, which that
  thread may hold.

Checked while running: no callback after its ``remove()``/``unregister()`` returned or after
``free_notifier``, no classic end without a pending start (D5), ``cur_seq`` odd (R83), while a
writer is between its start and its end no subscription it hit keeps a mirror entry, every
``read_begin`` returns once the epoch it waits for has ended (a 10 s wait across two epoch
ends is a lost wake-up; one epoch held open longer by overlapping writers is counted, as the
protocol allows it), every thread ends (watchdog).
After quiescing: ``invalidate_seq`` even, ``active_invalidate_ranges == 0``, the core's
invariants and classic mode's bookkeeping, the tree equal to the expected set, every mirror
entry equal to the page table, and the finalizers did run.

Short (``SHORT`` seconds) by default. The long run is the ``stress``-marked test, enabled by
``MMN_STRESS_SECONDS``; ``MMN_STRESS_SEED`` replays a seed (printed in the report and in every
failure). See docs/reliability.md.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import threading
import time
import traceback
import weakref
from array import array

import pytest

from mmn_fast import MM, Notifier, Range, synchronize

SHORT = 5.0
PAGE = 0x1000
PAGES = 64  # the address space is [0, PAGES * PAGE)
WRITERS, READERS, CHURNERS, CLASSICS, COLLECTORS = 4, 4, 2, 2, 1
GC_THRESHOLD = (100, 50, 50)  # young collections often, on every thread; full ones rare
JOIN = 60.0  # watchdog: every thread must end this long after the deadline


class Stress:
    """Shared state, the mirror and the checks."""

    def __init__(self, seed: int, seconds: float) -> None:
        self.seed = seed
        self.seconds = seconds
        self.mm = MM()
        self.user_lock = threading.Lock()  # the driver lock: set_seq and the mirror (R28)
        self.pte_lock = threading.Lock()
        self.pte = [0] * PAGES  # page -> version
        self.mirror: dict[int, tuple[int, ...]] = {}  # sub id -> snapshot of its pages
        self.violations: list[str] = []
        self.state_lock = threading.Lock()
        self.expected: dict[int, tuple[int, int]] = {}  # sub id -> (start, last), in the tree
        self.removed: set[int] = set()  # ids whose remove() returned
        self.next_id = 0
        self.ops = 0
        self.commits = 0  # reader snapshots kept in the mirror
        self.retries = 0  # reader snapshots dropped because read_retry was true
        self.starved = 0  # read_begin waits of 10 s that no epoch end could have ended
        self.stop = threading.Event()
        # The collector thread's finalizers (see finalize); every field under fin_lock, which
        # is never held across anything that allocates (a finalizer may run there).
        self.fin_lock = threading.Lock()
        self.fin_owned: list[tuple[int, object]] = []  # subscriptions the finalizers made
        self.fin_ids: set[int] = set()  # their ids, until a remove action takes one (no lock)
        self.fin_later: list[tuple[str, int]] = []  # handed to the collector (append/pop only)
        self.fin_closed = False
        self.fin_inflight = 0
        self.fin_ran = 0
        self.fin_elsewhere = 0  # of them, run on another thread than the collector
        self.collections = 0
        self.collector: threading.Thread | None = None

    def fail(self, what: str) -> None:
        self.violations.append(f"{what} (seed {self.seed})")
        self.stop.set()

    def new_id(self) -> int:
        with self.state_lock:
            self.next_id += 1
            return self.next_id

    def count(self, n: int = 1) -> None:
        with self.state_lock:
            self.ops += n

    def pages(self, start: int, last: int) -> range:
        return range(start // PAGE, min(last // PAGE, PAGES - 1) + 1)

    def snapshot(self, start: int, last: int) -> tuple[int, ...]:
        with self.pte_lock:
            return tuple(self.pte[p] for p in self.pages(start, last))

    # --- interval subscriptions -------------------------------------------------------------
    def make_ops(self, sid: int, hits: list[int] | None = None, *, refuser: bool = False):
        """An ``invalidate`` callback: checks R40/R83, set_seq and drop the mirror entry under
        the user lock; records the hit for the writer's in-epoch check."""

        def invalidate(sub, rng, cur_seq):
            if sid in self.removed:
                self.fail(f"callback of sub {sid} ran after its remove() returned (R40)")
            if cur_seq % 2 != 1:
                self.fail(f"cur_seq {cur_seq} is even (R83)")
            if refuser and not rng.blockable:
                return False
            with self.user_lock:
                sub.set_seq(cur_seq)
                self.mirror.pop(sid, None)
            local = _hits.__dict__.get("ids")
            if local is not None:
                local.append(sid)
            return True

        return invalidate

    def insert(self, rng: random.Random, kind: str):
        sid = self.new_id()
        start = rng.randrange(PAGES) * PAGE
        length = rng.randint(1, 6) * PAGE - rng.choice((0, 1))
        length = min(length, PAGES * PAGE - start)
        ops = None if kind == "native" else self.make_ops(sid, refuser=kind == "refuser")
        sub = self.mm.insert_interval_notifier(start, length, ops, tag=sid)
        span = (start, start + length - 1)  # built unlocked: a finalizer may take state_lock
        with self.state_lock:
            self.expected[sid] = span
        return sid, sub

    def remove(self, sid: int, sub) -> None:
        sub.remove()
        with self.state_lock:
            self.removed.add(sid)
            del self.expected[sid]
        with self.user_lock:
            self.mirror.pop(sid, None)


    # --- finalizers -------------------------------------------------------------------------
    def finalize(self, kind: str, seed: int) -> None:
        """A ``weakref.finalize`` callback: act on the MM from whatever thread collects."""
        if kind in ("insert", "remove") and threading.current_thread() is not self.collector:
            self.fin_later.append((kind, seed))  # one atomic list operation, no lock
            return
        with self.fin_lock:
            if self.fin_closed:
                return
            self.fin_inflight += 1
        try:
            rng = random.Random(seed)
            if kind == "insert":
                item = self.insert(rng, rng.choice(("native", "callback")))
                self.fin_ids.add(item[0])
                with self.fin_lock:
                    self.fin_owned.append(item)
            elif kind == "remove":
                with self.fin_lock:
                    item = self.fin_owned.pop() if self.fin_owned else None
                if item is not None:
                    self.fin_ids.discard(item[0])
                    self.remove(*item)
            elif kind == "read":
                with self.fin_lock:
                    item = self.fin_owned[-1] if self.fin_owned else None
                if item is not None:
                    self.finalizer_read(*item)
            else:
                # put(), never unregister(): a finalizer may run inside a callback, and two
                # threads each waiting in unregister() for the other's callback never return.
                n = Dropped()
                self.mm.register(n)
                n.put()
            elsewhere = threading.current_thread() is not self.collector
            with self.fin_lock:
                self.fin_ran += 1
                self.fin_elsewhere += elsewhere
        except BaseException as exc:  # noqa: BLE001 - reported with the seed
            self.fail(f"finalizer {kind} on {threading.current_thread().name}: {exc!r}")
        finally:
            with self.fin_lock:
                self.fin_inflight -= 1

    def finalizer_read(self, sid: int, sub) -> None:
        """``read_begin`` then ``read_retry``. Off the collector thread it must not wait at all:
        that thread may hold the epoch open, or a lock of this harness that the invalidation
        holding it needs, and one collection may run hundreds of finalizers."""
        timeout = 0.05 if threading.current_thread() is self.collector else 0.0
        try:
            sub.read_retry(sub.read_begin(timeout))
        except (TimeoutError, RuntimeError):  # its own thread's epoch (R32, D6)
            return
        except ValueError:
            if sid in self.fin_ids:  # not being removed by another finalizer
                raise

    def close_finalizers(self) -> None:
        """On the collector thread at the end: no more actions, then remove what they made."""
        with self.fin_lock:
            self.fin_closed = True
        deadline = time.monotonic() + 10
        while self.fin_inflight and time.monotonic() < deadline:
            time.sleep(0.001)
        if self.fin_inflight:
            self.fail("a finalizer did not finish within 10 s")
        gc.collect()
        for sid, sub in self.fin_owned:
            self.remove(sid, sub)
        self.fin_owned = []


_hits = threading.local()  # the subscriptions the current writer's starts reached


class Counting(Notifier):
    """A classic notifier that checks D5 (never an end without a pending start) and that no
    callback runs after its unregister() returned or after free_notifier()."""

    stress: Stress

    def __init__(self) -> None:
        self.pending = 0
        self.lock = threading.Lock()
        self.gone = False  # unregister() returned, or free_notifier() ran

    def _alive(self, what: str) -> None:
        if self.gone:
            self.stress.fail(f"classic {what} on {type(self).__name__} after unregister/free")

    def invalidate_range_start(self, rng) -> None:
        self._alive("start")
        with self.lock:
            self.pending += 1

    def invalidate_range_end(self, rng) -> None:
        self._alive("end")
        with self.lock:
            self.pending -= 1
            if self.pending < 0:
                self.stress.fail("classic end without a pending start (D5)")

    def invalidate_range(self, mm, start, end) -> None:
        self._alive("invalidate_range")


class Shared(Counting):
    """The get_notifier/put class: one shared instance per MM."""

    def free_notifier(self) -> None:
        self.gone = True


class Dropped(Shared):
    """What the finalizers register and put."""


# --- the threads ----------------------------------------------------------------------------
def writer(st: Stress, rng: random.Random) -> None:
    mm = st.mm
    _hits.ids = []

    def rand_range() -> tuple[int, int]:
        s = rng.randrange(PAGES) * PAGE + rng.choice((0, 0, 1, PAGE - 1))
        return s, min(s + rng.randint(1, 8) * PAGE, PAGES * PAGE)

    def touch(s: int, e: int) -> None:
        """The core mm changes the page table between start and end; the mirror of every
        subscription this writer's starts reached must be empty by now."""
        with st.pte_lock:
            for p in st.pages(s, e - 1):
                st.pte[p] += 1
        with st.user_lock:
            for sid in _hits.ids:
                if sid in st.mirror and sid not in st.removed:
                    st.fail(f"sub {sid} kept a mirror entry during an invalidation that hit it")

    def nested(depth: int) -> None:
        s, e = rand_range()
        how = rng.random()
        if how < 0.5:
            with mm.invalidate(s, e):
                touch(s, e)
                if depth < 3 and rng.random() < 0.4:
                    nested(depth + 1)
        elif how < 0.8:
            r = Range(s, e)
            mm.invalidate_range_start(r)
            try:
                touch(s, e)
                if depth < 3 and rng.random() < 0.4:
                    nested(depth + 1)
            finally:
                mm.invalidate_range_end(r)
        else:
            r = Range(s, e)
            if mm.invalidate_range_start_nonblock(r):
                try:
                    touch(s, e)
                finally:
                    mm.invalidate_range_end(r)
        st.count()

    while not st.stop.is_set():
        _hits.ids = []
        if rng.random() < 0.1:
            n = rng.randint(1, 32)
            starts = array("Q", (rng.randrange(PAGES) * PAGE for _ in range(n)))
            ends = array("Q", (min(s + rng.randint(1, 4) * PAGE, PAGES * PAGE) for s in starts))
            # Each range is its own complete epoch: bump the table after (nothing to check).
            mm.invalidate_many(starts, ends)
            st.count(n)
        else:
            nested(1)


def reader(st: Stress, rng: random.Random) -> None:
    own = [st.insert(rng, "callback") for _ in range(3)]
    while not st.stop.is_set():
        i = rng.randrange(len(own))
        sid, sub = own[i]
        if rng.random() < 0.02:  # re-create one: remove it (may wait) and insert another
            st.remove(sid, sub)
            own[i] = st.insert(rng, "callback")
            st.count(2)
            continue
        before = st.mm.invalidate_seq
        try:
            seq = sub.read_begin(10.0)
        except TimeoutError:
            # read_begin waits for the end of the epoch that hit the subscription (R25). Two
            # epoch ends since `before` mean that epoch ended (it began at the earliest in the
            # epoch after the first of them): a lost wake-up. With fewer, writers whose
            # invalidations overlap without a pause kept it open, which the protocol allows
            # (the kernel's too: a start never waits for readers); the checks after quiescing
            # catch an epoch that never closes.
            ends = st.mm.invalidate_seq // 2 - before // 2
            if ends >= 2:
                st.fail(f"read_begin of sub {sid} missed {ends} epoch ends in 10 s")
                return
            with st.state_lock:
                st.starved += 1
            continue
        snap = st.snapshot(sub.start, sub.last)
        if rng.random() < 0.3:
            time.sleep(0)  # widen the window between read_begin and read_retry
        with st.user_lock:
            retry = sub.read_retry(seq)
            if not retry:
                st.mirror[sid] = snap
        with st.state_lock:
            st.ops += 1
            st.commits += not retry
            st.retries += retry


def churner(st: Stress, rng: random.Random) -> None:
    live: list[tuple[int, object]] = []
    while not st.stop.is_set():
        if live and (len(live) > 12 or rng.random() < 0.45):
            sid, sub = live.pop(rng.randrange(len(live)))
            st.remove(sid, sub)
        else:
            live.append(st.insert(rng, rng.choice(("native", "native", "callback", "refuser"))))
        if rng.random() < 0.05:
            st.mm.drain_invalidated()
        st.count()
    for sid, sub in live:
        st.remove(sid, sub)


def classic(st: Stress, rng: random.Random) -> None:
    mm = st.mm
    while not st.stop.is_set():
        if rng.random() < 0.5:
            n = Counting()
            mm.register(n)
            time.sleep(rng.random() * 1e-3)
            mm.unregister(n)
            n.gone = True
        else:
            n = mm.get_notifier(Shared)
            time.sleep(rng.random() * 1e-3)
            n.put()
        st.count()


class Doomed:
    """Cyclic garbage: only the collector frees it (and runs its finalizer)."""

    def __init__(self) -> None:
        self.me = self


def collector(st: Stress, rng: random.Random) -> None:
    st.collector = threading.current_thread()
    kinds = ("insert", "insert", "remove", "remove", "read", "classic")
    try:
        while not st.stop.is_set():
            for _ in range(rng.randint(1, 6)):
                weakref.finalize(Doomed(), st.finalize, rng.choice(kinds), rng.randrange(1 << 30))
            if rng.random() < 0.5:  # else left for a collection that another thread starts
                gc.collect(rng.choice((0, 0, 0, 0, 1, 1, 2)) if rng.random() < 0.1 else 0)
                with st.fin_lock:
                    st.collections += 1
            while st.fin_later:
                st.finalize(*st.fin_later.pop())
            st.count()
            time.sleep(rng.random() * 1e-3)
    finally:
        st.close_finalizers()


def run_stress(seed: int, seconds: float, capsys) -> None:
    st = Stress(seed, seconds)
    Counting.stress = st
    workers = (
        [(writer, f"writer{i}") for i in range(WRITERS)]
        + [(reader, f"reader{i}") for i in range(READERS)]
        + [(churner, f"churn{i}") for i in range(CHURNERS)]
        + [(classic, f"classic{i}") for i in range(CLASSICS)]
        + [(collector, f"collector{i}") for i in range(COLLECTORS)]
    )
    errors: list[str] = []

    def guard(fn, rng):
        try:
            fn(st, rng)
        except BaseException as exc:  # noqa: BLE001 - reported with the seed
            errors.append(f"{threading.current_thread().name}: {exc!r}")
            st.stop.set()

    threads = [
        threading.Thread(target=guard, args=(fn, random.Random(seed * 1000 + i)), name=name, daemon=True)
        for i, (fn, name) in enumerate(workers)
    ]
    old = sys.getswitchinterval()
    old_gc = gc.get_threshold()
    sys.setswitchinterval(1e-4)  # many more thread switches than the default 5 ms
    gc.set_threshold(*GC_THRESHOLD)
    t0 = time.perf_counter()
    try:
        for t in threads:
            t.start()
        st.stop.wait(seconds)
        st.stop.set()
        hung = []
        for t in threads:
            t.join(JOIN)
            if t.is_alive():
                hung.append(t.name)
    finally:
        sys.setswitchinterval(old)
        gc.set_threshold(*old_gc)
    elapsed = time.perf_counter() - t0
    replay = f"replay: MMN_STRESS_SEED={seed} MMN_STRESS_SECONDS={seconds:g}"
    if hung:
        frames = sys._current_frames()
        stacks = {t.name: "".join(traceback.format_stack(frames[t.ident]))
                  for t in threads if t.is_alive() and t.ident in frames}
        raise AssertionError(f"threads hung (watchdog {JOIN} s): {hung}; {replay}; "
                             f"violations {st.violations[:3]}; errors {errors[:3]}; {stacks}")
    assert not errors, f"{errors}; {replay}"
    assert not st.violations, f"{st.violations[:10]}; {replay}"
    synchronize()

    mm = st.mm
    assert mm.invalidate_seq % 2 == 0, replay
    assert mm.active_invalidate_ranges == 0, replay
    mm._check_invariants()
    mm._classic._check_invariants()
    assert st.fin_ran > 0 and st.collections > 0, f"the collector thread did nothing; {replay}"
    got = sorted((s.tag, s.start, s.last) for s in mm.intervals())
    want = sorted((sid, a, b) for sid, (a, b) in st.expected.items())
    assert got == want, f"tree differs from the expected set; {replay}"
    assert len(mm) == len(want)
    subs = {s.tag: s for s in mm.intervals()}
    for sid, snap in st.mirror.items():
        sub = subs[sid]
        assert snap == st.snapshot(sub.start, sub.last), f"stale mirror entry for sub {sid}; {replay}"
    # Later operations still work.
    with mm.invalidate(0, PAGES * PAGE):
        pass
    assert mm.invalidate_seq % 2 == 0 and mm.active_invalidate_ranges == 0
    with capsys.disabled():
        print(
            f"\nstress: seed {seed}, {elapsed:.1f} s, {st.ops} ops, {st.ops / elapsed:,.0f} ops/s, "
            f"{st.commits} commits, {st.retries} retries, {st.starved} reads held 10 s by one epoch, "
            f"{st.collections} collections, "
            f"{st.fin_ran} finalizer actions ({st.fin_elsewhere} on other threads), {len(threads)} threads, final seq {mm.invalidate_seq}, "
            f"{len(mm)} subscriptions; {replay}"
        )


def _seed() -> int:
    env = os.environ.get("MMN_STRESS_SEED")
    return int(env) if env else random.randrange(1 << 32)


@pytest.mark.timeout(SHORT + JOIN + 30)
def test_stress_short(capsys):
    """T68, short: the CI run."""
    run_stress(_seed(), SHORT, capsys)


_LONG = float(os.environ.get("MMN_STRESS_SECONDS", "0") or 0)


@pytest.mark.stress
@pytest.mark.skipif(not _LONG, reason="set MMN_STRESS_SECONDS for the long run")
@pytest.mark.timeout(_LONG + JOIN + 120)
def test_stress_long(capsys):
    """T68, long: ``MMN_STRESS_SECONDS=600 pytest -m stress tests/python/test_stress.py``."""
    run_stress(_seed(), _LONG, capsys)
