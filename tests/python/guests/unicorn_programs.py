"""Guest programs for ``tests/python/test_unicorn*.py``, assembled once.

Every program is stored as bytes with its source in the comment above it. They were
assembled with keystone-engine 0.9.2 (``Ks(KS_ARCH_X86, KS_MODE_64)`` and
``Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN)``) at the address shown; branch targets are
absolute, so each piece must be written at that address. No assembler is needed at test time.

Memory layout shared by both architectures:

    0x10000  patch_main   loop: call body ten times, acc += body's immediate
    0x10100  body         acc += 1 (body_patched: acc += 100); same length
    0x10200  smc_main     loop: rewrite body's immediate with the counter, then call body
    0x10300  copy_main    guest copies fn_a to the JIT page, calls it; copies fn_b, calls it;
                          acc = 10 * fn_a() + fn_b()
    0x10400  call_page    acc = (function at PAGE)()
    0x10500  call_jit     acc = (function at JIT)()
    0x11000  fn_a / fn_b  return 3 / return 4 (fn_b at 0x11010)
    0x40000  JIT          one page, code copied there by the guest or the host
    0x50000  PAGE         one page, unmapped and remapped with page_v1 / page_v2

The accumulator is rbx (x86-64) or x19 (ARM64); every ``*_main`` ends on an exit instruction
(``hlt`` / ``nop``) whose address is the ``until`` of ``emu_start``.
"""

from __future__ import annotations

Program = tuple[int, bytes]

CODE = 0x10000
JIT = 0x40000
PAGE = 0x50000
STACK = 0x30000

X86_64: dict[str, Program] = {
    # 0x10000: mov rcx, 10
    #   xor ebx, ebx
    #   loop: call 0x10100
    #   dec rcx
    #   jnz loop
    #   hlt
    'patch_main': (0x10000, bytes.fromhex('48c7c10a00000031dbe8f200000048ffc975f6f4')),
    # 0x10100: add rbx, 1
    #   ret
    'body': (0x10100, bytes.fromhex('4883c301c3')),
    # 0x10100: add rbx, 100
    #   ret
    'body_patched': (0x10100, bytes.fromhex('4883c364c3')),
    # 0x10200: mov rcx, 10
    #   xor ebx, ebx
    #   loop: mov byte ptr [0x10103], cl
    #   call 0x10100
    #   dec rcx
    #   jnz loop
    #   hlt
    'smc_main': (0x10200, bytes.fromhex('48c7c10a00000031db880df4feffffe8ecfeffff48ffc975f0f4')),
    # 0x10300: mov rsi, 0x11000
    #   mov rdi, 0x40000
    #   mov rcx, 16
    #   rep movsb
    #   call 0x40000
    #   mov rbx, rax
    #   mov rsi, 0x11010
    #   mov rdi, 0x40000
    #   mov rcx, 16
    #   rep movsb
    #   call 0x40000
    #   imul rbx, rbx, 10
    #   add rbx, rax
    #   hlt
    'copy_main': (0x10300, bytes.fromhex('48c7c60010010048c7c70000040048c7c110000000f3a4e8e4fc02004889c348c7c61010010048c7c70000040048c7c110000000f3a4e8c5fc0200486bdb0a4801c3f4')),
    # 0x11000: mov eax, 3
    #   ret
    'fn_a': (0x11000, bytes.fromhex('b803000000c3')),
    # 0x11010: mov eax, 4
    #   ret
    'fn_b': (0x11010, bytes.fromhex('b804000000c3')),
    # 0x10400: mov eax, 0x50000
    #   call rax
    #   mov rbx, rax
    #   hlt
    'call_page': (0x10400, bytes.fromhex('b800000500ffd04889c3f4')),
    # 0x10500: mov eax, 0x40000
    #   call rax
    #   mov rbx, rax
    #   hlt
    'call_jit': (0x10500, bytes.fromhex('b800000400ffd04889c3f4')),
    # 0x50000: mov eax, 1
    #   ret
    'page_v1': (0x50000, bytes.fromhex('b801000000c3')),
    # 0x50000: mov eax, 2
    #   ret
    'page_v2': (0x50000, bytes.fromhex('b802000000c3')),
}

ARM64: dict[str, Program] = {
    # 0x10000: mov x20, #10
    #   mov x19, #0
    #   loop: bl 0x10100
    #   subs x20, x20, #1
    #   b.ne loop
    #   nop
    'patch_main': (0x10000, bytes.fromhex('540180d2130080d23e000094940600f1c1ffff541f2003d5')),
    # 0x10100: add x19, x19, #1
    #   ret
    'body': (0x10100, bytes.fromhex('73060091c0035fd6')),
    # 0x10100: add x19, x19, #100
    #   ret
    'body_patched': (0x10100, bytes.fromhex('73920191c0035fd6')),
    # 0x10200: mov x20, #10
    #   mov x19, #0
    #   movz x21, #0x0100
    #   movk x21, #1, lsl #16
    #   movz w22, #0x0273
    #   movk w22, #0x9100, lsl #16
    #   loop: orr w23, w22, w20, lsl #10
    #   str w23, [x21]
    #   bl 0x10100
    #   subs x20, x20, #1
    #   b.ne loop
    #   nop
    'smc_main': (0x10200, bytes.fromhex('540180d2130080d2152080d23500a0f2764e80521620b272d72a142ab70200b9b8ffff97940600f181ffff541f2003d5')),
    # 0x10300: movz x1, #0x1000
    #   movk x1, #1, lsl #16
    #   movz x2, #4, lsl #16
    #   mov x3, #16
    #   c1: ldrb w4, [x1], #1
    #   strb w4, [x2], #1
    #   subs x3, x3, #1
    #   b.ne c1
    #   movz x5, #4, lsl #16
    #   blr x5
    #   mov x19, x0
    #   movz x1, #0x1010
    #   movk x1, #1, lsl #16
    #   movz x2, #4, lsl #16
    #   mov x3, #16
    #   c2: ldrb w4, [x1], #1
    #   strb w4, [x2], #1
    #   subs x3, x3, #1
    #   b.ne c2
    #   blr x5
    #   mov x6, #10
    #   mul x19, x19, x6
    #   add x19, x19, x0
    #   nop
    'copy_main': (0x10300, bytes.fromhex('010082d22100a0f28200a0d2030280d22414403844140038630400f1a1ffff548500a0d2a0003fd6f30300aa010282d22100a0f28200a0d2030280d22414403844140038630400f1a1ffff54a0003fd6460180d2737e069b7302008b1f2003d5')),
    # 0x11000: mov x0, #3
    #   ret
    'fn_a': (0x11000, bytes.fromhex('600080d2c0035fd6')),
    # 0x11010: mov x0, #4
    #   ret
    'fn_b': (0x11010, bytes.fromhex('800080d2c0035fd6')),
    # 0x10400: movz x5, #5, lsl #16
    #   blr x5
    #   mov x19, x0
    #   nop
    'call_page': (0x10400, bytes.fromhex('a500a0d2a0003fd6f30300aa1f2003d5')),
    # 0x10500: movz x5, #4, lsl #16
    #   blr x5
    #   mov x19, x0
    #   nop
    'call_jit': (0x10500, bytes.fromhex('8500a0d2a0003fd6f30300aa1f2003d5')),
    # 0x50000: mov x0, #1
    #   ret
    'page_v1': (0x50000, bytes.fromhex('200080d2c0035fd6')),
    # 0x50000: mov x0, #2
    #   ret
    'page_v2': (0x50000, bytes.fromhex('400080d2c0035fd6')),
}

PROGRAMS: dict[str, dict[str, Program]] = {"x86_64": X86_64, "arm64": ARM64}

# Added for every architecture (x86-64, ARM64 above; ARM and Thumb below):
#   0x10600  load_main   one load from 0x30010 (a memory-hook target), then a branch, so
#                        that the load's block does not hold the run's exit address
#   0x10700  two_adds    acc += 1 twice, in one block, then the exit instruction
X86_64.update({
    # 0x10600: mov rax, qword ptr [0x30010]
    #   jmp next
    #   next: hlt
    'load_main': (0x10600, bytes.fromhex('488b042510000300eb00f4')),
    # 0x10700: add rbx, 1
    #   add rbx, 1
    #   hlt
    'two_adds': (0x10700, bytes.fromhex('4883c3014883c301f4')),
})
ARM64.update({
    # 0x10600: movz x1, #3, lsl #16
    #   ldr x0, [x1, #0x10]
    #   b next
    #   next: nop
    'load_main': (0x10600, bytes.fromhex('6100a0d2200840f9010000141f2003d5')),
    # 0x10700: add x19, x19, #1
    #   add x19, x19, #1
    #   nop
    'two_adds': (0x10700, bytes.fromhex('73060091730600911f2003d5')),
})

# ARM (A32) and Thumb (T32), hand-encoded (checked with Capstone 5.0.9). The accumulator is
# r5; the exit instruction is ``mov r0, r0`` (ARM) or ``nop`` (Thumb). Thumb code is entered
# with the address's low bit set.
ARM: dict[str, Program] = {
    # 0x10000: mov r4, #10 / mov r5, #0 / loop: bl 0x10100 / subs r4, r4, #1 / bne loop / mov r0, r0
    'patch_main': (0x10000, bytes.fromhex('0a40a0e30050a0e33c0000eb014054e2fcffff1a0000a0e1')),
    # 0x10100: add r5, r5, #1 / bx lr
    'body': (0x10100, bytes.fromhex('015085e21eff2fe1')),
    # 0x10100: add r5, r5, #100 / bx lr
    'body_patched': (0x10100, bytes.fromhex('645085e21eff2fe1')),
    # 0x10400: mov r6, #0x50000 / blx r6 / mov r5, r0 / mov r0, r0
    'call_page': (0x10400, bytes.fromhex('0568a0e336ff2fe10050a0e10000a0e1')),
    # 0x10500: mov r6, #0x40000 / blx r6 / mov r5, r0 / mov r0, r0
    'call_jit': (0x10500, bytes.fromhex('0468a0e336ff2fe10050a0e10000a0e1')),
    # 0x11000: mov r0, #3 / bx lr
    'fn_a': (0x11000, bytes.fromhex('0300a0e31eff2fe1')),
    # 0x11010: mov r0, #4 / bx lr
    'fn_b': (0x11010, bytes.fromhex('0400a0e31eff2fe1')),
    # 0x50000: mov r0, #1 / bx lr
    'page_v1': (0x50000, bytes.fromhex('0100a0e31eff2fe1')),
    # 0x50000: mov r0, #2 / bx lr
    'page_v2': (0x50000, bytes.fromhex('0200a0e31eff2fe1')),
    # 0x10600: mov r1, #0x30000 / ldr r0, [r1, #0x10] / b next / next: mov r0, r0
    'load_main': (0x10600, bytes.fromhex('0318a0e3100091e5ffffffea0000a0e1')),
    # 0x10700: add r5, r5, #1 / add r5, r5, #1 / mov r0, r0
    'two_adds': (0x10700, bytes.fromhex('015085e2015085e20000a0e1')),
    # 0x10800: movw r6, #0x1100 / movt r6, #1 / blx r6 (ARM) / mov r5, r0 / add r6, r6, #1 /
    #   blx r6 (Thumb) / add r5, r0, r5, lsl #4 / mov r0, r0
    'dual_main': (0x10800, bytes.fromhex('006101e3016040e336ff2fe10050a0e1016086e236ff2fe1055280e00000a0e1')),
    # 0x11100 as ARM: mov r0, #2 / add r0, r0, #1 / bx lr
    # 0x11100 as Thumb: movs r2, r0 / b 0x11846
    'dual_fn': (0x11100, bytes.fromhex('0200a0e3010080e21eff2fe1')),
    # 0x11846 (Thumb): movs r0, #7 / bx lr
    'dual_thumb': (0x11846, bytes.fromhex('07207047')),
}

THUMB: dict[str, Program] = {
    # 0x10000: movs r4, #10 / movs r5, #0 / loop: bl 0x10100 / subs r4, #1 / bne loop / nop
    'patch_main': (0x10000, bytes.fromhex('0a24002500f07cf8013cfbd100bf')),
    # 0x10100: adds r5, #1 / bx lr
    'body': (0x10100, bytes.fromhex('01357047')),
    # 0x10100: adds r5, #100 / bx lr
    'body_patched': (0x10100, bytes.fromhex('64357047')),
    # 0x10400: movs r6, #5 / lsls r6, r6, #16 / adds r6, #1 / blx r6 / movs r5, r0 / nop
    'call_page': (0x10400, bytes.fromhex('052636040136b047050000bf')),
    # 0x10500: movs r6, #4 / lsls r6, r6, #16 / adds r6, #1 / blx r6 / movs r5, r0 / nop
    'call_jit': (0x10500, bytes.fromhex('042636040136b047050000bf')),
    # 0x11000: movs r0, #3 / bx lr
    'fn_a': (0x11000, bytes.fromhex('03207047')),
    # 0x11010: movs r0, #4 / bx lr
    'fn_b': (0x11010, bytes.fromhex('04207047')),
    # 0x50000: movs r0, #1 / bx lr
    'page_v1': (0x50000, bytes.fromhex('01207047')),
    # 0x50000: movs r0, #2 / bx lr
    'page_v2': (0x50000, bytes.fromhex('02207047')),
    # 0x10600: movs r1, #3 / lsls r1, r1, #16 / ldr r0, [r1, #0x10] / b next / next: nop
    'load_main': (0x10600, bytes.fromhex('032109040869ffe700bf')),
    # 0x10700: adds r5, #1 / adds r5, #1 / nop
    'two_adds': (0x10700, bytes.fromhex('0135013500bf')),
}

PROGRAMS["arm"] = ARM
PROGRAMS["thumb"] = THUMB
