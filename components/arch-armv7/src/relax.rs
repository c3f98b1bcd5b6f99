//! How a CPU waits for a lock another CPU holds.

use core::arch::asm;

/// Spin with `YIELD`: a hint on hardware; under QEMU's round-robin TCG
/// (with `-icount`, all CPUs share one host thread) it hands the host
/// thread to the next CPU, so the lock holder runs instead of the spinner
/// burning its whole time slice.
pub struct Yield;

impl spin::RelaxStrategy for Yield {
    fn relax() {
        // SAFETY: YIELD is a hint with no architectural effect.
        unsafe { asm!("yield", options(nomem, nostack, preserves_flags)) };
    }
}

/// A lock shared between physical CPUs. A ticket lock: CPUs get it in the
/// order they asked, so one CPU that keeps taking and releasing it (a
/// guest yielding in a loop) cannot starve another.
pub type Mutex<T> = spin::mutex::TicketMutex<T, Yield>;
