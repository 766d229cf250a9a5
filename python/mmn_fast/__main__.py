"""``python -m mmn_fast``: the command line.

* ``demo``: two simulated devices mirror a CPU page table under concurrent invalidation (the
  kernel's HMM test driver in user space; ``mmn_fast._tools.demo``). Exits 0 when every check
  held.
* ``bench``: the benchmarks against peers (``mmn_fast._tools.bench``, called as
  ``main(argv) -> int`` with the arguments that follow ``bench``). Exits 2 when this build has
  no benchmark module.
* ``--version``: the installed version.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__

_BENCH_MODULE = "mmn_fast._tools.bench"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mmn_fast",
        description="mmn_fast: the Linux kernel's MMU-notifier scheme for user space.",
    )
    parser.add_argument("--version", action="version", version=f"mmn_fast {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from ._tools.demo import add_arguments

    demo = commands.add_parser(
        "demo",
        help="run the device-mirror demo (two devices, one faulting and one mutating thread)",
        description="Two simulated devices mirror a CPU page table through interval "
        "subscriptions while another thread unmaps, protects, writes and migrates pages; "
        "prints what the invalidations reached, the retries they forced, and the checks.",
    )
    add_arguments(demo)

    # Listed for --help only: main() hands everything after "bench" (options and --help
    # included) to the benchmark module untouched, which argparse's REMAINDER cannot do.
    commands.add_parser(
        "bench", help="benchmark against peers (arguments go to mmn_fast._tools.bench)"
    )
    return parser


def _bench(argv: list[str]) -> int:
    try:
        module = importlib.import_module(_BENCH_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _BENCH_MODULE:
            raise
        print(
            f"python -m mmn_fast bench: this installation has no benchmark module "
            f"({_BENCH_MODULE} is missing); run benches/compare.py from a source checkout.",
            file=sys.stderr,
        )
        return 2
    result = module.main(argv)
    return int(result) if result is not None else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = _parser().parse_args(argv)  # exits on --help, --version and errors
    # The only other top-level options exit, so "bench" can only come first: args is "demo".
    from ._tools.demo import run_from_args

    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
