//! ARMv7-A in HYP mode with LPAE: the entry point, HYP vectors, the
//! hypervisor's own MMU, stage-2 and trap configuration, the vCPU context
//! (banked registers, CP15 and VFP state) and its switch, the HYP timer, cache
//! and TLB maintenance, and PSCI calls to firmware. The same interface as
//! `arch-aarch64`, with `hyp` in place of `el2`.
//!
//! This crate and the image's MMIO drivers are the only places with
//! `unsafe`; each block says why it is sound.
#![no_std]

mod entry;
mod regs;

pub use entry::_start_secondary;

pub mod cache;
pub mod context;
pub mod hyp;
pub mod mem;
pub mod mmu;
pub mod psci;
pub mod relax;
pub mod timer;
pub mod vfp;

pub use context::Context;

/// The architecture and the mode the hypervisor runs in, for the banner.
pub const ARCH: &str = "armv7a";
pub const MODE: &str = "HYP";

/// Waits for an interrupt (pending, even if masked).
pub fn wfi() {
    aarch32_cpu::asm::wfi();
}
