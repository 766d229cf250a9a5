"""Timing, memory, and the JSON-lines sink a worker reports to."""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any


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


def guard(sink: Sink, workload: str, fn: Callable[[], None]) -> None:
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


def check_counts(name: str, got: list[int], want: list[int], what: str) -> None:
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    if len(got) != len(want) or bad:
        i = bad[0] if bad else min(len(got), len(want))
        raise WrongAnswer(
            f"{name} {what}: {len(bad)} of {len(want)} sampled queries wrong "
            f"(first #{i}: got {got[i] if i < len(got) else None}, want {want[i] if i < len(want) else None})"
        )


def size_of(x: Any) -> int:
    try:
        return len(x)
    except TypeError:
        return sum(1 for _ in x)
