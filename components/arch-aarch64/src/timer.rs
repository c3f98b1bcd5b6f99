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

/// CNTV_CTL_EL0 bits.
const CTL_ENABLE: u64 = 1 << 0;
const CTL_IMASK: u64 = 1 << 1;

/// Masks or unmasks the loaded vCPU's virtual timer interrupt (IMASK).
pub fn mask_guest_timer(masked: bool) {
    let ctl: u64;
    // SAFETY: reads the loaded guest's virtual timer control; no side effects.
    unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) ctl, options(nomem, nostack)) };
    let ctl = if masked {
        ctl | CTL_IMASK
    } else {
        ctl & !CTL_IMASK
    };
    // SAFETY: only the guest's timer interrupt line changes; ISTATUS is
    // read-only so writing it back is harmless.
    unsafe { asm!("msr cntv_ctl_el0, {}", "isb", in(reg) ctl, options(nostack)) };
}

/// When the loaded vCPU's virtual timer fires, if enabled and unmasked.
pub fn guest_timer_deadline() -> Option<u64> {
    let (ctl, cval): (u64, u64);
    // SAFETY: reads the loaded guest's virtual timer; no side effects.
    unsafe {
        asm!("mrs {}, cntv_ctl_el0", "mrs {}, cntv_cval_el0", out(reg) ctl, out(reg) cval, options(nomem, nostack))
    };
    (ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE).then_some(cval)
}
