"""Run test cases in child interpreters under a watchdog, so that a case that hangs (a deadlock,
a frozen process) fails in seconds instead of hanging the suite.

A test module lists its cases as module-level functions; ``run_cases(module, names)`` runs them
in as few children as possible (one, unless a case hangs or kills its child: that case is
reported, the child is killed and a new one runs the cases after it). Each case has its own
deadline; ``faulthandler`` prints the stacks of a case that is about to be killed.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import faulthandler, importlib, json, sys, traceback
module, per_case, names = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
mod = importlib.import_module(module)
for name in names:
    print("START " + name, flush=True)
    faulthandler.dump_traceback_later(max(per_case - 1.0, 0.5), exit=False)
    try:
        getattr(mod, name)()
    except BaseException:
        print("FAIL " + name + " " + json.dumps(traceback.format_exc()), flush=True)
    else:
        print("PASS " + name, flush=True)
    faulthandler.cancel_dump_traceback_later()
"""


def _lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def run_cases(module: str, names: list[str], per_case: float = 10.0,
              results: dict[str, str] | None = None) -> dict[str, str]:
    """``{name: "PASS" | failure text}`` for each case of ``module`` (a module in this folder),
    filled into ``results`` as the cases finish. A case's deadline runs from its start,
    whatever it prints."""
    results = {} if results is None else results
    todo = list(names)
    while todo:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, module, str(per_case), *todo],
            cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
        reader.start()
        current, noise = None, []
        deadline = time.monotonic() + per_case
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                proc.kill()
                results[current or todo[0]] = f"HANG (killed after {per_case:.0f} s)\n" + "".join(noise[-60:])
                break
            if line is None:
                rc = proc.wait()
                if current is not None:
                    results[current] = f"child died (rc {rc})\n" + "".join(noise[-60:])
                break
            word, _, rest = line.rstrip("\n").partition(" ")
            if word == "START":
                current, noise = rest, []
                deadline = time.monotonic() + per_case
            elif word == "PASS":
                results[rest], current = "PASS", None
            elif word == "FAIL":
                name, _, tb = rest.partition(" ")
                results[name], current = json.loads(tb), None
            else:
                noise.append(line)
        proc.kill()
        proc.wait()
        reader.join(5)
        proc.stdout.close()
        todo = [n for n in names if n not in results]
    return results


class Cases:
    """Module-level helper: ``CASES = Cases(__name__)``; ``CASES.check(name)`` in a test runs
    every case of the module once (first call) and asserts that ``name`` passed."""

    def __init__(self, module: str, per_case: float = 10.0):
        self.module = module.rpartition(".")[2]
        self.per_case = per_case
        self.results: dict[str, str] | None = None

    def check(self, name: str) -> None:
        if self.results is None:
            # Set first: if the run is interrupted (a test timeout), later checks report "not
            # run" instead of running everything again.
            self.results = {}
            mod = sys.modules[self.module] if self.module in sys.modules else None
            names = sorted(n for n in dir(mod) if n.startswith("case_")) if mod else [name]
            run_cases(self.module, names, self.per_case, self.results)
        result = self.results.get(name, "not run")
        assert result == "PASS", f"{name}: {result}"
