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
from .report import checks_table, notifier_table, plot, targets_check, tree_table
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
