"""``python -m mmn_fast bench``: mmn_fast against every interval index on PyPI, in one run.

Issue 7's comparison. Every *target* (mmn_fast and each peer) runs in its own child process, one
after the other, on the same seeded data: a peer that segfaults, prints, or leaks cannot spoil
the others, and the memory figures of each are its own. Before anything is timed, every target's
answers are checked against a brute-force count on a sample; a target that answers wrongly or
raises is reported and not timed for that workload. Medians of ``--repeat`` timed batches are
reported in nanoseconds per operation, with ratios to the fastest target of the same run.

Coordinates: the data are page-aligned byte addresses below 2**41. Peers limited to 32 bits
(superintervals, intervaltree-rs, quicksectx, ailist) get the same data as page numbers
(address >> 12), which is exact because every interval and every query covers whole pages;
63-bit peers (kerneltree, ncls) take the bytes as they are. Half-open peers get ``last + 1``.

One module per concern: ``data`` (sizes and seeded data), ``peers`` (an adapter per target),
``measure`` (timing and the worker's sink), ``tree_workloads`` and ``notifier_workloads`` (what a
worker runs), ``py_notifier`` (the pure-Python baseline), ``runner`` (the worker processes),
``report`` (tables, checks, plot) and ``cli`` (the command). Not part of the public API: the entry
point is ``main(argv) -> int``; the layout of the JSON it writes is described in
docs/benchmarks.md.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
