//! AArch64 at EL2: the entry point, exception vectors, the hypervisor's own
//! MMU, stage-2 and trap configuration, the vCPU context and its switch,
//! the EL2 timer, cache and TLB maintenance, and PSCI calls to firmware.
//!
//! This crate and the image's MMIO drivers are the only places with
//! `unsafe`; each block says why it is sound.
#![no_std]

mod entry;

pub use entry::_start_secondary;

pub mod cache;
pub mod context;
pub mod el2;
pub mod mem;
pub mod mmu;
pub mod psci;
pub mod relax;
pub mod timer;

pub use context::Context;

/// The architecture and the mode the hypervisor runs in, for the banner.
pub const ARCH: &str = "aarch64";
pub const MODE: &str = "EL2";

/// Waits for an interrupt (pending, even if masked).
pub fn wfi() {
    aarch64_cpu::asm::wfi();
}
