"""The tree workloads: build, stab, overlap, churn, memory, for one target in its worker."""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable
from typing import Any

from .data import SEED, BruteForce, inside_queries, intervals, random_queries
from .measure import Sink, WrongAnswer, check_counts, guard, rss_bytes, size_of, time_batches
from .peers import ADAPTERS, Adapter


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
            for s, l, v in zip(cs, cl, vals, strict=True):
                ad.add(s, l, v)
        else:
            for s, l, v in zip(cs, cl, vals, strict=True):
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

    guard(sink, "build n (per interval)", build_incremental)
    if ad.obj is None:
        return

    for kind in ("random", "inside"):

        def single(kind: str = kind) -> None:
            f = ad.query_fn()
            qs = cq[kind]
            got = [size_of(f(a, b)) for a, b in qs[: cfg["check"]]]
            check_counts(name, got, want[kind], f"overlap ({kind})")

            def batch(r: int) -> Callable[[], None]:
                def run() -> None:
                    for a, b in qs:
                        f(a, b)

                return run

            sink.result(f"overlap query ({kind})", time_batches(batch, len(qs), rep), n=n)

        guard(sink, f"overlap query ({kind})", single)

    def count() -> None:
        f = ad.count_fn()
        if f is None:
            sink.error("count_overlap (random)", "n/a", "no count call")
            return
        qs = cq["random"]
        # count takes closed queries in the target's coordinates
        cqs = [(ad.conv(a), ad.conv(b)) for a, b in qsets["random"]]
        got = [f(a, b) for a, b in cqs[: cfg["check"]]]
        check_counts(name, got, want["random"], "count")
        del qs

        def batch(r: int) -> Callable[[], None]:
            def run() -> None:
                for a, b in cqs:
                    f(a, b)

            return run

        sink.result("count_overlap (random)", time_batches(batch, len(cqs), rep), n=n)

    guard(sink, "count_overlap (random)", count)

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
            check_counts(name, counts[: cfg["check"]], want[kind], f"batch ({kind})")
            timed = ad._batch_timed  # type: ignore[attr-defined]
            sink.result(f"batch overlap ({kind})", time_batches(lambda r: timed, len(q), rep), n=n)

        guard(sink, f"batch overlap ({kind})", many)

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

    guard(sink, "build from arrays (per interval)", from_arrays)

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
        got = [size_of(f(*ad.query_args(ad.conv(a), ad.conv(b)))) for a, b in q]
        check_counts(name, got, [after.count(a, b) for a, b in q], "after churn")
        sink.result("churn (remove+insert)", samples, n=n, unit="ns per remove+insert pair / 2")

    guard(sink, "churn (remove+insert)", churn)


def _rebuild(ad: Adapter, cs: list[int], cl: list[int], vals: list[int]) -> list[Any]:
    ad.new()
    keys = [ad.add(s, l, v) for s, l, v in zip(cs, cl, vals, strict=True)]
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
    got = [size_of(f(*ad.query_args(ad.conv(a), ad.conv(b)))) for a, b in q]
    check_counts(name, got, [oracle.count(a, b) for a, b in q], "churn pre-check")
