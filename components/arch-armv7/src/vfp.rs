//! A vCPU's VFP / Advanced SIMD state (d0-d31, FPSCR, FPEXC) and its
//! switch.
//!
//! The hypervisor is soft-float and never touches VFP itself, so a guest's
//! VFP registers stay live in the hardware while it traps to HYP and back:
//! they are saved and restored only when another vCPU is loaded on the CPU
//! (`hyp::vcpu_put` / `hyp::vcpu_load`), never on the trap path.
//!
//! HYP mode may use VFP when HCPTR.TCP10/TCP11 are clear (they are, see
//! `hyp::HCPTR`; the guest's own access is gated by its CPACR, switched
//! with its CP15 state, and its FPEXC.EN) and FPEXC.EN is set. The guest
//! may run with EN clear, so save and restore set EN for themselves and
//! put the guest's FPEXC back last.
//!
//! Every core with the Virtualization Extensions this targets (Cortex-A7,
//! A15, A17, ARMv8 in AArch32) has VFPv4; with Advanced SIMD it has 32 D
//! registers, without it may have 16 (VFPv4-D16). [`init`] reads MVFR0
//! once per CPU to tell; on a D16 core d16-d31 are not moved (they do not
//! exist). No VFPv4 core has asynchronous VFP exceptions, so there is no
//! FPINST/FPINST2 to keep.

use core::{
    arch::asm,
    sync::atomic::{AtomicBool, Ordering},
};

/// FPEXC.EN: VFP and Advanced SIMD enabled.
const FPEXC_EN: u32 = 1 << 30;
/// MVFR0.SIMDReg (bits 3:0): 0b0010 is 32 D registers, 0b0001 is 16.
const MVFR0_SIMDREG_MASK: u32 = 0xf;
const MVFR0_SIMDREG_D32: u32 = 0b0010;

/// Whether this host's VFP has d16-d31. Written by [`init`] on every CPU
/// (with the same value: the cores of one board agree) before any vCPU is
/// loaded, read by the switch.
static D32: AtomicBool = AtomicBool::new(true);

/// Reads MVFR0 to learn whether d16-d31 exist. Call once per CPU, with
/// HCPTR.TCP10/TCP11 already clear.
pub fn init() {
    let mvfr0: u32;
    // SAFETY: MVFR0 is an ID register: reading it changes nothing and is
    // allowed with FPEXC.EN clear; HCPTR no longer traps CP10/CP11 in HYP.
    unsafe {
        asm!(".fpu neon", "vmrs {}, mvfr0", out(reg) mvfr0,
             options(nomem, nostack, preserves_flags))
    };
    D32.store(
        (mvfr0 & MVFR0_SIMDREG_MASK) >= MVFR0_SIMDREG_D32,
        Ordering::Relaxed,
    );
}

/// The guest's VFP registers. A fresh vCPU's are as at reset: zero, and
/// FPEXC 0 (VFP disabled until the guest enables it).
#[repr(C, align(8))]
#[derive(Clone, Default)]
pub struct VfpRegs {
    /// d0-d31 (d16-d31 stay zero on a D16 core).
    pub d: [u64; 32],
    pub fpscr: u32,
    pub fpexc: u32,
}

impl VfpRegs {
    /// Reads the guest's VFP state out of the CPU. Leaves FPEXC.EN set
    /// (harmless: the next [`restore`](Self::restore) writes the next
    /// guest's FPEXC before it runs).
    pub fn save(&mut self) {
        let d32 = D32.load(Ordering::Relaxed);
        let fpexc: u32;
        let fpscr: u32;
        // SAFETY: writes only `self.d` (exclusively borrowed; 256 bytes,
        // word aligned as VSTM needs; only the first 128 without D32).
        // Setting FPEXC.EN (and clearing EX and the other bits, which no
        // VFPv4 core uses) only lets HYP use VFP; the guest's FPEXC was read
        // first and `restore` puts it back. No Rust code uses VFP registers
        // (soft-float target), so nothing of ours is clobbered but the flags
        // and the named general-purpose registers.
        unsafe {
            asm!(
                ".fpu neon",
                "vmrs {fpexc}, fpexc",
                "vmsr fpexc, {en}",
                "vmrs {fpscr}, fpscr",
                "vstmia {d}!, {{d0-d15}}",
                "cmp {d32}, #0",
                "vstmiane {d}, {{d16-d31}}",
                d = inout(reg) self.d.as_mut_ptr() => _,
                d32 = in(reg) u32::from(d32),
                en = in(reg) FPEXC_EN,
                fpexc = out(reg) fpexc,
                fpscr = out(reg) fpscr,
                options(nostack),
            )
        };
        self.fpexc = fpexc;
        self.fpscr = fpscr;
    }

    /// Writes the guest's VFP state into the CPU, its FPEXC last.
    pub fn restore(&self) {
        let d32 = D32.load(Ordering::Relaxed);
        // SAFETY: reads only `self.d` (borrowed; 256 bytes, word aligned).
        // FPEXC.EN is set only for the loads, then the guest's own FPEXC is
        // written back; FPSCR, d0-d31 and FPEXC affect only VFP instructions,
        // which only the guest runs (soft-float hypervisor).
        unsafe {
            asm!(
                ".fpu neon",
                "vmsr fpexc, {en}",
                "vldmia {d}!, {{d0-d15}}",
                "cmp {d32}, #0",
                "vldmiane {d}, {{d16-d31}}",
                "vmsr fpscr, {fpscr}",
                "vmsr fpexc, {fpexc}",
                d = inout(reg) self.d.as_ptr() => _,
                d32 = in(reg) u32::from(d32),
                en = in(reg) FPEXC_EN,
                fpscr = in(reg) self.fpscr,
                fpexc = in(reg) self.fpexc,
                options(nostack, readonly),
            )
        };
    }
}
