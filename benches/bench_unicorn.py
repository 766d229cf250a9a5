"""Benchmark: keeping Unicorn coherent, four ways side by side, medians of 3 rounds.

Modes: ``plain`` (bare Unicorn, incoherent: the floor), ``naive`` (the 30-line wrapper,
``NaiveUc`` in examples/unicorn_insn_cache.py: ``ctl_remove_cache`` after every host write),
``flush`` (``ctl_flush_tb`` after every host write) and ``layer`` (``mmn_fast.unicorn.CoherentUc``).
All on real translated blocks (x86-64 guests generated here).

1. Guest speed: a guest calling 2,000 functions in a loop, run in frames of two iterations
   (12,004 instructions); with no host writes, and in a storm (after every frame one code patch
   and seven data writes).
2. One host write (8 bytes), hit (a cached block) or miss (padding beside cached blocks), with
   10^3, 10^5 (and 10^6 without ``--quick``) blocks translated, each write timed alone; a hit
   block is translated again (untimed) before the next write.
3. A 4 MiB write over the code, and a whole-space code hook added and deleted, with 10^5
   blocks cached (re-translated, untimed, before each).
4. The user-cache demo (examples/unicorn_insn_cache.py): a Capstone instruction cache over a
   guest of 10^3..10^5 blocks kept by ``layer.mm``, by a dict scan and by a per-page dict index:
   cost per host write in total, and of the cache's own invalidation alone.

    python benches/bench_unicorn.py            # full
    python benches/bench_unicorn.py --quick    # well under a minute (make test runs it)

Times of whole frames and of the big mutations are CPU time of this process (the machine is
shared; time spent descheduled is not the emulator's); single host writes are wall-clock
medians of many.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import random
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

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
ITERATIONS = 8  # loop iterations per frame
FRAME = ITERATIONS * (3 * N_FUNCS + 2)  # guest instructions per frame
MAIN, FUNCS, DATA, STACK = 0x10_0000, 0x20_0000, 0x30_0000, 0x40_0000


def _loop_guest() -> tuple[bytes, bytes, int]:
    """main: ``loop: call f_0 .. f_1999; dec rcx; jnz loop; hlt``; ``f_i``: ``add rbx, 1; ret``.

    The host sets rcx before each frame: no instruction count (``emu_start(count=...)``
    instruments every instruction), the guest stops on its own.
    """
    main = bytearray()
    for i in range(N_FUNCS):
        here = MAIN + len(main)
        main += b"\xe8" + ((FUNCS + 16 * i) - (here + 5)).to_bytes(4, "little", signed=True)
    main += b"\x48\xff\xc9"  # dec rcx
    here = MAIN + len(main)
    main += b"\x0f\x85" + (MAIN - (here + 6)).to_bytes(4, "little", signed=True)  # jnz loop
    until = MAIN + len(main)
    main += b"\xf4"
    funcs = b"".join(b"\x48\x83\xc3\x01\xc3" + b"\x90" * 11 for _ in range(N_FUNCS))
    return bytes(main), funcs, until


class Guest:
    """The loop guest on one emulator of ``mode``, run frame by frame."""

    def __init__(self, mode: str, seed: int) -> None:
        main, funcs, self.until = _loop_guest()
        self.uc: Any = CoherentUc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64) if mode == "layer" else _x86()
        for base in (MAIN, FUNCS, DATA, STACK):
            self.uc.mem_map(base, 0x10000)
        self.uc.mem_write(MAIN, main)
        self.uc.mem_write(FUNCS, funcs)
        self.uc.reg_write(x86_const.UC_X86_REG_RSP, STACK + 0x800)
        self.write = _writer(mode, self.uc)
        self.rng = random.Random(seed)
        self.frames = 0
        self.frame(0)  # warm: translate

    def frame(self, writes: int) -> float:
        """Run one frame, then ``writes`` host writes; return the CPU seconds it took."""
        t0 = time.process_time()
        self.uc.reg_write(x86_const.UC_X86_REG_RCX, ITERATIONS)
        self.uc.emu_start(MAIN, self.until)
        if writes:
            self.write(FUNCS + 16 * self.rng.randrange(N_FUNCS) + 3, bytes([1 + (self.frames & 1)]))
            for _ in range(writes - 1):
                self.write(DATA + 8 * self.rng.randrange(0x1000), bytes(8))
        self.frames += 1
        return time.process_time() - t0


def guest_speed(frames: int, writes: int) -> tuple[dict[str, float], dict[str, int]]:
    """Guest Minsn/s per mode over ``frames`` frames, the modes run frame by frame in turn (so
    that the machine's load drifts alike for all), and each mode's final rbx.

    The emulators are made in a random order after a first one that is never timed: the first
    emulator of a process runs this guest up to ~20% faster than the next ones (where Unicorn's
    code buffer lands), whatever its mode.
    """
    guests = {mode: Guest(mode, SEED) for mode in random.sample(MODES, len(MODES))}
    spent = dict.fromkeys(MODES, 0.0)
    for k in range(frames):
        for mode in MODES[k % 4 :] + MODES[: k % 4]:
            spent[mode] += guests[mode].frame(writes)
    speed = {mode: frames * FRAME / spent[mode] / 1e6 for mode in MODES}
    return speed, {mode: g.uc.reg_read(x86_const.UC_X86_REG_RBX) for mode, g in guests.items()}


# --------------------------------------------------------------------------- 2, 3. host writes

CHAIN = 0x1000_0000
SLOT = 16
BIG = 4 << 20
BIG_AT = 100_000  # blocks cached for the big mutations


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

    def write_costs(self, hit: bool, k: int, rng: random.Random) -> dict[str, float]:
        """Median seconds of one 8-byte host write, naive wrapper and layer in turn."""
        writers = {"naive": self.naive.mem_write, "layer": self.layer.mem_write}
        times: dict[str, list[float]] = {"naive": [], "layer": []}
        for i in range(k):
            for mode in ("naive", "layer") if i % 2 else ("layer", "naive"):
                f = CHAIN + SLOT * rng.randrange(self.n)
                address = f if hit else f + 9  # the add (a hit) / the padding after the jmp (a miss)
                data = bytes(self.raw.mem_read(address, 7 if not hit else 8))  # unchanged bytes
                t0 = time.perf_counter()
                writers[mode](address, data)
                times[mode].append(time.perf_counter() - t0)
                if hit:
                    self.raw.ctl_request_cache(f)  # translate it again: constant population
        return {mode: _median(t) for mode, t in times.items()}

    def big_write_cost(self, mode: str) -> float:
        data = bytes(self.raw.mem_read(CHAIN, BIG))
        self.translate()
        write = _writer(mode, self.layer if mode == "layer" else self.raw)
        t0 = time.process_time()
        write(CHAIN, data)
        return time.process_time() - t0

    def hook_cost(self, mode: str) -> float:
        self.translate()
        target: Any = self.layer if mode == "layer" else self.naive
        t0 = time.process_time()
        handle = target.hook_add(unicorn.UC_HOOK_CODE, _nothing, None, 1, 0)
        target.hook_del(handle)
        return time.process_time() - t0


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
    frames = 20 if quick else 200
    sizes = [1_000, 100_000] if quick else [1_000, 100_000, 1_000_000]
    cache_sizes = [1_000, 10_000, 100_000]
    k = 100 if quick else 1000
    verdicts: list[str] = []
    _first = Guest("plain", SEED)  # the process's first emulator, never timed (see guest_speed)
    print(f"unicorn {unicorn.__version__}; medians of {ROUNDS} rounds; all times in microseconds\n")

    # 1. guest speed
    print(f"1. guest speed, Minsn/s (loop over {N_FUNCS} functions, frames of {FRAME} instructions)")
    print(f"{'':>22}" + "".join(f"{m:>10}" for m in MODES))
    speed: dict[tuple[str, int], float] = {}
    for writes in (0, 8):
        rounds = [guest_speed(frames, writes) for _ in range(ROUNDS)]
        for m in MODES:
            speed[(m, writes)] = _median([r[0][m] for r in rounds])
        label = "no host writes" if writes == 0 else f"storm ({writes} writes/frame)"
        print(f"{label:>22}" + "".join(f"{speed[(m, writes)]:10.2f}" for m in MODES))
        if writes:
            rbx = rounds[0][1]
            assert rbx["layer"] == rbx["naive"] == rbx["flush"], rbx  # the coherent modes agree
    r0 = speed[("layer", 0)] / speed[("plain", 0)]
    r1 = speed[("layer", 8)] / speed[("naive", 8)]
    verdicts.append(f"guest speed, no host writes: layer >= 0.95x plain: {_verdict(r0 >= 0.95, r0)}")
    verdicts.append(f"guest speed, storm: layer >= 0.95x naive: {_verdict(r1 >= 0.95, r1)}")

    # 2. one host write
    print("\n2. one 8-byte host write, median us (same engine; layer and naive wrapper)")
    print(f"{'blocks':>10}{'naive hit':>12}{'layer hit':>12}{'naive miss':>12}{'layer miss':>12}")
    big_at: Population | None = None
    for n in sizes:
        pop = Population(n)
        if n == BIG_AT:
            big_at = pop
        rng = random.Random(SEED)
        cost: dict[tuple[str, bool], list[float]] = {}
        for _ in range(ROUNDS):
            for hit in (True, False):
                for mode, t in pop.write_costs(hit, k, rng).items():
                    cost.setdefault((mode, hit), []).append(t)
        med = {key: _median(v) for key, v in cost.items()}
        print(f"{n:>10}" + "".join(_us(med[(m, h)]) + "  " for h in (True, False) for m in ("naive", "layer")))
        for hit in (True, False):
            ratio = med[("layer", hit)] / med[("naive", hit)]
            verdicts.append(
                f"host write ({'hit' if hit else 'miss'}) at {n} blocks: layer <= naive: {_verdict(ratio <= 1.0, ratio)}"
            )
    del pop
    assert big_at is not None

    # 3. big mutations: each round keeps the best of ``samples`` (re-translating 10^5 blocks
    # before each sample; the same one ranged call or flush in both modes, so the spread is noise)
    samples = 1 if quick else 3
    print(f"\n3. at {big_at.n} blocks, median us (of rounds, each the best of {samples})")
    big_samples: dict[str, list[float]] = {"naive": [], "flush": [], "layer": []}
    hook_samples: dict[str, list[float]] = {"naive": [], "layer": []}
    for r in range(ROUNDS):  # the modes in turn, order alternating
        for m in ("naive", "flush", "layer") if r % 2 == 0 else ("layer", "flush", "naive"):
            big_samples[m].append(min(big_at.big_write_cost(m) for _ in range(samples)))
        for m in ("naive", "layer") if r % 2 == 0 else ("layer", "naive"):
            hook_samples[m].append(min(big_at.hook_cost(m) for _ in range(samples)))
    big = {m: _median(v) for m, v in big_samples.items()}
    hook = {m: _median(v) for m, v in hook_samples.items()}
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
