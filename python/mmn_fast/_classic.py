"""Classic ("hlist") mode: the kernel's list of ``struct mmu_notifier``, in Python.

SPEC.md sections 2.H-2.L (R43-R69) and decisions D1, D2, D5-D8, D10-D12 are the rules; the
numbers in comments below point at them. The interval side lives in the Rust core; this module
is the classic side only.

Design
------
Each ``MM`` owns one :class:`ClassicList`. A registration is an :class:`_Entry`; the list is a
tuple of entries, newest first (R43), replaced as a whole on every change. A walk iterates over
the tuple it read when it began (the read side of the kernel's SRCU list), so walks never wait
for registration changes and a notifier registered during a walk is not called by it.

Per entry, under ``ClassicList._lock``:

- ``listed``   on the list; a walk calls an entry only while it is listed, so a notifier
               unregistered during a walk is not called later in that walk (R64).
- ``pending``  starts given and not yet ended (D5): an end reaches an entry only while positive.
               A start is counted when its ``invalidate_range_start`` has returned (or at once
               if undefined), so no end reaches a notifier before the start it pairs with.
- ``running``  ``{thread id: depth}`` of this entry's callbacks now running; ``unregister`` waits
               for the other threads' ones (R64, D10) and the free after the last ``put`` waits
               for all of them, the caller's included (R68).
- ``users``    the get/put reference count (R66-R68).

A notifier is "registered" (from its owner's point of view, R61) while its claim attribute
points at its entry; claims are taken and dropped under the module lock, so a notifier is
registered on at most one MM (D6).

Locks: ``ClassicList._lock`` may be held while taking ``_MODULE_LOCK`` (never the other way
round), and no lock is held while user code runs (D10): callbacks, ``alloc_notifier``,
``free_notifier``, truth tests of results and warnings all run with both released. Waits poll a
``threading.Condition`` with a short timeout, with the GIL released, so Ctrl-C reaches the
waiting thread within ``_POLL`` seconds.
"""

from __future__ import annotations

import operator
import threading
import warnings
from collections.abc import Iterable
from typing import Any, Callable, Optional

from ._errors import combine

__all__ = ["ClassicList", "Notifier", "synchronize"]

_U64_MAX = 2**64 - 1
_MAX_USERS = 2**32 - 1  # the kernel's UINT_MAX for mmu_notifier.users (R66)
_POLL = 0.05  # seconds between checks in a wait, so an interrupt is seen quickly
_CLAIM = "_mmn_fast_entry"  # instance attribute naming a registered notifier's entry

# Module state: registration claims and pending frees (R69, D8). Innermost lock.
_MODULE_LOCK = threading.Lock()
_FREED = threading.Condition(_MODULE_LOCK)  # notified when a pending free completes
_pending_frees: set[_Entry] = set()
_free_errors: list[BaseException] = []


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
        has returned, on the thread where the last one returns (here, if none is running).
        ``ValueError`` if the notifier is not registered (D6). Kernel: ``mmu_notifier_put``.
        """
        entry = _claim_of(self)
        if entry is None:
            raise ValueError(f"put() of a {type(self).__name__} that is not registered")
        entry.owner._put(entry)


def synchronize() -> None:
    """Wait until every free scheduled by an earlier last ``put()`` has run (R69, D8).

    Covers every MM. Then re-raises the first exception a ``free_notifier`` raised since the
    last call (later ones chained behind it). ``RuntimeError`` if a pending free waits for a
    callback running on this very thread (it could never complete).
    Kernel: ``mmu_notifier_synchronize``, with the documented promise kept (Q11).
    """
    me = threading.get_ident()
    with _FREED:
        while _pending_frees:
            if any(me in entry.running for entry in _pending_frees):
                raise RuntimeError("synchronize() from a callback of a notifier whose free "
                                   "is pending would wait for itself")
            _FREED.wait(_POLL)
        errors = _free_errors[:]
        _free_errors.clear()
    if errors:
        raise combine(errors)


class _Entry:
    """One registration of a notifier on one ClassicList (see the module docstring)."""

    __slots__ = ("notifier", "owner", "mm", "key", "listed", "pending", "running", "users",
                 "leaving", "released", "free_pending")

    def __init__(self, notifier: Notifier, owner: ClassicList, mm: Any, key: type) -> None:
        self.notifier = notifier
        self.owner = owner
        self.mm = mm  # the registration pins the MM until unregister or the last put (R62)
        self.key = key  # what get_notifier matches: the class asked for, or type(notifier)
        self.listed = True
        self.pending = 0
        self.running: dict[int, int] = {}
        self.users = 1  # R62: registration sets users to 1
        self.leaving = False  # unregister() or the last put() has begun
        self.released = False  # its release(mm) was called: never twice (Q9)
        self.free_pending = False  # the last put() was made; free when nothing runs


def _claim_of(notifier: Notifier) -> Optional[_Entry]:
    """The entry of a registered notifier, else None (a copied claim does not count)."""
    entry = vars(notifier).get(_CLAIM)
    return entry if entry is not None and entry.notifier is notifier else None


def _unclaim(entry: _Entry) -> None:
    """The notifier is no longer registered: drop its claim and unpin the MM (R64, R68)."""
    with _MODULE_LOCK:
        if vars(entry.notifier).get(_CLAIM) is entry:
            del vars(entry.notifier)[_CLAIM]
        entry.mm = None


def _run_free(entry: _Entry) -> None:
    """Call ``free_notifier`` (no lock held) and retire the pending free (R68).

    The free counts as a running callback of its entry, so that a ``synchronize()`` made from
    inside ``free_notifier`` raises instead of waiting for itself.
    """
    me = threading.get_ident()
    with entry.owner._lock:
        entry.running[me] = entry.running.get(me, 0) + 1
    error = None
    try:
        entry.notifier.free_notifier()
    except BaseException as exc:  # noqa: BLE001 - re-raised by synchronize()
        error = exc
    with entry.owner._lock:
        entry.running.pop(me)
    with _FREED:
        _pending_frees.discard(entry)
        if error is not None:
            _free_errors.append(error)
        _FREED.notify_all()


def _set_users(notifier: Notifier, users: int) -> None:
    """Test hook (T60): force the get/put count of a registered notifier."""
    entry = _claim_of(notifier)
    if entry is None:
        raise ValueError("not registered")
    with entry.owner._lock:
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
        raise ValueError(f"empty range [{start:#x}, {end:#x})")
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
             errors: list[BaseException]) -> Optional[Callable[..., Any]]:
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


class ClassicList:
    """The classic subscribers of one MM, and every classic event (R43-R69).

    ``MM`` delegates its public classic methods here; the Rust core calls the hooks
    ``start``, ``abort``, ``end`` and ``release`` (which never raise: they return the
    exceptions they collected, in call order).
    """

    def __init__(self, mm_ref: Callable[[], Any]) -> None:
        self._mm = mm_ref  # a weakref: the MM owns this list, not the other way round
        self._lock = threading.Lock()
        self._quiet = threading.Condition(self._lock)  # notified when a callback returns
        self._entries: tuple[_Entry, ...] = ()  # newest first (R43)

    # -- bookkeeping shared by every walk -------------------------------------------------

    def _begin(self, entry: _Entry, end: bool = False) -> bool:
        """Start calling ``entry`` from this thread, if it is still listed.

        With ``end``, also consume one pending start, and refuse if there is none (an end only
        reaches a notifier with a start pending, D5).
        """
        with self._lock:
            if not entry.listed or (end and entry.pending == 0):
                return False
            if end:
                entry.pending -= 1
            me = threading.get_ident()
            entry.running[me] = entry.running.get(me, 0) + 1
            return True

    def _finish(self, entry: _Entry, start: bool = False) -> bool:
        """Pairs with ``_begin``; runs a free that waited for this callback (R68, T63).

        With ``start``, count the start as given (D5) if the entry is still listed, and
        return whether it was.
        """
        me = threading.get_ident()
        with self._lock:
            given = start and entry.listed
            if given:
                entry.pending += 1
            depth = entry.running.pop(me) - 1
            if depth:
                entry.running[me] = depth
            else:
                self._quiet.notify_all()
            free_now = entry.free_pending and not entry.running
            if free_now:
                entry.free_pending = False
        if free_now:
            _run_free(entry)
        return given

    def _walk(self, name: str, args: tuple[Any, ...], *, young: bool = False,
              stop_at_young: bool = False) -> tuple[bool, list[BaseException]]:
        """Call ``name`` on every listed notifier defining it, newest first (R43, R53-R57).

        With ``young``, also return whether any result was true (D7); ``stop_at_young`` ends
        the walk at the first true result (R56).
        """
        any_young = False
        errors: list[BaseException] = []
        for entry in self._entries:
            if not self._begin(entry):
                continue
            try:
                result = _call(entry, name, args, errors)
                if young and result is not _NO_RESULT:
                    try:
                        any_young = bool(result) or any_young
                    except BaseException as exc:  # noqa: BLE001 - D11: truth value raised
                        errors.append(exc)
            finally:
                self._finish(entry)
            if any_young and stop_at_young:
                break
        return any_young, errors

    def _release_once(self, entry: _Entry, mm: Any, errors: list[BaseException]) -> None:
        """Call ``release(mm)`` if ``entry`` is listed and was not released yet (R60, R64).

        Once only (Q9), even when a notifier unregisters itself from its own release during
        ``mm.release()``.
        """
        with self._lock:
            if entry.released:
                return
            entry.released = True
        if self._begin(entry):
            try:
                _call(entry, "release", (mm,), errors)
            finally:
                self._finish(entry)

    def _wait_others(self, entries: Iterable[_Entry]) -> None:
        """Wait, GIL released, until no other thread runs a callback of ``entries`` (R64)."""
        me = threading.get_ident()
        entries = tuple(entries)
        with self._quiet:
            while any(t != me for entry in entries for t in entry.running):
                self._quiet.wait(_POLL)

    def _unlist(self, entry: _Entry, mm: Any) -> None:
        """Take ``entry`` off the list (idempotent); caller holds ``self._lock``."""
        if not entry.listed:
            return
        entry.listed = False
        self._entries = tuple(e for e in self._entries if e is not entry)
        if not self._entries and mm is not None:
            mm._set_classic(False)

    def _add_locked(self, notifier: Notifier, key: type, mm: Any) -> None:
        """Register at the head of the list (R62); caller holds ``self._lock``.

        ``ValueError`` if the address space was released (D12) or the notifier is already
        registered on any MM (D6, R65); then nothing changes.
        """
        if mm._released:
            raise ValueError("the address space was released; it takes no new notifier")
        with _MODULE_LOCK:
            if _claim_of(notifier) is not None:
                raise ValueError(f"this {type(notifier).__name__} is already registered")
            entry = _Entry(notifier, self, mm, key)
            vars(notifier)[_CLAIM] = entry
        if not self._entries:
            mm._set_classic(True)  # also makes has_notifiers true for ever (R1, R4)
        self._entries = (entry,) + self._entries  # head insertion: newest first (R43)

    def _get_existing_locked(self, cls: type) -> Optional[Notifier]:
        """Take one more reference on the listed notifier made for ``cls`` (R66)."""
        for entry in self._entries:  # from the head, like the kernel's scan
            if entry.key is cls and not entry.leaving:
                if entry.users >= _MAX_USERS:
                    raise OverflowError("too many get_notifier() references (T60)")
                entry.users += 1
                return entry.notifier
        return None

    def _free_unregistered(self, notifier: Notifier) -> None:
        """Free a notifier that alloc_notifier made but that was never registered (R67)."""
        entry = _Entry(notifier, self, None, type(notifier))
        entry.listed = False
        with _MODULE_LOCK:
            _pending_frees.add(entry)
        _run_free(entry)

    # -- public classic methods (MM delegates to these) -----------------------------------

    def register(self, notifier: Notifier) -> None:
        """``mm.register(notifier)`` (R62). Kernel: ``mmu_notifier_register``."""
        _check_notifier(notifier)
        with self._lock:
            self._add_locked(notifier, type(notifier), self._mm())

    def unregister(self, notifier: Notifier) -> None:
        """``mm.unregister(notifier)`` (R64, T55, T56).

        Calls ``release(mm)`` if the notifier is still listed, takes it off the list, then
        waits until its callbacks running on other threads have returned (so it may be called
        from the notifier's own callback). A raising ``release`` is re-raised after all that.
        """
        _check_notifier(notifier)
        mm = self._mm()
        with self._lock:
            entry = _claim_of(notifier)
            if entry is None or entry.owner is not self or entry.leaving:
                raise ValueError(f"this {type(notifier).__name__} is not registered here")
            entry.leaving = True  # a second unregister raises at once (D6)
        errors: list[BaseException] = []
        self._release_once(entry, mm, errors)  # R61: not after mm.release() unhashed it
        with self._lock:
            self._unlist(entry, mm)
        _unclaim(entry)
        self._wait_others([entry])
        _raise_collected(errors)

    def get_notifier(self, cls: type) -> Notifier:
        """``mm.get_notifier(cls)`` (R66, R67, T58, T60-T62). Kernel: ``mmu_notifier_get``."""
        if not (isinstance(cls, type) and issubclass(cls, Notifier)):
            raise TypeError(f"get_notifier() takes a Notifier subclass, got {cls!r}")
        mm = self._mm()
        if mm._released:
            raise ValueError("the address space was released; it takes no new notifier")
        with self._lock:
            found = self._get_existing_locked(cls)  # T60: OverflowError, count unchanged
        if found is not None:
            return found
        notifier = cls.alloc_notifier(mm)  # T61: an exception propagates, nothing registered
        if not isinstance(notifier, Notifier):
            raise TypeError(f"{cls.__name__}.alloc_notifier() returned "
                            f"{type(notifier).__name__}, not a Notifier")
        if _claim_of(notifier) is not None:  # someone else's live notifier: not ours to free
            raise ValueError(f"{cls.__name__}.alloc_notifier() returned a registered notifier")
        # alloc_notifier ran unlocked (D10), so another thread may have added one meanwhile;
        # then ours is surplus and freed, as is one whose registration fails (R67, T62).
        try:
            with self._lock:
                found = self._get_existing_locked(cls)
                if found is None:
                    self._add_locked(notifier, cls, mm)
        except BaseException:
            self._free_unregistered(notifier)
            raise
        if found is not None:
            self._free_unregistered(notifier)
            return found
        return notifier

    def _put(self, entry: _Entry) -> None:
        """``notifier.put()`` (R68): the last one unlists, unclaims and schedules the free."""
        with self._lock:
            if _claim_of(entry.notifier) is not entry or entry.users <= 0:
                raise ValueError("put() of a notifier with no reference left")  # D6
            entry.users -= 1
            if entry.users:
                return
            entry.leaving = True
            self._unlist(entry, self._mm())  # no release (R68, T59)
            _unclaim(entry)
            with _MODULE_LOCK:
                _pending_frees.add(entry)
            # T63: a callback running on this thread (put() from release) counts too.
            entry.free_pending = wait = bool(entry.running)
        if not wait:
            _run_free(entry)

    # -- events (MM delegates to these) ----------------------------------------------------

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

    def start(self, rng: Any) -> tuple[list[_Entry], bool, list[BaseException]]:
        """The classic side of invalidate_range_start (R44, R45, D1, D2, D5).

        Every listed notifier is given the start (counted pending whatever it defines) and
        its ``invalidate_range_start`` is called even after another refused (c2655835).
        Returns ``(token, refused, errors)``; the token names the notifiers given the start,
        for ``abort``.
        """
        given: list[_Entry] = []
        refused = False
        errors: list[BaseException] = []
        for entry in self._entries:
            if not self._begin(entry):
                continue
            counted = False
            try:
                callback = _defined(entry, "invalidate_range_start", errors)
                if callback is not None:
                    try:
                        callback(rng)
                    except BaseException as exc:  # noqa: BLE001 - sorted out below
                        refused = self._start_failed(entry, rng, exc, errors) or refused
            finally:
                counted = self._finish(entry, start=True)
            if counted:
                given.append(entry)
        return given, refused, errors

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

    def abort(self, token: list[_Entry], rng: Any) -> list[BaseException]:
        """The failure path of a start (R46, D1): ``invalidate_range_end`` only.

        Called after the core ended the interval side. Like ``end`` restricted to the
        notifiers the start was given, in list order: each consumes its pending start (unless
        a concurrent end already did, then that end was its pair) and gets its end.
        """
        errors: list[BaseException] = []
        for entry in token:
            if self._begin(entry, end=True):
                try:
                    _call(entry, "invalidate_range_end", (rng,), errors)
                finally:
                    self._finish(entry)
        return errors

    def end(self, rng: Any, only_end: bool) -> list[BaseException]:
        """The classic side of invalidate_range_end (R49, R50, D5).

        Each notifier with a start pending gets ``invalidate_range(mm, start, end)`` (unless
        ``only_end``) then ``invalidate_range_end(range)``, interleaved per notifier.
        """
        mm = self._mm()
        errors: list[BaseException] = []
        for entry in self._entries:
            if not self._begin(entry, end=True):
                continue
            try:
                if not only_end:
                    _call(entry, "invalidate_range", (mm, rng.start, rng.end), errors)
                _call(entry, "invalidate_range_end", (rng,), errors)
            finally:
                self._finish(entry)
        return errors

    def release(self) -> list[BaseException]:
        """The classic side of ``mm.release()`` (R60, R61, T51).

        ``release(mm)`` newest first, then every notifier is taken off the list (each stays
        registered for its owner: a later ``unregister`` calls no second release), then wait
        for their callbacks running on other threads.
        """
        mm = self._mm()
        errors: list[BaseException] = []
        for entry in self._entries:
            self._release_once(entry, mm, errors)
        with self._lock:
            gone, self._entries = self._entries, ()
            for entry in gone:
                entry.listed = False
            if gone and mm is not None:
                mm._set_classic(False)
        try:
            self._wait_others(gone)
        except BaseException as exc:  # noqa: BLE001 - an interrupt: stop waiting, report it
            errors.append(exc)
        return errors
