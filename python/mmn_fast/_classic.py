"""Classic ("hlist") mode: the kernel's list of ``struct mmu_notifier``, in Python.

SPEC.md sections 2.H-2.L (R43-R69) and decisions D1, D2, D5-D8, D10-D12 are the rules; the
numbers in comments below point at them. The interval side lives in the Rust core; this module
is the classic side only. It is one module (over 500 lines) on purpose: invariants I1-I5 below
are about how every function here takes ``_LOCK`` and survives an interrupt, and checking them
means reading all of it in one place.

Invariants (issue 10: every rule below exists because breaking it hung or leaked)
--------------------------------------------------------------------------------
I1. **No Python runs while ``_LOCK`` is held.** Every ``with _LOCK:`` body is straight-line
    code of attribute and local loads and stores, int arithmetic, comparisons, and dict item
    loads, stores and deletes with int, str or ``_Entry`` keys: no call (not even of a
    builtin), no loop, no raise, no allocation of a container or object, and no store that
    drops the last reference to an object (the old value is kept in a local until the lock is
    released). So the cyclic collector (run by an allocation, or at the check that follows a
    call), finalizers, weakref and ``gc.callbacks``, signal handlers and other threads cannot
    run inside a section, and a finalizer that calls ``register``, ``unregister``, ``put``,
    ``get_notifier`` or ``synchronize`` from any point of this module finds the lock free.
    Everything that allocates (tuples of entries, tokens, exceptions) is built before the
    section and published in it by one store; MM methods (``_set_classic``, ``_released``)
    are called with no lock held. Corollary: a section is never preempted (CPython switches
    threads only at those checks), so ``_LOCK`` is never waited for and its ``acquire`` is
    never interrupted; the lock keeps sections atomic on an interpreter that could switch
    threads anywhere.
I2. **No lock is held while user code runs** (D10): callbacks, ``alloc_notifier``,
    ``free_notifier``, truth tests of results and warnings run with ``_LOCK`` released.
I3. **An interrupt never unbalances the books.** A ``KeyboardInterrupt`` (or any exception a
    signal handler raises) can land only where a call starts or returns. A section records
    what it did in locals; the code that must follow it (uncount a callback, drop a claim,
    run a free) sits in a ``finally`` entered with no such point in between, and does its own
    work inline in a section, never behind a call. A callback is counted as running inside
    the ``try`` whose ``finally`` uncounts it. In a walk an interrupt counts as an exception of
    the callback it hit (D11): it is collected, the walk goes on, and it is re-raised at the
    end. A free whose runner was interrupted stays ready and ``synchronize()`` runs it.
I4. **Waits poll with the GIL released and no lock held** (``time.sleep``, backing off to
    ``_POLL``), so Ctrl-C reaches a waiting thread and a finalizer may wait too.
I5. **Allocation happens once** (R67): concurrent ``get_notifier(cls)`` on one MM wait for the
    one thread that runs ``cls.alloc_notifier`` (a re-entry from that very thread, e.g. from
    a finalizer, allocates on its own rather than wait for itself).

Design
------
Each ``MM`` owns one :class:`ClassicList`. A registration is an :class:`_Entry`; the list is a
tuple of entries, newest first (R43), replaced as a whole on every change (built outside the
lock, published by a compare-and-swap section). A walk iterates over the tuple it read when it
began (the read side of the kernel's SRCU list), so walks never wait for registration changes
and a notifier registered during a walk is not called by it.

Per entry, under ``_LOCK``:

- ``listed``   on the list; a walk calls an entry only while it is listed, so a notifier
               unregistered during a walk is not called later in that walk (R64).
- ``pending``  starts given and not yet ended (D5): an end reaches an entry only while positive.
               A start is counted when its ``invalidate_range_start`` has returned (or at once
               if undefined), so no end reaches a notifier before the start it pairs with.
- ``busy``, ``running``  callbacks of this entry now running, in all and per thread id;
               ``unregister`` waits for the other threads' ones (R64, D10) and the free after
               the last ``put`` waits for all of them, the caller's included (R68).
- ``users``    the get/put reference count (R66-R68).
- ``free``     where its ``free_notifier`` stands (none, waiting, ready, running, done).

A notifier is "registered" (from its owner's point of view, R61) while its claim attribute
points at a claimed entry; claims are taken and dropped in sections, so a notifier is
registered on at most one MM (D6).
"""

from __future__ import annotations

import operator
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ._mmn_fast import (
    AlreadyRegisteredError,
    EmptyRangeError,
    NotRegisteredError,
    ReleasedError,
    combine,
)

__all__ = ["ClassicList", "Notifier", "synchronize"]

_U64_MAX = 2**64 - 1
_MAX_USERS = 2**32 - 1  # the kernel's UINT_MAX for mmu_notifier.users (R66)
_POLL = 0.02  # longest sleep between checks in a wait, so an interrupt is seen quickly
_FIRST_POLL = 1e-4
_CLAIM = "_mmn_fast_entry"  # instance attribute naming a registered notifier's entry

# Where an entry's free_notifier stands (R68, D8).
_NO_FREE, _FREE_WAITING, _FREE_READY, _FREE_RUNNING, _FREE_DONE = range(5)
# How _visit counts a callback: a plain call, an end (consumes a pending start), a free.
_CALL, _END, _FREE = range(3)

# The one lock of classic mode (I1): every section under it is call-free.
_LOCK = threading.Lock()
_pending_frees: dict[_Entry, None] = {}  # scheduled frees not yet complete (R69, D8)
_free_errors: dict[_Entry, BaseException] = {}  # raised by free_notifier, for synchronize()


class Notifier:
    """Base class of classic subscribers (the kernel's ``struct mmu_notifier``).

    Subclass it and define any of ``release(mm)``, ``invalidate_range_start(range)``,
    ``invalidate_range_end(range)``, ``invalidate_range(mm, start, end)``,
    ``clear_flush_young(mm, start, end)``, ``clear_young(mm, start, end)``,
    ``test_young(mm, address)`` and ``change_pte(mm, address, pte)``. This class defines none
    of them: a callback counts as defined when ``getattr(notifier, name, None)`` is callable.
    A notifier whose ``invalidate_range_start`` may raise ``WouldBlock`` must not define
    ``invalidate_range_end`` (R45, the 2021 pairing rule).
    """

    @classmethod
    def alloc_notifier(cls, mm: Any) -> Notifier:
        """Make the shared instance for ``mm.get_notifier(cls)`` (R67). Default: ``cls()``."""
        return cls()

    def free_notifier(self) -> None:
        """Called once after the last ``put()``, when no callback of this notifier runs (R68)."""

    def put(self) -> None:
        """Drop one reference taken by ``get_notifier`` (or by ``register``).

        Never waits. The last one unregisters the notifier without calling ``release`` and
        schedules ``free_notifier()``, which runs once every running callback of this notifier
        has returned, on the thread where the last one returns (here, if none is running; or
        in a ``synchronize()`` that finds it ready, if an interrupt stopped that thread).
        ``ValueError`` if the notifier is not registered (D6). Kernel: ``mmu_notifier_put``.
        """
        entry = _claim_of(self)
        if entry is None:
            raise NotRegisteredError(f"put() of a {type(self).__name__} that is not registered")
        entry.owner._put(entry)


def _nap(delay: float) -> float:
    """One step of a polling wait (I4): sleep, GIL released; the next, longer, delay."""
    time.sleep(delay)
    return min(delay * 2, _POLL)


def synchronize() -> None:
    """Wait until every free scheduled by an earlier last ``put()`` has run (R69, D8).

    Covers every MM. Then re-raises the first exception a ``free_notifier`` raised since the
    last call (later ones chained behind it). ``RuntimeError`` if a pending free waits for a
    callback running on this very thread (it could never complete).
    Kernel: ``mmu_notifier_synchronize``, with the documented promise kept (Q11).
    """
    global _free_errors
    me = threading.get_ident()
    delay = _FIRST_POLL
    earlier = list(_pending_frees)  # one C call: a consistent snapshot; later ones may wait
    while earlier:
        for entry in earlier:
            if entry.free == _FREE_READY:
                _run_free(entry)  # its runner was interrupted (I3): run it here
            elif entry.free != _FREE_DONE and me in entry.running:
                raise RuntimeError("synchronize() from a callback of a notifier whose free "
                                   "is pending would wait for itself")
        earlier = [entry for entry in earlier if entry.free != _FREE_DONE]
        if earlier:
            delay = _nap(delay)
    fresh: dict[_Entry, BaseException] = {}
    with _LOCK:
        errors = _free_errors
        _free_errors = fresh
    if errors:
        raise combine(list(errors.values()))


class _Entry:
    """One registration of a notifier on one ClassicList (see the module docstring)."""

    __slots__ = ("notifier", "home", "owner", "mm", "key", "claimed", "published", "listed",
                 "leaving", "released", "pending", "busy", "running", "users", "free")

    def __init__(self, notifier: Notifier, owner: ClassicList, mm: Any, key: type) -> None:
        home = vars(notifier)
        if type(home) is not dict:  # a dict subclass could run Python inside a section (I1)
            raise TypeError(f"a {type(notifier).__name__}'s __dict__ must be a plain dict")
        self.notifier = notifier
        self.home = home  # where its claim lives
        self.owner = owner
        self.mm = mm  # the registration pins the MM until unregister or the last put (R62)
        self.key = key  # what get_notifier matches: the class asked for, or type(notifier)
        self.claimed = False  # the notifier's claim points here (it is registered, D6)
        self.published = False  # it was put on the list (once; `listed` may drop later)
        self.listed = False
        self.leaving = False  # unregister() or the last put() has begun
        self.released = False  # its release(mm) was called: never twice (Q9)
        self.pending = 0
        self.busy = 0
        self.running: dict[int, int] = {}
        self.users = 1  # R62: registration sets users to 1
        self.free = _NO_FREE


def _claim_of(notifier: Notifier) -> _Entry | None:
    """The entry of a registered notifier, else None (a copied claim does not count)."""
    entry = vars(notifier).get(_CLAIM)
    if type(entry) is _Entry and entry.notifier is notifier and entry.claimed:
        return entry
    return None


def _claim(entry: _Entry) -> bool:
    """Make ``entry`` the notifier's claim (D6); False if a live registration holds it."""
    home = entry.home
    while True:
        seen: Any = home.get(_CLAIM)  # read unlocked, then confirmed unchanged in the section
        live: _Entry | None = seen if type(seen) is _Entry and seen.notifier is entry.notifier else None
        settled = taken = False
        with _LOCK:
            current = home[_CLAIM] if _CLAIM in home else None
            if current is seen:
                settled = True
                taken = live is not None and live.claimed  # no call under the lock (I1)
                if not taken:
                    home[_CLAIM] = entry  # `current` keeps what it replaces alive (I1)
                    entry.claimed = True
        if settled:
            return not taken


def _unclaim(entry: _Entry) -> None:
    """The notifier is no longer registered: drop its claim and unpin the MM (R64, R68)."""
    home, mm = entry.home, entry.mm  # keep both alive past the section (I1)
    with _LOCK:
        if entry.claimed:
            entry.claimed = False
            if _CLAIM in home and home[_CLAIM] is entry:
                del home[_CLAIM]
        entry.mm = None
    del mm


_SKIPPED = object()


def _visit(entry: _Entry, work: Callable[[], Any], how: int = _CALL,
           token: dict[_Entry, None] | None = None,
           decided: dict[_Entry, None] | None = None) -> Any:
    """Run ``work()`` as a callback of ``entry``, counted as running meanwhile (R64, R68).

    ``how``: ``_CALL`` runs it if the entry is listed; ``_END`` also consumes a pending start
    and skips if there is none (D5); ``_FREE`` runs it if the entry's free is ready (the free
    counts as a running callback, so that ``synchronize()`` from ``free_notifier`` raises
    instead of waiting for itself). With ``token``, a start given to a still-listed entry is
    counted pending and recorded in ``token`` (for ``abort``); ``decided`` records that the
    entry was looked at (see ``_each``). Returns ``work()``'s result, or ``_SKIPPED``. The
    counting follows I3: nothing can raise between the section that counts and the ``try``
    that uncounts, and the uncounting is inline.
    """
    me = threading.get_ident()
    counted = False
    try:
        with _LOCK:
            if how == _FREE:
                counted = entry.free == _FREE_READY
                if counted:
                    entry.free = _FREE_RUNNING
            else:
                counted = entry.listed and (how == _CALL or entry.pending > 0)
                if counted and how == _END:
                    entry.pending -= 1
            if counted:
                entry.busy += 1
                entry.running[me] = entry.running[me] + 1 if me in entry.running else 1
            if decided is not None:
                decided[entry] = None
        return work() if counted else _SKIPPED
    finally:
        if counted:
            ready = False
            with _LOCK:
                if how == _FREE:
                    entry.free = _FREE_DONE
                    del _pending_frees[entry]
                elif token is not None and entry.listed:
                    entry.pending += 1
                    token[entry] = None
                entry.busy -= 1
                depth = entry.running[me] - 1
                if depth:
                    entry.running[me] = depth
                else:
                    del entry.running[me]
                if entry.free == _FREE_WAITING and not entry.busy:
                    entry.free = _FREE_READY  # T63: the last running callback returned
                    ready = True
            if ready:
                _run_free(entry)


def _run_free(entry: _Entry) -> None:
    """Call ``free_notifier`` (no lock held) if its free is ready, and retire it (R68)."""

    def work() -> None:
        try:
            entry.notifier.free_notifier()
        except BaseException as exc:  # noqa: BLE001 - re-raised by synchronize()
            with _LOCK:
                _free_errors[entry] = exc

    _visit(entry, work, _FREE)


def _schedule_free(entry: _Entry) -> None:
    """The last reference is gone: free now, or when its last running callback returns."""
    ready = False
    try:
        with _LOCK:
            if entry.free == _NO_FREE:  # once, however often it is asked (I3)
                _pending_frees[entry] = None
                # T63: a callback running on this thread (put() from release) counts too.
                entry.free = _FREE_WAITING if entry.busy else _FREE_READY
            ready = entry.free == _FREE_READY
    finally:
        if ready:
            _run_free(entry)


def _each(entries: tuple[_Entry, ...], visit: Callable[[_Entry, dict[_Entry, None]], bool],
          errors: list[BaseException], decided: dict[_Entry, None]) -> None:
    """``visit(entry, decided)`` for each entry not yet in ``decided``, until one returns True.

    An exception escaping a visit (an interrupt: callbacks' own are collected by ``_call``) is
    collected and the walk goes on (I3, D11). An entry interrupted before its visit decided
    anything (before ``_visit`` counted it or found it unlisted) is visited again, and a hook
    that is interrupted outside this loop calls it again with the same ``decided``: so an
    interrupt never makes a notifier miss the end of a start it was given, nor get two.
    """
    i, n, tries = 0, len(entries), 0
    while True:
        try:
            while i < n:
                if entries[i] not in decided and visit(entries[i], decided):
                    return
                i += 1
                tries = 0
            return
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            errors.append(exc)
            tries += 1
            if i < n and (entries[i] in decided or tries > 3):  # not an interrupt: move on
                i += 1
                tries = 0


def _set_users(notifier: Notifier, users: int) -> None:
    """Test hook (T60): force the get/put count of a registered notifier."""
    entry = _claim_of(notifier)
    if entry is None:
        raise NotRegisteredError("not registered")
    with _LOCK:
        entry.users = users


def _u64(value: Any) -> int:
    """An integer argument (API.md input conventions): ``__index__``, then the u64 range."""
    number: int = operator.index(value)  # TypeError for float, str, bytes, None
    if not 0 <= number <= _U64_MAX:
        raise OverflowError(f"{number} is not an unsigned 64-bit integer")
    return number


def _u64_range(start: Any, end: Any) -> tuple[int, int]:
    start, end = _u64(start), _u64(end)
    if start >= end:
        raise EmptyRangeError(f"empty range [{start:#x}, {end:#x})")
    return start, end


def _check_notifier(notifier: Any) -> None:
    if not isinstance(notifier, Notifier):
        raise TypeError(f"expected a mmn_fast.Notifier, got {type(notifier).__name__}")


def _raise_collected(errors: list[BaseException]) -> None:
    if errors:
        raise combine(errors)


def _would_block() -> type:
    from . import WouldBlock  # imported late: the package imports this module first

    return WouldBlock


def _warn(errors: list[BaseException], message: str) -> None:
    """Emit a RuntimeWarning; one that the filters turn into an error is collected."""
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    except BaseException as exc:  # noqa: BLE001 - collected like a callback exception
        errors.append(exc)


def _defined(entry: _Entry, name: str,
             errors: list[BaseException]) -> Callable[..., Any] | None:
    """The callback ``name`` if the notifier defines it (a callable attribute), else None."""
    try:
        callback = getattr(entry.notifier, name, None)
    except BaseException as exc:  # noqa: BLE001 - a raising property is a callback exception
        errors.append(exc)
        return None
    return callback if callable(callback) else None


_NO_RESULT = object()


def _call(entry: _Entry, name: str, args: tuple[Any, ...], errors: list[BaseException]) -> Any:
    """Call one callback, guarded: its result, or ``_NO_RESULT`` if undefined or it raised."""
    callback = _defined(entry, name, errors)
    if callback is None:
        return _NO_RESULT
    try:
        return callback(*args)
    except BaseException as exc:  # noqa: BLE001 - collected, re-raised by the caller (D11)
        errors.append(exc)
        return _NO_RESULT


def _truth(result: Any, errors: list[BaseException]) -> bool:
    """A young callback's answer by its truth value (D7); raising there is a callback
    exception (D11)."""
    if result is _NO_RESULT:
        return False
    try:
        return bool(result)
    except BaseException as exc:  # noqa: BLE001 - D11: truth value raised
        errors.append(exc)
        return False


class ClassicList:
    """The classic subscribers of one MM, and every classic event (R43-R69).

    ``MM`` delegates its public classic methods here; the Rust core calls the hooks
    ``start``, ``abort``, ``end`` and ``release`` (which never raise: they return the
    exceptions they collected, in call order).
    """

    __slots__ = ("__weakref__", "_mm", "_entries", "_dead", "_allocating")

    def __init__(self, mm_ref: Callable[[], Any]) -> None:
        self._mm = mm_ref  # a weakref: the MM owns this list, not the other way round
        self._entries: tuple[_Entry, ...] = ()  # newest first (R43)
        self._dead = False  # release() emptied the list for good (D12)
        self._allocating: dict[int, int] = {}  # id(cls) -> thread running its alloc (I5)

    # -- the list ---------------------------------------------------------------------------

    def _publish(self, entry: _Entry) -> None:
        """Put a claimed entry at the head of the list (R43, R62), unless released (D12)."""
        while True:
            old = self._entries
            new = (entry,) + old  # built before the section (I1)
            settled = False
            with _LOCK:
                if self._dead:
                    settled = True
                elif self._entries is old:
                    self._entries = new  # `old` keeps the replaced tuple alive (I1)
                    entry.published = entry.listed = settled = True
            if settled:
                return

    def _unlist(self, entry: _Entry, mm: Any) -> None:
        """Take ``entry`` off the list (idempotent)."""
        while True:
            old = self._entries
            new = tuple(e for e in old if e is not entry)
            swapped = False
            with _LOCK:
                if self._entries is old:
                    self._entries = new
                    entry.listed = False
                    swapped = True
            if swapped:
                break
        self._sync_flag(mm)

    def _sync_flag(self, mm: Any) -> None:
        """Tell the core whether a classic notifier is listed (no lock held, I1).

        Set, then re-check: whichever thread changes the list last also sets the flag last,
        so it never stays off while a notifier is listed once the change has returned.
        """
        if mm is None:
            return
        while True:
            on = bool(self._entries)
            mm._set_classic(on)  # on also makes has_notifiers true for ever (R1, R4)
            if bool(self._entries) == on:
                return

    def _add(self, entry: _Entry, mm: Any) -> None:
        """Claim and publish (R62). ``ValueError`` if the address space was released (D12)
        or the notifier is already registered on any MM (D6, R65); then nothing changes."""
        if mm._released:
            raise ReleasedError("the address space was released; it takes no new notifier")
        try:
            if not _claim(entry):
                raise AlreadyRegisteredError(f"this {type(entry.notifier).__name__} is already registered")
            self._publish(entry)
        finally:
            late = None
            while True:  # I3: settle even if interrupted (each step may be redone), re-raise after
                try:
                    self._settle_add(entry, mm)
                    break
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    late = exc
            if late is not None:
                raise late
        if not entry.published:
            raise ReleasedError("the address space was released; it takes no new notifier")

    def _settle_add(self, entry: _Entry, mm: Any) -> None:
        """After a registration attempt: a published entry turns the core's flag on, a claim
        that was not published is dropped (both idempotent, I3)."""
        if entry.published:
            self._sync_flag(mm)
        elif entry.claimed:
            _unclaim(entry)

    def _drop(self, entry: _Entry, mm: Any, free: bool) -> None:
        """Unlist and unclaim a leaving entry, then maybe schedule its free (idempotent, I3)."""
        self._unlist(entry, mm)
        _unclaim(entry)
        if free:
            _schedule_free(entry)

    def _get_existing(self, cls: type) -> Notifier | None:
        """Take one more reference on the listed notifier made for ``cls`` (R66)."""
        for entry in self._entries:  # from the head, like the kernel's scan
            if entry.key is not cls:
                continue
            full = got = False
            with _LOCK:
                if entry.listed and not entry.leaving:
                    full = entry.users >= _MAX_USERS
                    if not full:
                        entry.users += 1
                        got = True
            if full:
                raise OverflowError("too many get_notifier() references (T60)")
            if got:
                return entry.notifier
        return None

    def _free_unregistered(self, notifier: Notifier) -> None:
        """Free a notifier that alloc_notifier made but that was never registered (R67)."""
        _schedule_free(_Entry(notifier, self, None, type(notifier)))

    def _wait_others(self, entry: _Entry) -> None:
        """Wait (I4) until no other thread runs a callback of ``entry`` (R64)."""
        me = threading.get_ident()
        delay = _FIRST_POLL
        while True:
            with _LOCK:
                others = entry.busy - (entry.running[me] if me in entry.running else 0)
            if not others:
                return
            delay = _nap(delay)

    # -- public classic methods (MM delegates to these) -----------------------------------

    def register(self, notifier: Notifier) -> None:
        """``mm.register(notifier)`` (R62). Kernel: ``mmu_notifier_register``."""
        _check_notifier(notifier)
        mm = self._mm()
        self._add(_Entry(notifier, self, mm, type(notifier)), mm)

    def unregister(self, notifier: Notifier) -> None:
        """``mm.unregister(notifier)`` (R64, T55, T56).

        Calls ``release(mm)`` if the notifier is still listed, takes it off the list, then
        waits until its callbacks running on other threads have returned (so it may be called
        from the notifier's own callback). A raising ``release`` is re-raised after all that.
        A finalizer, which may run inside any callback, should drop a notifier with ``put()``
        (never waits) instead: two threads each inside a callback and each waiting here for
        the other's could never return (R64's promise, as in the kernel).
        """
        _check_notifier(notifier)
        mm = self._mm()
        entry = _claim_of(notifier)
        if entry is None:
            raise NotRegisteredError(f"this {type(notifier).__name__} is not registered here")
        errors: list[BaseException] = []
        mine = False
        try:
            with _LOCK:
                mine = entry.claimed and entry.owner is self and not entry.leaving
                if mine:
                    entry.leaving = True  # a second unregister raises at once (D6)
            if not mine:
                raise NotRegisteredError(f"this {type(notifier).__name__} is not registered here")
            self._release_once(entry, mm, errors)  # R61: not after mm.release() unhashed it
        finally:
            late = None
            while mine:  # I3: finish even if interrupted, re-raise after
                try:
                    self._drop(entry, mm, free=False)
                    break
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    late = exc
            if late is not None:
                raise late
        self._wait_others(entry)
        _raise_collected(errors)

    def get_notifier(self, cls: type[Notifier]) -> Notifier:
        """``mm.get_notifier(cls)`` (R66, R67, T58, T60-T62). Kernel: ``mmu_notifier_get``."""
        if not (isinstance(cls, type) and issubclass(cls, Notifier)):
            raise TypeError(f"get_notifier() takes a Notifier subclass, got {cls!r}")
        mm = self._mm()
        if mm._released:
            raise ReleasedError("the address space was released; it takes no new notifier")
        me, key = threading.get_ident(), id(cls)
        delay = _FIRST_POLL
        mine = False
        try:
            while True:
                found = self._get_existing(cls)  # T60: OverflowError, count unchanged
                if found is not None:
                    return found
                with _LOCK:
                    owner = self._allocating[key] if key in self._allocating else None
                    if owner is None:
                        self._allocating[key] = me
                        mine = True
                if mine or owner == me:  # I5: a re-entry from the allocating thread allocates
                    break
                delay = _nap(delay)  # another thread allocates: wait, then look again (R67)
            return self._alloc_and_add(cls, mm)
        finally:
            if mine:
                with _LOCK:
                    del self._allocating[key]

    def _alloc_and_add(self, cls: type[Notifier], mm: Any) -> Notifier:
        """The no-match half of get_notifier (R67): allocate (no lock held, D10), register."""
        notifier = cls.alloc_notifier(mm)  # T61: an exception propagates, nothing registered
        if not isinstance(notifier, Notifier):
            raise TypeError(f"{cls.__name__}.alloc_notifier() returned "
                            f"{type(notifier).__name__}, not a Notifier")
        if _claim_of(notifier) is not None:  # someone else's live notifier: not ours to free
            raise AlreadyRegisteredError(f"{cls.__name__}.alloc_notifier() returned a registered notifier")
        # A register() of a cls instance may have landed meanwhile; then ours is surplus and
        # freed, as is one whose registration fails (R67, T62).
        try:
            found = self._get_existing(cls)
            if found is None:
                self._add(_Entry(notifier, self, mm, cls), mm)
        except BaseException:
            self._free_unregistered(notifier)
            raise
        if found is not None:
            self._free_unregistered(notifier)
            return found
        return notifier

    def _put(self, entry: _Entry) -> None:
        """``notifier.put()`` (R68): the last one unlists, unclaims and schedules the free."""
        last = ok = False
        try:
            with _LOCK:
                ok = entry.claimed and entry.users > 0
                if ok:
                    entry.users -= 1
                    last = entry.users == 0
                    if last:
                        entry.leaving = True
            if not ok:
                raise NotRegisteredError("put() of a notifier with no reference left")  # D6
        finally:
            late = None
            while last:  # I3: finish even if interrupted, re-raise after
                try:
                    self._drop(entry, self._mm(), free=True)  # no release (R68, T59)
                    break
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    late = exc
            if late is not None:
                raise late

    def _check_invariants(self) -> None:
        """Check the bookkeeping of a list at rest (nothing runs on it); for tests."""
        mm = self._mm()
        active = mm.active_invalidate_ranges if mm is not None else 0
        if self._entries and not (mm is not None and mm.has_notifiers):
            raise AssertionError("a classic notifier is listed but has_notifiers is false")
        if len(set(map(id, self._entries))) != len(self._entries):
            raise AssertionError("an entry is listed twice")
        for entry in self._entries:
            name = type(entry.notifier).__name__
            if not (entry.listed and entry.published and entry.claimed) or entry.leaving:
                raise AssertionError(f"{name}: on the list but not plainly registered")
            if _claim_of(entry.notifier) is not entry or entry.mm is not mm:
                raise AssertionError(f"{name}: its claim or its MM pin is wrong")
            if entry.busy or entry.running:
                raise AssertionError(f"{name}: counted as running at rest ({entry.running})")
            if not 0 <= entry.pending <= active:
                raise AssertionError(f"{name}: {entry.pending} pending starts, {active} active")
            if entry.users < 1 or entry.free != _NO_FREE:
                raise AssertionError(f"{name}: users {entry.users}, free state {entry.free}")
        if self._allocating:
            raise AssertionError(f"allocations left in progress: {self._allocating}")

    # -- events (MM delegates to these) ----------------------------------------------------

    def _walk(self, name: str, args: tuple[Any, ...], *, young: bool = False,
              stop_at_young: bool = False) -> tuple[bool, list[BaseException]]:
        """Call ``name`` on every listed notifier defining it, newest first (R43, R53-R57).

        With ``young``, also return whether any result was true (D7); ``stop_at_young`` ends
        the walk at the first true result (R56).
        """
        errors: list[BaseException] = []
        said: list[_Entry] = []

        def visit(entry: _Entry, decided: dict[_Entry, None]) -> bool:
            result = _visit(entry, lambda: _call(entry, name, args, errors), decided=decided)
            if young and result is not _SKIPPED and _truth(result, errors):
                said.append(entry)
                return stop_at_young
            return False

        _each(self._entries, visit, errors, {})
        return bool(said), errors

    def invalidate_range(self, start: Any, end: Any) -> None:
        """``mm.invalidate_range(start, end)`` (R53, T45)."""
        start, end = _u64_range(start, end)
        _raise_collected(self._walk("invalidate_range", (self._mm(), start, end))[1])

    def clear_flush_young(self, start: Any, end: Any) -> bool:
        """``mm.clear_flush_young(start, end)``: true iff any notifier says young (R54, D7)."""
        start, end = _u64_range(start, end)
        young, errors = self._walk("clear_flush_young", (self._mm(), start, end), young=True)
        _raise_collected(errors)
        return young

    def clear_young(self, start: Any, end: Any) -> bool:
        """``mm.clear_young(start, end)``: true iff any notifier says young (R55, D7)."""
        start, end = _u64_range(start, end)
        young, errors = self._walk("clear_young", (self._mm(), start, end), young=True)
        _raise_collected(errors)
        return young

    def test_young(self, address: Any) -> bool:
        """``mm.test_young(address)``: stops at the first young answer (R56, D7)."""
        address = _u64(address)
        young, errors = self._walk("test_young", (self._mm(), address), young=True,
                                   stop_at_young=True)
        _raise_collected(errors)
        return young

    def change_pte(self, address: Any, pte: Any) -> None:
        """``mm.change_pte(address, pte)``: ``pte`` is passed through unchanged (R57)."""
        address = _u64(address)
        _raise_collected(self._walk("change_pte", (self._mm(), address, pte))[1])

    # -- hooks the Rust core calls (no core lock held; never raise) -------------------------

    def start(self, rng: Any) -> tuple[dict[_Entry, None], bool, list[BaseException]]:
        """The classic side of invalidate_range_start (R44, R45, D1, D2, D5).

        Every listed notifier is given the start (counted pending whatever it defines) and
        its ``invalidate_range_start`` is called even after another refused (c2655835).
        Returns ``(token, refused, errors)``; the token names the notifiers given the start
        (its keys, in list order), for ``abort``.
        """
        token: dict[_Entry, None] = {}
        refused = False
        errors: list[BaseException] = []

        def visit(entry: _Entry, decided: dict[_Entry, None]) -> bool:
            nonlocal refused
            work = lambda: self._start_one(entry, rng, errors)  # noqa: E731
            if _visit(entry, work, token=token, decided=decided) is True:
                refused = True
            return False

        entries = self._entries
        decided: dict[_Entry, None] = {}
        while True:  # I3: an interrupt outside the walk redoes it (decided ones are skipped)
            try:
                _each(entries, visit, errors, decided)
                return token, refused, errors  # no call between the walk and the core
            except BaseException as exc:  # noqa: BLE001 - handed to the core
                errors.append(exc)

    def _start_one(self, entry: _Entry, rng: Any, errors: list[BaseException]) -> bool:
        """One notifier's ``invalidate_range_start``; True if it refused."""
        callback = _defined(entry, "invalidate_range_start", errors)
        if callback is None:
            return False
        try:
            callback(rng)
        except BaseException as exc:  # noqa: BLE001 - sorted out below
            return self._start_failed(entry, rng, exc, errors)
        return False

    def _start_failed(self, entry: _Entry, rng: Any, exc: BaseException,
                      errors: list[BaseException]) -> bool:
        """Classify a start's exception; True if it is a refusal (R45, D1, D2)."""
        name = type(entry.notifier).__name__
        if not isinstance(exc, _would_block()):
            errors.append(exc)  # D1: an exception is not a refusal
            return False
        if rng.blockable:  # D2, T41: ignored, the start succeeds and its end will come
            _warn(errors, f"{name}.invalidate_range_start raised WouldBlock on a blockable "
                          "range; ignored")
            return False
        if _defined(entry, "invalidate_range_end", errors) is not None:  # T38
            _warn(errors, f"{name} refused a non-blockable start but defines "
                          "invalidate_range_end (R45: a notifier that may refuse must not)")
        return True

    def abort(self, token: Iterable[_Entry], rng: Any) -> list[BaseException]:
        """The failure path of a start (R46, D1): ``invalidate_range_end`` only.

        Called after the core ended the interval side. Like ``end`` restricted to the
        notifiers the start was given, in list order: each consumes its pending start (unless
        a concurrent end already did, then that end was its pair) and gets its end.
        """
        errors: list[BaseException] = []

        def visit(entry: _Entry, decided: dict[_Entry, None]) -> bool:
            work = lambda: _call(entry, "invalidate_range_end", (rng,), errors)  # noqa: E731
            _visit(entry, work, _END, decided=decided)
            return False

        decided: dict[_Entry, None] = {}
        while True:  # I3, as in start()
            try:
                _each(tuple(token), visit, errors, decided)
                return errors
            except BaseException as exc:  # noqa: BLE001 - handed to the core
                errors.append(exc)

    def end(self, rng: Any, only_end: bool) -> list[BaseException]:
        """The classic side of invalidate_range_end (R49, R50, D5).

        Each notifier with a start pending gets ``invalidate_range(mm, start, end)`` (unless
        ``only_end``) then ``invalidate_range_end(range)``, interleaved per notifier.
        """
        errors: list[BaseException] = []

        def work(entry: _Entry) -> None:
            if not only_end:
                _call(entry, "invalidate_range", (self._mm(), rng.start, rng.end), errors)
            _call(entry, "invalidate_range_end", (rng,), errors)

        def visit(entry: _Entry, decided: dict[_Entry, None]) -> bool:
            _visit(entry, lambda: work(entry), _END, decided=decided)
            return False

        entries = self._entries
        decided: dict[_Entry, None] = {}
        while True:  # I3, as in start()
            try:
                _each(entries, visit, errors, decided)
                return errors
            except BaseException as exc:  # noqa: BLE001 - handed to the core
                errors.append(exc)

    def _release_once(self, entry: _Entry, mm: Any, errors: list[BaseException],
                      decided: dict[_Entry, None] | None = None) -> None:
        """Call ``release(mm)`` if ``entry`` is listed and was not released yet (R60, R64).

        Once only (Q9), even when a notifier unregisters itself from its own release during
        ``mm.release()``.
        """

        def work() -> None:
            with _LOCK:
                first = not entry.released
                entry.released = True
            if first:
                _call(entry, "release", (mm,), errors)

        _visit(entry, work, decided=decided)

    def release(self) -> list[BaseException]:
        """The classic side of ``mm.release()`` (R60, R61, T51).

        ``release(mm)`` newest first, then every notifier is taken off the list (each stays
        registered for its owner: a later ``unregister`` calls no second release), then wait
        for their callbacks running on other threads.
        """
        errors: list[BaseException] = []

        def visit(entry: _Entry, decided: dict[_Entry, None]) -> bool:
            self._release_once(entry, self._mm(), errors, decided)
            return False

        def unlist(entry: _Entry, decided: dict[_Entry, None]) -> bool:
            with _LOCK:
                entry.listed = False
                decided[entry] = None
            return False

        entries, gone = self._entries, self._entries[:0]
        released: dict[_Entry, None] = {}
        unlisted: dict[_Entry, None] = {}
        while True:  # I3: an interrupt redoes what is left (every step is idempotent)
            try:
                _each(entries, visit, errors, released)
                with _LOCK:
                    if not self._dead:
                        gone = self._entries
                        self._entries = ()  # `gone` keeps the tuple alive (I1)
                        self._dead = True  # D12: nothing is published after this
                _each(gone, unlist, errors, unlisted)
                self._sync_flag(self._mm())
                break
            except BaseException as exc:  # noqa: BLE001 - handed to the core
                errors.append(exc)
        try:
            for entry in gone:
                self._wait_others(entry)
        except BaseException as exc:  # noqa: BLE001 - an interrupt: stop waiting, report it
            errors.append(exc)
        return errors
