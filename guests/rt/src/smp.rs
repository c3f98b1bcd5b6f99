//! Secondary vCPUs: a VM's vCPU 0 starts at the image entry; the others
//! start powered off, and the guest starts them with PSCI `CPU_ON`
//! ([`crate::psci`]), as on hardware.
//!
//! [`start_vcpu`] starts vCPU `index` at the runtime's secondary entry
//! (`_start_secondary`), which sets it up as `_start` set up vCPU 0 (FP/SIMD
//! on, its own stack and exception stack, the exception vectors, the same
//! identity map with the caches on; `.bss` is not zeroed again), then runs
//! the function given for it, with IRQs masked. That function never
//! returns: it ends in [`crate::psci::cpu_off`] or waits for ever.
//!
//! Each vCPU has its own GIC CPU interface: a secondary that uses
//! interrupts, or sends SGIs, calls [`crate::gic::init_cpu`] first (vCPU 0
//! calls [`crate::gic::init`], which sets up the distributor too).
//!
//! The runtime runs on at most [`MAX_VCPUS`] vCPUs (one stack each).

use crate::{arch, psci};

/// Most vCPUs the runtime has stacks for (vCPU indices `0..MAX_VCPUS`).
pub const MAX_VCPUS: usize = arch::MAX_VCPUS;

/// This vCPU's index: `MPIDR_EL1.Aff0` on AArch64.
pub fn vcpu_index() -> usize {
    usize::from(arch::cpu_affinity()[0])
}

/// The entry point a secondary vCPU is started at (`CPU_ON`'s entry, with
/// the vCPU's index as context id), as a guest-physical address.
pub fn entry_point() -> u64 {
    arch::secondary_entry_address()
}

/// Starts vCPU `index` (MPIDR `Aff0` = `index`), which then runs
/// `main(index)` on its own stack, MMU and caches on, IRQs masked. Returns
/// once `CPU_ON` did: the vCPU may not have run yet.
///
/// Everything this vCPU wrote before the call is visible to `main`. The
/// function is recorded before `CPU_ON`, so starting a vCPU that is on (or
/// being turned on) may change what it runs before `CPU_ON` fails with
/// [`psci::ALREADY_ON`]: check [`psci::affinity_info`] first if that can
/// happen.
///
/// Errors are PSCI's codes: [`psci::INVALID_PARAMETERS`] for an index with
/// no stack here (`>= MAX_VCPUS`) or no such vCPU, [`psci::ALREADY_ON`], ...
pub fn start_vcpu(index: usize, main: fn(usize) -> !) -> Result<(), i64> {
    if index >= MAX_VCPUS {
        return Err(psci::INVALID_PARAMETERS);
    }
    assert!(
        arch::vcpu_stacks_fit(),
        "guest.ld's __vcpu_stacks does not match the runtime's MAX_VCPUS"
    );
    arch::set_secondary_main(index, main);
    psci::cpu_on(index as u64, entry_point(), index as u64)
}
