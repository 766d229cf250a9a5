"""``python -m mmn_fast bench``: the options and the run from start to finish."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

from .data import NOTIFIER_TARGETS, SEED, TREE_TARGETS, config
from .report import checks_table, notifier_table, plot, runs_table, targets_check, tree_table
from .runner import Progress, run_target, worker


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
    p.add_argument("--n", type=int, help="intervals in the tree workloads (default 10^5, 10^4 quick)")
    p.add_argument("--runs", type=int, default=1, metavar="K",
                   help="K whole runs, one after another (every target once a run); the tables show "
                        "the last, and the targets table each run and how many met the target")
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
    if args.n:
        cfg["n"] = args.n
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
    if args.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    bar = Progress(len(names) * args.runs, enabled=not args.no_progress and sys.stderr.isatty() or os.environ.get("MMN_BENCH_PROGRESS") == "1")
    t0 = time.monotonic()
    runs: list[dict[str, dict[str, Any]]] = []
    for _ in range(args.runs):
        run: dict[str, dict[str, Any]] = {}
        for t in names:
            bar.show(f"{t}: starting")
            run[t] = run_target(t, cfg, bar, args.timeout)
            bar.done += 1
        runs.append(run)
    bar.show("done")
    bar.close()
    elapsed = time.monotonic() - t0

    mode = "quick" if cfg["quick"] else "full"
    print(f"mmn_fast bench ({mode}; n = {cfg['n']:,} intervals; medians of {cfg['repeat']} batches, ns per operation; "
          f"ratio to the fastest target of this run in parentheses)")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; {elapsed:.0f}s"
          + (f"; the last of {args.runs} runs" if args.runs > 1 else "") + "\n")
    for k, run in enumerate(runs):
        which = f"run {k + 1}: " if args.runs > 1 else ""
        for t, r in run.items():
            if r["status"] != "ok":
                print(f"  {which}{t}: {r['status']}: {r['detail']}")
            for w, res in r["results"].items():
                if res.get("status") in ("wrong", "error", "crashed"):
                    print(f"  {which}{t}: {w}: {res['status']}: {res.get('detail')}")
    targets = runs[-1]
    text, rows = tree_table(targets)
    print("\nIntervalTree and peers\n" + text)
    print("\nNotifier (mmn_fast.MM vs a pure-Python notifier on intervaltree)\n" + notifier_table(targets))
    all_checks = [targets_check(r) for r in runs]
    checks = all_checks[-1]
    print("\n" + checks_table(checks))
    if args.runs > 1:
        print("\n" + runs_table(all_checks))
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
        if args.runs > 1:
            # The tables' run is the last; every run's results and targets, in order.
            doc["runs"] = [{"targets": r, "checks": c} for r, c in zip(runs, all_checks, strict=True)]
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        print(f"\nJSON written to {args.json}")
    if args.plot:
        print(plot(args.plot, rows, targets))
    return 0
