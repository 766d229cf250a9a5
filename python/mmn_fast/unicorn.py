"""A coherent Unicorn: translated code and your own caches never stale, at no running cost.

Unicorn (PyPI ``unicorn``) keeps translated blocks (TBs) of guest code and does not drop them
when the host patches guest memory with ``mem_write`` (unicorn issues #1148, #1561, #1752,
#2258), nor when a hook is added over code that already ran (#2200, #1747).
:class:`CoherentUc` is a ``unicorn.Uc`` (a subclass of the architecture's own class) whose
mutating methods keep two things coherent:

* **Unicorn's translation cache**, with no Python per block or per guest access: a host write,
  unmap or protect drops the TBs overlapping it with Unicorn's ranged ``ctl_remove_cache``, one
  call per mapped region it spans (Unicorn resolves only the first address of a range, so one
  call misses TBs of the next region); a mutation over more than :attr:`CoherentUc.flush_bytes`
  of mapped memory, a whole-space hook, and any memory hook added are one ``ctl_flush_tb``.
  The layer learns no blocks: Unicorn's own page index finds them.
* **Your caches** (decoded instructions, lifted IR, analyses, breakpoint tables, a software
  TLB): subscribe any range on :attr:`CoherentUc.mm` (``ops=None`` with a tag, checked with
  ``check_retry``, or a callback); host writes, unmaps, protects, remaps and, where you opt in
  with :meth:`CoherentUc.watch_guest_writes`, guest stores invalidate it.

Hooks added through the layer receive the layer as their ``uc`` argument, so a hook that patches
code through it stays coherent. After :meth:`CoherentUc.close` every method raises.

Requires the optional extra: ``pip install mmn_fast[unicorn]``.
"""

from __future__ import annotations

import ctypes
import weakref
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

try:
    import unicorn
    from unicorn.unicorn_py3.unicorn import Uc, uclib
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mmn_fast.unicorn needs the optional 'unicorn' extra (Unicorn >= 2.1): "
        "pip install mmn_fast[unicorn]"
    ) from _exc

from mmn_fast import MM, Event, Range

__all__ = ["CoherentUc", "LayerClosedError", "Stats"]

_U64_MAX = (1 << 64) - 1

# Hook types compiled into a translated block for the hooked code range: adding or deleting one
# drops the TBs of that range, or code that already ran keeps running without (or with) it.
_CODE_HOOKS = unicorn.UC_HOOK_CODE | unicorn.UC_HOOK_BLOCK | unicorn.UC_HOOK_INSN | unicorn.UC_HOOK_TCG_OPCODE
# Memory-access hooks: whether a load or store calls out is decided when its block is
# translated (Unicorn 2.1.4: a read hook added after the code ran is never called), whatever
# range the hook watches, so adding one flushes every TB.
_MEM_HOOKS = (
    unicorn.UC_HOOK_MEM_READ
    | unicorn.UC_HOOK_MEM_WRITE
    | unicorn.UC_HOOK_MEM_FETCH
    | unicorn.UC_HOOK_MEM_READ_AFTER
)

# uc_ctl(UC_CTL_TB_REMOVE_CACHE, write, 2 args), encoded once: the binding's ctl_remove_cache
# builds this per call, which is most of its cost.
_REMOVE_CACHE = (unicorn.UC_CTL_IO_WRITE << 30) | (2 << 26) | unicorn.UC_CTL_TB_REMOVE_CACHE


class LayerClosedError(ValueError):
    """A :class:`CoherentUc` was used after :meth:`~CoherentUc.close`."""


@dataclass
class Stats:
    """What the layer did to Unicorn's cache and to its ``MM`` (see :meth:`CoherentUc.reset_stats`).

    ``tb_removals`` counts ranged ``ctl_remove_cache`` calls, ``flushes`` ``ctl_flush_tb``
    calls, ``invalidations`` start/end pairs on :attr:`CoherentUc.mm` (none while it is empty).
    """

    tb_removals: int = 0
    flushes: int = 0
    invalidations: int = 0


class CoherentUc(Uc):
    """A ``unicorn.Uc`` that never runs stale translated code, and invalidates your caches.

    ``CoherentUc(arch, mode, cpu=None)`` makes a new emulator, exactly like ``Uc(...)``.
    ``CoherentUc(uc)`` takes over an existing one: the layer and ``uc`` share one engine and
    one state, but only calls made on the layer are seen, so use the layer from then on (hooks
    added to ``uc`` before keep receiving ``uc``). Taking over flushes the TB cache once.

    Mutations seen: :meth:`mem_write`, :meth:`mem_map`, :meth:`mem_map_ptr`, :meth:`mmio_map`,
    :meth:`mem_unmap`, :meth:`mem_protect`, :meth:`hook_add`, :meth:`hook_del`,
    :meth:`ctl_set_tlb_mode`, :meth:`ctl_set_exits`; :meth:`invalidate` for anything else
    (e.g. host memory behind ``mem_map_ptr`` written directly). Every other method is the
    plain ``Uc`` one, untouched.
    """

    __slots__ = ("_mm", "_starts", "_ends", "_ptr_maps", "_hooks", "_wrapped", "_ctl", "stats", "flush_bytes")

    _classes: dict[tuple[type, type], type] = {}

    def __new__(cls, arch: Any, mode: int | None = None, cpu: int | None = None) -> CoherentUc:
        # Uc.__new__ picks the architecture's class (UcIntel, UcAArch64, ...) and ignores
        # ``cls``; the layer is a subclass of that class, made once per architecture class.
        if isinstance(arch, Uc):
            base: type = type(arch)
        elif mode is None:
            raise TypeError("CoherentUc(arch, mode, cpu=None) or CoherentUc(uc)")
        else:
            base = type(Uc.__new__(Uc, arch, mode, cpu))
        if issubclass(base, CoherentUc):
            raise TypeError("already a CoherentUc")
        combined = CoherentUc._classes.get((cls, base))
        if combined is None:
            combined = type(f"{cls.__name__}[{base.__name__}]", (cls, base), {"__slots__": ()})
            CoherentUc._classes[(cls, base)] = combined
        layer: CoherentUc = object.__new__(combined)
        return layer

    def __init__(self, arch: Any, mode: int | None = None, cpu: int | None = None) -> None:
        if isinstance(arch, Uc):
            if mode is not None or cpu is not None:
                raise TypeError("CoherentUc(uc) takes no mode or cpu")
            self.__dict__ = arch.__dict__  # one engine, one state (callbacks, hook exception)
            self._wrapped: Uc | None = arch  # keeps its finalizer (the engine) alive
        else:
            assert mode is not None  # checked by __new__
            super().__init__(arch, mode, cpu)
            self._wrapped = None
        self._mm = MM()
        self._ptr_maps: list[tuple[int, int, int]] = []  # (address, size, host pointer)
        self._hooks: dict[int, tuple[int, int, int]] = {}  # handle -> (type, begin, end)
        self._ctl = uclib.uc_ctl
        self.stats = Stats()
        #: A mutation spanning more mapped bytes than this flushes the whole TB cache instead
        #: of removing its TBs range by range: a ranged removal costs per TB in the range, a
        #: flush per TB cached, plus re-translating everything that runs again.
        self.flush_bytes = 64 << 20
        self._refresh_regions()
        if self._wrapped is not None:
            self._flush()

    # ----------------------------------------------------------------- state

    @property
    def mm(self) -> MM:
        """The layer's address space: subscribe your caches here (any range, any tag)."""
        return self._mm

    def reset_stats(self) -> Stats:
        """Return the counters so far and start new ones."""
        old, self.stats = self.stats, Stats()
        return old

    def _refresh_regions(self) -> None:
        """Re-read the mapped regions (each one contiguous in Unicorn's RAM) after a (re)map."""
        regions = sorted((begin, end + 1) for begin, end, _ in super().mem_regions())
        self._starts = [begin for begin, _ in regions]
        self._ends = [end for _, end in regions]

    # ----------------------------------------------------------------- dropping TBs

    def _flush(self) -> None:
        super().ctl_flush_tb()
        self.stats.flushes += 1

    def _drop_tbs(self, start: int, end: int) -> None:
        """Drop every TB overlapping ``[start, end)``: one ranged call per mapped region.

        ``ctl_remove_cache`` translates only its first address and walks Unicorn's RAM from
        there, so one call reaches the rest of that region only; a range starting in a hole
        does nothing at all. Hence the split at region boundaries.
        """
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, start) - 1
        if i >= 0 and end <= ends[i]:  # the common case: inside one region
            self._remove_cache(start, end)
            return
        pieces: list[tuple[int, int]] = []
        for j in range(max(i, 0), len(starts)):
            if starts[j] >= end:
                break
            lo, hi = max(start, starts[j]), min(end, ends[j])
            if lo < hi:
                pieces.append((lo, hi))
        if sum(hi - lo for lo, hi in pieces) > self.flush_bytes:
            self._flush()
            return
        for lo, hi in pieces:
            self._remove_cache(lo, hi)

    def _remove_cache(self, start: int, end: int) -> None:
        """``ctl_remove_cache(start, end)``, with the request encoded once (``_REMOVE_CACHE``)."""
        self._ctl(self._uch, _REMOVE_CACHE, ctypes.c_uint64(start), ctypes.c_uint64(end))
        self.stats.tb_removals += 1

    def _aliases(self, start: int, end: int) -> list[tuple[int, int]]:
        """Other guest ranges showing the same host bytes as ``[start, end)`` (``mem_map_ptr``)."""
        out: list[tuple[int, int]] = []
        for address, size, ptr in self._ptr_maps:
            lo, hi = max(start, address), min(end, address + size)
            if lo >= hi:
                continue
            host_lo, host_hi = ptr + lo - address, ptr + hi - address
            for other, other_size, other_ptr in self._ptr_maps:
                a, b = max(host_lo, other_ptr), min(host_hi, other_ptr + other_size)
                if a < b and other != address:
                    out.append((other + a - other_ptr, other + b - other_ptr))
        return out

    def _mutate(self, start: int, end: int, event: Event, mutate: Callable[[], Any], *, drop_first: bool) -> Any:
        """Run ``mutate()`` as one invalidation of ``[start, end)`` (and its aliases).

        Unicorn's TBs are dropped before the mutation when ``drop_first`` (the mapping must
        still be there for Unicorn to find them), after it otherwise. Your subscriptions see
        the invalidation start before the mutation and its end after it, as in the kernel.
        """
        self._check_range(start, end)
        ranges = [(start, end), *self._aliases(start, end)] if self._ptr_maps else [(start, end)]
        notify = len(self._mm) != 0
        opened: list[Range] = []
        try:
            if notify:
                for lo, hi in ranges:
                    rng = Range(lo, hi, event)
                    self._mm.invalidate_range_start(rng)  # one that raises ended itself (D1)
                    opened.append(rng)
                    self.stats.invalidations += 1
            if drop_first:
                for lo, hi in ranges:
                    self._drop_tbs(lo, hi)
            result = mutate()
            if not drop_first:
                for lo, hi in ranges:
                    self._drop_tbs(lo, hi)
            return result
        finally:
            for rng in reversed(opened):
                self._mm.invalidate_range_end(rng)

    @staticmethod
    def _check_range(start: int, end: int) -> None:
        if not 0 <= start < end <= _U64_MAX + 1:
            raise ValueError(f"bad range [{start:#x}, {end:#x})")

    def invalidate(self, start: int, end: int, event: Event = Event.CLEAR, *, virtual: bool = False) -> None:
        """Treat ``[start, end)`` as mutated behind Unicorn's back: drop its TBs, notify ``mm``.

        For what the layer cannot see, e.g. host memory behind ``mem_map_ptr`` written
        directly (call it after the write). ``virtual=True``: the range is a guest virtual
        one (``UC_TLB_VIRTUAL``), dropped page by page, as each page may map anywhere.
        ``start >= end`` is ``ValueError``.
        """
        end = min(end, _U64_MAX)
        if not virtual:
            self._mutate(start, end, event, lambda: None, drop_first=True)
            return
        self._check_range(start, end)
        if end - start > self.flush_bytes:
            self._flush()
        else:
            page = super().ctl_get_page_size()
            for lo in range(start & -page, end, page):
                self._remove_cache(max(lo, start), min(lo + page, end))
        self._notify(start, end, event)

    def _notify(self, start: int, end: int, event: Event) -> None:
        """One start/end pair on ``mm`` over ``[start, end)``, when anything is subscribed."""
        if len(self._mm):
            rng = Range(start, end, event)
            self._mm.invalidate_range_start(rng)  # one that raises ended itself (D1)
            self._mm.invalidate_range_end(rng)
            self.stats.invalidations += 1

    # ----------------------------------------------------------------- mutations

    def mem_write(self, address: int, data: bytes) -> None:
        """``Uc.mem_write`` inside one ``CLEAR`` invalidation of its bytes on ``mm``; then
        drops the TBs they overlap (also at the other mappings of ``mem_map_ptr`` memory)."""
        if not data:
            super().mem_write(address, data)
            return
        end = address + len(data)
        if not self._ptr_maps and not len(self._mm):
            # the hot path of a storm: no Python beyond this frame
            super().mem_write(address, data)
            self._drop_tbs(address, end)
            return
        self._mutate(address, end, Event.CLEAR, lambda: super(CoherentUc, self).mem_write(address, data), drop_first=False)

    def mem_unmap(self, address: int, size: int) -> None:
        """``Uc.mem_unmap`` after dropping the TBs of the range (``UNMAP``)."""
        self._mutate(address, address + size, Event.UNMAP, lambda: super(CoherentUc, self).mem_unmap(address, size), drop_first=True)
        self._ptr_maps = [m for m in self._ptr_maps if not (address <= m[0] < address + size)]
        self._refresh_regions()

    def mem_protect(self, address: int, size: int, perms: int = unicorn.UC_PROT_ALL) -> None:
        """``Uc.mem_protect`` after dropping the TBs of the range (``PROTECTION_PAGE``)."""
        self._mutate(
            address,
            address + size,
            Event.PROTECTION_PAGE,
            lambda: super(CoherentUc, self).mem_protect(address, size, perms),
            drop_first=True,
        )
        self._refresh_regions()  # a partial protect splits a region

    def mem_map(self, address: int, size: int, perms: int = unicorn.UC_PROT_ALL) -> None:
        """``Uc.mem_map``; a new mapping is new memory for ``mm``'s subscribers (``UNMAP``)."""
        self._map(address, size, lambda: super(CoherentUc, self).mem_map(address, size, perms))

    def mem_map_ptr(self, address: int, size: int, perms: int, ptr: int) -> None:
        """``Uc.mem_map_ptr``, like :meth:`mem_map`; writes are also seen at other mappings
        of the same host memory."""
        self._map(address, size, lambda: super(CoherentUc, self).mem_map_ptr(address, size, perms, ptr))
        self._ptr_maps.append((address, size, ptr))

    def mmio_map(self, address: int, size: int, *args: Any, **kwargs: Any) -> None:
        """``Uc.mmio_map``, like :meth:`mem_map`."""
        self._map(address, size, lambda: super(CoherentUc, self).mmio_map(address, size, *args, **kwargs))

    def _map(self, address: int, size: int, mapper: Callable[[], None]) -> None:
        self._check_range(address, address + size)
        mapper()
        self._refresh_regions()
        if len(self._mm):
            self._mutate(address, address + size, Event.UNMAP, lambda: None, drop_first=False)

    def ctl_set_tlb_mode(self, mode: int) -> None:
        """``Uc.ctl_set_tlb_mode``, then a flush: every TB was translated for the old mode."""
        super().ctl_set_tlb_mode(mode)
        self._flush()

    def ctl_set_exits(self, exits: Sequence[int]) -> None:
        """``Uc.ctl_set_exits``, then a flush: exits are compiled into translated blocks."""
        super().ctl_set_exits(exits)
        self._flush()

    # ----------------------------------------------------------------- hooks

    def _drop_hooked(self, htype: int, begin: int, end: int) -> None:
        if htype & _MEM_HOOKS or begin > end:
            self._flush()  # whole space (Unicorn's begin > end), or a memory hook
        elif htype & _CODE_HOOKS:
            self._drop_tbs(begin, min(end, _U64_MAX - 1) + 1)

    def hook_add(
        self,
        htype: int,
        callback: Callable[..., Any],
        user_data: Any = None,
        begin: int = 1,
        end: int = 0,
        aux1: int = 0,
        aux2: int = 0,
    ) -> int:
        """``Uc.hook_add``; the callback's ``uc`` argument is the layer.

        A code, block, instruction or TCG-opcode hook drops the TBs of its range ``[begin,
        end]`` (inclusive; ``begin > end``, the default, is every address: a flush); a memory
        hook (read, write, fetch, read-after) flushes every TB.
        """
        handle: int = super().hook_add(htype, callback, user_data, begin, end, aux1, aux2)
        self._hooks[handle] = (htype, begin, end)
        if htype & (_CODE_HOOKS | _MEM_HOOKS):
            self._drop_hooked(htype, begin, end)
        return handle

    def hook_del(self, handle: int) -> None:
        """``Uc.hook_del``; a code hook's TBs are dropped so they run without its call again."""
        super().hook_del(handle)
        htype, begin, end = self._hooks.pop(handle, (0, 1, 0))
        if htype & _CODE_HOOKS:
            self._drop_hooked(htype, begin, end)

    def watch_guest_writes(self, begin: int, end: int) -> int:
        """Notify ``mm`` of guest stores into ``[begin, end]`` (inclusive); returns a hook handle.

        Costs a Python call per guest store into the range (only there); remove it with
        :meth:`hook_del`. Unicorn drops its own TBs on such stores by itself.
        """
        if begin > end:
            raise ValueError(f"empty range [{begin:#x}, {end:#x}]")
        return self.hook_add(unicorn.UC_HOOK_MEM_WRITE, self._on_guest_write, None, begin, end)

    def _on_guest_write(self, uc: Uc, access: int, address: int, size: int, value: int, data: object) -> None:
        self._notify(address, min(address + size, _U64_MAX), Event.CLEAR)

    # ----------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Delete the hooks added through the layer and release its emulator.

        A layer made with ``CoherentUc(arch, mode)`` closes its engine; one made with
        ``CoherentUc(uc)`` flushes the TB cache and leaves ``uc`` usable (uncached). Either
        way, every later call on the layer raises :class:`LayerClosedError`.
        """
        for handle in list(self._hooks):
            Uc.hook_del(self, handle)
        self._hooks.clear()
        if self._wrapped is None:
            finalizer: weakref.finalize[Any, Any] | None = self.__dict__.get("_Uc__finalizer")
            if finalizer is not None:
                finalizer()
        else:
            self._flush()
        self.__class__ = _closed_class(type(self))

    def __enter__(self) -> CoherentUc:
        return self

    def __exit__(self, *exc: object) -> None:
        if not isinstance(self, _Closed):
            self.close()


def _refuse(self: object, name: str) -> NoReturn:
    raise LayerClosedError(f"CoherentUc.{name}: the layer is closed")


def _closed_getattribute(self: object, name: str) -> Any:
    if name.startswith("__"):
        return object.__getattribute__(self, name)
    _refuse(self, name)


class _Closed:
    """Marks a closed layer's class."""

    __slots__ = ()


_closed: dict[type, type] = {}


def _closed_class(cls: type) -> type:
    """``cls`` with every attribute refused: what a closed layer becomes (same layout)."""
    closed = _closed.get(cls)
    if closed is None:
        closed = type(f"Closed{cls.__name__}", (cls, _Closed), {"__slots__": (), "__getattribute__": _closed_getattribute})
        _closed[cls] = closed
    return closed
