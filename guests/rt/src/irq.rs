//! Interrupts: one handler for every IRQ, masking at the CPU, waiting.
//!
//! The runtime's IRQ entry saves the interrupted context, then acknowledges
//! each pending interrupt at the GIC ([`crate::gic::ack`]), calls the
//! handler with its INTID, and ends it ([`crate::gic::eoi`]), until none is
//! left. The handler runs with IRQs masked, on the interrupted stack; it may
//! print. Interrupts do not nest.
//!
//! Typical use: [`set_handler`], [`crate::gic::init`],
//! [`crate::gic::enable`] for each INTID, [`enable`], then [`wait`] in the
//! main loop.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::{arch, gic, println};

/// Interrupts acknowledged and handled.
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// IRQ exceptions with nothing to acknowledge (the GIC said spurious).
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Sets the function every interrupt is handed to (by INTID). Without one,
/// an interrupt is reported as unexpected and ended.
pub fn set_handler(handler: fn(u32)) {
    arch::set_irq_handler(handler);
}

/// Unmasks IRQs at the CPU (`DAIF.I` = 0 on AArch64).
pub fn enable() {
    arch::irq_enable();
}

/// Masks IRQs at the CPU.
pub fn disable() {
    arch::irq_disable();
}

/// Whether IRQs are unmasked at the CPU.
pub fn enabled() -> bool {
    arch::irq_enabled()
}

/// Waits for an interrupt (`wfi`). With IRQs unmasked the handler has run
/// when this returns (or it returned for another wake-up event). With IRQs
/// masked it returns once one is pending, and [`enable`] then takes it:
/// check a condition with IRQs masked, `wait`, then `enable`, and no
/// wake-up is lost between the check and the wait.
pub fn wait() {
    arch::wait_for_interrupt();
}

/// Interrupts handled so far.
pub fn handled() -> u64 {
    HANDLED.load(Ordering::Relaxed)
}

/// IRQ exceptions taken with nothing pending at the GIC.
pub fn spurious() -> u64 {
    SPURIOUS.load(Ordering::Relaxed)
}

/// Called by the arch IRQ entry, IRQs masked: acknowledge, dispatch, end,
/// until nothing is pending.
pub(crate) fn dispatch() {
    let mut any = false;
    while let Some(iar) = gic::ack() {
        any = true;
        let intid = gic::intid(iar);
        // Every vCPU may count here at once (the MMU is on: exclusives
        // work).
        HANDLED.fetch_add(1, Ordering::Relaxed);
        match arch::irq_handler() {
            Some(handler) => handler(intid),
            None => println!("irq: unexpected interrupt {intid} (no handler)"),
        }
        gic::eoi(iar);
    }
    if !any {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
    }
}
