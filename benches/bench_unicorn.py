"""Benchmark: keeping Unicorn coherent, four ways side by side, medians of 3 rounds.

Modes: ``plain`` (bare Unicorn, incoherent: the floor), ``naive`` (the 30-line wrapper,
``NaiveUc`` in examples/unicorn_insn_cache.py: ``ctl_remove_cache`` after every host write),
``flush`` (``ctl_flush_tb`` after every host write) and ``layer`` (``mmn_fast.unicorn.CoherentUc``).
All on real translated blocks (x86-64 guests generated here).

1. Guest speed: a guest calling 2,000 functions in a loop, run in frames of 5,000 instructions;
   with no host writes, and in a storm (after every frame one code patch and seven data writes).
2. One host write (8 bytes), hit (a cached block) or miss (padding beside cached blocks), with
   10^3, 10^5 (and 10^6 without ``--quick``) blocks translated, each write timed alone; a hit
   block is translated again (untimed) before the next write.
3. A 4 MiB write over the code, and a whole-space code hook added and deleted, with the
   largest population cached (re-translated, untimed, before each).
4. The user-cache demo (examples/unicorn_insn_cache.py): a Capstone instruction cache over a
   guest of 10^3..10^5 blocks kept by ``layer.mm``, by a dict scan and by a per-page dict index:
   cost per host write in total, and of the cache's own invalidation alone.

    python benches/bench_unicorn.py            # full
    python benches/bench_unicorn.py --quick    # well under a minute (make test runs it)
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import random
import statistics
import sys
import time
from types import ModuleType
from typing import Any, Callable

import unicorn
from unicorn import x86_const

from mmn_fast import Event, Range
from mmn_fast.unicorn import CoherentUc


def _load_example() -> ModuleType:
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "unicorn_insn_cache.py"
    spec = importlib.util.spec_from_file_location("unicorn_insn_cache", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ex = _load_example()
NaiveUc = ex.NaiveUc
ROUNDS = 3
SEED = 0x5EED


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _x86() -> unicorn.Uc:
    return unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)


def _writer(mode: str, uc: unicorn.Uc) -> Callable[[int, bytes], None]:
    """The host write of ``mode`` on ``uc`` (a CoherentUc for 'layer')."""
    if mode == "layer":
        return uc.mem_write  # type: ignore[no-any-return]
    if mode == "naive":
        return NaiveUc(uc).mem_write  # type: ignore[no-any-return]
    if mode == "flush":

        def write_flush(address: int, data: bytes) -> None:
            uc.mem_write(address, data)
            uc.ctl_flush_tb()

        return write_flush
    return uc.mem_write  # type: ignore[no-any-return]


MODES = ("plain", "naive", "flush", "layer")

# --------------------------------------------------------------------------- 1. guest speed

N_FUNCS = 2000
FRAME = 5_000
MAIN, FUNCS, DATA, STACK = 0x10_0000, 0x20_0000, 0x30_0000, 0x40_0000


def _loop_guest() -> tuple[bytes, bytes, int]:
    """main: ``loop: call f_0 .. f_1999; dec rcx; jnz loop``; ``f_i``: ``add rbx, 1; ret``."""
    main = bytearray(b"\x48\xc7\xc1\xff\xff\xff\x7f")  # mov rcx, 0x7fffffff
    loop = MAIN + len(main)
    for i in range(N_FUNCS):
        here = MAIN + len(main)
        main += b"\xe8" + ((FUNCS + 16 * i) - (here + 5)).to_bytes(4, "little", signed=True)
    main += b"\x48\xff\xc9"
    here = MAIN + len(main)
    main += b"\x0f\x85" + (loop - (here + 6)).to_bytes(4, "little", signed=True)
    until = MAIN + len(main)
    main += b"\xf4"
    funcs = b"".join(b"\x48\x83\xc3\x01\xc3" + b"\x90" * 11 for _ in range(N_FUNCS))
    return bytes(main), funcs, until


def guest_speed(mode: str, frames: int, writes_per_frame: int) -> tuple[float, int]:
    """Guest Minsn/s over ``frames`` frames (host writes after each), and the final rbx."""
    main, funcs, until = _loop_guest()
    uc: Any = CoherentUc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64) if mode == "layer" else _x86()
    for base in (MAIN, FUNCS, DATA, STACK):
        uc.mem_map(base, 0x10000)
    uc.mem_write(MAIN, main)
    uc.mem_write(FUNCS, funcs)
    uc.reg_write(x86_const.UC_X86_REG_RSP, STACK + 0x800)
    write = _writer(mode, uc)
    rng = random.Random(SEED)
    pc = MAIN
    uc.emu_start(pc, until, count=FRAME)  # warm: translate
    pc = uc.reg_read(x86_const.UC_X86_REG_RIP)
    t0 = time.perf_counter()
    for frame in range(frames):
        uc.emu_start(pc, until, count=FRAME)
        pc = uc.reg_read(x86_const.UC_X86_REG_RIP)
        if writes_per_frame:
            write(FUNCS + 16 * rng.randrange(N_FUNCS) + 3, bytes([1 + (frame & 1)]))
            for _ in range(writes_per_frame - 1):
                write(DATA + 8 * rng.randrange(0x1000), bytes(8))
    elapsed = time.perf_counter() - t0
    return frames * FRAME / elapsed / 1e6, uc.reg_read(x86_const.UC_X86_REG_RBX)


# --------------------------------------------------------------------------- 2, 3. host writes

CHAIN = 0x1000_0000
SLOT = 16
BIG = 4 << 20


def _chain(n: int) -> bytes:
    """``f_i``: ``add rbx, 1; jmp f_{i+1}`` (9 bytes, 7 bytes padding); the last: ``hlt``."""
    out = bytearray()
    for _ in range(n):
        out += b"\x48\x83\xc3\x01\xe9" + (SLOT - 9).to_bytes(4, "little", signed=True) + bytes(SLOT - 9)
    return bytes(out) + b"\xf4"


class Population:
    """``n`` blocks translated on one engine, seen by both the layer and the naive wrapper."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.raw = _x86()
        self.size = max(BIG, (n * SLOT + 0x10000) & ~0xFFFF)
        self.raw.mem_map(CHAIN, self.size)
        self.raw.mem_write(CHAIN, _chain(n))
        self.layer = CoherentUc(self.raw)
        self.naive = NaiveUc(self.raw)
        self.translate()

    def translate(self) -> None:
        self.raw.emu_start(CHAIN, CHAIN + self.n * SLOT)

    def write_cost(self, mode: str, hit: bool, k: int, rng: random.Random) -> float:
        """Median seconds of one 8-byte host write through ``mode``."""
        write = self.layer.mem_write if mode == "layer" else self.naive.mem_write
        times = []
        for _ in range(k):
            f = CHAIN + SLOT * rng.randrange(self.n)
            address = f if hit else f + 9  # the add (a hit) / the padding after the jmp (a miss)
            data = bytes(self.raw.mem_read(address, 7 if not hit else 8))  # unchanged bytes
            t0 = time.perf_counter()
            write(address, data)
            times.append(time.perf_counter() - t0)
            if hit:
                self.raw.ctl_request_cache(f)  # translate it again: constant population
        return _median(times)

    def big_write_cost(self, mode: str) -> float:
        data = bytes(self.raw.mem_read(CHAIN, BIG))
        self.translate()
        write = _writer(mode, self.layer if mode == "layer" else self.raw)
        t0 = time.perf_counter()
        write(CHAIN, data)
        return time.perf_counter() - t0

    def hook_cost(self, mode: str) -> float:
        self.translate()
        target: Any = self.layer if mode == "layer" else self.naive
        t0 = time.perf_counter()
        handle = target.hook_add(unicorn.UC_HOOK_CODE, _nothing, None, 1, 0)
        target.hook_del(handle)
        return time.perf_counter() - t0


def _nothing(*args: object) -> None:
    return None


# --------------------------------------------------------------------------- 4. user caches


def cache_costs(n: int, k: int) -> dict[str, tuple[float, float, int]]:
    """kind -> (median total per host write, median cache-invalidation part, stale entries)."""
    out: dict[str, tuple[float, float, int]] = {}
    for kind in ex.KINDS:
        cache, uc = ex.make(kind, n)
        ex.fill(cache, n)
        rng = random.Random(SEED)
        kk = k if kind != "dict scan" else max(10, min(k, 2_000_000 // n))
        totals: list[float] = []
        parts: list[float] = []
        for _ in range(ROUNDS):
            writes = ex.storm(rng, n, kk)
            for address, data in writes:
                t0 = time.perf_counter()
                cache.write(address, data)
                totals.append(time.perf_counter() - t0)
            _refill(cache, writes)
            writes = ex.storm(rng, n, kk)
            for address, data in writes:
                parts.append(_invalidation_part(kind, cache, uc, address, data))
            _refill(cache, writes)
        out[kind] = (_median(totals), _median(parts), ex.stale_entries(cache, uc, n) if n <= 10_000 else -1)
        if isinstance(uc, CoherentUc):
            uc.close()
    return out


def _refill(cache: Any, writes: list[tuple[int, bytes]]) -> None:
    """Decode again the entries a storm dropped: the next storm meets a full cache."""
    for address, _ in writes:
        cache.get(address & ~(ex.STRIDE - 1))


def _invalidation_part(kind: str, cache: Any, uc: Any, address: int, data: bytes) -> float:
    """The cache's own work for one host write (Unicorn's part done beforehand, untimed)."""
    end = address + len(data)
    if kind == "mmn_fast":
        unicorn.Uc.mem_write(uc, address, data)
        t0 = time.perf_counter()
        rng = Range(address, end, Event.CLEAR)  # what CoherentUc.mem_write adds for its mm
        uc.mm.invalidate_range_start(rng)
        uc.mm.invalidate_range_end(rng)
        cache._evict()
        return time.perf_counter() - t0
    uc.mem_write(address, data)
    uc.ctl_remove_cache(address, end)
    saved = cache._uc
    cache._uc = _NoWrite()
    t0 = time.perf_counter()
    cache.write(address, data)
    dt = time.perf_counter() - t0
    cache._uc = saved
    return dt


class _NoWrite:
    """Stands in for the naive wrapper while only the cache's bookkeeping is timed."""

    def mem_write(self, address: int, data: bytes) -> None:
        return None


# --------------------------------------------------------------------------- report


def _us(x: float) -> str:
    return f"{x * 1e6:10.2f}"


def _verdict(ok: bool, ratio: float) -> str:
    return f"{'met' if ok else 'MISSED'} ({ratio:.2f}x)"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, shorter rounds")
    args = ap.parse_args()
    quick = args.quick
    frames = 60 if quick else 300
    sizes = [1_000, 100_000] if quick else [1_000, 100_000, 1_000_000]
    cache_sizes = [1_000, 10_000, 100_000]
    k = 200 if quick else 1000
    verdicts: list[str] = []
    print(f"unicorn {unicorn.__version__}; medians of {ROUNDS} rounds; all times in microseconds\n")

    # 1. guest speed
    print(f"1. guest speed, Minsn/s (loop over {N_FUNCS} functions, frames of {FRAME} instructions)")
    print(f"{'':>22}" + "".join(f"{m:>10}" for m in MODES))
    speed: dict[tuple[str, int], float] = {}
    for writes in (0, 8):
        results: dict[str, list[float]] = {m: [] for m in MODES}
        rbx: dict[str, int] = {}
        for r in range(ROUNDS):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                minsn, rbx[mode] = guest_speed(mode, frames, writes)
                results[mode].append(minsn)
        for m in MODES:
            speed[(m, writes)] = _median(results[m])
        label = "no host writes" if writes == 0 else f"storm ({writes} writes/frame)"
        print(f"{label:>22}" + "".join(f"{speed[(m, writes)]:10.2f}" for m in MODES))
        if writes:
            assert rbx["layer"] == rbx["naive"] == rbx["flush"], rbx  # the coherent modes agree
    r0 = speed[("layer", 0)] / speed[("plain", 0)]
    r1 = speed[("layer", 8)] / speed[("naive", 8)]
    verdicts.append(f"guest speed, no host writes: layer >= 0.95x plain: {_verdict(r0 >= 0.95, r0)}")
    verdicts.append(f"guest speed, storm: layer >= 0.95x naive: {_verdict(r1 >= 0.95, r1)}")

    # 2. one host write
    print("\n2. one 8-byte host write, median us (same engine; layer and naive wrapper)")
    print(f"{'blocks':>10}{'naive hit':>12}{'layer hit':>12}{'naive miss':>12}{'layer miss':>12}")
    pop = None
    for n in sizes:
        pop = Population(n)
        rng = random.Random(SEED)
        cost: dict[tuple[str, bool], list[float]] = {}
        for r in range(ROUNDS):
            for mode in ("naive", "layer") if r % 2 == 0 else ("layer", "naive"):
                for hit in (True, False):
                    cost.setdefault((mode, hit), []).append(pop.write_cost(mode, hit, k, rng))
        med = {key: _median(v) for key, v in cost.items()}
        print(f"{n:>10}" + "".join(_us(med[(m, h)]) + "  " for h in (True, False) for m in ("naive", "layer")))
        for hit in (True, False):
            ratio = med[("layer", hit)] / med[("naive", hit)]
            verdicts.append(
                f"host write ({'hit' if hit else 'miss'}) at {n} blocks: layer <= naive: {_verdict(ratio <= 1.0, ratio)}"
            )
    assert pop is not None

    # 3. big mutations, at the largest population
    print(f"\n3. at {pop.n} blocks, median us")
    big = {m: _median([pop.big_write_cost(m) for _ in range(ROUNDS)]) for m in ("naive", "flush", "layer")}
    hook = {m: _median([pop.hook_cost(m) for _ in range(ROUNDS)]) for m in ("naive", "layer")}
    print(f"{'':>28}{'naive':>12}{'flush':>12}{'layer':>12}")
    print(f"{'4 MiB host write':>28}{_us(big['naive'])}  {_us(big['flush'])}  {_us(big['layer'])}")
    print(f"{'whole-space hook add+del':>28}{_us(hook['naive'])}  {'':>10}  {_us(hook['layer'])}")
    for label, d in (("4 MiB write", big), ("whole-space hook add/remove", hook)):
        ratio = d["layer"] / d["naive"]
        verdicts.append(f"{label}: layer <= naive: {_verdict(ratio <= 1.0, ratio)}")

    # 4. user caches
    print("\n4. instruction cache (Capstone), per host write, median us: total | cache's own invalidation")
    print(f"{'blocks':>10}" + "".join(f"{kind:>24}" for kind in ex.KINDS))
    for n in cache_sizes:
        c = cache_costs(n, k)
        print(f"{n:>10}" + "".join(f"{_us(c[kind][0])} |{_us(c[kind][1])}  " for kind in ex.KINDS))
        for kind in ex.KINDS:
            assert c[kind][2] in (0, -1), (kind, c[kind])  # no stale entry
        vs_scan = c["dict scan"][1] / c["mmn_fast"][1]
        vs_page = c["page index"][1] / c["mmn_fast"][1]
        if n == 100_000:
            verdicts.append(f"cache invalidation at {n}: >= 10x cheaper than the dict scan: {_verdict(vs_scan >= 10, vs_scan)}")
        verdicts.append(f"cache invalidation at {n}: not slower than the page index: {_verdict(vs_page >= 1.0, vs_page)}")

    print("\ntargets (ratio: layer/peer for speeds and costs, peer/mmn_fast for the cache):")
    for v in verdicts:
        print("  " + v)


if __name__ == "__main__":
    main()
