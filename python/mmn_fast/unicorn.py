"""A coherent Unicorn: mmn_fast as the translation-cache invalidation layer of an emulator.

Unicorn (PyPI ``unicorn``) keeps translated blocks (TBs) of guest code and does not drop
them when the host patches guest memory with ``mem_write`` (unicorn issues #1148, #1561,
#1752, #2258), nor when a hook is added over code that already ran (#2200, #1747). The
official advice is to call ``ctl_remove_cache`` on the address yourself. This module does
that for you, with the kernel's MMU-notifier scheme:

* Every block Unicorn translates is learnt from the block hook (or from
  :meth:`CoherentUc.request_cache`, which is ``ctl_request_cache``) and held as a **native**
  interval subscription on the layer's own :class:`mmn_fast.MM`, tagged with the block's
  start address. Keeping track therefore costs no Python per invalidation.
* Every mutation source is one invalidation on that ``MM``: host writes
  (:meth:`~CoherentUc.mem_write`, ``Event.CLEAR``), unmap (``Event.UNMAP``), protect
  (``Event.PROTECTION_PAGE``), (re)map at an address (``Event.UNMAP``), hook add and delete
  (the hooked range, ``Event.CLEAR``) and, optionally, guest stores (``Event.CLEAR``).
* The blocks an invalidation reached (``mm.drain_invalidated()``) are removed from Unicorn
  with ``uc.ctl_remove_cache(start, end)`` (end-exclusive), dropped from the layer's caches,
  and their subscriptions removed once the invalidation has ended.
* A per-block analysis cache (Capstone disassembly, :meth:`CoherentUc.instructions`) is a
  second subscriber on the same ``MM``, so a tracer never shows stale disassembly.
* A mutation that touches no cached block costs one interval-tree lookup.

Protocol, per mutation (the kernel's ``invalidate_range_start`` / ``_end`` pairing)::

    with mm.invalidate(start, end, event):      # start: hit subscriptions record their tag
        for tag in mm.drain_invalidated():      #   the blocks (and analyses) reached
            uc.ctl_remove_cache(block.start, block.end)   # pairs with the block hook
        mutate()                                # uc.mem_write / mem_unmap / ...
    for sub in dropped: sub.remove()            # after the end: no wait, no deferral

The TB is removed *before* the mutation, while the memory is still mapped with its old
permissions (Unicorn resolves the guest address to find the TB, which fails once the page is
gone). A mapping call is the exception: it drops blocks *after* mapping, so that a block
left cached by an unmap made behind the layer's back is found through the new mapping.

Guest stores into translated code are handled by Unicorn itself (QEMU's self-modifying-code
detection, including a store into the running block); the layer only forgets its own view of
those blocks (``remove_tb=False``), which keeps the analysis cache coherent.

Requires the optional extra: ``pip install mmn_fast[unicorn]``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

try:
    import capstone  # type: ignore[import-untyped, unused-ignore]
    import unicorn
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mmn_fast.unicorn needs the optional 'unicorn' extra (Unicorn and Capstone): "
        "pip install mmn_fast[unicorn]"
    ) from _exc

from mmn_fast import MM, Event, IntervalNotifier

if TYPE_CHECKING:  # unicorn's package picks its py2/py3 binding at run time
    from unicorn.unicorn_py3 import Uc
else:
    from unicorn import Uc

__all__ = ["BlockInfo", "CoherentUc", "Insn", "Stats"]

_U64_MAX = (1 << 64) - 1
_WINDOW_BITS = 12

# Hook types whose instrumentation is compiled into a translated block: adding or deleting
# one of them must drop the blocks of the hooked range, or they run without (or with a
# dangling) callback. Memory hooks are checked at run time by Unicorn and need nothing.
_TRANSLATED_HOOKS = (
    unicorn.UC_HOOK_CODE | unicorn.UC_HOOK_BLOCK | unicorn.UC_HOOK_INSN | unicorn.UC_HOOK_TCG_OPCODE
)


class Insn(NamedTuple):
    """One decoded guest instruction of a cached block."""

    address: int
    size: int
    mnemonic: str
    op_str: str


class BlockInfo(NamedTuple):
    """A translated block the layer knows about: ``[start, end)``."""

    start: int
    end: int


@dataclass
class Stats:
    """Counters of what the layer did (reset with :meth:`CoherentUc.reset_stats`).

    ``translations`` counts, per block start, how often the layer learnt that block: the
    first translation plus one per re-translation after the layer dropped it. ``dropped``
    counts, per block start, how often an invalidation reached it.
    """

    invalidations: int = 0
    tb_removals: int = 0
    analyses_dropped: int = 0
    translations: Counter[int] = field(default_factory=Counter)
    dropped: Counter[int] = field(default_factory=Counter)


class _InsnTag:
    """Tag of an analysis-cache subscription (block tags are plain ints)."""

    __slots__ = ("start",)

    def __init__(self, start: int) -> None:
        self.start = start

    def __repr__(self) -> str:
        return f"_InsnTag({self.start:#x})"


def _capstone_for(uc: Uc) -> Optional[capstone.Cs]:
    """A Capstone disassembler matching ``uc``'s architecture and mode, or None."""
    arch = uc.ctl_get_arch()
    mode = uc.ctl_get_mode()
    endian = capstone.CS_MODE_BIG_ENDIAN if mode & unicorn.UC_MODE_BIG_ENDIAN else 0
    cs_arch: int
    cs_mode: int
    if arch == unicorn.UC_ARCH_X86:
        cs_arch = capstone.CS_ARCH_X86
        cs_mode = {
            unicorn.UC_MODE_16: capstone.CS_MODE_16,
            unicorn.UC_MODE_32: capstone.CS_MODE_32,
        }.get(mode, capstone.CS_MODE_64)
    elif arch == unicorn.UC_ARCH_ARM64:
        cs_arch, cs_mode = capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM | endian
    elif arch == unicorn.UC_ARCH_ARM:
        thumb = mode & (unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        cs_arch = capstone.CS_ARCH_ARM
        cs_mode = (capstone.CS_MODE_THUMB if thumb else capstone.CS_MODE_ARM) | endian
    elif arch == unicorn.UC_ARCH_MIPS:
        bits = capstone.CS_MODE_MIPS64 if mode & unicorn.UC_MODE_MIPS64 else capstone.CS_MODE_MIPS32
        cs_arch, cs_mode = capstone.CS_ARCH_MIPS, bits | endian
    elif arch == unicorn.UC_ARCH_RISCV:
        bits = capstone.CS_MODE_RISCV64 if mode & unicorn.UC_MODE_RISCV64 else capstone.CS_MODE_RISCV32
        cs_arch, cs_mode = capstone.CS_ARCH_RISCV, bits | capstone.CS_MODE_RISCVC
    else:
        return None
    return capstone.Cs(cs_arch, cs_mode)


def _hook_range(begin: int, end: int) -> tuple[int, int]:
    """Unicorn's inclusive hook range ``[begin, end]`` as a half-open invalidation range.

    ``begin > end`` is Unicorn's "every address". A range end is at most ``2**64 - 1``
    (a u64), so the very last byte of the address space is never part of a hooked range.
    """
    if begin > end:
        return 0, _U64_MAX
    return begin, min(end + 1, _U64_MAX)


class CoherentUc:
    """A :class:`unicorn.Uc` whose translation cache never runs stale code.

    Route every mutation of guest memory, mappings and hooks through this object
    (:meth:`mem_write`, :meth:`mem_map`, :meth:`mem_unmap`, :meth:`mem_protect`,
    :meth:`hook_add`, :meth:`hook_del`); everything else (registers, ``emu_start``,
    ``mem_read``) is used on :attr:`uc` directly. Guest stores are followed by a write
    hook on each 4 KiB window that holds translated code, unless
    ``track_guest_writes=False``. Each call may be made from inside a Unicorn
    hook while the emulator runs.

    ``code_begin``/``code_end`` (inclusive, Unicorn's hook convention; the default
    ``1, 0`` means every address) bound where blocks are learnt: code outside them is not
    tracked, so restrict them only to exclude code you never mutate.
    ``disassembler`` overrides the Capstone instance made from the Uc's architecture.

    Attaching flushes Unicorn's translation cache once, so that every TB Unicorn holds
    from then on has been seen by the layer.

    Example::

        layer = CoherentUc(Uc(UC_ARCH_X86, UC_MODE_64))
        layer.mem_map(0x1000, 0x1000)
        layer.mem_write(0x1000, code)
        layer.uc.emu_start(0x1000, 0x1000 + len(code))
        layer.mem_write(0x1000, patched)   # the stale block is dropped here
        layer.uc.emu_start(0x1000, 0x1000 + len(code))
    """

    def __init__(
        self,
        uc: Uc,
        *,
        track_guest_writes: bool = True,
        code_begin: int = 1,
        code_end: int = 0,
        disassembler: Optional[capstone.Cs] = None,
    ) -> None:
        self._uc = uc
        self._mm = MM()
        self._blocks: dict[int, IntervalNotifier] = {}
        self._insns: dict[int, tuple[IntervalNotifier, tuple[Insn, ...]]] = {}
        self._hook_ranges: dict[int, tuple[int, int]] = {}
        self._cs = disassembler if disassembler is not None else _capstone_for(uc)
        self.stats = Stats()
        self._track_guest_writes = track_guest_writes
        self._watched: dict[int, int] = {}  # watched 4 KiB window -> its write hook
        self._own_hooks: list[int] = [
            uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block, None, code_begin, code_end)
        ]
        uc.ctl_flush_tb()

    # ----------------------------------------------------------------- introspection

    @property
    def uc(self) -> Uc:
        """The wrapped emulator (run it, read registers; mutate through the layer)."""
        return self._uc

    @property
    def mm(self) -> MM:
        """The layer's address space: one native subscription per cached block/analysis."""
        return self._mm

    def blocks(self) -> list[BlockInfo]:
        """The blocks the layer holds as cached, in address order."""
        return [BlockInfo(s.start, s.last + 1) for _, s in sorted(self._blocks.items())]

    def is_cached(self, address: int) -> bool:
        """True if a block starting at ``address`` is held as cached."""
        return address in self._blocks

    def reset_stats(self) -> Stats:
        """Return the counters so far and start new ones."""
        old, self.stats = self.stats, Stats()
        return old

    # ----------------------------------------------------------------- learning blocks

    def _learn(self, start: int, size: int) -> None:
        """Hold ``[start, start + size)`` as a cached block (replacing a stale size)."""
        size = max(1, min(size, _U64_MAX - start + 1))
        old = self._blocks.get(start)
        if old is not None:
            if old.length == size:
                return
            old.remove()
        self._blocks[start] = self._mm.insert_interval_notifier(start, size, tag=start)
        self.stats.translations[start] += 1
        if self._track_guest_writes:
            self._watch(start, start + size - 1)

    def _watch(self, first: int, last: int) -> None:
        """Follow guest stores into the 4 KiB windows of ``[first, last]``.

        One write hook per window that ever held a cached block: stores elsewhere (stack,
        data) never call Python. A window stays watched once code was seen there.
        """
        for window in range(first >> _WINDOW_BITS, (last >> _WINDOW_BITS) + 1):
            if window not in self._watched:
                lo = window << _WINDOW_BITS
                self._watched[window] = self._uc.hook_add(
                    unicorn.UC_HOOK_MEM_WRITE, self._on_guest_write, None, lo, lo + (1 << _WINDOW_BITS) - 1
                )

    def _on_block(self, uc: Uc, address: int, size: int, user_data: object) -> None:
        """Unicorn block hook: a block about to run; new to the layer means just translated."""
        sub = self._blocks.get(address)
        if sub is None or sub.length != size:
            self._learn(address, size)

    def _on_guest_write(
        self, uc: Uc, access: int, address: int, size: int, value: int, user_data: object
    ) -> None:
        """Unicorn write hook: a guest store; QEMU drops the TBs, the layer its own view."""
        self._invalidate(address, address + size, Event.CLEAR, None, remove_tb=False)

    def request_cache(self, address: int) -> BlockInfo:
        """Translate the block at ``address`` now (``ctl_request_cache``) and hold it."""
        pc, _icount, size = self._uc.ctl_request_cache(address)
        self._learn(pc, size)
        return BlockInfo(pc, pc + max(size, 1))

    # ----------------------------------------------------------------- the invalidation

    def _invalidate(
        self,
        start: int,
        end: int,
        event: Event,
        mutate: Optional[Callable[[], Any]],
        *,
        remove_tb: bool = True,
        drop_after: bool = False,
    ) -> Any:
        """One invalidation of ``[start, end)`` around ``mutate()``; returns its result.

        Transition: idle -> invalidating (``mm.invalidate`` start) -> idle (its end), then
        the reached subscriptions are removed (they are no longer walked, so no wait).
        """
        start = min(start, _U64_MAX - 1)
        end = min(max(end, start + 1), _U64_MAX)
        self.stats.invalidations += 1
        doomed: list[IntervalNotifier] = []
        result: Any = None
        try:
            with self._mm.invalidate(start, end, event):
                if mutate is not None and drop_after:
                    result = mutate()
                self._drop(self._mm.drain_invalidated(), doomed, remove_tb)
                if mutate is not None and not drop_after:
                    result = mutate()
        finally:
            for sub in doomed:
                sub.remove()
        return result

    def _drop(self, tags: list[Any], doomed: list[IntervalNotifier], remove_tb: bool) -> None:
        """Forget every block and analysis named by ``tags`` (pairs with ``_learn``)."""
        for tag in tags:
            if isinstance(tag, _InsnTag):
                entry = self._insns.pop(tag.start, None)
                if entry is not None:
                    doomed.append(entry[0])
                    self.stats.analyses_dropped += 1
                continue
            sub = self._blocks.pop(tag, None)
            if sub is None:
                continue
            doomed.append(sub)
            self.stats.dropped[tag] += 1
            if remove_tb:
                self._uc.ctl_remove_cache(sub.start, min(sub.last + 1, _U64_MAX))
                self.stats.tb_removals += 1

    def invalidate(self, start: int, end: int, event: Event = Event.CLEAR) -> None:
        """Drop every cached block and analysis overlapping ``[start, end)``.

        For mutations the layer does not wrap, e.g. host memory behind ``mem_map_ptr``
        changed directly: call it after the change (or before, for an unmap).
        """
        if start >= end:
            raise ValueError(f"empty range [{start:#x}, {end:#x})")
        self._invalidate(start, end, event, None)

    # ----------------------------------------------------------------- mutation sources

    def mem_write(self, address: int, data: bytes) -> None:
        """``uc.mem_write`` after dropping the blocks it overlaps (``Event.CLEAR``)."""
        if len(data) == 0:
            self._uc.mem_write(address, data)
            return
        self._invalidate(address, address + len(data), Event.CLEAR, lambda: self._uc.mem_write(address, data))

    def mem_unmap(self, address: int, size: int) -> None:
        """``uc.mem_unmap`` after dropping the blocks of the range (``Event.UNMAP``)."""
        self._invalidate(address, address + size, Event.UNMAP, lambda: self._uc.mem_unmap(address, size))

    def mem_protect(self, address: int, size: int, perms: int = unicorn.UC_PROT_ALL) -> None:
        """``uc.mem_protect`` after dropping the blocks of the range (``PROTECTION_PAGE``)."""
        self._invalidate(
            address, address + size, Event.PROTECTION_PAGE, lambda: self._uc.mem_protect(address, size, perms)
        )

    def mem_map(self, address: int, size: int, perms: int = unicorn.UC_PROT_ALL) -> None:
        """``uc.mem_map``; then drops any block still held in the range (``Event.UNMAP``).

        Remapping at the same address is a new page: nothing translated from the old one may
        run. Blocks are dropped after mapping, so that Unicorn can resolve their address.
        """
        self._invalidate(
            address, address + size, Event.UNMAP, lambda: self._uc.mem_map(address, size, perms), drop_after=True
        )

    def mem_map_ptr(self, address: int, size: int, perms: int, ptr: int) -> None:
        """``uc.mem_map_ptr``, like :meth:`mem_map`."""
        self._invalidate(
            address,
            address + size,
            Event.UNMAP,
            lambda: self._uc.mem_map_ptr(address, size, perms, ptr),
            drop_after=True,
        )

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
        """``uc.hook_add``; a hook compiled into blocks first drops those of its range.

        The range is Unicorn's inclusive ``[begin, end]`` (``begin > end``: everywhere).
        """
        def add() -> int:
            handle: int = self._uc.hook_add(htype, callback, user_data, begin, end, aux1, aux2)
            return handle

        if not htype & _TRANSLATED_HOOKS:
            return add()
        lo, hi = _hook_range(begin, end)
        handle: int = self._invalidate(lo, hi, Event.CLEAR, add)
        self._hook_ranges[handle] = (lo, hi)
        return handle

    def hook_del(self, handle: int) -> None:
        """``uc.hook_del``, dropping the blocks of the range the hook was added over."""
        rng = self._hook_ranges.pop(handle, None)
        if rng is None:
            self._uc.hook_del(handle)
            return
        self._invalidate(rng[0], rng[1], Event.CLEAR, lambda: self._uc.hook_del(handle))

    # ----------------------------------------------------------------- analysis cache

    def instructions(self, address: int) -> tuple[Insn, ...]:
        """The decoded instructions of the block at ``address``, never stale.

        Served from the analysis cache; a miss decodes the current guest bytes of the block
        (translating it with ``ctl_request_cache`` if the layer does not hold it) and
        subscribes the result, so that any later mutation of those bytes drops it.
        Raises ``ValueError`` if no Capstone disassembler matches the architecture.
        """
        entry = self._insns.get(address)
        if entry is not None:
            return entry[1]
        if self._cs is None:
            raise ValueError("no Capstone disassembler for this architecture; pass disassembler=")
        sub = self._blocks.get(address)
        block = BlockInfo(address, sub.last + 1) if sub is not None else self.request_cache(address)
        code = bytes(self._uc.mem_read(block.start, block.end - block.start))
        insns = tuple(Insn(*t) for t in self._cs.disasm_lite(code, block.start))
        analysis = self._mm.insert_interval_notifier(
            block.start, block.end - block.start, tag=_InsnTag(block.start)
        )
        self._insns[address] = (analysis, insns)
        return insns

    def cached_analyses(self) -> Mapping[int, tuple[Insn, ...]]:
        """A snapshot of the analysis cache: block start -> instructions."""
        return {start: insns for start, (_, insns) in self._insns.items()}

    # ----------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Delete the layer's hooks and subscriptions; Unicorn is left usable, uncached."""
        for handle in self._own_hooks + list(self._watched.values()):
            self._uc.hook_del(handle)
        self._own_hooks.clear()
        self._watched.clear()
        for sub in list(self._blocks.values()) + [s for s, _ in self._insns.values()]:
            sub.remove()
        self._blocks.clear()
        self._insns.clear()
        self._uc.ctl_flush_tb()

    def __enter__(self) -> CoherentUc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[BlockInfo]:
        return iter(self.blocks())

    def __len__(self) -> int:
        return len(self._blocks)
