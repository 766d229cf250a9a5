"""Run the guest programs of ``unicorn_programs`` three ways, for the Unicorn layer tests.

* ``layer``: a :class:`mmn_fast.unicorn.CoherentUc`; every mutation goes through it.
* ``plain``: the bare ``unicorn.Uc``, as users run it today (the stale-cache baseline).
* ``reference``: the bare Uc, stepped one instruction at a time with ``ctl_flush_tb()``
  before every step, so every instruction is translated from the current guest memory:
  whatever it computes is what the guest means, and a stale block cannot show.

A scenario is a function of a :class:`Machine` returning its observations (a list of ints);
the tests compare the lists of the three modes.
"""

from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType
from typing import Any, Callable, NamedTuple, Optional

import unicorn
from unicorn import arm64_const, x86_const


def _load_programs() -> ModuleType:
    path = pathlib.Path(__file__).with_name("unicorn_programs.py")
    spec = importlib.util.spec_from_file_location("_mmn_fast_unicorn_programs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


programs = _load_programs()

MODES = ("layer", "plain", "reference")


class Arch(NamedTuple):
    uc_arch: int
    uc_mode: int
    acc: int  # accumulator register
    pc: int
    sp: int
    exit_len: int  # length of the final exit instruction (hlt / nop)
    # the instruction of patch_main that runs once per loop iteration (dec rcx / subs x20)
    loop_step: int
    # patch_main's first instruction and a same-length variant: loop 3 times, not 10
    canary: bytes


ARCHS: dict[str, Arch] = {
    "x86_64": Arch(
        unicorn.UC_ARCH_X86,
        unicorn.UC_MODE_64,
        x86_const.UC_X86_REG_RBX,
        x86_const.UC_X86_REG_RIP,
        x86_const.UC_X86_REG_RSP,
        1,
        0x1000E,
        bytes.fromhex("48c7c103000000"),  # mov rcx, 3
    ),
    "arm64": Arch(
        unicorn.UC_ARCH_ARM64,
        unicorn.UC_MODE_ARM,
        arm64_const.UC_ARM64_REG_X19,
        arm64_const.UC_ARM64_REG_PC,
        arm64_const.UC_ARM64_REG_SP,
        4,
        0x1000C,
        bytes.fromhex("740080d2"),  # mov x20, #3
    ),
}

# programs loaded at start; the rest are written by scenarios
_PRELOADED = ("patch_main", "body", "smc_main", "copy_main", "fn_a", "fn_b", "call_page", "call_jit")


class Machine:
    """One emulator in one mode, with the guest programs of one architecture loaded."""

    def __init__(self, arch: str, mode: str) -> None:
        from mmn_fast.unicorn import CoherentUc

        assert mode in MODES
        self.arch_name = arch
        self.arch = ARCHS[arch]
        self.mode = mode
        self.code: dict[str, programs.Program] = programs.PROGRAMS[arch]
        self.uc = unicorn.Uc(self.arch.uc_arch, self.arch.uc_mode)
        self.layer: Optional[CoherentUc] = CoherentUc(self.uc) if mode == "layer" else None
        self.map(programs.CODE, 0x2000)
        self.map(programs.STACK, 0x1000)
        self.map(programs.JIT, 0x1000)
        for name in _PRELOADED:
            self.load(name)

    # mutations: through the layer in layer mode, on the bare Uc otherwise
    def write(self, address: int, data: bytes) -> None:
        if self.layer is not None:
            self.layer.mem_write(address, data)
        else:
            self.uc.mem_write(address, data)

    def load(self, name: str) -> None:
        address, data = self.code[name]
        self.write(address, data)

    def map(self, address: int, size: int) -> None:
        if self.layer is not None:
            self.layer.mem_map(address, size)
        else:
            self.uc.mem_map(address, size)

    def unmap(self, address: int, size: int) -> None:
        if self.layer is not None:
            self.layer.mem_unmap(address, size)
        else:
            self.uc.mem_unmap(address, size)

    def hook_add(self, htype: int, callback: Callable[..., Any], begin: int = 1, end: int = 0) -> int:
        if self.layer is not None:
            return self.layer.hook_add(htype, callback, None, begin, end)
        handle: int = self.uc.hook_add(htype, callback, None, begin, end)
        return handle

    def hook_del(self, handle: int) -> None:
        if self.layer is not None:
            self.layer.hook_del(handle)
        else:
            self.uc.hook_del(handle)

    def run(self, name: str) -> int:
        """Run program ``name`` to its exit instruction; return the accumulator."""
        begin, data = self.code[name]
        until = begin + len(data) - self.arch.exit_len
        self.uc.reg_write(self.arch.sp, programs.STACK + 0x800)
        if self.mode == "reference":
            pc = begin
            steps = 0
            while pc != until:
                self.uc.ctl_flush_tb()
                self.uc.emu_start(pc, until, count=1)
                pc = self.uc.reg_read(self.arch.pc)
                steps += 1
                assert steps < 100_000, "reference run does not terminate"
        else:
            self.uc.emu_start(begin, until)
        value: int = self.uc.reg_read(self.arch.acc)
        return value


Scenario = Callable[[Machine], list[int]]

BODY = 0x10100


def patch_between_runs(m: Machine) -> list[int]:
    """The host patches a called function between two runs."""
    first = m.run("patch_main")
    m.load("body_patched")
    return [first, m.run("patch_main")]


def patch_mid_run(m: Machine) -> list[int]:
    """A code hook patches the called function on the 5th loop iteration."""
    hits = [0]

    def on_step(uc: unicorn.Uc, address: int, size: int, user_data: object) -> None:
        hits[0] += 1
        if hits[0] == 5:
            m.load("body_patched")

    m.hook_add(unicorn.UC_HOOK_CODE, on_step, m.arch.loop_step, m.arch.loop_step)
    return [m.run("patch_main"), hits[0]]


def self_modifying(m: Machine) -> list[int]:
    """The guest rewrites the immediate of its next block (body) on every iteration."""
    return [m.run("smc_main")]


def guest_copy(m: Machine) -> list[int]:
    """The guest copies fn_a to the JIT page and calls it, then fn_b over it, and calls it."""
    return [m.run("copy_main")]


def host_copy(m: Machine) -> list[int]:
    """The host copies fn_a to a new page, the guest jumps there; then fn_b to the same page."""
    out = []
    for name in ("fn_a", "fn_b"):
        m.write(programs.JIT, m.code[name][1])
        out.append(m.run("call_jit"))
    return out


def unmap_remap(m: Machine) -> list[int]:
    """A page of code is unmapped and remapped at the same address with new code."""
    m.map(programs.PAGE, 0x1000)
    m.load("page_v1")
    first = m.run("call_page")
    m.unmap(programs.PAGE, 0x1000)
    m.map(programs.PAGE, 0x1000)
    m.load("page_v2")
    return [first, m.run("call_page")]


def hook_after_run(m: Machine) -> list[int]:
    """A code hook on body is added after the code ran once, then deleted again."""
    hits: list[int] = []
    first = m.run("patch_main")
    size = len(m.code["body"][1])
    handle = m.hook_add(unicorn.UC_HOOK_CODE, lambda uc, a, s, d: hits.append(a), BODY, BODY + size - 1)
    second = m.run("patch_main")
    with_hook = len(hits)
    m.hook_del(handle)
    third = m.run("patch_main")
    return [first, second, with_hook, third, len(hits)]


SCENARIOS: dict[str, Scenario] = {
    "patch_between_runs": patch_between_runs,
    "patch_mid_run": patch_mid_run,
    "self_modifying": self_modifying,
    "guest_copy": guest_copy,
    "host_copy": host_copy,
    "unmap_remap": unmap_remap,
    "hook_after_run": hook_after_run,
}
