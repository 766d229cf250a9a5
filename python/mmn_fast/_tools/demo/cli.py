"""The demo's command line: ``python -m mmn_fast demo`` and ``examples/device_mirror.py``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from .pages import CHUNK_PAGES
from .run import run_demo

#: The first line of the demo's documentation (the package docstring).
_DESCRIPTION = (
    "A user-space ``dmirror``: simulated devices mirror a CPU page table through mmn_fast."
)


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a finite number of seconds >= 0: {text!r}")
    return value


def _pages(text: str) -> int:
    value = int(text)
    if value < CHUNK_PAGES:
        raise argparse.ArgumentTypeError(f"need at least {CHUNK_PAGES} pages: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (shared by ``python -m mmn_fast demo`` and
    ``examples/device_mirror.py``)."""
    parser.add_argument("--seconds", type=_seconds, default=3.0, help="how long to run (default 3)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of both threads' choices (default 0)"
    )
    parser.add_argument(
        "--pages", type=_pages, default=1024, help="pages in the page table (default 1024)"
    )


def run_from_args(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the demo as ``args`` say and print the summary to ``out`` (default stdout); 0 when
    every check passed, else 1."""
    report = run_demo(args.seconds, args.seed, npages=args.pages)
    for line in report.lines():
        print(line, file=out or sys.stdout)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``examples/device_mirror.py``'s entry point."""
    parser = argparse.ArgumentParser(description=_DESCRIPTION)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
