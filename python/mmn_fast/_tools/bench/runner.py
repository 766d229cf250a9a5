"""The worker processes: one per target, run one after the other, read back as JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from .data import NOTIFIER_TARGETS
from .measure import Sink
from .notifier_workloads import run_mm_worker
from .peers import MODULES
from .tree_workloads import run_tree_worker


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


def _follow(
    proc: subprocess.Popen[bytes], path: str, target: str, bar: Progress, timeout: float
) -> tuple[list[dict[str, Any]], bool]:
    """The records the worker writes to ``path``, read as they come until it exits (or is
    killed after ``timeout`` seconds: then the second value is true)."""
    t0 = time.monotonic()
    records: list[dict[str, Any]] = []
    pos = 0
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
            return records, False
        if time.monotonic() - t0 > timeout:
            proc.kill()
            proc.wait()
            return records, True


def run_target(target: str, cfg: dict[str, Any], bar: Progress, timeout: float) -> dict[str, Any]:
    """One worker process; returns its status and results, a crash included."""
    fd, path = tempfile.mkstemp(prefix="mmn_bench_", suffix=".jsonl")
    os.close(fd)
    cmd = [sys.executable, "-m", "mmn_fast._tools.bench", "--worker", target, "--out", path]
    if cfg["quick"]:
        cmd.append("--quick")
    # The worker derives its configuration from the same flags.
    cmd += ["--repeat", str(cfg["repeat"]), "--n", str(cfg["n"])]
    env = dict(os.environ, PYTHONHASHSEED="0")
    # stderr goes to a file, not a pipe: a pipe read only at the end would stall a worker that
    # writes more than the pipe holds (a long traceback, a chatty peer) until the timeout.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        records, timed_out = _follow(proc, path, target, bar, timeout)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    os.unlink(path)
    status = next((r for r in records if r["kind"] == "status"), None)
    out: dict[str, Any] = {
        "status": status["status"] if status else "crashed",
        "version": status.get("version") if status else None,
        "detail": status.get("detail") if status else None,
        "results": {r["workload"]: r for r in records if r["kind"] == "result"},
    }
    done = any(r["kind"] == "done" for r in records)
    # A worker that died before it said whether its target imports crashed too.
    if (status is None or status["status"] == "ok") and not done:
        last = [r for r in records if r["kind"] == "progress"]
        where = last[-1]["step"] if last else "start"
        why = "timed out" if timed_out else f"exit code {proc.returncode}"
        out["status"] = "crashed"
        out["detail"] = f"{why} during {where!r}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"
        out["results"].setdefault(where, {"status": "crashed", "detail": out["detail"]})
    return out
