//! Assembly: reset entry, the EL2 vector table, and guest entry/exit.
//!
//! The image provides `tessera_main(dtb: u64) -> !`,
//! `tessera_secondary_main(cpu: u64) -> !` and
//! `tessera_wrong_el(current_el: u64) -> !`, and the linker symbols
//! `__stack_top`, `__stack_size` (per CPU; CPU n's stack ends n stacks
//! below the top), `__hv_end` (the top of CPU 0's slot, where its fault
//! stack ends; see [`hv::layout`]), `__bss_start`, `__bss_end`.

use crate::context::{FpRegs, PC_OFFSET};
use core::arch::global_asm;

extern "C" {
    /// Where PSCI CPU_ON starts secondary CPUs.
    pub fn _start_secondary();
    /// Stores this CPU's FP/SIMD registers into `*fp`.
    pub fn __tessera_fp_save(fp: *mut FpRegs);
    /// Loads this CPU's FP/SIMD registers from `*fp`.
    pub fn __tessera_fp_load(fp: *const FpRegs);
}

global_asm!(
    r#"
// x2..x30 at their index * 8 from \base (x0/x1 are handled by the caller).
.macro store_x2_x30 base
    stp     x2, x3, [\base, #16]
    stp     x4, x5, [\base, #32]
    stp     x6, x7, [\base, #48]
    stp     x8, x9, [\base, #64]
    stp     x10, x11, [\base, #80]
    stp     x12, x13, [\base, #96]
    stp     x14, x15, [\base, #112]
    stp     x16, x17, [\base, #128]
    stp     x18, x19, [\base, #144]
    stp     x20, x21, [\base, #160]
    stp     x22, x23, [\base, #176]
    stp     x24, x25, [\base, #192]
    stp     x26, x27, [\base, #208]
    stp     x28, x29, [\base, #224]
    str     x30, [\base, #240]
.endm
.macro load_x2_x30 base
    ldp     x2, x3, [\base, #16]
    ldp     x4, x5, [\base, #32]
    ldp     x6, x7, [\base, #48]
    ldp     x8, x9, [\base, #64]
    ldp     x10, x11, [\base, #80]
    ldp     x12, x13, [\base, #96]
    ldp     x14, x15, [\base, #112]
    ldp     x16, x17, [\base, #128]
    ldp     x18, x19, [\base, #144]
    ldp     x20, x21, [\base, #160]
    ldp     x22, x23, [\base, #176]
    ldp     x24, x25, [\base, #192]
    ldp     x26, x27, [\base, #208]
    ldp     x28, x29, [\base, #224]
    ldr     x30, [\base, #240]
.endm
// Every CPU at EL2 before any Rust: vectors first (u-boot hands over with
// VBAR_EL2 still in u-boot and SError unmasked), FP/SIMD untrapped (the
// guests' to use; the soft-float hypervisor never does), EL2 MMU off with
// no alignment checks.
.macro el2_early_setup
    ldr     x1, =__tessera_vectors
    msr     vbar_el2, x1
    isb
    mov     x1, #0x33ff
    msr     cptr_el2, x1
    ldr     x1, =0x30c50830
    msr     sctlr_el2, x1
    isb
.endm

.section .text.boot, "ax"
.global _start
_start:
    msr     daifset, #0xf
    mov     x19, x0
    ldr     x1, =__stack_top
    mov     sp, x1
    mrs     x0, currentel
    cmp     x0, #(2 << 2)
    b.ne    .Lwrong_el
    el2_early_setup
    // Only the boot CPU runs this path; others wait for PSCI CPU_ON.
    mrs     x1, mpidr_el1
    and     x1, x1, #0xffffff
    cbnz    x1, .Lpark
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
0:  cmp     x1, x2
    b.hs    1f
    str     xzr, [x1], #8
    b       0b
1:  mov     x0, x19
    bl      tessera_main
    b       .Lpark
.Lwrong_el:
    // Let Rust run at EL1 too, to say what is wrong.
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    bl      tessera_wrong_el
.Lpark:
    wfe
    b       .Lpark

// Secondary CPUs, started by PSCI CPU_ON with x0 = CPU index: each takes
// its own stack below the boot CPU's, then does what _start does.
.global _start_secondary
_start_secondary:
    msr     daifset, #0xf
    mov     x19, x0
    ldr     x1, =__stack_top
    ldr     x2, =__stack_size
    mul     x2, x2, x19
    sub     x1, x1, x2
    mov     sp, x1
    el2_early_setup
    mov     x0, x19
    bl      tessera_secondary_main
    b       .Lpark

// Guest exits: keep guest x0/x1 on the stack, x1 = kind.
.macro guest_exit kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\kind
    b       __tessera_guest_exit
.endm

// Faults of the hypervisor itself: x0 = kind, the faulting x0 in
// TPIDR_EL2 and x1 in SP_EL0 (a guest's, lost: this path never returns).
.macro el2_fault kind
    .balign 0x80
    msr     tpidr_el2, x0
    msr     sp_el0, x1
    mov     x0, #\kind
    b       __tessera_el2_fault
.endm

.section .text.vectors, "ax"
.balign 0x800
.global __tessera_vectors
__tessera_vectors:
    el2_fault 0x00
    el2_fault 0x01
    el2_fault 0x02
    el2_fault 0x03
    el2_fault 0x10
    el2_fault 0x11
    el2_fault 0x12
    el2_fault 0x13
    guest_exit 0
    guest_exit 1
    guest_exit 2
    guest_exit 3
    guest_exit 0
    guest_exit 1
    guest_exit 2
    guest_exit 3

.text
// Reports on this CPU's fault stack (the top of its stack slot, above its
// stack), not on SP: SP may be what faulted, in the guard page. CPU n is
// MPIDR Aff0 n, as PSCI CPU_ON numbers them (see tessera_main).
__tessera_el2_fault:
    mov     sp, x0                      // kind, while x0/x1 find the stack
    mrs     x0, mpidr_el1
    and     x0, x0, #0xff
    ldr     x1, =__stack_size
    mul     x0, x0, x1
    ldr     x1, =__hv_end
    sub     x1, x1, x0
    mov     x0, sp
    mov     sp, x1
    sub     sp, sp, #256
    store_x2_x30 sp
    mrs     x2, tpidr_el2
    mrs     x3, sp_el0
    stp     x2, x3, [sp, #0]
    mov     x1, sp
    bl      tessera_el2_fault
    b       .Lpark

// x0 = &mut GuestRegs. Saves the hypervisor's callee-saved registers on its
// stack, loads the guest's, erets. Returns (from __tessera_guest_exit) the
// exit kind. FP/SIMD registers are not touched: the hypervisor is built
// soft-float, so they hold the loaded vCPU's throughout.
.global __tessera_enter_guest
__tessera_enter_guest:
    stp     x19, x20, [sp, #-96]!
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    msr     tpidr_el2, x0
    ldp     x2, x3, [x0, #{pc}]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    load_x2_x30 x0
    ldp     x0, x1, [x0, #0]
    eret
    dsb     nsh
    isb

__tessera_guest_exit:
    mrs     x0, tpidr_el2
    store_x2_x30 x0
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #{pc}]
    mov     x0, x1
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     x19, x20, [sp], #96
    ret

// FP/SIMD state of a vCPU (x0 = &FpRegs: FPSR, FPCR, then q0..q31 from
// offset 16), moved with the vCPU on and off a CPU. The only FP/SIMD code in
// the hypervisor: its target has neither, so the assembler is told here.
.arch_extension fp
.arch_extension simd
// q0..q31 from x0 + 16 by pairs, \op being stp or ldp.
.macro fp_pairs op
    \op    q0, q1, [x0, #16]
    \op    q2, q3, [x0, #48]
    \op    q4, q5, [x0, #80]
    \op    q6, q7, [x0, #112]
    \op    q8, q9, [x0, #144]
    \op    q10, q11, [x0, #176]
    \op    q12, q13, [x0, #208]
    \op    q14, q15, [x0, #240]
    \op    q16, q17, [x0, #272]
    \op    q18, q19, [x0, #304]
    \op    q20, q21, [x0, #336]
    \op    q22, q23, [x0, #368]
    \op    q24, q25, [x0, #400]
    \op    q26, q27, [x0, #432]
    \op    q28, q29, [x0, #464]
    \op    q30, q31, [x0, #496]
.endm

.global __tessera_fp_save
__tessera_fp_save:
    fp_pairs stp
    mrs     x1, fpsr
    mrs     x2, fpcr
    stp     x1, x2, [x0]
    ret

.global __tessera_fp_load
__tessera_fp_load:
    fp_pairs ldp
    ldp     x1, x2, [x0]
    msr     fpsr, x1
    msr     fpcr, x2
    ret
"#,
    pc = const PC_OFFSET,
);
