//! The guest's virtual timer (CNTV on AArch64): a compare value against
//! [`now`], interrupt [`INTID`] (level-triggered: it stays asserted until
//! the deadline moves into the future or the timer is disabled).

use crate::arch;

/// INTID of the virtual timer's interrupt ([`abi::GUEST_VTIMER_INTID`]).
pub const INTID: u32 = abi::GUEST_VTIMER_INTID;

/// The current count ([`crate::counter`]).
pub fn now() -> u64 {
    crate::counter()
}

/// Ticks per second of [`now`] ([`crate::counter_frequency`]).
pub fn frequency() -> u64 {
    crate::counter_frequency()
}

/// Enables the timer to fire once [`now`] reaches `cval` (at once if it
/// already has), interrupt unmasked (`CTL.ENABLE` = 1, `CTL.IMASK` = 0).
/// Moving the deadline into the future clears a pending condition.
pub fn set_deadline(cval: u64) {
    arch::vtimer_set_deadline(cval);
}

/// Disables the timer (`CTL.ENABLE` = 0): its interrupt drops.
pub fn disable() {
    arch::vtimer_disable();
}

/// Whether the timer is enabled and its deadline has passed (`CTL.ISTATUS`):
/// a timer interrupt without it is spurious.
pub fn fired() -> bool {
    arch::vtimer_fired()
}

/// The deadline last set (`CVAL`).
pub fn deadline() -> u64 {
    arch::vtimer_deadline()
}
