"""The comparison's report over several runs (``python -m mmn_fast bench --runs K``): issue 11
asks each target to hold over three runs, and the table says in how many it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mmn_fast._tools.bench import cli, runner
from mmn_fast._tools.bench.report import runs_table


def check(target: str, value: float | None, limit: float, at_most: bool = True) -> dict[str, Any]:
    met = None if value is None else (value <= limit if at_most else value >= limit)
    return {
        "target": target,
        "value": value,
        "limit": limit,
        "at_most": at_most,
        "met": met,
        "note": "",
    }


def rows(table: str) -> dict[str, list[str]]:
    """The table's rows by target, split on the columns' two-space gaps."""
    lines = table.splitlines()[2:]
    return {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in line.split("  ") if c.strip()] for line in lines)
    }


def test_runs_table_counts_the_runs_each_target_held_in() -> None:
    runs = [
        [check("a / b", 0.9, 1.0), check("c / d", 52.0, 50.0, at_most=False)],
        [check("a / b", 1.1, 1.0), check("c / d", 43.0, 50.0, at_most=False)],
        [check("a / b", 0.95, 1.0), check("c / d", 53.0, 50.0, at_most=False)],
    ]
    table = runs_table(runs)
    header = [c.strip() for c in table.splitlines()[0].split("  ") if c.strip()]
    assert header == ["issue 11 target (ratio in each run)", "run 1", "run 2", "run 3", "limit"]
    assert rows(table) == {
        "a / b": ["0.90", "1.10", "0.95", "<= 1", "met in 2 of 3"],
        "c / d": ["52.00", "43.00", "53.00", ">= 50", "met in 2 of 3"],
    }


def test_runs_table_shows_a_target_missing_from_a_run_as_unmet() -> None:
    # A workload that crashed in one run has no value there (or no row at all).
    runs = [[check("a / b", None, 1.0)], [], [check("a / b", 0.5, 1.0), check("e", 40.0, 48.0)]]
    assert rows(runs_table(runs)) == {
        "a / b": ["-", "-", "0.50", "<= 1", "met in 1 of 3"],
        "e": ["-", "-", "40.00", "<= 48", "met in 1 of 3"],
    }


@pytest.mark.parametrize("runs", ["0", "-1"])
def test_bench_refuses_fewer_than_one_run(runs: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--quick", "--runs", runs]) == 2
    assert "--runs must be at least 1" in capsys.readouterr().err


def test_bench_runs_every_target_once_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert (
        cli.main(
            [
                "--quick",
                "--runs",
                "2",
                "--targets",
                "mmn_fast",
                "--repeat",
                "1",
                "--no-progress",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "the last of 2 runs" in text
    assert "issue 11 target (ratio in each run)" in text
    doc = json.loads(out.read_text())
    assert len(doc["runs"]) == 2
    assert doc["targets"] == doc["runs"][-1]["targets"]
    for run in doc["runs"]:
        assert list(run["targets"]) == ["mmn_fast"]
        assert run["targets"]["mmn_fast"]["status"] == "ok"
        memory = next(c for c in run["checks"] if c["target"].startswith("memory: IntervalTree"))
        assert memory["value"] is not None and memory["value"] > 0


def test_a_worker_that_writes_much_to_stderr_is_not_stalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker that fails with more on stderr than a pipe holds (64 KiB on Linux) is reported
    # at once with its exit code and last line, not killed at the timeout as a stalled one.
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\nhead -c 400000 /dev/zero | tr '\\\\0' x >&2\necho >&2\necho last words >&2\nexit 3\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(runner.sys, "executable", str(fake))
    out = runner.run_target(
        "mmn_fast", {"quick": True, "repeat": 1, "n": 10}, runner.Progress(1, False), 20.0
    )
    assert out["status"] == "crashed"
    assert out["detail"] == "exit code 3 during 'start': last words"
