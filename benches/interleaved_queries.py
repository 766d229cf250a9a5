#!/usr/bin/env python3
"""Single queries, mmn_fast against superintervals, interleaved in one process (issue 11).

`benches/compare.py` runs each target in its own process, one after another; on a shared
machine the load moves between them, and single-query ratios spread from 0.4x to 1.7x over runs.
Here both indexes hold the same intervals in one process and answer the same queries in turn,
round after round; each keeps its best round, so the ratio holds from run to run::

    python benches/interleaved_queries.py [--n 100000] [--rounds 15] [--quick]

superintervals takes 32-bit keys: it is fed page numbers (the data is page-aligned), as in
compare.py. Without superintervals installed the script says so and exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from mmn_fast import IntervalTree
from mmn_fast._tools.bench.data import PAGE, SEED, inside_queries, intervals, random_queries

Query = tuple[int, int]


def best_round(f: Callable[[int, int], object], queries: Sequence[Query]) -> float:
    """ns per query of one pass over ``queries``."""
    t0 = time.perf_counter()
    for a, b in queries:
        f(a, b)
    return (time.perf_counter() - t0) / len(queries) * 1e9


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="intervals (default 10^5)")
    p.add_argument("--rounds", type=int, default=15, help="rounds; each target keeps its best")
    p.add_argument("--quick", action="store_true", help="10^4 intervals, 3 rounds")
    args = p.parse_args(argv)
    n, rounds = (10_000, 3) if args.quick else (args.n, args.rounds)
    try:
        from superintervals import IntervalMap  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        print("superintervals is not installed (pip install -r benches/requirements-peers.txt)")
        return 0
    starts, lasts = intervals(n)
    ours = IntervalTree()
    theirs = IntervalMap()
    for value, (s, last) in enumerate(zip(starts, lasts, strict=True)):
        ours.insert(s, last, value)
        theirs.add(s // PAGE, last // PAGE, value)
    theirs.build()
    print(f"n = {n:,}, best of {rounds} interleaved rounds, ns per query (ours / superintervals)")
    for kind, queries in (
        ("random", random_queries(20_000, SEED + 2)),
        ("inside", inside_queries(starts, lasts, 20_000, SEED + 1)),
    ):
        pages = [(a // PAGE, b // PAGE) for a, b in queries]
        for q, page_q in zip(queries[:500], pages[:500], strict=True):
            if len(ours.overlap(*q)) != len(theirs.search_values(*page_q)):
                print(f"{kind}: the answers differ at {q}", file=sys.stderr)
                return 1
        pairs = {
            "overlap": ((ours.overlap, queries), (theirs.search_values, pages)),
            "count_overlap": ((ours.count_overlap, queries), (theirs.count, pages)),
        }
        best = {w: [float("inf"), float("inf")] for w in pairs}
        for _ in range(rounds):
            for w, sides in pairs.items():
                for i, (f, side_queries) in enumerate(sides):
                    best[w][i] = min(best[w][i], best_round(f, side_queries))
        for w, (mine, peer) in best.items():
            print(f"  {w} ({kind}): {mine:7.0f} / {peer:7.0f}  = {mine / peer:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
