//! AArch64 (EL1) interrupt support: the IRQ entry the vectors branch to,
//! `DAIF.I`, `wfi`, the GIC's MMIO frames, the GICv3 system-register CPU
//! interface (`ICC_*_EL1`) and the virtual timer (CNTV).
//!
//! A submodule of the arch module, so still the arch part of the runtime:
//! all its `unsafe` is here. The arch-neutral API is `crate::gic`,
//! `crate::irq` and `crate::timer`.

use core::arch::{asm, global_asm};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTV_CTL_EL0, CNTV_CVAL_EL0, ID_AA64PFR0_EL1, MPIDR_EL1,
};

use super::common::irq_dispatch;
use crate::gic::GicFrame;

/// The entry frame both exception entries save on the interrupted stack
/// (the IRQ entry here, the fuzzing guest's recoverable synchronous entry):
/// x0..x18, x30, ELR_EL1, SPSR_EL1, FPSR, FPCR (0xc0), then q0..q31 (0x200).
/// A multiple of 16, so `sp` stays aligned.
pub(super) const ENTRY_FRAME: usize = 0xc0 + 0x200;
const _: () = assert!(ENTRY_FRAME.is_multiple_of(16));

/// Assembly that pushes [`ENTRY_FRAME`] (its `{frame}` operand is that size).
macro_rules! save_entry_frame {
    () => {
        concat!(
            "sub     sp, sp, #{frame}\n",
            "stp     x0, x1, [sp, #0x00]\n",
            "stp     x2, x3, [sp, #0x10]\n",
            "stp     x4, x5, [sp, #0x20]\n",
            "stp     x6, x7, [sp, #0x30]\n",
            "stp     x8, x9, [sp, #0x40]\n",
            "stp     x10, x11, [sp, #0x50]\n",
            "stp     x12, x13, [sp, #0x60]\n",
            "stp     x14, x15, [sp, #0x70]\n",
            "stp     x16, x17, [sp, #0x80]\n",
            "stp     x18, x30, [sp, #0x90]\n",
            "mrs     x0, elr_el1\n",
            "mrs     x1, spsr_el1\n",
            "stp     x0, x1, [sp, #0xa0]\n",
            "mrs     x0, fpsr\n",
            "mrs     x1, fpcr\n",
            "stp     x0, x1, [sp, #0xb0]\n",
            "stp     q0, q1, [sp, #0xc0]\n",
            "stp     q2, q3, [sp, #0xe0]\n",
            "stp     q4, q5, [sp, #0x100]\n",
            "stp     q6, q7, [sp, #0x120]\n",
            "stp     q8, q9, [sp, #0x140]\n",
            "stp     q10, q11, [sp, #0x160]\n",
            "stp     q12, q13, [sp, #0x180]\n",
            "stp     q14, q15, [sp, #0x1a0]\n",
            "stp     q16, q17, [sp, #0x1c0]\n",
            "stp     q18, q19, [sp, #0x1e0]\n",
            "stp     q20, q21, [sp, #0x200]\n",
            "stp     q22, q23, [sp, #0x220]\n",
            "stp     q24, q25, [sp, #0x240]\n",
            "stp     q26, q27, [sp, #0x260]\n",
            "stp     q28, q29, [sp, #0x280]\n",
            "stp     q30, q31, [sp, #0x2a0]\n",
        )
    };
}

/// Assembly that pops what [`save_entry_frame`] pushed.
macro_rules! restore_entry_frame {
    () => {
        concat!(
            "ldp     q0, q1, [sp, #0xc0]\n",
            "ldp     q2, q3, [sp, #0xe0]\n",
            "ldp     q4, q5, [sp, #0x100]\n",
            "ldp     q6, q7, [sp, #0x120]\n",
            "ldp     q8, q9, [sp, #0x140]\n",
            "ldp     q10, q11, [sp, #0x160]\n",
            "ldp     q12, q13, [sp, #0x180]\n",
            "ldp     q14, q15, [sp, #0x1a0]\n",
            "ldp     q16, q17, [sp, #0x1c0]\n",
            "ldp     q18, q19, [sp, #0x1e0]\n",
            "ldp     q20, q21, [sp, #0x200]\n",
            "ldp     q22, q23, [sp, #0x220]\n",
            "ldp     q24, q25, [sp, #0x240]\n",
            "ldp     q26, q27, [sp, #0x260]\n",
            "ldp     q28, q29, [sp, #0x280]\n",
            "ldp     q30, q31, [sp, #0x2a0]\n",
            "ldp     x0, x1, [sp, #0xb0]\n",
            "msr     fpsr, x0\n",
            "msr     fpcr, x1\n",
            "ldp     x0, x1, [sp, #0xa0]\n",
            "msr     elr_el1, x0\n",
            "msr     spsr_el1, x1\n",
            "ldp     x0, x1, [sp, #0x00]\n",
            "ldp     x2, x3, [sp, #0x10]\n",
            "ldp     x4, x5, [sp, #0x20]\n",
            "ldp     x6, x7, [sp, #0x30]\n",
            "ldp     x8, x9, [sp, #0x40]\n",
            "ldp     x10, x11, [sp, #0x50]\n",
            "ldp     x12, x13, [sp, #0x60]\n",
            "ldp     x14, x15, [sp, #0x70]\n",
            "ldp     x16, x17, [sp, #0x80]\n",
            "ldp     x18, x30, [sp, #0x90]\n",
            "add     sp, sp, #{frame}\n",
        )
    };
}
pub(super) use {restore_entry_frame, save_entry_frame};

// The IRQ entry (vectors 1 and 5: current EL, SP0 or SPx). It runs on the
// interrupted stack, IRQs masked (the CPU set PSTATE.I on entry; nothing
// unmasks them before the `eret`), so interrupts do not nest.
//
// It saves what the AAPCS64 lets the Rust handler change: x0..x18, x30,
// all of v0..v31 (only the low 64 bits of v8..v15 are callee-saved, and the
// handler may use FP/SIMD: the target has NEON, and `memcpy` or formatting
// can use it), FPSR and FPCR; plus ELR_EL1 and SPSR_EL1, in case the handler
// takes an exception of its own before it reports and stops. x19..x29 and
// sp are callee-saved; NZCV is in SPSR_EL1.
global_asm!(
    r#"
    .section .text.rt_irq, "ax"
    .global __rt_irq_entry
    .type __rt_irq_entry, %function
    .balign 4
__rt_irq_entry:
"#,
    save_entry_frame!(),
    r#"

    bl      {dispatch}

"#,
    restore_entry_frame!(),
    r#"
    eret
    .size __rt_irq_entry, . - __rt_irq_entry
"#,
    frame = const ENTRY_FRAME,
    dispatch = sym irq_dispatch,
);

/// Unmasks IRQs (`DAIF.I` = 0). Also a compiler barrier: memory accesses
/// are not moved across it, so data a handler shares is consistent.
pub fn irq_enable() {
    // SAFETY: changes PSTATE.I only. Not `nomem`: the handler may run from
    // here on and touch memory. The vectors have an IRQ entry.
    unsafe { asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Masks IRQs (`DAIF.I` = 1); a compiler barrier as [`irq_enable`].
pub fn irq_disable() {
    // SAFETY: changes PSTATE.I only; not `nomem`, see `irq_enable`.
    unsafe { asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// Whether IRQs are unmasked.
pub fn irq_enabled() -> bool {
    let daif: u64;
    // SAFETY: reads DAIF into a register, nothing else.
    unsafe { asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags)) };
    daif & (1 << 7) == 0
}

// The GIC accessors are one `ldr`/`str` (`ldrb`/`strb`) with a plain base
// register, written in asm so the compiler can never choose a pair, a
// writeback or a register-offset form: the hypervisor emulates the
// distributor from the trap syndrome, which only describes single loads and
// stores without writeback. Not `nomem`, so they are ordered with the memory
// accesses around them as far as the compiler goes; the frames are
// Device-nGnRnE in the identity map, so they are ordered with each other.

/// 32-bit read of a GIC register.
pub fn gic_read32(frame: GicFrame, offset: u64) -> u32 {
    let addr = frame.register(offset, 4);
    let value: u32;
    // SAFETY: `addr` is inside a GIC frame of the ABI (checked above):
    // device memory, mapped Device-nGnRnE, that no Rust object lives in.
    unsafe {
        asm!("ldr {v:w}, [{a}]", v = out(reg) value, a = in(reg) addr,
             options(nostack, preserves_flags));
    }
    value
}

/// 32-bit write of a GIC register.
pub fn gic_write32(frame: GicFrame, offset: u64, value: u32) {
    let addr = frame.register(offset, 4);
    // SAFETY: as in `gic_read32`.
    unsafe {
        asm!("str {v:w}, [{a}]", v = in(reg) value, a = in(reg) addr,
             options(nostack, preserves_flags));
    }
}

/// 8-bit write of a byte-accessible GIC register (priorities, targets).
pub fn gic_write8(frame: GicFrame, offset: u64, value: u8) {
    let addr = frame.register(offset, 1);
    // SAFETY: as in `gic_read32`.
    unsafe {
        asm!("strb {v:w}, [{a}]", v = in(reg) u32::from(value), a = in(reg) addr,
             options(nostack, preserves_flags));
    }
}

/// Whether the CPU has the GICv3 system-register CPU interface
/// (`ID_AA64PFR0_EL1.GIC`, bits 27:24, non-zero). Under a hypervisor this
/// is the hardware's value.
pub fn gic_has_sysreg_interface() -> bool {
    (ID_AA64PFR0_EL1.get() >> 24) & 0xf != 0
}

/// This CPU's affinity from `MPIDR_EL1`: `[Aff0, Aff1, Aff2, Aff3]`.
pub fn cpu_affinity() -> [u8; 4] {
    let mpidr = MPIDR_EL1.extract();
    [
        mpidr.read(MPIDR_EL1::Aff0) as u8,
        mpidr.read(MPIDR_EL1::Aff1) as u8,
        mpidr.read(MPIDR_EL1::Aff2) as u8,
        mpidr.read(MPIDR_EL1::Aff3) as u8,
    ]
}

// The GICv3 CPU interface registers aarch64-cpu does not have, by their
// encodings (Arm IHI 0069, 12.2), so no assembler feature is needed. Each
// accessor is one `mrs`/`msr`. They are not `nomem`: an acknowledge, an
// end of interrupt or an SGI orders with the memory accesses the interrupt
// is about as far as the compiler goes.

/// Enables the GICv3 system-register CPU interface at EL1
/// (`ICC_SRE_EL1.SRE` = 1) and returns whether it reads back as enabled
/// (EL2 may keep it disabled, and then only a memory-mapped interface is
/// left).
pub fn icc_enable_sre() -> bool {
    let sre: u64;
    // SAFETY: ICC_SRE_EL1 (S3_0_C12_C12_5) only selects how this EL1 reaches
    // its GIC CPU interface; the runtime never uses the memory-mapped one on
    // this path. The `isb` makes the change visible to the accesses after.
    unsafe {
        asm!(
            "mrs {v}, S3_0_C12_C12_5",
            "orr {v}, {v}, #1",
            "msr S3_0_C12_C12_5, {v}",
            "isb",
            "mrs {v}, S3_0_C12_C12_5",
            v = out(reg) sre,
            options(nostack, preserves_flags),
        );
    }
    sre & 1 != 0
}

/// `ICC_PMR_EL1`: the priority mask (interrupts of a lower number, i.e.
/// more urgent, are signalled).
pub fn icc_set_priority_mask(mask: u8) {
    // SAFETY: ICC_PMR_EL1 (S3_0_C4_C6_0) only filters which interrupts are
    // signalled to this CPU.
    unsafe {
        asm!("msr S3_0_C4_C6_0, {v}", v = in(reg) u64::from(mask),
             options(nostack, preserves_flags));
    }
}

/// `ICC_BPR1_EL1`: the group 1 binary point (preemption grouping).
pub fn icc_set_binary_point1(bpr: u8) {
    // SAFETY: ICC_BPR1_EL1 (S3_0_C12_C12_3) only changes how priorities
    // group for preemption; the runtime's handler does not nest.
    unsafe {
        asm!("msr S3_0_C12_C12_3, {v}", v = in(reg) u64::from(bpr),
             options(nostack, preserves_flags));
    }
}

/// `ICC_IGRPEN1_EL1.Enable`: group 1 interrupts signalled to this CPU or
/// not. Takes effect before the next instruction (`isb`).
pub fn icc_set_group1_enable(enable: bool) {
    // SAFETY: ICC_IGRPEN1_EL1 (S3_0_C12_C12_7) only gates the signalling of
    // group 1 interrupts; they are still masked by PSTATE.I until
    // `irq_enable`, and the vectors have an IRQ entry.
    unsafe {
        asm!("msr S3_0_C12_C12_7, {v}", "isb", v = in(reg) u64::from(enable),
             options(nostack, preserves_flags));
    }
}

/// `ICC_IAR1_EL1`: acknowledges the highest-priority pending group 1
/// interrupt and returns its INTID (bits 23:0; 1023 if none).
pub fn icc_ack1() -> u32 {
    let iar: u64;
    // SAFETY: ICC_IAR1_EL1 (S3_0_C12_C12_0) is read-only; reading it
    // activates the interrupt, which the caller ends with `icc_eoi1`. The
    // `dsb` orders the acknowledge before the handler's accesses to the
    // device that raised the interrupt.
    unsafe {
        asm!("mrs {v}, S3_0_C12_C12_0", "dsb sy", v = out(reg) iar,
             options(nostack, preserves_flags));
    }
    iar as u32
}

/// `ICC_EOIR1_EL1`: ends (priority drop and deactivation, with
/// `ICC_CTLR_EL1.EOImode` = 0) the group 1 interrupt `intid`.
pub fn icc_eoi1(intid: u32) {
    // SAFETY: ICC_EOIR1_EL1 (S3_0_C12_C12_1) only changes the state of the
    // interrupt `intid` at this CPU's interface. The `isb` makes the
    // deactivation take effect before what follows.
    unsafe {
        asm!("msr S3_0_C12_C12_1, {v}", "isb", v = in(reg) u64::from(intid),
             options(nostack, preserves_flags));
    }
}

/// `ICC_SGI1R_EL1`: generates a group 1 SGI as `value` describes
/// (TargetList, Aff1..3, INTID, IRM).
pub fn icc_send_sgi1(value: u64) {
    // SAFETY: ICC_SGI1R_EL1 (S3_0_C12_C11_5) only makes an SGI pending. The
    // `dsb` first makes earlier stores visible to the handler that the SGI
    // runs (possibly on another CPU); the `isb` issues it before what
    // follows.
    unsafe {
        asm!("dsb ishst", "msr S3_0_C12_C11_5, {v}", "isb", v = in(reg) value,
             options(nostack, preserves_flags));
    }
}

/// Arms the virtual timer: fires when `CNTVCT_EL0 >= cval`, unmasked.
pub fn vtimer_set_deadline(cval: u64) {
    CNTV_CVAL_EL0.set(cval);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    // The new compare value takes effect (and an asserted timer output
    // drops) before what follows, e.g. the EOI in an interrupt handler.
    barrier::isb(barrier::SY);
}

/// Stops the virtual timer (`CNTV_CTL_EL0.ENABLE` = 0).
pub fn vtimer_disable() {
    CNTV_CTL_EL0.set(0);
    barrier::isb(barrier::SY);
}

/// Whether the virtual timer is enabled and its condition is met
/// (`CNTV_CTL_EL0.ISTATUS`).
pub fn vtimer_fired() -> bool {
    let ctl = CNTV_CTL_EL0.extract();
    ctl.is_set(CNTV_CTL_EL0::ENABLE) && ctl.is_set(CNTV_CTL_EL0::ISTATUS)
}

/// The virtual timer's compare value (`CNTV_CVAL_EL0`).
pub fn vtimer_deadline() -> u64 {
    CNTV_CVAL_EL0.get()
}
