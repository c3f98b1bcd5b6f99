//! The EL2 physical timer (CNTHP): the hypervisor's own, separate from the
//! guests' virtual timer.

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use core::arch::asm;

pub fn counter() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTPCT_EL0.get()
}

pub fn frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Fires the CNTHP interrupt at `deadline` (counter ticks), or never.
pub fn set_deadline(deadline: Option<u64>) {
    match deadline {
        // SAFETY: programs the EL2 timer only; its interrupt goes to EL2.
        Some(at) => unsafe {
            asm!("msr cnthp_cval_el2, {}", "msr cnthp_ctl_el2, {}", "isb", in(reg) at, in(reg) 1u64, options(nostack))
        },
        // SAFETY: as above; disabling also drops its interrupt line.
        None => unsafe { asm!("msr cnthp_ctl_el2, xzr", "isb", options(nostack)) },
    }
}
