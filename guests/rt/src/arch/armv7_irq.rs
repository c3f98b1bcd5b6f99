//! ARMv7-A (PL1) interrupt support: the IRQ entry the vectors branch to,
//! `CPSR.I`, `wfi`, the GICv2 MMIO frames and the virtual timer (CNTV).
//!
//! A 32-bit guest only gets a GICv2 (memory-mapped CPU interface): the
//! GICv3 system-register accessors (`icc_*`) exist for the arch-neutral
//! `crate::gic::v3`, which never calls them here because
//! [`gic_has_sysreg_interface`] is false.
//!
//! A submodule of the arch module, so still the arch part of the runtime:
//! all its `unsafe` is here.

use core::arch::{asm, global_asm};

use super::common::irq_dispatch;
use crate::gic::GicFrame;

// The IRQ entry (vector 0x18), in IRQ mode with IRQs masked. It pushes the
// return state (LR_irq - 4, SPSR_irq) onto the SVC stack (`srsdb`), switches
// to SVC mode (IRQs still masked: nothing unmasks them before the `rfe`, so
// interrupts do not nest) and runs the Rust handler on the interrupted
// stack, as on AArch64. It saves what the AAPCS lets the handler change:
// r0..r3, r12 and lr (LR_svc, the interrupted code's); r4..r11 are
// callee-saved, the flags are in the saved SPSR, and the VFP registers need
// no saving: VFP is on, but the runtime's Rust code is soft-float and never
// uses it (the register soak, which does, runs with IRQs masked). sp is
// 8-byte aligned for the call (the AAPCS only promises 4 inside a
// function).
global_asm!(
    r#"
    .section .text.rt_irq, "ax"
    .arm
    .global __rt_irq_entry
    .type __rt_irq_entry, %function
    .balign 4
__rt_irq_entry:
    sub     lr, lr, #4
    srsdb   sp!, #0x13                  // LR_irq, SPSR_irq onto the SVC stack
    cps     #0x13                       // SVC mode, IRQs still masked
    push    {{r0-r3, r12, lr}}
    and     r1, sp, #4                  // 0 or 4: align sp to 8
    sub     sp, sp, r1
    push    {{r1, r2}}                  // the adjustment (8 bytes: still aligned)
    bl      {dispatch}
    pop     {{r1, r2}}
    add     sp, sp, r1
    pop     {{r0-r3, r12, lr}}
    rfeia   sp!
    .size __rt_irq_entry, . - __rt_irq_entry
"#,
    dispatch = sym irq_dispatch,
);

/// `CPSR.I`.
const CPSR_I: u32 = 1 << 7;

/// Unmasks IRQs (`cpsie i`). Also a compiler barrier: memory accesses are
/// not moved across it, so data a handler shares is consistent.
pub fn irq_enable() {
    // SAFETY: changes CPSR.I only. Not `nomem`: the handler may run from
    // here on and touch memory. The vectors have an IRQ entry.
    unsafe { asm!("cpsie i", options(nostack, preserves_flags)) };
}

/// Masks IRQs (`cpsid i`); a compiler barrier as [`irq_enable`].
pub fn irq_disable() {
    // SAFETY: changes CPSR.I only; not `nomem`, see `irq_enable`.
    unsafe { asm!("cpsid i", options(nostack, preserves_flags)) };
}

/// Whether IRQs are unmasked.
pub fn irq_enabled() -> bool {
    let cpsr: u32;
    // SAFETY: reads CPSR into a register, nothing else.
    unsafe { asm!("mrs {}, cpsr", out(reg) cpsr, options(nomem, nostack, preserves_flags)) };
    cpsr & CPSR_I == 0
}

// The GIC accessors are one `ldr`/`str` (`strb`) with a plain base register
// and no offset, written in asm so the compiler can never choose a
// multiple, a doubleword, a writeback or a register-offset form: the
// hypervisor emulates the distributor from the trap syndrome, which only
// describes single loads and stores without writeback. Not `nomem`; the
// frames are Device in the identity map, so they are ordered with each
// other.

/// 32-bit read of a GIC register.
pub fn gic_read32(frame: GicFrame, offset: u64) -> u32 {
    let addr = frame.register(offset, 4) as usize;
    let value: u32;
    // SAFETY: `addr` is inside a GIC frame of the ABI (checked above):
    // device memory, mapped Device, that no Rust object lives in.
    unsafe {
        asm!("ldr {v}, [{a}]", v = out(reg) value, a = in(reg) addr,
             options(nostack, preserves_flags));
    }
    value
}

/// 32-bit write of a GIC register.
pub fn gic_write32(frame: GicFrame, offset: u64, value: u32) {
    let addr = frame.register(offset, 4) as usize;
    // SAFETY: as in `gic_read32`.
    unsafe {
        asm!("str {v}, [{a}]", v = in(reg) value, a = in(reg) addr,
             options(nostack, preserves_flags));
    }
}

/// 8-bit write of a byte-accessible GIC register (priorities, targets).
pub fn gic_write8(frame: GicFrame, offset: u64, value: u8) {
    let addr = frame.register(offset, 1) as usize;
    // SAFETY: as in `gic_read32`.
    unsafe {
        asm!("strb {v}, [{a}]", v = in(reg) u32::from(value), a = in(reg) addr,
             options(nostack, preserves_flags));
    }
}

/// Always false: Tessera gives 32-bit guests a GICv2 (the AArch32 GICv3
/// system registers, `ICC_*` on cp15, are not used by this runtime).
pub fn gic_has_sysreg_interface() -> bool {
    false
}

/// This CPU's affinity from `MPIDR`: `[Aff0, Aff1, Aff2, 0]` (AArch32 has
/// no Aff3).
pub fn cpu_affinity() -> [u8; 4] {
    let mpidr = read_cp15!(c0, c0, 5);
    [mpidr as u8, (mpidr >> 8) as u8, (mpidr >> 16) as u8, 0]
}

// GICv3 CPU interface: never reached on a 32-bit guest (see the module doc).
const NO_GICV3: &str = "guest-rt: no GICv3 system-register interface on AArch32";

pub fn icc_enable_sre() -> bool {
    false
}

pub fn icc_set_priority_mask(_mask: u8) {
    unreachable!("{NO_GICV3}")
}

pub fn icc_set_binary_point1(_bpr: u8) {
    unreachable!("{NO_GICV3}")
}

pub fn icc_set_group1_enable(_enable: bool) {
    unreachable!("{NO_GICV3}")
}

pub fn icc_ack1() -> u32 {
    unreachable!("{NO_GICV3}")
}

pub fn icc_eoi1(_intid: u32) {
    unreachable!("{NO_GICV3}")
}

pub fn icc_send_sgi1(_value: u64) {
    unreachable!("{NO_GICV3}")
}

/// `CNTV_CTL.ENABLE` and `.ISTATUS` (`.IMASK`, bit 1, stays 0).
const CNTV_CTL_ENABLE: u32 = 1 << 0;
const CNTV_CTL_ISTATUS: u32 = 1 << 2;

fn cntv_ctl() -> u32 {
    read_cp15!(c14, c3, 1)
}

fn set_cntv_ctl(ctl: u32) {
    // SAFETY: CNTV_CTL only controls this vCPU's virtual timer and its
    // interrupt (INTID 27), which the IRQ entry can take. The `isb` makes
    // the change (and a new compare value before it) take effect before
    // what follows, e.g. the EOI in an interrupt handler.
    unsafe {
        asm!("mcr p15, 0, {}, c14, c3, 1", "isb", in(reg) ctl, options(nostack, preserves_flags))
    };
}

/// Arms the virtual timer: fires when `CNTVCT >= cval`, unmasked.
pub fn vtimer_set_deadline(cval: u64) {
    // SAFETY: CNTV_CVAL (64-bit, MCRR) only sets the timer's deadline.
    unsafe {
        asm!("mcrr p15, 3, {}, {}, c14", in(reg) cval as u32, in(reg) (cval >> 32) as u32,
             options(nostack, preserves_flags));
    }
    // ENABLE = 1, IMASK = 0.
    set_cntv_ctl(CNTV_CTL_ENABLE);
}

/// Stops the virtual timer (`CNTV_CTL.ENABLE` = 0).
pub fn vtimer_disable() {
    set_cntv_ctl(0);
}

/// Whether the virtual timer is enabled and its condition is met
/// (`CNTV_CTL.ISTATUS`).
pub fn vtimer_fired() -> bool {
    let ctl = cntv_ctl();
    ctl & CNTV_CTL_ENABLE != 0 && ctl & CNTV_CTL_ISTATUS != 0
}

/// The virtual timer's compare value (`CNTV_CVAL`).
pub fn vtimer_deadline() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: reads CNTV_CVAL (MRRC), nothing else.
    unsafe {
        asm!("mrrc p15, 3, {}, {}, c14", out(reg) low, out(reg) high,
             options(nomem, nostack, preserves_flags));
    }
    u64::from(high) << 32 | u64::from(low)
}
