"""Run the guest programs of ``unicorn_programs`` three ways, for the Unicorn layer tests.

* ``layer``: a bare ``unicorn.Uc`` taken over by :class:`mmn_fast.unicorn.CoherentUc`; every
  mutation goes through the layer.
* ``plain``: the bare ``unicorn.Uc``, as users run it today.
* ``reference``: the bare Uc, stepped one instruction at a time with ``ctl_flush_tb()``
  before every step, so every instruction is translated from the current guest memory:
  whatever it computes is what the guest means, and a stale block cannot show.

A scenario is a function of a :class:`Machine` returning its observations (a list of ints);
the tests compare the lists of the three modes. ``SCENARIOS`` maps each scenario name to the
function and the architectures it runs on.
"""

from __future__ import annotations

import ctypes
import importlib.util
import pathlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import unicorn
from unicorn import arm64_const, arm_const, x86_const


def _load_programs() -> ModuleType:
    path = pathlib.Path(__file__).with_name("unicorn_programs.py")
    spec = importlib.util.spec_from_file_location("_mmn_fast_unicorn_programs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


programs = _load_programs()

MODES = ("layer", "plain", "reference")
ALIAS = 0x60000  # a second mapping of the JIT page's host memory (mem_map_ptr)


class Arch(NamedTuple):
    uc_arch: int
    uc_mode: int
    acc: int  # accumulator register
    pc: int
    sp: int
    exit_len: int  # length of the final exit instruction
    loop_step: int  # patch_main's instruction that runs once per loop iteration
    canary: bytes  # patch_main's first instruction, looping 3 times instead of 10
    thumb: bool  # code is entered with the low address bit set


ARCHS: dict[str, Arch] = {
    "x86_64": Arch(
        unicorn.UC_ARCH_X86, unicorn.UC_MODE_64, x86_const.UC_X86_REG_RBX, x86_const.UC_X86_REG_RIP,
        x86_const.UC_X86_REG_RSP, 1, 0x1000E, bytes.fromhex("48c7c103000000"), False,
    ),
    "arm64": Arch(
        unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM, arm64_const.UC_ARM64_REG_X19, arm64_const.UC_ARM64_REG_PC,
        arm64_const.UC_ARM64_REG_SP, 4, 0x1000C, bytes.fromhex("740080d2"), False,
    ),
    "arm": Arch(
        unicorn.UC_ARCH_ARM, unicorn.UC_MODE_ARM, arm_const.UC_ARM_REG_R5, arm_const.UC_ARM_REG_PC,
        arm_const.UC_ARM_REG_SP, 4, 0x1000C, bytes.fromhex("0340a0e3"), False,
    ),
    "thumb": Arch(
        unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB, arm_const.UC_ARM_REG_R5, arm_const.UC_ARM_REG_PC,
        arm_const.UC_ARM_REG_SP, 2, 0x10008, bytes.fromhex("0324"), True,
    ),
}

BODY = 0x10100
_NEVER_PRELOADED = ("body_patched", "page_v1", "page_v2")


class Machine:
    """One emulator in one mode, with the guest programs of one architecture loaded.

    ``before_wrap(uc)`` runs on the bare Uc before the layer takes it over (layer mode) or
    before anything is loaded (other modes): for hooks added behind the layer's back.
    """

    def __init__(self, arch: str, mode: str, before_wrap: Callable[[unicorn.Uc], None] | None = None) -> None:
        from mmn_fast.unicorn import CoherentUc

        assert mode in MODES
        self.arch_name = arch
        self.arch = ARCHS[arch]
        self.mode = mode
        self.code: dict[str, tuple[int, bytes]] = programs.PROGRAMS[arch]
        self.raw = unicorn.Uc(self.arch.uc_arch, self.arch.uc_mode)
        if before_wrap is not None:
            before_wrap(self.raw)
        self.layer: CoherentUc | None = CoherentUc(self.raw) if mode == "layer" else None
        # every mutation and run goes through ``uc``: the layer in layer mode
        self.uc: Any = self.layer if self.layer is not None else self.raw
        self.buffers: list[Any] = []  # host memory behind mem_map_ptr, kept alive
        self.uc.mem_map(programs.CODE, 0x2000)
        self.uc.mem_map(programs.STACK, 0x1000)
        self.uc.mem_map(programs.JIT, 0x1000)
        for name in self.code:
            if name not in _NEVER_PRELOADED:
                self.load(name)

    def load(self, name: str) -> None:
        address, data = self.code[name]
        self.uc.mem_write(address, data)

    def entry(self, address: int) -> int:
        return address | 1 if self.arch.thumb else address

    def run(self, name: str, *, offset: int = 0) -> int:
        """Run program ``name`` to its exit instruction; return the accumulator. ``offset``
        moves the addresses run (guest virtual addresses, under ``UC_TLB_VIRTUAL``)."""
        start, data = self.code[name]
        until = start + offset + len(data) - self.arch.exit_len
        pc = self.entry(start + offset)
        self.uc.reg_write(self.arch.sp, programs.STACK + 0x800)
        if self.mode == "reference":
            steps = 0
            while (pc & ~1 if self.arch.thumb else pc) != until:
                self.uc.ctl_flush_tb()
                self.uc.emu_start(pc, until, count=1)
                pc = self.uc.reg_read(self.arch.pc)
                if self.arch.thumb or self.arch_name == "arm":
                    cpsr = self.uc.reg_read(arm_const.UC_ARM_REG_CPSR)
                    pc |= (cpsr >> 5) & 1  # stay in the instruction set the guest is in
                steps += 1
                assert steps < 100_000, "reference run does not terminate"
        else:
            self.uc.emu_start(pc, until)
        value: int = self.uc.reg_read(self.arch.acc)
        return value


Scenario = Callable[[Machine], list[int]]


def patch_between_runs(m: Machine) -> list[int]:
    """The host patches a called function between two runs."""
    first = m.run("patch_main")
    m.load("body_patched")
    return [first, m.run("patch_main")]


def _patch_from_hook(m: Machine, uc_of: Callable[[Any], Any]) -> list[int]:
    hits = [0]

    def on_step(uc: Any, address: int, size: int, user_data: object) -> None:
        hits[0] += 1
        if hits[0] == 5:
            uc_of(uc).mem_write(*m.code["body_patched"])

    m.uc.hook_add(unicorn.UC_HOOK_CODE, on_step, None, m.arch.loop_step, m.arch.loop_step)
    return [m.run("patch_main"), hits[0]]


def patch_mid_run(m: Machine) -> list[int]:
    """A code hook patches the called function on the 5th loop iteration, through the
    ``uc`` argument its callback receives (the layer, for a hook added through the layer)."""
    return _patch_from_hook(m, lambda uc: uc)


def patch_mid_run_raw_uc(m: Machine) -> list[int]:
    """The same patch made through the bare Uc (a reference kept from before wrapping)."""
    return _patch_from_hook(m, lambda uc: m.raw)


def patch_translated_not_run(m: Machine) -> list[int]:
    """A block translated but never run (``ctl_request_cache``, as a run stopped right after
    translating it would leave it), then the host patches it."""
    m.uc.ctl_request_cache(m.entry(BODY))
    m.load("body_patched")
    return [m.run("patch_main")]


def _stop_in_body(uc: unicorn.Uc) -> None:
    stopped = [False]

    def stop(u: Any, address: int, size: int, user_data: object) -> None:
        if not stopped[0]:
            stopped[0] = True
            u.emu_stop()

    uc.hook_add(unicorn.UC_HOOK_BLOCK, stop, None, BODY, BODY)


def stop_hook_before_wrap(m: Machine) -> list[int]:
    """A block hook added before wrapping stops the first run on entering body (translated,
    never run); the host patches body; the second run is observed."""
    m.run("patch_main")
    m.load("body_patched")
    return [m.run("patch_main")]


def host_copy(m: Machine) -> list[int]:
    """The host copies fn_a to the JIT page, the guest calls it; then fn_b over it."""
    out = []
    for name in ("fn_a", "fn_b"):
        m.uc.mem_write(programs.JIT, m.code[name][1])
        out.append(m.run("call_jit"))
    return out


def alias_ptr(m: Machine) -> list[int]:
    """One host buffer mapped at JIT and ALIAS (``mem_map_ptr``); the guest calls JIT; the
    host writes the code through ALIAS."""
    m.uc.mem_unmap(programs.JIT, 0x1000)
    buf = ctypes.create_string_buffer(0x1000)
    m.buffers.append(buf)
    m.uc.mem_map_ptr(programs.JIT, 0x1000, unicorn.UC_PROT_ALL, ctypes.addressof(buf))
    m.uc.mem_map_ptr(ALIAS, 0x1000, unicorn.UC_PROT_ALL, ctypes.addressof(buf))
    out = []
    for name in ("fn_a", "fn_b"):
        m.uc.mem_write(ALIAS, m.code[name][1])
        out.append(m.run("call_jit"))
    return out


def unmap_remap(m: Machine) -> list[int]:
    """A page of code is unmapped and remapped at the same address with new code."""
    m.uc.mem_map(programs.PAGE, 0x1000)
    m.load("page_v1")
    first = m.run("call_page")
    m.uc.mem_unmap(programs.PAGE, 0x1000)
    m.uc.mem_map(programs.PAGE, 0x1000)
    m.load("page_v2")
    return [first, m.run("call_page")]


def code_hook_after_run(m: Machine) -> list[int]:
    """A code hook on body is added after the code ran once, then deleted again."""
    hits: list[int] = []
    first = m.run("patch_main")
    size = len(m.code["body"][1])
    handle = m.uc.hook_add(unicorn.UC_HOOK_CODE, lambda uc, a, s, d: hits.append(a), None, BODY, BODY + size - 1)
    second = m.run("patch_main")
    with_hook = len(hits)
    m.uc.hook_del(handle)
    third = m.run("patch_main")
    return [first, second, with_hook, third, len(hits)]


def mem_hook_after_run(m: Machine) -> list[int]:
    """A memory-read hook over the whole space is added after patch_main (whose x86-64
    ``ret`` reads the stack) and load_main (one load) ran once; both run again."""
    reads: list[int] = []
    m.run("patch_main")
    m.run("load_main")
    m.uc.hook_add(unicorn.UC_HOOK_MEM_READ, lambda uc, acc, a, s, v, d: reads.append(a), None, 1, 0)
    m.run("patch_main")
    m.run("load_main")
    return [len(reads)]


def patch_later_insn_of_running_block(m: Machine) -> list[int]:
    """A code hook on the first add patches the second add of the same, running block."""
    first, data = m.code["two_adds"]
    second_add = first + (len(data) - m.arch.exit_len) // 2
    patched = m.code["body_patched"][1][: second_add - first]  # "acc += 100", same length

    def patch(uc: Any, address: int, size: int, user_data: object) -> None:
        uc.mem_write(second_add, patched)

    handle = m.uc.hook_add(unicorn.UC_HOOK_CODE, patch, None, first, first)
    m.uc.reg_write(m.arch.acc, 0)
    out = [m.run("two_adds")]
    m.uc.hook_del(handle)
    m.uc.reg_write(m.arch.acc, 0)
    out.append(m.run("two_adds"))
    return out


def arm_and_thumb_same_address(m: Machine) -> list[int]:
    """One address called as ARM (a 3-instruction block) and as Thumb (a 2-instruction one);
    the host patches bytes only the ARM block covers, and the Thumb block's branch target."""
    first = m.run("dual_main")
    dual_fn, _ = m.code["dual_fn"]
    m.uc.mem_write(dual_fn + 4, b"\x05")  # add r0, r0, #5
    thumb, _ = m.code["dual_thumb"]
    m.uc.mem_write(thumb, b"\x09")  # movs r0, #9
    return [first, m.run("dual_main")]


def exits_set_after_run(m: Machine) -> list[int]:
    """Exits (``ctl_set_exits``) set after the code ran: stop after body's first instruction.
    (The reference flushes before its run: exits replace ``until``, so it is not stepped.)"""
    m.run("patch_main")
    m.uc.ctl_exits_enabled(True)
    m.uc.ctl_set_exits([BODY + (2 if m.arch.thumb else 4)])
    m.uc.reg_write(m.arch.sp, programs.STACK + 0x800)
    m.uc.reg_write(m.arch.acc, 0)
    if m.mode == "reference":
        m.uc.ctl_flush_tb()
    try:
        m.uc.emu_start(m.entry(programs.CODE), 0)
    except unicorn.UcError as exc:  # ran past the code: the exit was not seen
        return [-exc.errno]
    return [m.uc.reg_read(m.arch.pc), m.uc.reg_read(m.arch.acc)]


VIRT = 0x7000_0000  # where tlb_virtual_host_patch's guest sees the code page


def tlb_virtual_host_patch(m: Machine, after_patch: Callable[[], None] = lambda: None) -> list[int]:
    """``UC_TLB_VIRTUAL``: a TLB-fill hook maps the code at VIRT (and the stack 1:1, nothing
    else); the guest runs patch_main there; the host patches body at its physical address."""
    m.uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
    m.uc.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)  # no entry from before
    page_mask = m.uc.ctl_get_page_size() - 1

    def fill(uc: Any, vaddr: int, access: int, entry: Any, data: object) -> bool:
        page = vaddr & ~page_mask
        if VIRT <= page < VIRT + 0x2000:
            entry.paddr = page - VIRT + programs.CODE
        elif page == programs.STACK:
            entry.paddr = page
        else:
            return False
        entry.perms = unicorn.UC_PROT_ALL
        return True

    m.uc.hook_add(unicorn.UC_HOOK_TLB_FILL, fill, None, 1, 0)
    first = m.run("patch_main", offset=VIRT - programs.CODE)
    m.load("body_patched")
    after_patch()
    return [first, m.run("patch_main", offset=VIRT - programs.CODE)]


def guest_self_modifying(m: Machine) -> list[int]:
    """The guest rewrites the immediate of its next block (body) on every iteration."""
    return [m.run("smc_main")]


def guest_copy(m: Machine) -> list[int]:
    """The guest copies fn_a to the JIT page and calls it, then fn_b over it, and calls it."""
    return [m.run("copy_main")]


ALL = tuple(ARCHS)
SCENARIOS: dict[str, tuple[Scenario, tuple[str, ...], Callable[[unicorn.Uc], None] | None]] = {
    "patch_between_runs": (patch_between_runs, ALL, None),
    "patch_mid_run": (patch_mid_run, ALL, None),
    "patch_mid_run_raw_uc": (patch_mid_run_raw_uc, ALL, None),
    "patch_translated_not_run": (patch_translated_not_run, ALL, None),
    "stop_hook_before_wrap": (stop_hook_before_wrap, ALL, _stop_in_body),
    "host_copy": (host_copy, ALL, None),
    "alias_ptr": (alias_ptr, ALL, None),
    "unmap_remap": (unmap_remap, ALL, None),
    "code_hook_after_run": (code_hook_after_run, ALL, None),
    "mem_hook_after_run": (mem_hook_after_run, ALL, None),
    "patch_later_insn_of_running_block": (patch_later_insn_of_running_block, ALL, None),
    "arm_and_thumb_same_address": (arm_and_thumb_same_address, ("arm",), None),
    "exits_set_after_run": (exits_set_after_run, ALL, None),
    "tlb_virtual_host_patch": (tlb_virtual_host_patch, ("x86_64", "arm64"), None),
    "guest_self_modifying": (guest_self_modifying, ("x86_64", "arm64"), None),
    "guest_copy": (guest_copy, ("x86_64", "arm64"), None),
}


def outcome(name: str, arch: str, mode: str) -> list[int]:
    run, _, before_wrap = SCENARIOS[name]
    return run(Machine(arch, mode, before_wrap))
