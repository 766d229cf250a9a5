"""The Unicorn coherence layer (``mmn_fast.unicorn``) on real guest programs.

Every scenario of ``guests/unicorn_harness.py`` runs on each of its architectures (x86-64, ARM64,
ARM, Thumb) three ways: through the layer, on plain Unicorn, and stepped with the TB cache
flushed before every instruction (the reference). A run is "fresh" when it observes what the
reference observes, "stale" otherwise; each test asserts exactly what the table "Which
stale-code cases it fixes" of docs/unicorn.md says for that case, mode and architecture, so it
fails if either the layer or Unicorn behaves otherwise than documented.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import pathlib
import re
import sys
from types import ModuleType
from typing import Any

import pytest

unicorn = pytest.importorskip("unicorn")
pytest.importorskip("capstone")

from mmn_fast import Event, IntervalNotifier, Range  # noqa: E402
from mmn_fast.unicorn import CoherentUc, LayerClosedError  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load(path: pathlib.Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


h = _load(pathlib.Path(__file__).with_name("guests") / "unicorn_harness.py", "_mmn_fast_unicorn_harness")
P = h.programs
BODY = h.BODY

# --------------------------------------------------------------------------- the docs table

_ARCH_NAMES = {"x86-64": "x86_64", "ARM64": "arm64", "ARM": "arm", "Thumb": "thumb"}


def _cell(text: str, archs: tuple[str, ...]) -> dict[str, str]:
    """'stale' / 'fresh' / 'stale on x86-64, ARM; fresh on Thumb' -> arch -> word."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        word, _, names = part.strip().partition(" on ")
        assert word in ("fresh", "stale"), text
        for arch in [_ARCH_NAMES[n.strip()] for n in names.split(",")] if names else archs:
            out[arch] = word
    assert set(out) == set(archs), (text, archs)
    return out


def _table() -> dict[str, dict[str, dict[str, str]]]:
    """docs/unicorn.md's staleness table: scenario -> mode ('plain', 'layer') -> arch -> word."""
    doc = (ROOT / "docs" / "unicorn.md").read_text(encoding="utf-8")
    section = doc.split("## Which stale-code cases it fixes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(\w+)`:[^|]*\|([^|]*)\|([^|]*)\|$", section, re.M)
    table = {}
    for name, plain, layer in rows:
        archs = h.SCENARIOS[name][1]
        table[name] = {"plain": _cell(plain, archs), "layer": _cell(layer, archs)}
    return table


TABLE = _table()
CASES = [
    (name, arch, mode) for name, (_, archs, _) in sorted(h.SCENARIOS.items()) for arch in archs for mode in ("layer", "plain")
]


def test_docs_table_has_one_row_per_scenario() -> None:
    assert sorted(TABLE) == sorted(h.SCENARIOS)


@pytest.mark.parametrize(("scenario", "arch", "mode"), CASES)
def test_staleness_is_what_the_docs_say(scenario: str, arch: str, mode: str) -> None:
    reference = h.outcome(scenario, arch, "reference")
    got = h.outcome(scenario, arch, mode)
    seen = "fresh" if got == reference else "stale"
    assert seen == TABLE[scenario][mode][arch], f"{mode} got {got}, reference {reference}"


# --------------------------------------------------------------------------- Unicorn's cache


def _two_regions(uc: Any) -> None:
    """0x1ff0 (end of one mapping) and 0x2000 (start of the next, mapped first so the two are
    not adjacent in Unicorn's RAM) each hold a function; 0x1000 calls both."""
    for address in (0x2000, 0x8000, 0x1000):
        uc.mem_map(address, 0x1000)
    uc.mem_write(0x1FF0, bytes.fromhex("b801000000c3"))  # mov eax, 1; ret
    uc.mem_write(0x2000, bytes.fromhex("bb01000000c3"))  # mov ebx, 1; ret
    uc.mem_write(0x1000, bytes.fromhex("e8eb0f0000e8f60f0000f4"))  # call; call; hlt


def _run_two(uc: Any) -> tuple[int, int]:
    uc.reg_write(unicorn.x86_const.UC_X86_REG_RSP, 0x8800)
    uc.emu_start(0x1000, 0x100A)
    return uc.reg_read(unicorn.x86_const.UC_X86_REG_EAX), uc.reg_read(unicorn.x86_const.UC_X86_REG_EBX)


# mov eax, 2; ret; zeros up to the region end; then mov ebx, 2 over the next region's start
SPANNING = bytes.fromhex("b802000000c3") + bytes(10) + bytes.fromhex("bb02")


def test_one_ranged_remove_misses_the_next_region_and_the_layer_splits() -> None:
    plain = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    _two_regions(plain)
    _run_two(plain)
    plain.mem_write(0x1FF0, SPANNING)
    plain.ctl_remove_cache(0x1FF0, 0x1FF0 + len(SPANNING))
    assert _run_two(plain) == (2, 1)  # Unicorn 2.1.4: the second region's block survives

    layer = CoherentUc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    _two_regions(layer)
    _run_two(layer)
    layer.reset_stats()
    layer.mem_write(0x1FF0, SPANNING)
    assert layer.stats.tb_removals == 2 and layer.stats.flushes == 0
    assert _run_two(layer) == (2, 2)


def test_a_ranged_remove_from_an_unmapped_address_does_nothing() -> None:
    plain = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    _two_regions(plain)
    _run_two(plain)
    plain.mem_write(0x1FF1, b"\x02")
    plain.ctl_remove_cache(0x0, 0x3000)  # 0x0 is not mapped
    assert _run_two(plain) == (1, 1)  # Unicorn 2.1.4: nothing dropped

    layer = CoherentUc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    _two_regions(layer)
    _run_two(layer)
    layer.reset_stats()
    layer.mem_write(0x1FF1, b"\x02")
    layer.mem_write(0x2001, b"\x02")
    layer.invalidate(0x0, 0x3000)
    assert layer.stats.tb_removals == 2 + 2  # the writes', then one per mapped region
    assert _run_two(layer) == (2, 2)


def test_a_write_inside_one_region_is_one_ranged_call_and_no_mm_work() -> None:
    m = h.Machine("x86_64", "layer")
    m.run("patch_main")
    m.layer.reset_stats()
    m.layer.mem_write(P.STACK, b"\0" * 64)
    m.layer.mem_write(BODY, m.code["body_patched"][1])
    assert m.layer.stats.tb_removals == 2 and m.layer.stats.flushes == 0
    assert m.layer.stats.invalidations == 0  # nothing subscribed on layer.mm
    assert m.run("patch_main") == 1000


@pytest.mark.parametrize(
    ("htype", "begin", "end", "removals", "flushes"),
    [
        (unicorn.UC_HOOK_CODE, BODY, BODY + 4, 1, 0),
        (unicorn.UC_HOOK_BLOCK, 1, 0, 0, 1),  # every address: one flush
        (unicorn.UC_HOOK_MEM_READ, 0x30000, 0x30FFF, 0, 1),  # memory hook: one flush
        (unicorn.UC_HOOK_INTR, 1, 0, 0, 0),  # not compiled into blocks
    ],
)
def test_hook_add_and_del_drop_what_the_hook_type_needs(htype: int, begin: int, end: int, removals: int, flushes: int) -> None:
    layer = CoherentUc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    layer.mem_map(0x10000, 0x1000)
    layer.mem_map(0x30000, 0x1000)
    layer.reset_stats()
    handle = layer.hook_add(htype, lambda *a: None, None, begin, end)
    assert (layer.stats.tb_removals, layer.stats.flushes) == (removals, flushes)
    layer.reset_stats()
    layer.hook_del(handle)
    code_hook = htype in (unicorn.UC_HOOK_CODE, unicorn.UC_HOOK_BLOCK)
    assert (layer.stats.tb_removals, layer.stats.flushes) == ((removals, flushes) if code_hook else (0, 0))


def test_a_mutation_larger_than_flush_bytes_is_one_flush() -> None:
    layer = CoherentUc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    layer.mem_map(0x100000, 0x20000)
    layer.mem_map(0x200000, 0x20000)
    layer.flush_bytes = 0x30000
    layer.reset_stats()
    layer.invalidate(0x100000, 0x210000)  # 0x30000 mapped: at the limit, two ranged calls
    assert (layer.stats.tb_removals, layer.stats.flushes) == (2, 0)
    layer.reset_stats()
    layer.invalidate(0x100000, 0x211000)
    assert (layer.stats.tb_removals, layer.stats.flushes) == (0, 1)


def test_callbacks_receive_the_layer() -> None:
    m = h.Machine("arm64", "layer")
    seen: list[Any] = []
    m.layer.hook_add(unicorn.UC_HOOK_BLOCK, lambda uc, a, s, d: seen.append(uc), None, BODY, BODY)
    m.run("patch_main")
    assert len(seen) == 10 and all(uc is m.layer for uc in seen)
    assert isinstance(m.layer, unicorn.Uc) and isinstance(m.layer, CoherentUc)


def test_a_hook_exception_propagates_from_emu_start() -> None:
    m = h.Machine("x86_64", "layer")

    def boom(uc: Any, address: int, size: int, data: object) -> None:
        raise KeyError("from the hook")

    m.layer.hook_add(unicorn.UC_HOOK_CODE, boom, None, BODY, BODY)
    with pytest.raises(KeyError, match="from the hook"):
        m.run("patch_main")


def test_host_memory_written_behind_the_layer_needs_invalidate() -> None:
    m = h.Machine("x86_64", "layer")
    buf = ctypes.create_string_buffer(0x1000)
    m.layer.mem_unmap(P.JIT, 0x1000)
    m.layer.mem_map_ptr(P.JIT, 0x1000, unicorn.UC_PROT_ALL, ctypes.addressof(buf))
    m.layer.mem_write(P.JIT, m.code["fn_a"][1])
    assert m.run("call_jit") == 3
    ctypes.memmove(buf, m.code["fn_b"][1], len(m.code["fn_b"][1]))
    assert m.run("call_jit") == 3  # stale: the layer saw nothing
    m.layer.invalidate(P.JIT, P.JIT + 16)
    assert m.run("call_jit") == 4


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_tlb_virtual_code_needs_invalidate_at_its_virtual_address(arch: str) -> None:
    reference = h.outcome("tlb_virtual_host_patch", arch, "reference")
    m = h.Machine(arch, "layer")
    virtual_body = h.VIRT + BODY - P.CODE
    assert h.tlb_virtual_host_patch(m, lambda: m.layer.invalidate(virtual_body, virtual_body + 8, virtual=True)) == reference


def test_tlb_mode_change_flushes() -> None:
    layer = CoherentUc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    layer.reset_stats()
    layer.ctl_set_tlb_mode(unicorn.UC_TLB_CPU)
    assert layer.stats.flushes == 1


# --------------------------------------------------------------------------- your caches


class Recorder:
    """Callback ops: records (start, end, event) of every invalidation it receives."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, Event]] = []

    def invalidate(self, sub: IntervalNotifier, rng: Range, cur_seq: int) -> bool:
        self.seen.append((rng.start, rng.end, rng.event))
        sub.set_seq(cur_seq)
        return True


def test_subscriptions_see_every_host_mutation_with_its_event() -> None:
    m = h.Machine("x86_64", "layer")
    rec = Recorder()
    m.layer.mm.insert_interval_notifier(P.PAGE, 0x1000, rec)
    m.layer.mem_map(P.PAGE, 0x1000)
    m.layer.mem_write(P.PAGE + 8, b"\x90")
    m.layer.mem_protect(P.PAGE, 0x1000, unicorn.UC_PROT_READ)
    m.layer.mem_unmap(P.PAGE, 0x1000)
    m.layer.mem_write(P.CODE, b"\x90")  # elsewhere: not seen
    assert rec.seen == [
        (P.PAGE, P.PAGE + 0x1000, Event.UNMAP),
        (P.PAGE + 8, P.PAGE + 9, Event.CLEAR),
        (P.PAGE, P.PAGE + 0x1000, Event.PROTECTION_PAGE),
        (P.PAGE, P.PAGE + 0x1000, Event.UNMAP),
    ]
    assert m.layer.mm.invalidate_seq % 2 == 0


def test_native_subscription_goes_stale_on_a_host_write_only() -> None:
    m = h.Machine("arm64", "layer")
    sub = m.layer.mm.insert_interval_notifier(BODY, 8, tag="body")
    seq = sub.read_begin()
    m.layer.mem_write(BODY + 8, b"\0" * 4)  # next to it
    assert not sub.check_retry(seq)
    m.layer.mem_write(BODY + 4, b"\0")
    assert sub.check_retry(seq)
    assert m.layer.mm.drain_invalidated() == ["body"]


def test_guest_writes_invalidate_only_where_watched() -> None:
    m = h.Machine("x86_64", "layer")
    sub = m.layer.mm.insert_interval_notifier(BODY, 5, tag=BODY)
    seq = sub.read_begin()
    assert m.run("smc_main") == 55  # the guest rewrites body: Unicorn itself stays fresh
    assert not sub.check_retry(seq)  # but nothing told the subscription
    handle = m.layer.watch_guest_writes(BODY, BODY + 4)
    assert m.run("smc_main") == 55
    assert sub.check_retry(seq)
    m.layer.hook_del(handle)
    seq = sub.read_begin()
    m.run("smc_main")
    assert not sub.check_retry(seq)
    with pytest.raises(ValueError):
        m.layer.watch_guest_writes(BODY + 4, BODY)


def test_a_write_through_one_mapping_invalidates_its_alias() -> None:
    m = h.Machine("arm", "layer")
    buf = ctypes.create_string_buffer(0x1000)
    m.layer.mem_unmap(P.JIT, 0x1000)
    m.layer.mem_map_ptr(P.JIT, 0x1000, unicorn.UC_PROT_ALL, ctypes.addressof(buf))
    m.layer.mem_map_ptr(h.ALIAS, 0x1000, unicorn.UC_PROT_ALL, ctypes.addressof(buf))
    rec = Recorder()
    m.layer.mm.insert_interval_notifier(P.JIT + 0x100, 4, rec)
    m.layer.mem_write(h.ALIAS + 0x102, b"\1")
    assert rec.seen == [(P.JIT + 0x102, P.JIT + 0x103, Event.CLEAR)]


def test_bad_input_and_failed_writes_leave_the_mm_idle() -> None:
    m = h.Machine("x86_64", "layer")
    sub = m.layer.mm.insert_interval_notifier(BODY, 5)
    with pytest.raises(ValueError):
        m.layer.invalidate(BODY, BODY)
    with pytest.raises(unicorn.UcError):
        m.layer.mem_write(0x9000_0000, b"\x90")  # unmapped: Unicorn's error propagates
    assert m.layer.mm.invalidate_seq % 2 == 0 and m.layer.mm.active_invalidate_ranges == 0
    assert not sub.check_retry(sub.read_begin())
    assert m.run("patch_main") == 10


# --------------------------------------------------------------------------- lifetime


def test_every_method_raises_after_close() -> None:
    layer = CoherentUc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_ARM)
    layer.mem_map(0x1000, 0x1000)
    layer.close()
    for call in (
        lambda: layer.mem_write(0x1000, b"\0"),
        lambda: layer.mem_read(0x1000, 1),
        lambda: layer.emu_start(0x1000, 0x1004),
        lambda: layer.reg_read(unicorn.arm_const.UC_ARM_REG_R0),
        lambda: layer.hook_add(unicorn.UC_HOOK_CODE, lambda *a: None),
        lambda: layer.ctl_flush_tb(),
        lambda: layer.mm,
        lambda: layer.close(),
    ):
        with pytest.raises(LayerClosedError, match="closed"):
            call()
    with layer:  # leaving a with block of a closed layer does not raise again
        pass


def test_close_of_a_wrapping_layer_deletes_its_hooks_and_leaves_uc_usable() -> None:
    m = h.Machine("thumb", "layer")
    hits: list[int] = []
    m.layer.hook_add(unicorn.UC_HOOK_BLOCK, lambda uc, a, s, d: hits.append(a), None, BODY, BODY)
    m.run("patch_main")
    assert len(hits) == 10
    with m.layer:
        pass
    m.uc = m.raw
    assert m.run("patch_main") == 10 and len(hits) == 10
    with pytest.raises(LayerClosedError):
        m.layer.mem_write(BODY, b"\0")


def test_constructor_errors() -> None:
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    with pytest.raises(TypeError):
        CoherentUc(uc, unicorn.UC_MODE_64)
    with pytest.raises(TypeError):
        CoherentUc(CoherentUc(uc))
    with pytest.raises(TypeError):
        CoherentUc(unicorn.UC_ARCH_X86)


def test_import_without_unicorn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "mmn_fast.unicorn")
    monkeypatch.setitem(sys.modules, "unicorn", None)
    with pytest.raises(ImportError, match=r"pip install mmn_fast\[unicorn\]"):
        importlib.import_module("mmn_fast.unicorn")


def test_a_raising_subscriber_stops_the_mutation_and_leaves_the_mm_idle() -> None:
    m = h.Machine("x86_64", "layer")

    def refuse(sub: IntervalNotifier, rng: Range, cur_seq: int) -> bool:
        raise RuntimeError("no")

    m.layer.mm.insert_interval_notifier(BODY, 5, refuse)
    with pytest.raises(RuntimeError, match="no"):
        m.layer.mem_write(BODY, m.code["body_patched"][1])
    assert bytes(m.layer.mem_read(BODY, 5)) == m.code["body"][1]  # not written
    assert m.layer.mm.invalidate_seq % 2 == 0 and m.layer.mm.active_invalidate_ranges == 0
    assert m.run("patch_main") == 10
