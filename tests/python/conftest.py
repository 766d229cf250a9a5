"""Shared helpers of the suites, and the one invariant check every MM a test makes goes
through when the test ends (``check_mm``: the core's invariants and classic mode's bookkeeping).

Every wait here is bounded: a thread that should finish is joined for at most ``JOIN`` seconds,
and "blocked" means still running after ``BLOCKED`` seconds.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from mmn_fast import MM

U64_MAX = 2**64 - 1
JOIN = 5.0
BLOCKED = 0.15


class Idx:
    """An integer-like object: not an int, but has ``__index__`` (API.md input conventions)."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"Idx({self.value!r})"


@dataclass
class Hit:
    """One interval callback as seen from inside it."""

    sub: Any
    range: Any
    cur_seq: int
    mm_seq: int  # mm.invalidate_seq read inside the callback
    active: int  # mm.active_invalidate_ranges read inside the callback


@dataclass
class Ops:
    """Interval ops that log every call and ``set_seq(cur_seq)`` under a user lock.

    ``result`` is returned (any object; its truth value counts); ``refuse_nonblock`` returns
    False on non-blockable ranges; ``hook(sub, range, cur_seq)`` runs after set_seq and may
    raise.
    """

    log: list = field(default_factory=list)
    result: Any = True
    refuse_nonblock: bool = False
    set_seq: bool = True
    hook: Callable | None = None
    lock: Any = field(default_factory=threading.Lock)

    def invalidate(self, sub, rng, cur_seq):
        mm = sub.mm
        self.log.append(Hit(sub, rng, cur_seq, mm.invalidate_seq, mm.active_invalidate_ranges))
        if self.refuse_nonblock and not rng.blockable:
            return False
        if self.set_seq:
            with self.lock:
                sub.set_seq(cur_seq)
        if self.hook is not None:
            self.hook(sub, rng, cur_seq)
        return self.result


def subs_called(log):
    """The subscriptions of a log of Hits, in call order."""
    return [h.sub for h in log]


def snapshot(mm):
    """Everything observable about an MM's interval side, for "nothing changed" checks."""
    subs = list(mm.intervals())
    return (mm.invalidate_seq, mm.active_invalidate_ranges, len(mm), mm.has_notifiers,
            tuple(map(id, subs)), tuple(s.invalidate_seq for s in subs))


class Bg:
    """A daemon thread running ``fn(*args)``; ``join()`` returns its result or re-raises."""

    def __init__(self, fn, *args, **kwargs):
        self.result = None
        self.error = None
        self.done = threading.Event()
        self.started = threading.Event()

        def body():
            self.started.set()
            try:
                self.result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the test by join()
                self.error = exc
            finally:
                self.done.set()

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()
        assert self.started.wait(JOIN)

    def blocked(self, seconds=BLOCKED):
        """True if the thread is still running after ``seconds``."""
        return not self.done.wait(seconds)

    def join(self, timeout=JOIN):
        assert self.done.wait(timeout), "background thread did not finish in time"
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result


def max_gap(work):
    """The longest gap (s) a 1 ms sleep loop on another thread saw while ``work()`` ran."""
    gaps, stop, ready = [0.0], threading.Event(), threading.Event()

    def tick():
        last = time.perf_counter()
        ready.set()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last)
            last = now

    t = threading.Thread(target=tick, daemon=True)
    t.start()
    ready.wait(5)
    try:
        work()
    finally:
        stop.set()
        t.join(5)
    return gaps[0]


def wait_until(pred, timeout=JOIN, step=0.001):
    """Poll ``pred`` until it is true; False if ``timeout`` ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def check_mm(space: MM) -> None:
    """Everything that must hold for an MM at rest: the core's invariants (R81, R84, the tree)
    and classic mode's bookkeeping (nothing counted as running, no start pending without an
    active invalidation, every listed notifier registered)."""
    space._check_invariants()
    space._classic._check_invariants()


@pytest.fixture(autouse=True)
def _every_mm_is_checked(monkeypatch):
    """Every MM a test makes, by the ``mm`` fixture or itself, is checked when it ends."""
    made: weakref.WeakSet = weakref.WeakSet()  # forgets dead MMs: memory tests stay flat
    init = MM.__init__

    def tracked(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.add(self)

    monkeypatch.setattr(MM, "__init__", tracked)
    yield
    for space in list(made):
        check_mm(space)


@pytest.fixture
def mm():
    """A fresh address space (checked when the test ends, like every MM)."""
    return MM()
