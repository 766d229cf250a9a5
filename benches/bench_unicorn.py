"""Benchmark: keeping Unicorn's translation cache coherent, three ways.

Part 1, scaling (synthetic cached blocks): with 1k, 10k, 100k and 1M blocks held as cached,
the cost of one 8-byte host write done

  (a) through the layer (``CoherentUc.mem_write``: one invalidation on its MM, a native
      interval-tree lookup; for a hit, ``ctl_remove_cache`` of the block reached),
  (b) as ``uc.mem_write`` + a full ``uc.ctl_flush_tb()`` (what a user does without ranges;
      the re-translation it forces afterwards is not counted here, see part 2),
  (c) as ``uc.mem_write`` + a Python dict of blocks scanned for overlap
      (+ ``ctl_remove_cache`` of each hit),
  (d) as a bare ``uc.mem_write`` (incoherent; the floor).

Writes that touch no cached block ("miss", the common case: data) and writes that hit one
block ("hit", code patches) are timed apart. The blocks are synthetic subscriptions made
through the layer's own learning path; Unicorn memory of the whole range is mapped.

Part 2, storm: a generated x86-64 guest with 2,000 functions called in a loop runs in
frames of 5,000 instructions; after every frame the host patches one function and makes
seven data writes. Each mode runs the same frames and writes; the achieved invalidation rate
(>= 700/s is the target) and guest speed are reported, and the coherent modes' results are
checked equal.

    python benches/bench_unicorn.py            # full: 1k..1M, 5 s storms
    python benches/bench_unicorn.py --quick    # < 1 min: 1k..100k, 1 s storms
    pytest benches/bench_unicorn.py            # the quick checks as tests (pytest-benchmark optional)

No numbers are pasted in the docs: run the command.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import pytest

import unicorn
from unicorn import x86_const

from mmn_fast.unicorn import CoherentUc

SEED = 0x5EED
SLOT = 64  # one synthetic block per 64 bytes: [start, start + 32) cached, the rest data
BLOCK = 32
BASE = 0x1000_0000


# --------------------------------------------------------------------------- part 1


def _make(n_blocks: int) -> tuple[unicorn.Uc, CoherentUc, dict[int, int]]:
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    size = max(0x1000, (n_blocks * SLOT + 0xFFF) & ~0xFFF)
    uc.mem_map(BASE, size)
    layer = CoherentUc(uc, track_guest_writes=False)
    blocks: dict[int, int] = {}
    for i in range(n_blocks):
        start = BASE + i * SLOT
        layer._learn(start, BLOCK)  # synthetic: what the block hook records per translation
        blocks[start] = BLOCK
    return uc, layer, blocks


def _dict_scan(blocks: dict[int, int], start: int, end: int) -> list[int]:
    return [s for s, size in blocks.items() if s < end and s + size > start]


def _per_call(fn: Callable[[int], None], addresses: list[int], min_time: float) -> float:
    """Seconds per call of ``fn(address)``, best of a few rounds of ``addresses``."""
    rounds: list[float] = []
    spent = 0.0
    while spent < min_time or len(rounds) < 3:
        t0 = time.perf_counter()
        for a in addresses:
            fn(a)
        dt = time.perf_counter() - t0
        rounds.append(dt / len(addresses))
        spent += dt
        if len(rounds) >= 50:
            break
    return min(rounds)


def scaling(sizes: list[int], min_time: float) -> list[dict[str, float]]:
    rng = random.Random(SEED)
    data = b"\x90" * 8
    rows: list[dict[str, float]] = []
    for n in sizes:
        uc, layer, blocks = _make(n)
        k = 200 if n <= 100_000 else 100
        misses = [BASE + rng.randrange(n) * SLOT + BLOCK + 8 for _ in range(k)]
        hits = [BASE + rng.randrange(n) * SLOT + 8 for _ in range(k)]
        # answers checked before timing: the layer and the dict scan agree
        for a in misses[:5] + hits[:5]:
            expect = _dict_scan(blocks, a, a + 8)
            layer.reset_stats()
            layer.mem_write(a, data)
            assert sorted(layer.stats.dropped) == expect, (a, expect, layer.stats.dropped)
            for s in expect:
                layer._learn(s, BLOCK)
        assert len(layer) == n

        def layer_miss(a: int) -> None:
            layer.mem_write(a, data)

        def layer_hit(a: int) -> None:
            layer.mem_write(a, data)
            layer._learn(a - 8, BLOCK)  # keep the population constant (re-translation)

        def flush(a: int) -> None:
            uc.mem_write(a, data)
            uc.ctl_flush_tb()

        def dict_scan(a: int) -> None:
            uc.mem_write(a, data)
            for s in _dict_scan(blocks, a, a + 8):
                uc.ctl_remove_cache(s, s + blocks[s])

        def bare(a: int) -> None:
            uc.mem_write(a, data)

        scan_addrs = misses[: max(3, min(k, 2_000_000 // n))]
        row = {
            "blocks": float(n),
            "layer_miss": _per_call(layer_miss, misses, min_time),
            "layer_hit": _per_call(layer_hit, hits, min_time),
            "flush_tb": _per_call(flush, misses, min_time),
            "dict_scan": _per_call(dict_scan, scan_addrs, min_time),
            "bare": _per_call(bare, misses, min_time),
        }
        rows.append(row)
        layer.close()
    return rows


# --------------------------------------------------------------------------- part 2

N_FUNCS = 2000
FRAME_INSNS = 5_000
WRITES_PER_FRAME = 8
MAIN = 0x10_0000
FUNCS = 0x20_0000
DATA = 0x30_0000
STACK = 0x40_0000


def _storm_guest() -> tuple[bytes, bytes, int]:
    """main: ``loop: call f_0; ...; call f_1999; dec rcx; jnz loop; hlt``;
    ``f_i`` at FUNCS + 16*i: ``add rbx, 1; ret`` (48 83 c3 01 c3)."""
    main = bytearray(b"\x48\xc7\xc1\xff\xff\xff\x7f")  # mov rcx, 0x7fffffff
    loop = MAIN + len(main)
    for i in range(N_FUNCS):
        here = MAIN + len(main)
        main += b"\xe8" + ((FUNCS + 16 * i) - (here + 5)).to_bytes(4, "little", signed=True)
    main += b"\x48\xff\xc9"  # dec rcx
    here = MAIN + len(main)
    main += b"\x0f\x85" + (loop - (here + 6)).to_bytes(4, "little", signed=True)  # jnz loop
    until = MAIN + len(main)
    main += b"\xf4"  # hlt
    funcs = b"".join(b"\x48\x83\xc3\x01\xc3" + b"\x90" * 11 for _ in range(N_FUNCS))
    return bytes(main), funcs, until


def storm(mode: str, seconds: float, frame_insns: int, writes_per_frame: int) -> dict[str, float]:
    main, funcs, until = _storm_guest()
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    for base, size in ((MAIN, 0x10000), (FUNCS, 0x10000), (DATA, 0x10000), (STACK, 0x1000)):
        uc.mem_map(base, size)
    layer = CoherentUc(uc) if mode == "layer" else None
    write = layer.mem_write if layer is not None else uc.mem_write
    write(MAIN, main)
    write(FUNCS, funcs)
    uc.reg_write(x86_const.UC_X86_REG_RSP, STACK + 0x800)
    uc.reg_write(x86_const.UC_X86_REG_RBX, 0)
    rng = random.Random(SEED)
    pc = MAIN
    frames = writes = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        uc.emu_start(pc, until, count=frame_insns)
        pc = uc.reg_read(x86_const.UC_X86_REG_RIP)
        # one code patch (alternate the immediate 1 <-> 2) and data writes
        f = FUNCS + 16 * rng.randrange(N_FUNCS)
        write(f + 3, bytes([1 + (frames & 1)]))
        for _ in range(writes_per_frame - 1):
            write(DATA + 8 * rng.randrange(0x1000), b"\0" * 8)
        if mode == "flush":
            uc.ctl_flush_tb()
        writes += writes_per_frame
        frames += 1
    elapsed = time.perf_counter() - t0
    result = {
        "frames": float(frames),
        "invalidations_per_s": writes / elapsed,
        "guest_minsn_per_s": frames * frame_insns / elapsed / 1e6,
        "rbx": float(uc.reg_read(x86_const.UC_X86_REG_RBX)),
    }
    if layer is not None:
        result["tb_removals"] = float(layer.stats.tb_removals)
        layer.close()
    return result


def storm_check(frames: int, frame_insns: int) -> None:
    """The same fixed frames through the layer and with a flush per write: equal results."""
    results = []
    for mode in ("layer", "flush"):
        main, funcs, until = _storm_guest()
        uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        for base, size in ((MAIN, 0x10000), (FUNCS, 0x10000), (STACK, 0x1000)):
            uc.mem_map(base, size)
        layer = CoherentUc(uc) if mode == "layer" else None
        write = layer.mem_write if layer is not None else uc.mem_write
        write(MAIN, main)
        write(FUNCS, funcs)
        uc.reg_write(x86_const.UC_X86_REG_RSP, STACK + 0x800)
        rng = random.Random(SEED)
        pc = MAIN
        for frame in range(frames):
            uc.emu_start(pc, until, count=frame_insns)
            pc = uc.reg_read(x86_const.UC_X86_REG_RIP)
            write(FUNCS + 16 * rng.randrange(N_FUNCS) + 3, bytes([1 + (frame & 1) * 9]))
            if mode == "flush":
                uc.ctl_flush_tb()
        results.append(uc.reg_read(x86_const.UC_X86_REG_RBX))
    assert results[0] == results[1], results


# --------------------------------------------------------------------------- report


def _us(x: float) -> str:
    return f"{x * 1e6:9.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k..100k blocks, 1 s storms (< 1 min)")
    ap.add_argument("--storm-seconds", type=float, default=None)
    args = ap.parse_args()
    sizes = [1_000, 10_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    seconds = args.storm_seconds or (1.0 if args.quick else 5.0)
    min_time = 0.05 if args.quick else 0.3

    print(f"unicorn {unicorn.__version__}; per host write of 8 bytes, microseconds (best round)")
    print(f"{'blocks':>9} {'layer miss':>10} {'layer hit':>10} {'flush_tb':>9} {'dict scan':>10} "
          f"{'bare':>9} | {'flush/layer':>11} {'scan/layer':>10} {'layer/bare':>10}")
    for r in scaling(sizes, min_time):
        print(f"{int(r['blocks']):>9} {_us(r['layer_miss']):>10} {_us(r['layer_hit']):>10} "
              f"{_us(r['flush_tb'])} {_us(r['dict_scan']):>10} {_us(r['bare'])} | "
              f"{r['flush_tb'] / r['layer_miss']:>11.1f} {r['dict_scan'] / r['layer_miss']:>10.1f} "
              f"{r['layer_miss'] / r['bare']:>10.1f}")

    storm_check(frames=40, frame_insns=5_000)
    print(f"\nstorm: {N_FUNCS} guest functions, frames of {FRAME_INSNS} instructions, "
          f"{WRITES_PER_FRAME} host writes per frame (1 code patch + data), {seconds:g} s per mode")
    rows = {mode: storm(mode, seconds, FRAME_INSNS, WRITES_PER_FRAME) for mode in ("layer", "flush", "plain")}
    print(f"{'mode':>6} {'inval/s':>9} {'guest Minsn/s':>14} {'frames':>7}")
    for mode, r in rows.items():
        print(f"{mode:>6} {r['invalidations_per_s']:>9.0f} {r['guest_minsn_per_s']:>14.2f} "
              f"{int(r['frames']):>7}")
    lay, fl, pl = rows["layer"], rows["flush"], rows["plain"]
    print(f"layer vs flush-per-write guest speed: {lay['guest_minsn_per_s'] / fl['guest_minsn_per_s']:.2f}x; "
          f"layer vs plain (incoherent): {lay['guest_minsn_per_s'] / pl['guest_minsn_per_s']:.2f}x; "
          f"layer storm rate {'>=' if lay['invalidations_per_s'] >= 700 else '<'} 700/s")


# --------------------------------------------------------------------------- as tests


def test_scaling_quick() -> None:
    (row,) = scaling([1_000], 0.01)
    assert row["layer_miss"] > 0


def test_storm_coherent_and_fast_enough() -> None:
    storm_check(frames=20, frame_insns=5_000)
    r = storm("layer", 0.5, FRAME_INSNS, WRITES_PER_FRAME)
    assert r["invalidations_per_s"] >= 700, r


def test_layer_write_with_pytest_benchmark(request: pytest.FixtureRequest) -> None:
    """Times one layer write (miss) at 10k blocks when pytest-benchmark is installed."""
    import pytest

    pytest.importorskip("pytest_benchmark")
    benchmark = request.getfixturevalue("benchmark")
    uc, layer, blocks = _make(10_000)
    address = BASE + 5_000 * SLOT + BLOCK + 8
    benchmark(layer.mem_write, address, b"\x90" * 8)
    assert not layer.stats.dropped and len(layer) == 10_000
    layer.close()


if __name__ == "__main__":
    main()
