"""``python -m mmn_fast bench``: mmn_fast against every interval index on PyPI, in one run.

Issue 7's comparison. Every *target* (mmn_fast and each peer) runs in its own child process, one
after the other, on the same seeded data: a peer that segfaults, prints, or leaks cannot spoil
the others, and the memory figures of each are its own. Before anything is timed, every target's
answers are checked against a brute-force count on a sample; a target that answers wrongly or
raises is reported and not timed for that workload. Medians of ``--repeat`` timed batches are
reported in nanoseconds per operation, with ratios to the fastest target of the same run.

Coordinates: the data are page-aligned byte addresses below 2**41. Peers limited to 32 bits
(superintervals, intervaltree-rs, quicksectx, ailist) get the same data as page numbers
(address >> 12), which is exact because every interval and every query covers whole pages;
63-bit peers (kerneltree, ncls) take the bytes as they are. Half-open peers get ``last + 1``.

Not part of the public API: the entry point is ``main(argv) -> int``; the layout of the JSON it
writes is described in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from array import array
from typing import Any, Callable, cast

PAGE = 4096
SEED = 20240607
SPACE_PAGES = 1 << 28  # starts in [0, 2**40)
MAX_PAGES = 256
OUTSIDE = 1 << 50  # a page far beyond every subscription: the O(1) reject

TREE_TARGETS = (
    "mmn_fast",
    "intervaltree",
    "kerneltree",
    "ncls",
    "superintervals",
    "intervaltree-rs",
    "quicksectx",
    "ailist",
)
NOTIFIER_TARGETS = ("mmn_fast.MM", "py-notifier")


# --------------------------------------------------------------------------------------------
# Configuration and seeded data
# --------------------------------------------------------------------------------------------


def config(quick: bool) -> dict[str, Any]:
    """The sizes of one run. ``--quick`` keeps the whole run under a minute."""
    if quick:
        return {
            "quick": True,
            "n": 10_000,
            "queries": 2_000,
            "churn": 2_000,
            "repeat": 3,
            "check": 50,
            "mm_sizes": [1_000, 10_000, 100_000],
            "stream_subs": 10_000,
            "stream_ranges": 20_000,
            "stream_chunk": 5_000,
            "baseline_ranges": 2_000,
            "baseline_sizes": [1_000, 10_000],
            "nohit_ops": 20_000,
        }
    return {
        "quick": False,
        "n": 100_000,
        "queries": 20_000,
        "churn": 20_000,
        "repeat": 7,
        "check": 200,
        "mm_sizes": [1_000, 100_000, 1_000_000],
        "stream_subs": 100_000,
        "stream_ranges": 1_000_000,
        "stream_chunk": 100_000,
        "baseline_ranges": 20_000,
        "baseline_sizes": [1_000, 100_000],
        "nohit_ops": 200_000,
    }


def _log_uniform_pages(rng: random.Random, top: int = MAX_PAGES) -> int:
    """1 .. top pages, log-uniform."""
    return min(top, int((top + 1) ** rng.random()) or 1)


def intervals(n: int, seed: int = SEED) -> tuple[list[int], list[int]]:
    """``n`` closed intervals ``[start, last]``: page-aligned starts in [0, 2**40), lengths of
    1..256 pages, log-uniform."""
    rng = random.Random(seed)
    starts = []
    lasts = []
    for _ in range(n):
        s = rng.randrange(SPACE_PAGES) * PAGE
        starts.append(s)
        lasts.append(s + _log_uniform_pages(rng) * PAGE - 1)
    return starts, lasts


def random_queries(m: int, seed: int, top: int = MAX_PAGES) -> list[tuple[int, int]]:
    """Closed queries anywhere in the space, 1..``top`` pages long: most miss."""
    rng = random.Random(seed)
    out = []
    for _ in range(m):
        s = rng.randrange(SPACE_PAGES) * PAGE
        out.append((s, s + _log_uniform_pages(rng, top) * PAGE - 1))
    return out


def inside_queries(
    starts: list[int], lasts: list[int], m: int, seed: int, top: int = 1
) -> list[tuple[int, int]]:
    """Closed queries of 1..``top`` pages that start inside a stored interval: each hits."""
    rng = random.Random(seed)
    n = len(starts)
    out = []
    for _ in range(m):
        i = rng.randrange(n)
        pages = (lasts[i] + 1 - starts[i]) // PAGE
        s = starts[i] + rng.randrange(pages) * PAGE
        out.append((s, s + _log_uniform_pages(rng, top) * PAGE - 1))
    return out


class BruteForce:
    """The oracle: counts by a linear scan (numpy when installed)."""

    def __init__(self, starts: list[int], lasts: list[int]) -> None:
        try:
            import numpy as np  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            self._np = None
            self._pairs = list(zip(starts, lasts))
        else:
            self._np = np
            self._s = np.array(starts, dtype=np.uint64)
            self._l = np.array(lasts, dtype=np.uint64)

    def count(self, qs: int, ql: int) -> int:
        if self._np is not None:
            return int(((self._s <= ql) & (self._l >= qs)).sum())
        return sum(1 for s, l in self._pairs if s <= ql and l >= qs)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def time_batches(
    make_batch: Callable[[int], Callable[[], Any]], ops: int, repeat: int, warmup: bool = True
) -> list[float]:
    """ns per operation of ``repeat`` batches (after one warm-up batch unless ``warmup`` is
    false); ``make_batch(r)`` returns the batch of repeat ``r`` (r == -1 is the warm-up), run
    with the cyclic GC off."""
    out = []
    for r in range(-1 if warmup else 0, repeat):
        batch = make_batch(r)
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter_ns()
            batch()
            t1 = time.perf_counter_ns()
        finally:
            gc.enable()
        if r >= 0:
            out.append((t1 - t0) / ops)
    return out


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------------------------
# Tree adapters: one per target, all taking closed intervals in the target's coordinates
# --------------------------------------------------------------------------------------------


class Adapter:
    """What a workload needs from a target. ``None`` for an operation means "not offered"."""

    name = ""
    pages = False  # takes page numbers (32-bit peer) rather than bytes
    dynamic = True  # insert after a query is fine (no build step)

    def __init__(self) -> None:
        self.obj: Any = None

    def conv(self, v: int) -> int:
        return v >> 12 if self.pages else v

    def new(self) -> None:
        raise NotImplementedError

    def add(self, s: int, l: int, v: Any) -> Any:
        """Insert ``[s, l]`` (already converted); returns what ``remove`` needs."""
        raise NotImplementedError

    def finish(self) -> None:
        """The build step of a static index."""

    def insert_fn(self) -> Callable[[int, int, Any], Any] | None:
        """A fast callable ``(s, l, v) -> key`` for the timed insert loop."""
        return self.add

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql

    def query_fn(self) -> Callable[[int, int], Any]:
        raise NotImplementedError

    def count_fn(self) -> Callable[[int, int], int] | None:
        return None

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any] | None:
        """A callable that builds the whole index from prepared arrays, or None."""
        return None

    def batch(self, qs: list[int], ql: list[int]) -> Callable[[], list[int]] | None:
        """A callable answering all queries at once, returning per-query match counts."""
        return None

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]] | None:
        """(remove(key), insert(s, l, v) -> key), or None for a static index."""
        return None


class MmnFast(Adapter):
    name = "mmn_fast"

    def new(self) -> None:
        from mmn_fast import IntervalTree

        self.obj = IntervalTree()

    def add(self, s: int, l: int, v: Any) -> Any:
        return self.obj.insert(s, l, v)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        return cast("Callable[[int, int, Any], Any]", self.obj.insert)

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.overlap)

    def count_fn(self) -> Callable[[int, int], int]:
        return cast("Callable[[int, int], int]", self.obj.count_overlap)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        from mmn_fast import IntervalTree

        a, b = array("Q", starts), array("Q", lasts)
        return lambda: IntervalTree.from_arrays(a, b)

    def batch(self, qs: list[int], ql: list[int]) -> Callable[[], list[int]]:
        a, b = array("Q", qs), array("Q", ql)
        m = len(qs)
        tree = self.obj

        def run() -> list[int]:
            idx, _ = tree.overlap_many(a, b)
            counts = [0] * m
            for i in idx:
                counts[i] += 1
            return counts

        self._batch_timed = lambda: tree.overlap_many(a, b)
        return run

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]]:
        return self.obj.remove, self.obj.insert


class PyIntervalTree(Adapter):
    name = "intervaltree"

    def new(self) -> None:
        import intervaltree  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = intervaltree.IntervalTree()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.addi(s, l + 1, v)
        return (s, l + 1, v)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        addi = self.obj.addi

        def ins(s: int, l: int, v: Any) -> Any:
            addi(s, l + 1, v)
            return (s, l + 1, v)

        return ins

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.overlap)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import intervaltree  # type: ignore[import-untyped, import-not-found, unused-ignore]

        tuples = [(s, l + 1) for s, l in zip(starts, lasts)]
        return lambda: intervaltree.IntervalTree.from_tuples(tuples)

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]]:
        removei = self.obj.removei
        return (lambda key: removei(*key)), self.insert_fn()


class KernelTree(Adapter):
    name = "kerneltree"

    def new(self) -> None:
        import kerneltree  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = kerneltree.IntervalTree()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.add(s, l, v)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        return cast("Callable[[int, int, Any], Any]", self.obj.add)

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.search)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import kerneltree  # type: ignore[import-untyped, import-not-found, unused-ignore]
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        a, b = np.array(starts, dtype=np.int64), np.array(lasts, dtype=np.int64)
        ids = np.arange(len(starts), dtype=np.int64)

        def build() -> Any:
            t = kerneltree.IntervalTree()
            t.build(a, b, ids)
            return t

        return build


class Ncls(Adapter):
    name = "ncls"
    dynamic = False

    def new(self) -> None:
        self._s: list[int] = []
        self._l: list[int] = []

    def add(self, s: int, l: int, v: Any) -> Any:
        self._s.append(s)
        self._l.append(l + 1)

    def finish(self) -> None:
        import numpy as np  # type: ignore[import-not-found, unused-ignore]
        from ncls import NCLS  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = NCLS(
            np.array(self._s, dtype=np.int64),
            np.array(self._l, dtype=np.int64),
            np.arange(len(self._s), dtype=np.int64),
        )

    def insert_fn(self) -> None:
        return None

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        find = self.obj.find_overlap
        return lambda a, b: list(find(a, b))

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import numpy as np  # type: ignore[import-not-found, unused-ignore]
        from ncls import NCLS  # type: ignore[import-untyped, import-not-found, unused-ignore]

        a = np.array(starts, dtype=np.int64)
        b = np.array(lasts, dtype=np.int64) + 1
        ids = np.arange(len(starts), dtype=np.int64)
        return lambda: NCLS(a, b, ids)

    def batch(self, qs: list[int], ql: list[int]) -> Callable[[], list[int]]:
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        a = np.array(qs, dtype=np.int64)
        b = np.array(ql, dtype=np.int64) + 1
        ids = np.arange(len(qs), dtype=np.int64)
        tree = self.obj
        m = len(qs)

        def run() -> list[int]:
            qi, _ = tree.all_overlaps_both(a, b, ids)
            return [int(c) for c in np.bincount(qi, minlength=m)]

        self._batch_timed = lambda: tree.all_overlaps_both(a, b, ids)
        return run


class SuperIntervals(Adapter):
    name = "superintervals"
    pages = True
    dynamic = False

    def new(self) -> None:
        from superintervals import IntervalMap  # type: ignore[import-not-found, unused-ignore]

        self.obj = IntervalMap()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.add(s, l, v)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        return cast("Callable[[int, int, Any], Any]", self.obj.add)

    def finish(self) -> None:
        self.obj.build()

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.search_values)

    def count_fn(self) -> Callable[[int, int], int]:
        return cast("Callable[[int, int], int]", self.obj.count)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        from superintervals import IntervalMap  # type: ignore[import-not-found, unused-ignore]

        a, b = array("i", starts), array("i", lasts)

        def build() -> Any:
            m = IntervalMap.from_arrays(a, b)
            m.build()
            return m

        return build

    def batch(self, qs: list[int], ql: list[int]) -> Callable[[], list[int]]:
        a, b = array("i", qs), array("i", ql)
        tree = self.obj
        self._batch_timed = lambda: tree.search_idxs_batch(a, b)
        return lambda: [len(x) for x in tree.search_idxs_batch(a, b)]


class IntervalTreeRs(Adapter):
    name = "intervaltree-rs"
    pages = True

    def new(self) -> None:
        import intervaltree_rs  # type: ignore[import-not-found, unused-ignore]

        self.obj = intervaltree_rs.IntervalTree()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.insert((s, l + 1, v))
        return (s, l + 1)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        insert = self.obj.insert

        def ins(s: int, l: int, v: Any) -> Any:
            insert((s, l + 1, v))
            return (s, l + 1)

        return ins

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.search)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import intervaltree_rs  # type: ignore[import-not-found, unused-ignore]

        tuples = [(s, l + 1, None) for s, l in zip(starts, lasts)]
        mod: Any = intervaltree_rs  # its stub types from_tuples' argument as trees, not tuples
        return lambda: mod.IntervalTree.from_tuples(tuples)

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]]:
        return self.obj.delete, self.insert_fn()


class QuicksectX(Adapter):
    name = "quicksectx"
    pages = True

    def new(self) -> None:
        import quicksectx  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = quicksectx.IntervalTree()
        self._interval = quicksectx.Interval

    def add(self, s: int, l: int, v: Any) -> Any:
        iv = self._interval(s, l + 1, v)
        self.obj.insert(iv)
        return iv

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        insert, mk = self.obj.insert, self._interval

        def ins(s: int, l: int, v: Any) -> Any:
            iv = mk(s, l + 1, v)
            insert(iv)
            return iv

        return ins

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.search)

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]]:
        return self.obj.remove, self.insert_fn()


class AiList(Adapter):
    name = "ailist"
    pages = True
    dynamic = False

    def new(self) -> None:
        import ailist  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = ailist.AIList()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.add(s, l + 1)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        add = self.obj.add
        return lambda s, l, v: add(s, l + 1)

    def finish(self) -> None:
        self.obj.construct()

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.intersect_ids)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import ailist  # type: ignore[import-untyped, import-not-found, unused-ignore]
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        a = np.array(starts, dtype=np.int64)
        b = np.array(lasts, dtype=np.int64) + 1
        ids = np.arange(len(starts), dtype=np.int64)

        def build() -> Any:
            t = ailist.AIList()
            t.from_array(a, b, ids)
            t.construct()
            return t

        return build


ADAPTERS: dict[str, type[Adapter]] = {
    a.name: a
    for a in (MmnFast, PyIntervalTree, KernelTree, Ncls, SuperIntervals, IntervalTreeRs, QuicksectX, AiList)
}

MODULES = {
    "mmn_fast": "mmn_fast",
    "intervaltree": "intervaltree",
    "kerneltree": "kerneltree",
    "ncls": "ncls",
    "superintervals": "superintervals",
    "intervaltree-rs": "intervaltree_rs",
    "quicksectx": "quicksectx",
    "ailist": "ailist",
    "mmn_fast.MM": "mmn_fast",
    "py-notifier": "intervaltree",
}


# --------------------------------------------------------------------------------------------
# The worker: one target, every workload, results as JSON lines
# --------------------------------------------------------------------------------------------


class Sink:
    """Where a worker reports: one JSON object per line, flushed at once (the parent reads the
    file while the worker runs, for its progress bar, and keeps what a crash left)."""

    def __init__(self, path: str, target: str) -> None:
        self.f = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self.target = target

    def emit(self, **rec: Any) -> None:
        rec.setdefault("target", self.target)
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()

    def result(self, workload: str, samples: list[float] | None = None, **extra: Any) -> None:
        if samples is not None:
            extra["median_ns"] = statistics.median(samples)
            extra["samples_ns"] = samples
        self.emit(kind="result", workload=workload, **extra)

    def error(self, workload: str, status: str, detail: str) -> None:
        self.emit(kind="result", workload=workload, status=status, detail=detail[:300])

    def progress(self, step: str) -> None:
        self.emit(kind="progress", step=step)


def _guard(sink: Sink, workload: str, fn: Callable[[], None]) -> None:
    """Run one workload; an exception (a crash of the peer, a wrong answer) is reported."""
    sink.progress(workload)
    try:
        fn()
    except WrongAnswer as err:
        sink.error(workload, "wrong", str(err))
    except Exception as err:  # noqa: BLE001 - any peer failure is a result, not a crash
        sink.error(workload, "error", f"{type(err).__name__}: {err}")


class WrongAnswer(Exception):
    """A target's answer differs from the brute-force count."""


def _check_counts(name: str, got: list[int], want: list[int], what: str) -> None:
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    if len(got) != len(want) or bad:
        i = bad[0] if bad else min(len(got), len(want))
        raise WrongAnswer(
            f"{name} {what}: {len(bad)} of {len(want)} sampled queries wrong "
            f"(first #{i}: got {got[i] if i < len(got) else None}, want {want[i] if i < len(want) else None})"
        )


def _size_of(x: Any) -> int:
    try:
        return len(x)
    except TypeError:
        return sum(1 for _ in x)


def run_tree_worker(name: str, cfg: dict[str, Any], sink: Sink) -> None:
    """Every tree workload for the target ``name``."""
    ad = ADAPTERS[name]()
    n, m, rep = cfg["n"], cfg["queries"], cfg["repeat"]
    starts, lasts = intervals(n)
    oracle = BruteForce(starts, lasts)
    cs = [ad.conv(s) for s in starts]
    cl = [ad.conv(l) for l in lasts]
    vals = list(range(n))
    qsets = {
        "random": random_queries(m, SEED + 1),
        "inside": inside_queries(starts, lasts, m, SEED + 2),
    }
    want = {
        k: [oracle.count(qs, ql) for qs, ql in q[: cfg["check"]]] for k, q in qsets.items()
    }
    cq = {k: [ad.query_args(ad.conv(qs), ad.conv(ql)) for qs, ql in q] for k, q in qsets.items()}

    # Memory, then the incremental build: one interval per Python call (static peers: add,
    # then the build step). The memory build runs first, in a fresh process, with tracemalloc
    # on; the timed builds run with it off (tracing would tax every allocation).
    def fill() -> None:
        ad.new()
        ins = ad.insert_fn()
        if ins is None:
            for s, l, v in zip(cs, cl, vals):
                ad.add(s, l, v)
        else:
            for s, l, v in zip(cs, cl, vals):
                ins(s, l, v)
        ad.finish()

    def build_incremental() -> None:
        gc.collect()
        rss0 = rss_bytes()
        tracemalloc.start()
        fill()
        traced, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss1 = rss_bytes()
        extra: dict[str, Any] = {"rss_bytes_per_interval": (rss1 - rss0) / n}
        extra["traced_bytes_per_interval"] = traced / n
        if name == "mmn_fast":
            from mmn_fast import _mmn_fast

            extra["node_bytes"] = getattr(_mmn_fast, "NODE_BYTES", None)
        if hasattr(ad.obj, "__len__") and len(ad.obj) != n:
            raise WrongAnswer(f"{name}: {len(ad.obj)} intervals after {n} inserts")
        samples = time_batches(lambda r: fill, n, 3, warmup=False)
        sink.result("build n (per interval)", samples, n=n, static=not ad.dynamic, **extra)
        sink.result("memory (RSS bytes/interval)", None, n=n, value=extra["rss_bytes_per_interval"], unit="B")
        sink.result("memory (traced bytes/interval)", None, n=n, value=extra["traced_bytes_per_interval"], unit="B")

    _guard(sink, "build n (per interval)", build_incremental)
    if ad.obj is None:
        return

    for kind in ("random", "inside"):

        def single(kind: str = kind) -> None:
            f = ad.query_fn()
            qs = cq[kind]
            got = [_size_of(f(a, b)) for a, b in qs[: cfg["check"]]]
            _check_counts(name, got, want[kind], f"overlap ({kind})")

            def batch(r: int) -> Callable[[], None]:
                def run() -> None:
                    for a, b in qs:
                        f(a, b)

                return run

            sink.result(f"overlap query ({kind})", time_batches(batch, len(qs), rep), n=n)

        _guard(sink, f"overlap query ({kind})", single)

    def count() -> None:
        f = ad.count_fn()
        if f is None:
            sink.error("count_overlap (random)", "n/a", "no count call")
            return
        qs = cq["random"]
        # count takes closed queries in the target's coordinates
        cqs = [(ad.conv(a), ad.conv(b)) for a, b in qsets["random"]]
        got = [f(a, b) for a, b in cqs[: cfg["check"]]]
        _check_counts(name, got, want["random"], "count")
        del qs

        def batch(r: int) -> Callable[[], None]:
            def run() -> None:
                for a, b in cqs:
                    f(a, b)

            return run

        sink.result("count_overlap (random)", time_batches(batch, len(cqs), rep), n=n)

    _guard(sink, "count_overlap (random)", count)

    for kind in ("random", "inside"):

        def many(kind: str = kind) -> None:
            q = qsets[kind]
            a = [ad.conv(s) for s, _ in q]
            b = [ad.conv(l) for _, l in q]
            run = ad.batch(a, b)
            if run is None:
                sink.error(f"batch overlap ({kind})", "n/a", "no batch call")
                return
            counts = run()
            _check_counts(name, counts[: cfg["check"]], want[kind], f"batch ({kind})")
            timed = ad._batch_timed  # type: ignore[attr-defined]
            sink.result(f"batch overlap ({kind})", time_batches(lambda r: timed, len(q), rep), n=n)

        _guard(sink, f"batch overlap ({kind})", many)

    def from_arrays() -> None:
        build = ad.from_arrays(cs, cl)
        if build is None:
            sink.error("build from arrays (per interval)", "n/a", "no array constructor")
            return
        t = build()
        if hasattr(t, "__len__") and len(t) != n:
            raise WrongAnswer(f"{name}: {len(t)} intervals from {n}")
        del t
        sink.result("build from arrays (per interval)", time_batches(lambda r: build, n, max(3, rep // 2), warmup=False), n=n)

    _guard(sink, "build from arrays (per interval)", from_arrays)

    def churn() -> None:
        fns = ad.churn_fns()
        if fns is None:
            sink.error("churn (remove+insert)", "n/a", "static or no remove")
            return
        _churn_check(name, cfg)
        keys = _rebuild(ad, cs, cl, vals)
        remove, insert = ad.churn_fns()  # type: ignore[misc]
        k = cfg["churn"]
        rng = random.Random(SEED + 3)
        new_s, new_l = intervals(k * (rep + 1), SEED + 4)
        pos = [rng.randrange(n) for _ in range(k * (rep + 1))]
        model_s, model_l = list(starts), list(lasts)
        ns = [ad.conv(s) for s in new_s]
        nl = [ad.conv(l) for l in new_l]

        def batch(r: int) -> Callable[[], None]:
            lo = (r + 1) * k

            def run() -> None:
                for j in range(lo, lo + k):
                    p = pos[j]
                    remove(keys[p])
                    keys[p] = insert(ns[j], nl[j], j)

            return run

        samples = time_batches(batch, 2 * k, rep)
        for j in range(k * (rep + 1)):
            model_s[pos[j]] = new_s[j]
            model_l[pos[j]] = new_l[j]
        after = BruteForce(model_s, model_l)
        f = ad.query_fn()
        q = qsets["inside"][: cfg["check"]] + random_queries(cfg["check"], SEED + 5)
        got = [_size_of(f(*ad.query_args(ad.conv(a), ad.conv(b)))) for a, b in q]
        _check_counts(name, got, [after.count(a, b) for a, b in q], "after churn")
        sink.result("churn (remove+insert)", samples, n=n, unit="ns per remove+insert pair / 2")

    _guard(sink, "churn (remove+insert)", churn)


def _rebuild(ad: Adapter, cs: list[int], cl: list[int], vals: list[int]) -> list[Any]:
    ad.new()
    keys = [ad.add(s, l, v) for s, l, v in zip(cs, cl, vals)]
    ad.finish()
    return keys


def _churn_check(name: str, cfg: dict[str, Any]) -> None:
    """Remove+insert on a small tree, checked against the oracle at every step's end."""
    ad = ADAPTERS[name]()
    starts, lasts = intervals(2000, SEED + 6)
    cs = [ad.conv(s) for s in starts]
    cl = [ad.conv(l) for l in lasts]
    keys = _rebuild(ad, cs, cl, list(range(2000)))
    remove, insert = ad.churn_fns()  # type: ignore[misc]
    rng = random.Random(SEED + 7)
    ns, nl = intervals(1000, SEED + 8)
    for j in range(1000):
        p = rng.randrange(2000)
        remove(keys[p])
        keys[p] = insert(ad.conv(ns[j]), ad.conv(nl[j]), j)
        starts[p], lasts[p] = ns[j], nl[j]
    oracle = BruteForce(starts, lasts)
    q = inside_queries(starts, lasts, 100, SEED + 9)
    f = ad.query_fn()
    got = [_size_of(f(*ad.query_args(ad.conv(a), ad.conv(b)))) for a, b in q]
    _check_counts(name, got, [oracle.count(a, b) for a, b in q], "churn pre-check")


# --------------------------------------------------------------------------------------------
# Notifier workloads: mmn_fast.MM and the pure-Python baseline
# --------------------------------------------------------------------------------------------


def _mm_classes(name: str) -> tuple[Any, Any]:
    if name == "mmn_fast.MM":
        from mmn_fast import MM, Range

        return MM, Range
    from ._bench_baseline import PyMM, PyRange

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
            for i, (s, l) in enumerate(zip(starts, lasts)):
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
            if native:
                _empty_calls(mm, ops, rep, size, sink)

        _guard(sink, f"no-hit start+end @{size}", nohit)

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
        for i, (s, l) in enumerate(zip(starts, lasts)):
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
            rs = [RangeCls(x, y) for x, y in zip(a[lo : lo + chunk], b[lo : lo + chunk])]
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

    _guard(sink, "stream hits, native", lambda: stream("hits, native", hit_q, False))
    _guard(sink, "stream hits, callbacks", lambda: stream("hits, Python callbacks", hit_q, True))
    _guard(sink, "stream mostly-missing, native", lambda: stream("mostly-missing, native", miss_q, False))

    if native:

        def bare() -> None:
            from mmn_fast import IntervalTree

            t = IntervalTree.from_arrays(array("Q", starts), array("Q", lasts))
            f = t.overlap
            got = [len(f(x, y)) for x, y in hit_q[:check]]
            _check_counts("IntervalTree", got, [oracle.count(x, y) for x, y in hit_q[:check]], "bare")
            nchunks = max(1, total // chunk)

            def batch(r: int) -> Callable[[], None]:
                lo = ((r + 1) % nchunks) * chunk
                q = hit_q[lo : lo + chunk]

                def run() -> None:
                    for x, y in q:
                        f(x, y)

                return run

            sink.result("stream hits: bare IntervalTree.overlap", time_batches(batch, chunk, max(rep, nchunks)), subs=size)

        _guard(sink, "stream hits: bare IntervalTree.overlap", bare)


def _find_gap(oracle: BruteForce, seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    while True:
        s = rng.randrange(SPACE_PAGES) * PAGE
        if oracle.count(s, s + PAGE - 1) == 0:
            return s, s + PAGE


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


def worker(target: str, cfg: dict[str, Any], out: str) -> int:
    sink = Sink(out, target)
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # some peers print on every query
    except OSError:
        pass
    mod = MODULES[target]
    try:
        m = __import__(mod)
    except Exception as err:  # noqa: BLE001
        sink.emit(kind="status", status="unavailable", detail=f"{type(err).__name__}: {err}")
        return 0
    version = _version_of(target, m)
    sink.emit(kind="status", status="ok", version=version)
    if target in NOTIFIER_TARGETS:
        run_mm_worker(target, cfg, sink)
    else:
        run_tree_worker(target, cfg, sink)
    sink.emit(kind="done")
    return 0


def _version_of(target: str, module: Any) -> str | None:
    from importlib import metadata

    dist = {"mmn_fast.MM": "mmn_fast", "py-notifier": "intervaltree"}.get(target, target)
    try:
        return metadata.version(dist)
    except Exception:  # noqa: BLE001
        return getattr(module, "__version__", None)


# --------------------------------------------------------------------------------------------
# The parent: run the workers, show progress, print, write JSON and PNG
# --------------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or when forced)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.last = ""

    def show(self, label: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / max(1, self.total))
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {time.monotonic() - self.t0:5.0f}s {label}"
        line = line[:110].ljust(len(self.last))
        self.last = line
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * len(self.last) + "\r")
            sys.stderr.flush()


def run_target(target: str, cfg: dict[str, Any], bar: Progress, timeout: float) -> dict[str, Any]:
    """One worker process; returns its status and results, a crash included."""
    fd, path = tempfile.mkstemp(prefix="mmn_bench_", suffix=".jsonl")
    os.close(fd)
    cmd = [sys.executable, "-m", "mmn_fast._bench", "--worker", target, "--out", path]
    if cfg["quick"]:
        cmd.append("--quick")
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    t0 = time.monotonic()
    records: list[dict[str, Any]] = []
    pos = 0
    timed_out = False
    while True:
        try:
            proc.wait(timeout=0.2)
            finished = True
        except subprocess.TimeoutExpired:
            finished = False
        with open(path, encoding="utf-8") as f:
            f.seek(pos)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        pos += len(complete.encode())
        for line in complete.splitlines():
            rec = json.loads(line)
            records.append(rec)
            if rec["kind"] == "progress":
                bar.show(f"{target}: {rec['step']}")
        if finished:
            break
        if time.monotonic() - t0 > timeout:
            proc.kill()
            proc.wait()
            timed_out = True
            break
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    os.unlink(path)
    status = next((r for r in records if r["kind"] == "status"), None)
    out: dict[str, Any] = {
        "status": status["status"] if status else "crashed",
        "version": status.get("version") if status else None,
        "detail": status.get("detail") if status else None,
        "results": {r["workload"]: r for r in records if r["kind"] == "result"},
    }
    done = any(r["kind"] == "done" for r in records)
    if out["status"] == "ok" and not done:
        last = [r for r in records if r["kind"] == "progress"]
        where = last[-1]["step"] if last else "start"
        why = "timed out" if timed_out else f"exit code {proc.returncode}"
        out["status"] = "crashed"
        out["detail"] = f"{why} during {where!r}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"
        out["results"].setdefault(where, {"status": "crashed", "detail": out["detail"]})
    return out


def _fmt_ns(v: float) -> str:
    if v >= 100_000:
        return f"{v / 1000:,.0f}k"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def _median(res: dict[str, Any] | None) -> float | None:
    if not res or "status" in res:
        return None
    return res.get("median_ns", res.get("value"))


def tree_table(targets: dict[str, dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    names = [t for t in TREE_TARGETS if t in targets and targets[t]["status"] != "unavailable"]
    workloads: list[str] = []
    for t in names:
        for w in targets[t]["results"]:
            if w not in workloads:
                workloads.append(w)
    rows = []
    header = ["workload"] + names + ["mmn_fast / best peer"]
    lines = []
    for w in workloads:
        cells = {t: _median(targets[t]["results"].get(w)) for t in names}
        got = {t: v for t, v in cells.items() if v is not None}
        best = min(got.values()) if got else None
        peers = {t: v for t, v in got.items() if t != "mmn_fast"}
        best_peer = min(peers, key=peers.__getitem__) if peers else None
        ours = got.get("mmn_fast")
        ratio = ours / peers[best_peer] if ours is not None and best_peer else None
        row = [w]
        for t in names:
            v = cells[t]
            if v is None:
                r = targets[t]["results"].get(w)
                row.append(r.get("status", "-") if r else "-")
            elif v == best or not best:
                # A zero best (e.g. a memory delta below the RSS page size) has no ratio.
                row.append(f"{_fmt_ns(v)} (best)" if v == best else _fmt_ns(v))
            else:
                row.append(f"{_fmt_ns(v)} ({v / best:.2g}x)")
        row.append(f"{ratio:.2f} vs {best_peer}" if ratio is not None else "-")
        lines.append(row)
        rows.append({"workload": w, "medians": cells, "best_peer": best_peer, "mmn_fast_over_best_peer": ratio})
    return _render(header, lines), rows


def _render(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + lines) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    for r in lines:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(out)


def notifier_table(targets: dict[str, dict[str, Any]]) -> str:
    ours = targets.get("mmn_fast.MM", {}).get("results", {})
    base = targets.get("py-notifier", {}).get("results", {})
    lines = []
    for w in list(ours) + [w for w in base if w not in ours]:
        a, b = _median(ours.get(w)), _median(base.get(w))
        lines.append([
            w,
            _fmt_ns(a) if a is not None else (ours.get(w) or {}).get("status", "-"),
            _fmt_ns(b) if b is not None else (base.get(w) or {}).get("status", "-"),
            f"{b / a:.1f}x" if a and b else "-",
        ])
    return _render(["workload", "mmn_fast.MM", "py-notifier", "py-notifier / mmn_fast"], lines)


def targets_check(targets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 7's targets as ratios of this run (value, limit, met)."""
    tr = {t: r["results"] for t, r in targets.items()}

    def med(t: str, w: str) -> float | None:
        return _median(tr.get(t, {}).get(w))

    def best_peer(w: str) -> tuple[str | None, float | None]:
        vals = {t: med(t, w) for t in TREE_TARGETS if t != "mmn_fast"}
        known = {t: v for t, v in vals.items() if v is not None}
        if not known:
            return None, None
        t = min(known, key=known.__getitem__)
        return t, known[t]

    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, limit: float, le: bool = True, note: str = "") -> None:
        met = None if value is None else (value <= limit if le else value >= limit)
        out.append({"target": what, "value": value, "limit": limit, "at_most": le, "met": met, "note": note})

    for w in ("overlap query (random)", "overlap query (inside)", "count_overlap (random)",
              "batch overlap (random)", "batch overlap (inside)", "build from arrays (per interval)"):
        p, v = best_peer(w)
        o = med("mmn_fast", w)
        add(f"{w}: mmn_fast / fastest peer", o / v if o and v else None, 1.0, note=f"fastest peer {p}")
    o = med("mmn_fast", "churn (remove+insert)")
    for peer, k in (("intervaltree", 50.0), ("intervaltree-rs", 4.0)):
        v = med(peer, "churn (remove+insert)")
        add(f"churn: {peer} / mmn_fast", v / o if o and v else None, k, le=False)
    o = med("mmn_fast", "build n (per interval)")
    v = med("kerneltree", "build n (per interval)")
    add("single insert: mmn_fast / kerneltree", o / v if o and v else None, 1.0)
    add("memory: IntervalTree RSS bytes per interval", med("mmn_fast", "memory (RSS bytes/interval)"), 64.0)
    ours = tr.get("mmn_fast.MM", {})
    base = tr.get("py-notifier", {})
    for w in ours:
        # The target is the core's bytes; the RSS rows (in the main table) add the
        # IntervalNotifier Python object and the benchmark's tag ints.
        if w.startswith("memory per native subscription (core B)"):
            add(f"{w}", _median(ours[w]), 128.0)
    for w in ours:
        if w.startswith("no-hit start+end"):
            size = w.rsplit("@", 1)[1]
            maybe_calls = [
                _median(ours.get(f"two empty PyO3 calls: len(mm) x2 @{size}")),
                _median(ours.get(f"two empty PyO3 calls: mm.has_notifiers x2 @{size}")),
            ]
            calls = [c for c in maybe_calls if c is not None]
            loop = _median(ours.get(f"empty Python loop @{size}")) or 0.0
            v = _median(ours[w])
            if calls and v:
                c = min(calls)
                add(f"{w} / two empty PyO3 calls", v / c, 2.0)
                add(f"{w} / two empty PyO3 calls (loop subtracted)", (v - loop) / max(1e-9, c - loop), 2.0)
    for label, k, what in (("hits, native", 100.0, "native"), ("hits, Python callbacks", 10.0, "callbacks"),
                           ("mostly-missing, native", 100.0, "mostly-missing")):
        w = f"stream {label}: start+end"
        a, b = _median(ours.get(w)), _median(base.get(w))
        add(f"stream ({what}): py-notifier / mmn_fast, start+end pairs", b / a if a and b else None, k, le=False)
    a = _median(ours.get("stream hits, native: start+end"))
    b = _median(ours.get("stream hits: bare IntervalTree.overlap"))
    add("stream (native): start+end / bare IntervalTree.overlap", a / b if a and b else None, 3.0)
    for label in ("hits, native", "hits, Python callbacks", "mostly-missing, native"):
        a = _median(ours.get(f"stream {label}: start+end"))
        b = _median(ours.get(f"stream {label}: invalidate_many"))
        add(f"stream ({label}): start+end pair / invalidate_many", a / b if a and b else None, 3.0, le=False)
    return out


def checks_table(checks: list[dict[str, Any]]) -> str:
    lines = []
    for c in checks:
        v = c["value"]
        verdict = "?" if c["met"] is None else ("met" if c["met"] else "MISSED")
        lim = f"{'<=' if c['at_most'] else '>='} {c['limit']:g}"
        lines.append([c["target"], "-" if v is None else f"{v:.2f}", lim, verdict, c["note"]])
    return _render(["issue 7 target (ratio in this run)", "value", "limit", "", "note"], lines)


def plot(path: str, rows: list[dict[str, Any]], targets: dict[str, dict[str, Any]]) -> str:
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return "matplotlib is not installed (pip install 'mmn_fast[bench]'): no plot written"
    timed = [r for r in rows if not r["workload"].startswith("memory")]
    names = [t for t in TREE_TARGETS if any(r["medians"].get(t) is not None for r in timed)]
    fig, axes = plt.subplots(2, 1, figsize=(12, 10))
    ax = axes[0]
    width = 0.8 / max(1, len(names))
    for i, t in enumerate(names):
        xs = [j + i * width for j in range(len(timed))]
        ys = [r["medians"].get(t) or 0 for r in timed]
        ax.bar(xs, ys, width, label=t)
    ax.set_yscale("log")
    ax.set_ylabel("median ns per operation (log)")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(timed))])
    ax.set_xticklabels([r["workload"] for r in timed], rotation=20, ha="right", fontsize=8)
    ax.legend(fontsize=8, ncol=4)
    ax.set_title("IntervalTree vs peers (lower is better)")
    ax = axes[1]
    ours = targets.get("mmn_fast.MM", {}).get("results", {})
    base = targets.get("py-notifier", {}).get("results", {})
    ws = [w for w in ours if "memory" not in w and _median(ours[w]) is not None]
    xs = list(range(len(ws)))
    ax.bar([x - 0.2 for x in xs], [_median(ours[w]) for w in ws], 0.4, label="mmn_fast.MM")
    ax.bar([x + 0.2 for x in xs], [_median(base.get(w)) or 0 for w in ws], 0.4, label="py-notifier (intervaltree)")
    ax.set_yscale("log")
    ax.set_ylabel("median ns per operation (log)")
    ax.set_xticks(xs)
    ax.set_xticklabels(ws, rotation=25, ha="right", fontsize=7)
    ax.legend(fontsize=8)
    ax.set_title("Notifier (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m mmn_fast bench",
        description="mmn_fast against every interval index on PyPI, in one run (issue 7).",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes; finishes in under a minute")
    p.add_argument("--json", metavar="PATH", help="write every result as JSON to PATH")
    p.add_argument("--plot", metavar="PATH", help="write a PNG plot to PATH (needs matplotlib)")
    p.add_argument("--targets", metavar="A,B", help="only these targets (default: all)")
    p.add_argument("--repeat", type=int, help="timed batches per workload (median reported)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per target before it is killed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    """``python -m mmn_fast bench [--quick] [--json PATH] [--plot PATH]``; returns the exit code."""
    args = parse(argv)
    cfg = config(args.quick)
    if args.repeat:
        cfg["repeat"] = args.repeat
    if args.worker:
        return worker(args.worker, cfg, args.out)
    names = list(TREE_TARGETS) + list(NOTIFIER_TARGETS)
    if args.targets:
        wanted = args.targets.split(",")
        unknown = [t for t in wanted if t not in names]
        if unknown:
            print(f"unknown targets: {', '.join(unknown)}; choose from {', '.join(names)}", file=sys.stderr)
            return 2
        names = [t for t in names if t in wanted]
    bar = Progress(len(names), enabled=not args.no_progress and sys.stderr.isatty() or os.environ.get("MMN_BENCH_PROGRESS") == "1")
    t0 = time.monotonic()
    targets: dict[str, dict[str, Any]] = {}
    for t in names:
        bar.show(f"{t}: starting")
        targets[t] = run_target(t, cfg, bar, args.timeout)
        bar.done += 1
    bar.show("done")
    bar.close()
    elapsed = time.monotonic() - t0

    mode = "quick" if cfg["quick"] else "full"
    print(f"mmn_fast bench ({mode}; n = {cfg['n']:,} intervals; medians of {cfg['repeat']} batches, ns per operation; "
          f"ratio to the fastest target of this run in parentheses)")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; {elapsed:.0f}s\n")
    for t, r in targets.items():
        if r["status"] != "ok":
            print(f"  {t}: {r['status']}: {r['detail']}")
        for w, res in r["results"].items():
            if res.get("status") in ("wrong", "error", "crashed"):
                print(f"  {t}: {w}: {res['status']}: {res.get('detail')}")
    text, rows = tree_table(targets)
    print("\nIntervalTree and peers\n" + text)
    print("\nNotifier (mmn_fast.MM vs a pure-Python notifier on intervaltree)\n" + notifier_table(targets))
    checks = targets_check(targets)
    print("\n" + checks_table(checks))
    if args.json:
        doc = {
            "schema": 1,
            "mode": mode,
            "config": cfg,
            "seed": SEED,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "elapsed_s": elapsed,
            "targets": targets,
            "tree_rows": rows,
            "checks": checks,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        print(f"\nJSON written to {args.json}")
    if args.plot:
        print(plot(args.plot, rows, targets))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
