"""pytest-benchmark versions of the workloads of ``python -m mmn_fast bench`` (issue 7).

Each benchmark first checks its target's answers against a brute-force count, then times the
workload. Run as timings::

    pytest benches/test_bench_python.py --benchmark-only --benchmark-group-by=group

or as plain quick tests (each workload once)::

    pytest benches/test_bench_python.py --benchmark-disable

Peers that are not installed are skipped. The data are the seeded data of ``mmn_fast._tools.bench``
at a smaller size; the cross-peer table with ratios is ``benches/compare.py``.
"""

from __future__ import annotations

import importlib
import itertools
from array import array
from typing import Any

import pytest

from mmn_fast._tools.bench.data import (
    NOTIFIER_TARGETS,
    OUTSIDE,
    PAGE,
    SEED,
    TREE_TARGETS,
    BruteForce,
    inside_queries,
    intervals,
    random_queries,
)
from mmn_fast._tools.bench.measure import size_of
from mmn_fast._tools.bench.notifier_workloads import (
    _find_gap,
    _find_gaps,
    _free_pages,
    _gap_width,
    _mm_classes,
    _ranges,
)
from mmn_fast._tools.bench.peers import ADAPTERS, MODULES, Adapter
from mmn_fast._tools.bench.tree_workloads import _churn_check, _rebuild

N = 10_000
QUERIES = 1_000
CHECK = 50

# quicksectx's remove loses intervals and can crash the interpreter: compare.py runs it in a
# child process; here it is left out of churn.
CHURN_TARGETS = [t for t in TREE_TARGETS if t != "quicksectx"]

# A test skipped for a missing peer or operation never uses its benchmark fixture.
pytestmark = pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")


def _require(name: str) -> None:
    try:
        importlib.import_module(MODULES[name])
    except ImportError as err:
        pytest.skip(f"{name} is not installed: {err}")


def _adapter(name: str) -> Adapter:
    _require(name)
    return ADAPTERS[name]()


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    starts, lasts = intervals(N)
    return {
        "starts": starts,
        "lasts": lasts,
        "oracle": BruteForce(starts, lasts),
        "random": random_queries(QUERIES, SEED + 1),
        "inside": inside_queries(starts, lasts, QUERIES, SEED + 2),
    }


def _built(name: str, data: dict[str, Any]) -> tuple[Adapter, list[Any]]:
    ad = _adapter(name)
    cs = [ad.conv(s) for s in data["starts"]]
    cl = [ad.conv(l) for l in data["lasts"]]
    keys = _rebuild(ad, cs, cl, list(range(N)))
    return ad, keys


def _want(data: dict[str, Any], kind: str) -> list[int]:
    return [data["oracle"].count(a, b) for a, b in data[kind][:CHECK]]


@pytest.mark.parametrize("kind", ["random", "inside"])
@pytest.mark.parametrize("name", TREE_TARGETS)
def test_overlap_query(benchmark: Any, data: dict[str, Any], name: str, kind: str) -> None:
    ad, _ = _built(name, data)
    f = ad.query_fn()
    qs = [ad.query_args(ad.conv(a), ad.conv(b)) for a, b in data[kind]]
    assert [size_of(f(a, b)) for a, b in qs[:CHECK]] == _want(data, kind)
    benchmark.group = f"overlap query ({kind})"

    def run() -> None:
        for a, b in qs:
            f(a, b)

    benchmark(run)


@pytest.mark.parametrize("name", TREE_TARGETS)
def test_count_overlap(benchmark: Any, data: dict[str, Any], name: str) -> None:
    ad, _ = _built(name, data)
    f = ad.count_fn()
    if f is None:
        pytest.skip(f"{name} has no count call")
    qs = [(ad.conv(a), ad.conv(b)) for a, b in data["random"]]
    assert [f(a, b) for a, b in qs[:CHECK]] == _want(data, "random")
    benchmark.group = "count_overlap"

    def run() -> None:
        for a, b in qs:
            f(a, b)

    benchmark(run)


@pytest.mark.parametrize("kind", ["random", "inside"])
@pytest.mark.parametrize("name", TREE_TARGETS)
def test_batch_overlap(benchmark: Any, data: dict[str, Any], name: str, kind: str) -> None:
    ad, _ = _built(name, data)
    a = [ad.conv(s) for s, _ in data[kind]]
    b = [ad.conv(l) for _, l in data[kind]]
    run = ad.batch(a, b)
    if run is None:
        pytest.skip(f"{name} has no batch query")
    assert run()[:CHECK] == _want(data, kind)
    benchmark.group = f"batch overlap ({kind})"
    benchmark(ad._batch_timed)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", TREE_TARGETS)
def test_build_incremental(benchmark: Any, data: dict[str, Any], name: str) -> None:
    ad = _adapter(name)
    cs = [ad.conv(s) for s in data["starts"]]
    cl = [ad.conv(l) for l in data["lasts"]]
    vals = list(range(N))

    def run() -> None:
        _rebuild(ad, cs, cl, vals)

    benchmark.group = "build n, one insert per call"
    benchmark(run)
    f = ad.query_fn()
    qs = [ad.query_args(ad.conv(a), ad.conv(b)) for a, b in data["inside"][:CHECK]]
    assert [size_of(f(a, b)) for a, b in qs] == _want(data, "inside")


@pytest.mark.parametrize("name", TREE_TARGETS)
def test_build_from_arrays(benchmark: Any, data: dict[str, Any], name: str) -> None:
    ad = _adapter(name)
    build = ad.from_arrays([ad.conv(s) for s in data["starts"]], [ad.conv(l) for l in data["lasts"]])
    if build is None:
        pytest.skip(f"{name} has no array constructor")
    if name == "ailist":
        pytest.xfail("ailist 2.2.2: AIList.from_array adds nothing")
    t = build()
    if hasattr(t, "__len__"):
        assert len(t) == N
    benchmark.group = "build from arrays"
    benchmark(build)


@pytest.mark.parametrize("name", CHURN_TARGETS)
def test_churn(benchmark: Any, data: dict[str, Any], name: str) -> None:
    ad, keys = _built(name, data)
    fns = ad.churn_fns()
    if fns is None:
        pytest.skip(f"{name} is static or cannot remove")
    remove, insert = fns
    _churn_check(name, {})
    new_s, new_l = intervals(4096, SEED + 4)
    ns = [ad.conv(s) for s in new_s]
    nl = [ad.conv(l) for l in new_l]
    pos = itertools.cycle(range(N))
    fresh = itertools.cycle(range(4096))

    def run() -> None:
        for _ in range(1000):
            p, j = next(pos), next(fresh)
            remove(keys[p])
            keys[p] = insert(ns[j], nl[j], j)

    benchmark.group = "churn (1000 x remove+insert)"
    benchmark(run)


@pytest.mark.parametrize("name", NOTIFIER_TARGETS)
@pytest.mark.parametrize(
    "where", ["outside span", "in a gap", "distinct gaps", "sequential stores", "scattered pages"]
)
def test_nohit_invalidation(benchmark: Any, data: dict[str, Any], name: str, where: str) -> None:
    """One range 1000 times (outside the span, in a gap), 1000 ranges each in its own gap,
    1000 8-byte stores one after another through one gap, or 8192 distinct pages (more than
    the native notifier's page cache holds: each is probed in its occupied blocks, and walks
    when they cannot rule it out)."""
    _require(name)
    MM, Range = _mm_classes(name)
    mm = MM()
    for i, (s, l) in enumerate(zip(data["starts"], data["lasts"], strict=True)):
        mm.insert_interval_notifier(s, l + 1 - s, None, tag=i)
    if where == "outside span":
        ranges = [Range(OUTSIDE, OUTSIDE + PAGE)] * 1000
    elif where == "in a gap":
        ranges = [Range(*_find_gap(data["oracle"], SEED + 11))] * 1000
    elif where == "distinct gaps":
        ranges = [Range(a, b) for a, b in _find_gaps(data["oracle"], SEED + 11, 1000)]
    elif where == "scattered pages":
        ranges = [Range(a, b) for a, b in _free_pages(data["starts"], data["lasts"], 8192, SEED + 15)]
    else:
        lo = _find_gap(data["oracle"], SEED + 11)[0]
        words = min(1000, _gap_width(data["oracle"], lo) // 8)
        ranges = [Range(lo + 8 * (i % words), lo + 8 * (i % words) + 8) for i in range(1000)]
    start, end = mm.invalidate_range_start, mm.invalidate_range_end
    for r in ranges:
        start(r)
        end(r)
    assert mm.drain_invalidated() == []

    def run() -> None:
        for r in ranges:
            start(r)
            end(r)

    benchmark.group = f"no-hit start+end x{len(ranges)} ({where})"
    benchmark(run)


@pytest.mark.parametrize("name", NOTIFIER_TARGETS)
@pytest.mark.parametrize("mode", ["native", "callbacks", "mostly-missing", "invalidate_many"])
def test_invalidation_stream(benchmark: Any, data: dict[str, Any], name: str, mode: str) -> None:
    _require(name)
    MM, Range = _mm_classes(name)
    calls = [0]

    def invalidate(sub: Any, rng: Any, cur_seq: int) -> bool:
        sub.set_seq(cur_seq)
        calls[0] += 1
        return True

    ops = invalidate if mode == "callbacks" else None
    mm = MM()
    for i, (s, l) in enumerate(zip(data["starts"], data["lasts"], strict=True)):
        mm.insert_interval_notifier(s, l + 1 - s, ops, tag=i)
    q = (random_queries if mode == "mostly-missing" else lambda m, seed, top: inside_queries(data["starts"], data["lasts"], m, seed, top))(
        QUERIES, SEED + 13, 16
    )
    a, b = _ranges(q)
    want = sum(data["oracle"].count(x, y) for x, y in q)
    assert mm.invalidate_many(array("Q", a), array("Q", b)) == want
    if mode == "callbacks":
        assert calls[0] == want
    aa, bb = array("Q", a), array("Q", b)
    ranges = [Range(x, y) for x, y in zip(a, b, strict=True)]
    start, end = mm.invalidate_range_start, mm.invalidate_range_end

    def pairs() -> None:
        for r in ranges:
            start(r)
            end(r)

    benchmark.group = f"invalidation stream x{QUERIES} ({mode})"
    benchmark(lambda: mm.invalidate_many(aa, bb) if mode == "invalidate_many" else pairs())
