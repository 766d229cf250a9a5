#!/usr/bin/env python3
"""mmn_fast against every interval index on PyPI, in one run (issue 7).

The implementation lives in the package (``mmn_fast._tools.bench``) so that an installed wheel
can run it as ``python -m mmn_fast bench``; this script is the same command for a source
checkout::

    pip install -r benches/requirements-peers.txt      # the peers; failures are reported, not fatal
    python benches/compare.py [--quick] [--json PATH] [--plot PATH]

See docs/benchmarks.md for what each workload measures.
"""

from __future__ import annotations

import sys

from mmn_fast._tools.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
