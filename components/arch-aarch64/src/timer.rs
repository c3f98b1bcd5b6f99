//! The EL2 physical timer (CNTHP): the hypervisor's own, separate from the
//! guests' virtual timer.

use aarch64_cpu::{
    asm::barrier,
    registers::{
        ReadWriteable, Readable, Writeable, CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0, CNTV_CTL_EL0,
        CNTV_CVAL_EL0,
    },
};
use core::arch::asm;

pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

pub fn frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Fires the CNTHP interrupt at `deadline` (counter ticks), or never.
pub fn set_deadline(deadline: Option<u64>) {
    match deadline {
        Some(at) => {
            // aarch64-cpu has no CNTHP_CVAL_EL2.
            // SAFETY: programs the EL2 timer only; its interrupt goes to EL2.
            unsafe { asm!("msr cnthp_cval_el2, {}", in(reg) at, options(nostack)) };
            CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET);
        }
        // Disabling also drops its interrupt line.
        None => CNTHP_CTL_EL2.set(0),
    }
    barrier::isb(barrier::SY);
}

/// Masks or unmasks the loaded vCPU's virtual timer interrupt (IMASK).
pub fn mask_guest_timer(masked: bool) {
    CNTV_CTL_EL0.modify(CNTV_CTL_EL0::IMASK.val(masked.into()));
    barrier::isb(barrier::SY);
}

/// When the loaded vCPU's virtual timer fires, if enabled and unmasked.
pub fn guest_timer_deadline() -> Option<u64> {
    let ctl = CNTV_CTL_EL0.extract();
    (ctl.is_set(CNTV_CTL_EL0::ENABLE) && !ctl.is_set(CNTV_CTL_EL0::IMASK))
        .then(|| CNTV_CVAL_EL0.get())
}
