"""The notifier workloads: ``mmn_fast.MM`` against the pure-Python baseline (``py_notifier``)."""

from __future__ import annotations

import bisect
import gc
import random
import sys
import tracemalloc
from array import array
from collections.abc import Callable
from typing import Any

from .data import (
    OUTSIDE,
    PAGE,
    SEED,
    SPACE_PAGES,
    BruteForce,
    inside_queries,
    intervals,
    random_queries,
)
from .measure import Sink, WrongAnswer, check_counts, guard, rss_bytes, time_batches


def _mm_classes(name: str) -> tuple[Any, Any]:
    if name == "mmn_fast.MM":
        from mmn_fast import MM, Range

        return MM, Range
    from .py_notifier import PyMM, PyRange

    return PyMM, PyRange


def _ranges(pairs: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Closed queries to half-open ``[start, end)`` arrays."""
    return [a for a, _ in pairs], [b + 1 for _, b in pairs]


def run_mm_worker(name: str, cfg: dict[str, Any], sink: Sink) -> None:
    MMcls, RangeCls = _mm_classes(name)
    native = name == "mmn_fast.MM"
    rep = cfg["repeat"]
    sizes = cfg["mm_sizes"] if native else cfg["baseline_sizes"]
    for size in sizes:
        starts, lasts = intervals(size, SEED + 10)

        def nohit(size: int = size, starts: list[int] = starts, lasts: list[int] = lasts) -> None:
            gc.collect()
            rss0 = rss_bytes()
            tracemalloc.start()
            mm = MMcls()
            ins = mm.insert_interval_notifier
            for i, (s, l) in enumerate(zip(starts, lasts, strict=True)):
                ins(s, l + 1 - s, None, tag=i)
            traced, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss1 = rss_bytes()
            if len(mm) != size:
                raise WrongAnswer(f"{name}: len {len(mm)} after {size} inserts")
            sink.result(f"memory per native subscription (RSS B) @{size}", None, value=(rss1 - rss0) / size, unit="B", subs=size)
            sink.result(f"memory per native subscription (traced B) @{size}", None, value=traced / size, unit="B", subs=size)
            core = getattr(sys.modules.get("mmn_fast._mmn_fast"), "SUB_NODE_BYTES", None)
            if core is not None and name == "mmn_fast.MM":
                # Its node and slot, and its share of what the core keeps beside the tree.
                core += mm._side_bytes() / size
                sink.result(f"memory per native subscription (core B) @{size}", None, value=float(core), unit="B", subs=size)
            oracle = BruteForce(starts, lasts)
            gap = _find_gap(oracle, SEED + 11)
            ops = cfg["nohit_ops"]
            start, end = mm.invalidate_range_start, mm.invalidate_range_end
            for where, (a, b) in (("outside span", (OUTSIDE, OUTSIDE + PAGE)), ("in a gap", gap)):
                r = RangeCls(a, b)
                start(r)
                end(r)
                if mm.drain_invalidated() or mm.invalidate_seq % 2 or mm.active_invalidate_ranges:
                    raise WrongAnswer(f"{name}: a no-hit range invalidated something")
                loop = range(ops)

                def pair(rr: int, r: Any = r) -> Callable[[], None]:
                    def run() -> None:
                        for _ in loop:  # noqa: B023 - timed at once, in this iteration
                            start(r)
                            end(r)

                    return run

                sink.result(f"no-hit start+end ({where}) @{size}", time_batches(pair, ops, rep), subs=size)
            def no_hit_pairs(label: str, ranges: list[Any]) -> None:
                """Time start+end over ``ranges`` in turn, none of which may hit."""

                def batch(rr: int) -> Callable[[], None]:
                    def run() -> None:
                        for r in ranges:
                            start(r)
                            end(r)

                    return run

                batch(0)()
                if mm.drain_invalidated() or mm.invalidate_seq % 2 or mm.active_invalidate_ranges:
                    raise WrongAnswer(f"{name}: a no-hit range ({label}) invalidated something")
                sink.result(f"no-hit start+end ({label}) @{size}", time_batches(batch, len(ranges), rep), subs=size)

            # The rows above repeat one range, which a start that remembers its last empty range
            # answers without a walk. Pages in a few hundred distinct gaps, in turn, are what
            # the native notifier's page cache holds; as many distinct pages as there are
            # pairs (more than it holds) measure what a new page costs (the occupied blocks'
            # probe, and the walk when they cannot rule it out).
            distinct = [RangeCls(a, b) for a, b in _find_gaps(oracle, SEED + 11, 256)]
            no_hit_pairs("distinct gaps", distinct * (ops // len(distinct)))
            scattered = [RangeCls(a, b) for a, b in _free_pages(starts, lasts, ops, SEED + 15)]
            no_hit_pairs("scattered pages, each once a pass", scattered)
            # A guest filling an unwatched buffer: 8-byte stores one after another through the
            # widest of the first 32 of those gaps (round again at its end), each a range of
            # its own.
            width, lo = max((_gap_width(oracle, a), a) for a, _ in _find_gaps(oracle, SEED + 11, 32))
            words = min(ops, width // 8)
            stores = [RangeCls(lo + 8 * (i % words), lo + 8 * (i % words) + 8) for i in range(ops)]
            no_hit_pairs("sequential stores in a gap", stores)
            if native:
                _empty_calls(mm, ops, rep, size, sink)

        guard(sink, f"no-hit start+end @{size}", nohit)

    size = cfg["stream_subs"]
    starts, lasts = intervals(size, SEED + 12)
    oracle = BruteForce(starts, lasts)
    total = cfg["stream_ranges"] if native else cfg["baseline_ranges"]
    chunk = min(cfg["stream_chunk"], total)
    hit_q = inside_queries(starts, lasts, total, SEED + 13, top=16)
    miss_q = random_queries(total, SEED + 14, top=16)
    check = cfg["check"]

    def callback_ops() -> tuple[Callable[..., bool], list[int]]:
        calls = [0]

        def invalidate(sub: Any, rng: Any, cur_seq: int) -> bool:
            sub.set_seq(cur_seq)
            calls[0] += 1
            return True

        return invalidate, calls

    def make_mm(callbacks: bool) -> tuple[Any, list[int]]:
        mm = MMcls()
        cb, calls = callback_ops()
        ops = cb if callbacks else None
        ins = mm.insert_interval_notifier
        for i, (s, l) in enumerate(zip(starts, lasts, strict=True)):
            ins(s, l + 1 - s, ops, tag=i)
        return mm, calls

    def stream(label: str, queries: list[tuple[int, int]], callbacks: bool) -> None:
        mm, calls = make_mm(callbacks)
        a, b = _ranges(queries)
        want = sum(oracle.count(x, y) for x, y in queries[:check])
        got = mm.invalidate_many(array("Q", a[:check]), array("Q", b[:check]))
        if got != want:
            raise WrongAnswer(f"{name} {label}: invalidate_many reached {got}, want {want}")
        if callbacks and calls[0] != want:
            raise WrongAnswer(f"{name} {label}: {calls[0]} callbacks, want {want}")
        distinct = len(mm.drain_invalidated())
        if not callbacks and want and distinct == 0:
            raise WrongAnswer(f"{name} {label}: nothing recorded for drain_invalidated")
        start, end = mm.invalidate_range_start, mm.invalidate_range_end
        nchunks = max(1, total // chunk)

        def pairs(r: int) -> Callable[[], None]:
            lo = ((r + 1) % nchunks) * chunk
            rs = [RangeCls(x, y) for x, y in zip(a[lo : lo + chunk], b[lo : lo + chunk], strict=True)]
            mm.drain_invalidated()

            def run() -> None:
                for r_ in rs:
                    start(r_)
                    end(r_)

            return run

        reps = max(rep, nchunks) if native else rep
        hits = sum(oracle.count(x, y) for x, y in queries[:check]) / max(1, check)
        sink.result(f"stream {label}: start+end", time_batches(pairs, chunk, reps), subs=size, ranges=chunk * reps, hits_per_range=hits)

        def many(r: int) -> Callable[[], None]:
            lo = ((r + 1) % nchunks) * chunk
            aa, bb = array("Q", a[lo : lo + chunk]), array("Q", b[lo : lo + chunk])
            mm.drain_invalidated()
            return lambda: mm.invalidate_many(aa, bb)

        sink.result(f"stream {label}: invalidate_many", time_batches(many, chunk, reps), subs=size)

    guard(sink, "stream hits, native", lambda: stream("hits, native", hit_q, False))
    guard(sink, "stream hits, callbacks", lambda: stream("hits, Python callbacks", hit_q, True))
    guard(sink, "stream mostly-missing, native", lambda: stream("mostly-missing, native", miss_q, False))

    if native:

        def bare() -> None:
            from mmn_fast import IntervalTree

            t = IntervalTree.from_arrays(array("Q", starts), array("Q", lasts))
            f = t.overlap
            got = [len(f(x, y)) for x, y in hit_q[:check]]
            check_counts("IntervalTree", got, [oracle.count(x, y) for x, y in hit_q[:check]], "bare")
            nchunks = max(1, total // chunk)

            def batch(r: int) -> Callable[[], None]:
                lo = ((r + 1) % nchunks) * chunk
                q = hit_q[lo : lo + chunk]

                def run() -> None:
                    for x, y in q:
                        f(x, y)

                return run

            sink.result("stream hits: bare IntervalTree.overlap", time_batches(batch, chunk, max(rep, nchunks)), subs=size)

        guard(sink, "stream hits: bare IntervalTree.overlap", bare)


def _find_gap(oracle: BruteForce, seed: int) -> tuple[int, int]:
    return _find_gaps(oracle, seed, 1)[0]


def _find_gaps(oracle: BruteForce, seed: int, k: int) -> list[tuple[int, int]]:
    """``k`` distinct one-page ranges ``[start, end)`` that overlap no subscription."""
    rng = random.Random(seed)
    found: dict[int, tuple[int, int]] = {}
    while len(found) < k:
        s = rng.randrange(SPACE_PAGES) * PAGE
        if oracle.count(s, s + PAGE - 1) == 0:
            found.setdefault(s, (s, s + PAGE))
    return list(found.values())


def _free_pages(starts: list[int], lasts: list[int], k: int, seed: int) -> list[tuple[int, int]]:
    """``k`` distinct one-page ranges ``[start, end)`` that overlap no interval, in random
    order: thousands of them (against the intervals' union, not a brute-force count each; the
    first few are checked against the brute force all the same)."""
    union_starts: list[int] = []
    union_lasts: list[int] = []
    for s, l in sorted(zip(starts, lasts, strict=True)):
        if union_lasts and s <= union_lasts[-1] + 1:
            union_lasts[-1] = max(union_lasts[-1], l)
        else:
            union_starts.append(s)
            union_lasts.append(l)
    rng = random.Random(seed)
    found: dict[int, tuple[int, int]] = {}
    while len(found) < k:
        a = rng.randrange(SPACE_PAGES) * PAGE
        # The last piece of the union that starts within the page or before it is the only
        # one that can reach into it (pieces are disjoint and sorted).
        i = bisect.bisect_right(union_starts, a + PAGE - 1) - 1
        if i < 0 or union_lasts[i] < a:
            found.setdefault(a, (a, a + PAGE))
    pages = list(found.values())
    oracle = BruteForce(starts, lasts)
    if any(oracle.count(a, b - 1) for a, b in pages[:20]):
        raise WrongAnswer("_free_pages found a page that overlaps an interval")
    return pages


def _gap_width(oracle: BruteForce, lo: int) -> int:
    """Bytes of empty space from ``lo`` (an empty page) on, in powers of two from a page
    to 1 MiB (enough for the stores)."""
    width = PAGE
    while width < 1 << 20 and oracle.count(lo, lo + 2 * width - 1) == 0:
        width *= 2
    return width


def _empty_calls(mm: Any, ops: int, rep: int, size: int, sink: Sink) -> None:
    """Two empty PyO3 calls on the same object, and the bare loop, for the no-hit ratio."""
    loop = range(ops)
    ln = len

    def two_len(r: int) -> Callable[[], None]:
        def run() -> None:
            for _ in loop:
                ln(mm)
                ln(mm)

        return run

    def two_attr(r: int) -> Callable[[], None]:
        def run() -> None:
            for _ in loop:
                mm.has_notifiers  # noqa: B018 - the attribute read is what is timed
                mm.has_notifiers  # noqa: B018

        return run

    def empty(r: int) -> Callable[[], None]:
        def run() -> None:
            for _ in loop:
                pass

        return run

    sink.result(f"two empty PyO3 calls: len(mm) x2 @{size}", time_batches(two_len, ops, rep), subs=size)
    sink.result(f"two empty PyO3 calls: mm.has_notifiers x2 @{size}", time_batches(two_attr, ops, rep), subs=size)
    sink.result(f"empty Python loop @{size}", time_batches(empty, ops, rep), subs=size)
