#!/usr/bin/env python3
"""A regression guard on instruction counts (issue 7, part 3): immune to a noisy machine.

Runs a fixed, seeded, small workload of mmn_fast (tree inserts, queries, batch queries, churn,
``from_arrays``; an MM with native and Python-callback subscriptions, no-hit and hitting
invalidations, ``invalidate_many``) under ``valgrind --tool=callgrind`` and reads the total
instruction count (``Ir``). The same script is also run without the workload (imports and data
only), and the difference is what is compared, so that the interpreter's start-up does not
dilute a regression. The result is compared with ``benches/callgrind_baseline.json``:

    python benches/callgrind_guard.py            # exit 1 when a count grew past the tolerance
    python benches/callgrind_guard.py --update   # rewrite the baseline (after a deliberate change)

Counts depend on the compiler, the Python build and the build profile: the baseline records
them, and a run on a different Python or machine warns rather than fails (``--strict`` fails).
Counts that fell by more than the tolerance are reported too: then update the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "callgrind_baseline.json"

# The workload: one phase per line group, kept small so that the whole guard runs in seconds.
SETUP = r"""
import random
from array import array
import mmn_fast
from mmn_fast import MM, IntervalTree, Range
rng = random.Random(7)
N = 2000
starts = [rng.randrange(1 << 28) << 12 for _ in range(N)]
lasts = [s + (int(257 ** rng.random()) or 1) * 4096 - 1 for s in starts]
qs = [rng.randrange(1 << 28) << 12 for _ in range(N)]
ql = [q + 16 * 4096 - 1 for q in qs]
inside = [starts[rng.randrange(N)] for _ in range(N)]
"""

WORKLOAD = r"""
t = IntervalTree()
handles = [t.insert(s, l, i) for i, (s, l) in enumerate(zip(starts, lasts))]
hits = 0
for a, b in zip(qs, ql):
    hits += len(t.overlap(a, b))
for a in inside:
    hits += len(t.overlap(a, a + 4095))
    hits += t.count_overlap(a, a + 4095)
idx, _ = t.overlap_many(array("Q", inside), array("Q", [a + 4095 for a in inside]))
for j in range(1000):
    p = j * 7 % N
    t.remove(handles[p])
    handles[p] = t.insert(qs[j], ql[j], j)
t2 = IntervalTree.from_arrays(array("Q", starts), array("Q", lasts))
mm = MM()
for i, (s, l) in enumerate(zip(starts, lasts)):
    mm.insert_interval_notifier(s, l + 1 - s, tag=i)
calls = [0]
def cb(sub, r, seq):
    sub.set_seq(seq)
    calls[0] += 1
    return True
for s, l in zip(starts[:200], lasts[:200]):
    mm.insert_interval_notifier(s, l + 1 - s, cb)
miss = Range(1 << 50, (1 << 50) + 4096)
for _ in range(2000):
    mm.invalidate_range_start(miss)
    mm.invalidate_range_end(miss)
for a in inside:
    r = Range(a, a + 4096)
    mm.invalidate_range_start(r)
    mm.invalidate_range_end(r)
n = mm.invalidate_many(array("Q", inside), array("Q", [a + 4096 for a in inside]))
mm.drain_invalidated()
assert hits > 0 and len(idx) > 0 and n > 0 and calls[0] > 0 and len(t) == N and len(t2) == N
"""


def instructions(script: str, valgrind: str) -> int:
    """Total ``Ir`` of ``python -c script`` under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", PYTHONMALLOC="malloc")
        cmd = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", script]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"callgrind run failed with exit code {proc.returncode}")
        text = Path(out).read_text(encoding="utf-8", errors="replace")
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if m is None:
        raise SystemExit("no instruction total in callgrind's output")
    return int(m.group(1))


def environment() -> dict[str, str]:
    import mmn_fast

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "mmn_fast": mmn_fast.__version__,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--update", action="store_true", help="rewrite the baseline with this run's counts")
    p.add_argument("--tolerance", type=float, default=None, help="allowed relative change (default: the baseline's, else 0.10)")
    p.add_argument("--strict", action="store_true", help="fail, not warn, when the environment differs from the baseline's")
    p.add_argument("--baseline", type=Path, default=BASELINE)
    args = p.parse_args(argv)

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("callgrind guard: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    base = instructions(SETUP, valgrind)
    full = instructions(SETUP + WORKLOAD, valgrind)
    counts = {"workload_ir": full - base, "total_ir": full, "startup_ir": base}
    env = environment()
    print(f"callgrind: workload {counts['workload_ir']:,} Ir (total {full:,}, start-up and data {base:,})")

    if args.update or not args.baseline.exists():
        doc = {
            "tolerance": args.tolerance if args.tolerance is not None else 0.10,
            "environment": env,
            "counts": counts,
            "note": "written by benches/callgrind_guard.py --update; compare workload_ir",
        }
        args.baseline.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"baseline written to {args.baseline}")
        return 0

    doc = json.loads(args.baseline.read_text(encoding="utf-8"))
    tol = args.tolerance if args.tolerance is not None else float(doc.get("tolerance", 0.10))
    want = int(doc["counts"]["workload_ir"])
    got = counts["workload_ir"]
    change = (got - want) / want
    print(f"baseline {want:,} Ir; change {change:+.1%} (tolerance {tol:.0%})")
    same_env = doc.get("environment") == env
    if not same_env:
        print(f"note: baseline taken on {doc.get('environment')}, this run on {env}")
    if change > tol:
        print("REGRESSION: the workload costs more instructions than the baseline allows")
        return 1 if same_env or args.strict else 0
    if change < -tol:
        print("faster than the baseline by more than the tolerance: run with --update to lock it in")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
