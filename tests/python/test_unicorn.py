"""The Unicorn coherence layer (``mmn_fast.unicorn``) on real guest programs.

Every scenario of ``guests/unicorn_harness.py`` runs on x86-64 and ARM64 three ways: through
the layer, on plain Unicorn, and stepped with the TB cache flushed before every instruction
(the reference). The layer must match the reference; plain Unicorn is expected to show the
stale result the layer fixes, and reports (xfail) instead of failing where it does not.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
from collections import Counter
from types import ModuleType

import pytest

unicorn = pytest.importorskip("unicorn")
capstone = pytest.importorskip("capstone")

from mmn_fast import Event  # noqa: E402
from mmn_fast.unicorn import Insn  # noqa: E402


def _load_harness() -> ModuleType:
    path = pathlib.Path(__file__).with_name("guests") / "unicorn_harness.py"
    spec = importlib.util.spec_from_file_location("_mmn_fast_unicorn_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


h = _load_harness()
P = h.programs
BODY = h.BODY
ARCHS = sorted(h.ARCHS)
SCENARIOS = sorted(h.SCENARIOS)


def _imm(insn: Insn) -> int:
    """The last operand of ``insn`` as an int ('rbx, 0xa' -> 10, 'x19, x19, #1' -> 1)."""
    return int(insn.op_str.rsplit(",", 1)[1].strip().lstrip("#"), 0)


# --------------------------------------------------------------------------- coherence


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("arch", ARCHS)
def test_layer_matches_flush_every_step(arch: str, scenario: str) -> None:
    run = h.SCENARIOS[scenario]
    reference = run(h.Machine(arch, "reference"))
    assert run(h.Machine(arch, "layer")) == reference


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("arch", ARCHS)
def test_plain_unicorn_runs_stale_code(arch: str, scenario: str) -> None:
    """Plain Unicorn, no layer: the stale result the layer fixes (reports if Unicorn is right)."""
    run = h.SCENARIOS[scenario]
    reference = run(h.Machine(arch, "reference"))
    plain = run(h.Machine(arch, "plain"))
    if plain == reference:
        pytest.xfail(
            f"plain unicorn {unicorn.__version__} is not stale in {scenario!r} on {arch} "
            f"(got {plain}, as the flush-every-step reference); nothing for the layer to fix here"
        )
    assert plain != reference


# --------------------------------------------------------------------------- re-translations


@pytest.mark.parametrize("arch", ARCHS)
def test_host_patch_drops_exactly_the_patched_block(arch: str) -> None:
    m = h.Machine(arch, "layer")
    layer = m.layer
    assert m.run("patch_main") == 10
    cached = {b.start for b in layer.blocks()}
    assert BODY in cached and P.CODE in cached
    layer.reset_stats()
    # A write behind the layer's back to the entry block (loop 3 times instead of 10): only
    # Unicorn's surviving translation of that block can still loop 10 times, so the result
    # below proves the layer left every untouched block's TB in place.
    canary_address = m.code["patch_main"][0]
    m.uc.mem_write(canary_address, m.arch.canary)
    m.load("body_patched")
    assert layer.stats.dropped == Counter({BODY: 1})
    assert layer.stats.tb_removals == 1
    assert m.run("patch_main") == 10 * 100
    assert layer.stats.translations == Counter({BODY: 1})


@pytest.mark.parametrize("arch", ARCHS)
def test_mid_run_patch_retranslates_only_the_patched_block(arch: str) -> None:
    m = h.Machine(arch, "layer")
    assert h.patch_mid_run(m) == [5 * 1 + 5 * 100, 10]
    stats = m.layer.stats
    assert stats.dropped == Counter({BODY: 1})
    assert stats.translations[BODY] == 2
    assert all(n == 1 for a, n in stats.translations.items() if a != BODY)


@pytest.mark.parametrize("arch", ARCHS)
def test_self_modifying_code_is_followed_block_by_block(arch: str) -> None:
    m = h.Machine(arch, "layer")
    assert m.run("smc_main") == sum(range(1, 11))
    stats = m.layer.stats
    # ten stores into body's immediate: the first precedes its first translation
    assert stats.translations[BODY] == 10
    assert stats.dropped == Counter({BODY: 9})
    assert all(n == 1 for a, n in stats.translations.items() if a != BODY)
    assert stats.tb_removals == 0  # guest stores: Unicorn's own SMC detection drops the TB
    assert _imm(m.layer.instructions(BODY)[0]) == 1


@pytest.mark.parametrize("arch", ARCHS)
def test_host_copy_and_remap_drop_exactly_the_rewritten_block(arch: str) -> None:
    m = h.Machine(arch, "layer")
    layer = m.layer
    m.write(P.JIT, m.code["fn_a"][1])
    assert m.run("call_jit") == 3
    layer.reset_stats()
    m.write(P.JIT, m.code["fn_b"][1])
    assert layer.stats.dropped == Counter({P.JIT: 1})
    assert m.run("call_jit") == 4
    assert layer.stats.translations == Counter({P.JIT: 1})

    m.map(P.PAGE, 0x1000)
    m.load("page_v1")
    assert m.run("call_page") == 1
    layer.reset_stats()
    m.unmap(P.PAGE, 0x1000)
    assert layer.stats.dropped == Counter({P.PAGE: 1})
    assert not layer.is_cached(P.PAGE)
    m.map(P.PAGE, 0x1000)
    m.load("page_v2")
    assert m.run("call_page") == 2
    assert layer.stats.translations == Counter({P.PAGE: 1})


@pytest.mark.parametrize("arch", ARCHS)
def test_hook_add_and_delete_drop_the_hooked_blocks(arch: str) -> None:
    m = h.Machine(arch, "layer")
    layer = m.layer
    m.run("patch_main")
    layer.reset_stats()
    hits: list[int] = []
    size = len(m.code["body"][1])
    handle = m.hook_add(unicorn.UC_HOOK_CODE, lambda uc, a, s, d: hits.append(a), BODY, BODY + size - 1)
    assert layer.stats.dropped == Counter({BODY: 1})
    m.run("patch_main")
    assert len(hits) == 2 * 10
    assert layer.stats.translations == Counter({BODY: 1})
    m.hook_del(handle)
    assert layer.stats.dropped == Counter({BODY: 2})
    m.run("patch_main")
    assert len(hits) == 2 * 10


@pytest.mark.parametrize("arch", ARCHS)
def test_write_touching_no_cached_block_drops_nothing(arch: str) -> None:
    m = h.Machine(arch, "layer")
    layer = m.layer
    m.run("patch_main")
    before = layer.blocks()
    layer.reset_stats()
    layer.mem_write(P.STACK, b"\0" * 64)
    layer.mem_write(BODY + 0x40, b"\x90")  # same page as code, no block there
    assert layer.stats.invalidations == 2
    assert layer.stats.tb_removals == 0 and not layer.stats.dropped
    assert layer.blocks() == before
    assert len(layer.mm) == len(before)


# --------------------------------------------------------------------------- analysis cache


@pytest.mark.parametrize("arch", ARCHS)
def test_disassembly_is_never_stale_under_self_modifying_code(arch: str) -> None:
    m = h.Machine(arch, "layer")
    seen: list[int] = []

    def trace(uc: object, address: int, size: int, user_data: object) -> None:
        seen.append(_imm(m.layer.instructions(address)[0]))

    m.hook_add(unicorn.UC_HOOK_BLOCK, trace, BODY, BODY)
    m.run("smc_main")
    assert seen == list(range(10, 0, -1))
    assert m.layer.stats.analyses_dropped == 9


@pytest.mark.parametrize("arch", ARCHS)
def test_naive_disassembly_cache_goes_stale(arch: str) -> None:
    """Without the layer, a tracer caching disassembly per block shows stale instructions."""
    m = h.Machine(arch, "plain")
    cs = capstone.Cs(
        *(
            (capstone.CS_ARCH_X86, capstone.CS_MODE_64)
            if arch == "x86_64"
            else (capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        )
    )
    cache: dict = {}
    seen: list[int] = []

    def trace(uc: object, address: int, size: int, user_data: object) -> None:
        if address not in cache:
            cache[address] = list(cs.disasm_lite(bytes(m.uc.mem_read(address, size)), address))
        seen.append(_imm(Insn(*cache[address][0])))

    m.hook_add(unicorn.UC_HOOK_BLOCK, trace, BODY, BODY)
    assert m.run("smc_main") == 55
    assert seen == [10] * 10


@pytest.mark.parametrize("arch", ARCHS)
def test_instructions_follow_host_patches(arch: str) -> None:
    m = h.Machine(arch, "layer")
    layer = m.layer
    first = layer.instructions(BODY)  # not run yet: translated through ctl_request_cache
    assert layer.is_cached(BODY)
    assert _imm(first[0]) == 1
    assert layer.instructions(BODY) is first
    m.load("body_patched")
    assert not layer.is_cached(BODY)
    assert _imm(layer.instructions(BODY)[0]) == 100
    assert first[0].address == BODY and first[0].size == len(m.code["body"][1]) - first[1].size


# --------------------------------------------------------------------------- API edges


def test_request_cache_subscribes_the_block() -> None:
    m = h.Machine("x86_64", "layer")
    layer = m.layer
    block = layer.request_cache(BODY)
    assert block.start == BODY and block.end > BODY
    assert layer.is_cached(BODY)
    m.load("body_patched")
    assert layer.stats.dropped[BODY] == 1
    assert m.run("patch_main") == 1000


def test_other_hook_types_and_empty_writes_cost_no_invalidation() -> None:
    m = h.Machine("x86_64", "layer")
    layer = m.layer
    layer.reset_stats()
    handle = layer.hook_add(unicorn.UC_HOOK_MEM_READ, lambda *a: None)
    layer.hook_del(handle)
    layer.mem_write(BODY, b"")
    assert layer.stats.invalidations == 0


def test_invalidate_by_hand_and_errors() -> None:
    m = h.Machine("x86_64", "layer")
    layer = m.layer
    m.run("patch_main")
    layer.reset_stats()
    layer.invalidate(BODY, BODY + 1, Event.SOFT_DIRTY)
    assert layer.stats.dropped == Counter({BODY: 1})
    with pytest.raises(ValueError):
        layer.invalidate(BODY, BODY)
    with pytest.raises(unicorn.UcError):
        layer.mem_write(0x9000_0000, b"\x90")  # unmapped: Unicorn's error propagates
    assert layer.mm.invalidate_seq % 2 == 0
    assert m.run("patch_main") == 10


def test_protect_drops_blocks_before_the_change() -> None:
    m = h.Machine("x86_64", "layer")
    layer = m.layer
    m.map(P.PAGE, 0x1000)
    m.load("page_v1")
    assert m.run("call_page") == 1
    layer.reset_stats()
    layer.mem_protect(P.PAGE, 0x1000, unicorn.UC_PROT_READ)
    assert layer.stats.dropped == Counter({P.PAGE: 1})
    with pytest.raises(unicorn.UcError):
        m.run("call_page")
    layer.mem_protect(P.PAGE, 0x1000, unicorn.UC_PROT_ALL)
    assert m.run("call_page") == 1


def test_close_removes_every_subscription() -> None:
    m = h.Machine("arm64", "layer")
    layer = m.layer
    m.run("patch_main")
    layer.instructions(BODY)
    assert len(layer.mm) == len(layer) + 1
    layer.close()
    assert len(layer.mm) == 0 and len(layer) == 0
    assert m.run("patch_main") == 10


def test_import_without_unicorn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "mmn_fast.unicorn")
    monkeypatch.setitem(sys.modules, "unicorn", None)
    with pytest.raises(ImportError, match=r"pip install mmn_fast\[unicorn\]"):
        importlib.import_module("mmn_fast.unicorn")
