"""The instruction-cache demo (examples/unicorn_insn_cache.py): three caches, one answer.

Each cache is filled from a guest, stormed with host writes into its code (immediate patches
that hit an entry, padding writes that hit none), and compared entry by entry with a fresh
Capstone decode of guest memory. Guest stores reach the mmn_fast cache only where watched.
"""

from __future__ import annotations

import importlib.util
import pathlib
import random
import sys
from types import ModuleType

import pytest

pytest.importorskip("unicorn")
pytest.importorskip("capstone")


def _load() -> ModuleType:
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "unicorn_insn_cache.py"
    spec = importlib.util.spec_from_file_location("unicorn_insn_cache", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


ex = _load()
N = 3000


@pytest.mark.parametrize("kind", ex.KINDS)
def test_cache_is_coherent_under_a_storm_of_host_writes(kind: str) -> None:
    cache, uc = ex.make(kind, N)
    ex.fill(cache, N)
    assert len(cache) == N
    writes = ex.storm(random.Random(7), N, 600)
    for address, data in writes:
        cache.write(address, data)
    hits = {a & ~(ex.STRIDE - 1) for a, d in writes if a % ex.STRIDE == 3}
    assert len(cache) == N - len(hits)  # exactly the entries written into were dropped
    assert ex.stale_entries(cache, uc, N) == 0
    first = cache.get(ex.FUNCS)
    assert first[0][2] == "add" and first[1][2] == "ret"


def _store_into_f1(uc: object) -> int:
    """A guest routine at 0x2000 that stores 0x55 into f_1's immediate, then halts."""
    target = ex.FUNCS + ex.STRIDE + 3
    code = bytes.fromhex("c60425") + target.to_bytes(4, "little") + b"\x55\xf4"  # mov byte [t], 0x55
    uc.mem_map(0x2000, 0x1000)  # type: ignore[attr-defined]
    uc.mem_write(0x2000, code)  # type: ignore[attr-defined]
    return 0x2000 + len(code) - 1


@pytest.mark.parametrize("watched", [False, True])
def test_guest_stores_reach_the_cache_only_where_watched(watched: bool) -> None:
    cache, uc = ex.make("mmn_fast", 4)
    ex.fill(cache, 4)
    until = _store_into_f1(uc)
    if watched:
        uc.watch_guest_writes(ex.FUNCS, ex.FUNCS + 4 * ex.STRIDE - 1)
    before = cache.get(ex.FUNCS + ex.STRIDE)
    uc.emu_start(0x2000, until)
    after = cache.get(ex.FUNCS + ex.STRIDE)
    assert int(after[0][3].rsplit(",", 1)[1], 0) == (0x55 if watched else 1)
    assert (after is before) is not watched
