//! Assembly: reset entry, the HYP vector table, and guest entry/exit.
//!
//! The image provides `tessera_main(dtb: u64) -> !`,
//! `tessera_secondary_main(cpu: u64) -> !` and
//! `tessera_wrong_el(mode: u64) -> !` (64-bit arguments: r0 holds the
//! value, r1 is zeroed), and the linker symbols `__stack_top`,
//! `__stack_size` (per CPU; CPU n's stack ends n stacks below the top),
//! `__hv_end` (the top of CPU 0's slot, where its fault stack ends; see
//! [`hv::layout`]), `__bss_start`, `__bss_end`.

use crate::{context::BANKED_OFFSET, mmu::HSCTLR_RESET};
use core::arch::global_asm;

extern "C" {
    /// Where PSCI CPU_ON starts secondary CPUs.
    pub fn _start_secondary();
}

global_asm!(
    r#"
.arch_extension virt
.arch_extension sec
.arm

// Every CPU in HYP mode before any Rust: vectors first (u-boot hands over
// with HVBAR still in u-boot), then the HYP MMU off with no alignment
// checks and exceptions taken in ARM state.
.macro hyp_early_setup
    ldr     r4, =__tessera_vectors
    mcr     p15, 4, r4, c12, c0, 0      // HVBAR
    isb
    ldr     r4, ={hsctlr}
    mcr     p15, 4, r4, c1, c0, 0       // HSCTLR
    isb
.endm

.section .text.boot, "ax"
.global _start
_start:
    cpsid   aif
    mov     r5, r2                      // u-boot's FDT, if any
    ldr     sp, =__stack_top
    mrs     r0, cpsr
    and     r0, r0, #0x1f
    cmp     r0, #0x1a                   // HYP
    bne     .Lwrong_mode
    hyp_early_setup
    // Only the boot CPU runs this path; others wait for PSCI CPU_ON.
    mrc     p15, 0, r0, c0, c0, 5       // MPIDR
    bic     r0, r0, #0xff000000
    cmp     r0, #0
    bne     .Lpark
    ldr     r1, =__bss_start
    ldr     r2, =__bss_end
    mov     r3, #0
    mov     r4, #0
    mov     r6, #0
    mov     r7, #0
    sub     r8, r2, #16
0:  cmp     r1, r8                      // 16 bytes a store while they fit
    stmls   r1!, {{r3, r4, r6, r7}}
    bls     0b
1:  cmp     r1, r2
    strlo   r3, [r1], #4
    blo     1b
    mov     r0, r5
    mov     r1, #0
    bl      tessera_main
    b       .Lpark
.Lwrong_mode:
    // Rust runs in any PL1 mode too, to say what is wrong.
    mov     r1, #0
    bl      tessera_wrong_el
.Lpark:
    wfe
    b       .Lpark

// Secondary CPUs, started by PSCI CPU_ON with r0 = CPU index: each takes
// its own stack below the boot CPU's, then does what _start does.
.global _start_secondary
_start_secondary:
    cpsid   aif
    mov     r5, r0
    ldr     r1, =__stack_top
    ldr     r2, =__stack_size
    mul     r2, r2, r5
    sub     sp, r1, r2
    hyp_early_setup
    mov     r0, r5
    mov     r1, #0
    bl      tessera_secondary_main
    b       .Lpark

.section .text.vectors, "ax"
.balign 32
.global __tessera_vectors
__tessera_vectors:
    b       __tessera_hyp_fault_0       // reset (not taken here)
    b       __tessera_hyp_fault_1       // undefined instruction in HYP
    b       __tessera_hyp_fault_2       // HVC in HYP
    b       __tessera_hyp_fault_3       // prefetch abort in HYP
    b       __tessera_hyp_fault_4       // data abort in HYP
    b       __tessera_exit_trap         // HYP trap: a guest's
    b       __tessera_exit_irq          // IRQ (HYP runs with IRQs masked)
    b       __tessera_exit_fiq          // FIQ

// Faults of the hypervisor itself: r0 = kind, r1 = the saved r0-r12 and
// LR, on this CPU's fault stack (the top of its stack slot, above its
// stack), not on SP: SP may be what faulted, in the guard page. The
// faulting r0 waits in HTPIDR and r1 in SP_usr (a guest's, lost: this path
// never returns). CPU n is MPIDR Aff0 n, as PSCI CPU_ON numbers them.
.macro hyp_fault kind
__tessera_hyp_fault_\kind:
    mcr     p15, 4, r0, c13, c0, 2      // HTPIDR
    msr     sp_usr, r1
    mov     r0, #\kind
    b       __tessera_hyp_fault
.endm
    hyp_fault 0
    hyp_fault 1
    hyp_fault 2
    hyp_fault 3
    hyp_fault 4

__tessera_hyp_fault:
    mov     sp, r0                      // kind, while r0/r1 find the stack
    mrc     p15, 0, r0, c0, c0, 5       // MPIDR
    and     r0, r0, #0xff
    ldr     r1, =__stack_size
    mul     r0, r0, r1
    ldr     r1, =__hv_end
    sub     r1, r1, r0
    mov     r0, sp
    mov     sp, r1
    push    {{r0-r12, lr}}
    mrc     p15, 4, r2, c13, c0, 2      // the faulting r0 and r1
    mrs     r3, sp_usr
    str     r2, [sp]
    str     r3, [sp, #4]
    mov     r1, sp
    bic     sp, sp, #7
    bl      tessera_hyp_fault
    b       .Lpark

// Guest exits: keep guest r0/r1 on the stack, r1 = kind.
__tessera_exit_trap:
    push    {{r0, r1}}
    mov     r1, #0
    b       __tessera_guest_exit
__tessera_exit_irq:
    push    {{r0, r1}}
    mov     r1, #1
    b       __tessera_guest_exit
__tessera_exit_fiq:
    push    {{r0, r1}}
    mov     r1, #2
    b       __tessera_guest_exit

.text
// r0 = &mut GuestRegs. Saves the hypervisor's callee-saved registers (and
// LR, which HYP mode shares with User mode, so the guest overwrites it) on
// its stack, loads the guest's, erets. Returns (from __tessera_guest_exit)
// the exit kind.
.global __tessera_enter_guest
__tessera_enter_guest:
    push    {{r4-r11, lr}}
    mcr     p15, 4, r0, c13, c0, 2      // HTPIDR: found again on exit
    add     lr, r0, #{banked}
    ldmia   lr!, {{r2-r12}}
    msr     sp_usr, r2
    mov     r1, r3                      // lr_usr, loaded last
    msr     sp_svc, r4
    msr     lr_svc, r5
    msr     spsr_svc, r6
    msr     sp_abt, r7
    msr     lr_abt, r8
    msr     spsr_abt, r9
    msr     sp_und, r10
    msr     lr_und, r11
    msr     spsr_und, r12
    ldmia   lr!, {{r2-r12}}
    msr     sp_irq, r2
    msr     lr_irq, r3
    msr     spsr_irq, r4
    msr     r8_fiq, r5
    msr     r9_fiq, r6
    msr     r10_fiq, r7
    msr     r11_fiq, r8
    msr     r12_fiq, r9
    msr     sp_fiq, r10
    msr     lr_fiq, r11
    msr     spsr_fiq, r12
    ldmia   lr, {{r2, r3}}
    msr     elr_hyp, r2
    // Not `spsr_hyp`: that form is UNDEFINED in HYP mode (QEMU agrees).
    msr     spsr_cxsf, r3
    mov     lr, r1
    ldm     r0, {{r0-r12}}
    eret

__tessera_guest_exit:
    mrc     p15, 4, r0, c13, c0, 2      // HTPIDR
    add     r0, r0, #8
    stm     r0, {{r2-r12}}
    sub     r0, r0, #8
    pop     {{r2, r3}}
    stm     r0, {{r2, r3}}
    mrs     r2, sp_usr
    mov     r3, lr                      // lr_usr
    mrs     r4, sp_svc
    mrs     r5, lr_svc
    mrs     r6, spsr_svc
    mrs     r7, sp_abt
    mrs     r8, lr_abt
    mrs     r9, spsr_abt
    mrs     r10, sp_und
    mrs     r11, lr_und
    mrs     r12, spsr_und
    add     lr, r0, #{banked}
    stmia   lr!, {{r2-r12}}
    mrs     r2, sp_irq
    mrs     r3, lr_irq
    mrs     r4, spsr_irq
    mrs     r5, r8_fiq
    mrs     r6, r9_fiq
    mrs     r7, r10_fiq
    mrs     r8, r11_fiq
    mrs     r9, r12_fiq
    mrs     r10, sp_fiq
    mrs     r11, lr_fiq
    mrs     r12, spsr_fiq
    stmia   lr!, {{r2-r12}}
    mrs     r2, elr_hyp
    mrs     r3, spsr
    stmia   lr, {{r2, r3}}
    mov     r0, r1
    pop     {{r4-r11, lr}}
    bx      lr
"#,
    hsctlr = const HSCTLR_RESET,
    banked = const BANKED_OFFSET,
);
