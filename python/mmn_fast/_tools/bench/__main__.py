"""``python -m mmn_fast._tools.bench``: the same as ``python -m mmn_fast bench``; also the command
line of each target's worker process (``--worker``), see ``runner``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
