//! The HYP physical timer (CNTHP): the hypervisor's own, separate from the
//! guests' virtual timer.

use crate::regs::CnthpCval;
use aarch32_cpu::{
    asm::isb,
    register::{CntPct, Cntfrq, CnthpCtl, CntvCtl, CntvCval, SysRegWrite64},
};

pub fn counter() -> u64 {
    isb();
    CntPct::read().0
}

pub fn frequency() -> u64 {
    Cntfrq::read().0.into()
}

/// Fires the CNTHP interrupt at `deadline` (counter ticks), or never.
pub fn set_deadline(deadline: Option<u64>) {
    match deadline {
        Some(at) => {
            // SAFETY: programs the HYP timer only; its interrupt goes to HYP.
            unsafe { <CnthpCval as SysRegWrite64>::write_raw(at) };
            CnthpCtl::write(CnthpCtl::new_with_raw_value(CTL_ENABLE));
        }
        // Disabling also drops its interrupt line.
        None => CnthpCtl::write(CnthpCtl::new_with_raw_value(0)),
    }
    isb();
}

/// CNTx_CTL bits.
const CTL_ENABLE: u32 = 1 << 0;
const CTL_IMASK: u32 = 1 << 1;

/// Masks or unmasks the loaded vCPU's virtual timer interrupt (IMASK).
pub fn mask_guest_timer(masked: bool) {
    // Only the guest's timer interrupt line changes; ISTATUS is read-only
    // so writing it back is harmless.
    let mut ctl = CntvCtl::read();
    ctl.set_imask(masked);
    CntvCtl::write(ctl);
    isb();
}

/// When the loaded vCPU's virtual timer fires, if enabled and unmasked.
pub fn guest_timer_deadline() -> Option<u64> {
    let ctl = CntvCtl::read().raw_value();
    (ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE).then(|| CntvCval::read().0)
}
