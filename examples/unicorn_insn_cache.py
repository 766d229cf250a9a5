"""A Capstone-decoded instruction cache for a Unicorn guest, kept coherent three ways.

An emulator author's tracer or lifter caches the decoded instructions of every block it has
seen; a host write into guest code must drop exactly the entries it overlaps. Three caches with
one interface (``get(address)``: the decoded block at ``address``; ``write(address, data)``: a
host write of guest memory, coherent for Unicorn and for the cache):

* :class:`InsnCache`: one native interval subscription per entry on ``CoherentUc.mm``; the
  layer's write invalidates them in Rust; the entries reached are dropped from the
  ``drain_invalidated()`` list.
* :class:`DictScanCache`: the naive wrapper's write, then a scan of every entry for overlap.
* :class:`PageIndexCache`: the naive wrapper's write, then a per-page dict index of entries
  (what a careful author writes without mmn_fast).

:class:`NaiveUc` is the naive wrapper: ``ctl_remove_cache`` after every mutation, no tracking.

Run (builds a guest of ``--blocks`` blocks, fills each cache, storms host writes into the code,
checks every entry against a fresh decode, prints the cost per write)::

    python examples/unicorn_insn_cache.py --blocks 100000 --writes 5000
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import capstone  # type: ignore[import-untyped, unused-ignore]
import unicorn
from unicorn.unicorn_py3.unicorn import Uc

from mmn_fast import IntervalNotifier
from mmn_fast.unicorn import CoherentUc

Insn = tuple[int, int, str, str]  # address, size, mnemonic, operands (Capstone's disasm_lite)
Block = tuple[Insn, ...]

FUNCS = 0x100_0000  # guest function i at FUNCS + 16 * i: "add rbx, i & 0x7f; ret"
STRIDE = 16
PAGE_BITS = 12


class NaiveUc:
    """The wrapper an author writes first: ``ctl_remove_cache`` after every host mutation.

    Correct for one mapping; no block tracking, no cache of its own, nothing per block.
    """

    def __init__(self, uc: Uc) -> None:
        self.uc = uc
        self._hooks: dict[int, tuple[int, int]] = {}

    def mem_write(self, address: int, data: bytes) -> None:
        self.uc.mem_write(address, data)
        if data:
            self.uc.ctl_remove_cache(address, address + len(data))

    def mem_unmap(self, address: int, size: int) -> None:
        self.uc.ctl_remove_cache(address, address + size)
        self.uc.mem_unmap(address, size)

    def mem_protect(self, address: int, size: int, perms: int = unicorn.UC_PROT_ALL) -> None:
        self.uc.ctl_remove_cache(address, address + size)
        self.uc.mem_protect(address, size, perms)

    def mem_map(self, address: int, size: int, perms: int = unicorn.UC_PROT_ALL) -> None:
        self.uc.mem_map(address, size, perms)

    def hook_add(self, htype: int, callback: Callable[..., Any], user_data: Any = None, begin: int = 1, end: int = 0) -> int:
        handle: int = self.uc.hook_add(htype, callback, user_data, begin, end)
        self._hooks[handle] = (begin, end)
        self._drop(begin, end)
        return handle

    def hook_del(self, handle: int) -> None:
        self.uc.hook_del(handle)
        self._drop(*self._hooks.pop(handle))

    def _drop(self, begin: int, end: int) -> None:
        if begin > end:
            self.uc.ctl_flush_tb()
        else:
            self.uc.ctl_remove_cache(begin, end + 1)


class Cache(Protocol):
    def get(self, address: int) -> Block: ...
    def write(self, address: int, data: bytes) -> None: ...
    def __len__(self) -> int: ...


def decode(uc: Uc, cs: Any, address: int) -> tuple[int, Block]:
    """The block Unicorn translates at ``address`` (translating it now): its size and code."""
    _pc, _count, size = uc.ctl_request_cache(address)
    code = bytes(uc.mem_read(address, size))
    return size, tuple(cs.disasm_lite(code, address))


class InsnCache:
    """Entries subscribed on the layer's ``MM``: a host write costs no Python per entry."""

    def __init__(self, uc: CoherentUc, cs: Any) -> None:
        self._uc = uc
        self._cs = cs
        self._entries: dict[int, tuple[IntervalNotifier, Block]] = {}

    def _evict(self) -> None:
        for start in self._uc.mm.drain_invalidated():  # tags: the starts of the entries reached
            entry = self._entries.pop(start, None)
            if entry is not None:
                entry[0].remove()

    def get(self, address: int) -> Block:
        self._evict()
        entry = self._entries.get(address)
        if entry is not None:
            return entry[1]
        _pc, _count, size = self._uc.ctl_request_cache(address)
        sub = self._uc.mm.insert_interval_notifier(address, size, tag=address)  # before reading
        insns: Block = tuple(self._cs.disasm_lite(bytes(self._uc.mem_read(address, size)), address))
        self._entries[address] = (sub, insns)
        return insns

    def write(self, address: int, data: bytes) -> None:
        self._uc.mem_write(address, data)
        self._evict()

    def __len__(self) -> int:
        self._evict()
        return len(self._entries)


class DictScanCache:
    """Entries in a dict; a host write scans all of them for overlap."""

    def __init__(self, uc: NaiveUc, cs: Any) -> None:
        self._uc = uc
        self._cs = cs
        self._entries: dict[int, tuple[int, Block]] = {}  # start -> (end, code)

    def get(self, address: int) -> Block:
        entry = self._entries.get(address)
        if entry is None:
            size, insns = decode(self._uc.uc, self._cs, address)
            entry = self._entries[address] = (address + size, insns)
        return entry[1]

    def write(self, address: int, data: bytes) -> None:
        self._uc.mem_write(address, data)
        end = address + len(data)
        for start in [s for s, (e, _) in self._entries.items() if s < end and e > address]:
            del self._entries[start]

    def __len__(self) -> int:
        return len(self._entries)


class PageIndexCache:
    """Entries in a dict, indexed by the pages they cover; a host write checks its pages'."""

    def __init__(self, uc: NaiveUc, cs: Any) -> None:
        self._uc = uc
        self._cs = cs
        self._entries: dict[int, tuple[int, Block]] = {}
        self._pages: defaultdict[int, set[int]] = defaultdict(set)

    def get(self, address: int) -> Block:
        entry = self._entries.get(address)
        if entry is None:
            size, insns = decode(self._uc.uc, self._cs, address)
            entry = self._entries[address] = (address + size, insns)
            for page in range(address >> PAGE_BITS, ((address + size - 1) >> PAGE_BITS) + 1):
                self._pages[page].add(address)
        return entry[1]

    def write(self, address: int, data: bytes) -> None:
        self._uc.mem_write(address, data)
        end = address + len(data)
        for page in range(address >> PAGE_BITS, ((end - 1) >> PAGE_BITS) + 1):
            starts = self._pages.get(page)
            if starts:
                for start in [s for s in starts if s < end and self._entries[s][0] > address]:
                    self._drop(start)

    def _drop(self, start: int) -> None:
        end, _ = self._entries.pop(start)
        for page in range(start >> PAGE_BITS, ((end - 1) >> PAGE_BITS) + 1):
            self._pages[page].discard(start)

    def __len__(self) -> int:
        return len(self._entries)


# --------------------------------------------------------------------------- the guest


def guest(n_blocks: int) -> bytes:
    """``n_blocks`` functions, one block each: ``add rbx, imm8; ret`` padded to 16 bytes."""
    return b"".join(bytes((0x48, 0x83, 0xC3, i & 0x7F, 0xC3)) + bytes(STRIDE - 5) for i in range(n_blocks))


def mapped_size(n_blocks: int) -> int:
    return (n_blocks * STRIDE + 0xFFFF) & ~0xFFFF


def make(kind: str, n_blocks: int, uc: Uc | None = None) -> tuple[Cache, Uc]:
    """A cache of ``kind`` ('mmn_fast', 'dict scan', 'page index') over a fresh guest."""
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    if kind == "mmn_fast":
        layer = CoherentUc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        layer.mem_map(FUNCS, mapped_size(n_blocks))
        layer.mem_write(FUNCS, guest(n_blocks))
        return InsnCache(layer, cs), layer
    plain = Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    plain.mem_map(FUNCS, mapped_size(n_blocks))
    plain.mem_write(FUNCS, guest(n_blocks))
    cls = DictScanCache if kind == "dict scan" else PageIndexCache
    return cls(NaiveUc(plain), cs), plain


KINDS = ("mmn_fast", "dict scan", "page index")


def fill(cache: Cache, n_blocks: int) -> None:
    for i in range(n_blocks):
        cache.get(FUNCS + STRIDE * i)


def storm(rng: random.Random, n_blocks: int, n_writes: int) -> list[tuple[int, bytes]]:
    """Host writes into the code: half patch an immediate (a hit), half the padding (a miss)."""
    out = []
    for k in range(n_writes):
        f = FUNCS + STRIDE * rng.randrange(n_blocks)
        out.append((f + 3, bytes((rng.randrange(0x80),))) if k % 2 else (f + 8, b"\x90" * 4))
    return out


def stale_entries(cache: Cache, uc: Uc, n_blocks: int) -> int:
    """Entries whose instructions differ from a fresh decode of guest memory."""
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    bad = 0
    for i in range(n_blocks):
        address = FUNCS + STRIDE * i
        fresh = tuple(cs.disasm_lite(bytes(uc.mem_read(address, 5)), address))
        bad += cache.get(address) != fresh
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=100_000)
    ap.add_argument("--writes", type=int, default=5_000)
    args = ap.parse_args()
    for kind in KINDS:
        cache, uc = make(kind, args.blocks)
        fill(cache, args.blocks)
        writes = storm(random.Random(1), args.blocks, args.writes)
        t0 = time.perf_counter()
        for address, data in writes:
            cache.write(address, data)
        per_write = (time.perf_counter() - t0) / len(writes)
        stale = stale_entries(cache, uc, args.blocks)
        print(f"{kind:>10}: {per_write * 1e6:8.2f} us per host write, {stale} stale entries")
        assert stale == 0


if __name__ == "__main__":
    main()
