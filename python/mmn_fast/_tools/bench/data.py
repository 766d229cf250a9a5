"""Seeded data of every run: the sizes, the intervals and queries, the brute-force oracle."""

from __future__ import annotations

import random
from typing import Any

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
            self._pairs = list(zip(starts, lasts, strict=True))
        else:
            self._np = np
            self._s = np.array(starts, dtype=np.uint64)
            self._l = np.array(lasts, dtype=np.uint64)

    def count(self, qs: int, ql: int) -> int:
        if self._np is not None:
            return int(((self._s <= ql) & (self._l >= qs)).sum())
        return sum(1 for s, l in self._pairs if s <= ql and l >= qs)
