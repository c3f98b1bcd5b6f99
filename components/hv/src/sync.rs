//! Locks shared by the CPUs besides the hypervisor's own (the board's
//! ticket lock): the log's outbox and each emulated device.

use spin::Once;

/// How a CPU waits for a lock another CPU holds: the board's way, set once
/// by [`set_relax`] (YIELD in the image).
static RELAX: Once<fn()> = Once::new();

/// Waits as the board said to: a CPU that spins without yielding burns
/// its whole time slice under QEMU's round-robin TCG, where the lock's
/// holder cannot run meanwhile.
pub struct BoardRelax;

impl spin::RelaxStrategy for BoardRelax {
    fn relax() {
        match RELAX.get() {
            Some(relax) => relax(),
            None => core::hint::spin_loop(),
        }
    }
}

/// Sets how CPUs wait for the locks here (the first call wins).
pub fn set_relax(relax: fn()) {
    RELAX.call_once(|| relax);
}

/// A lock CPUs take in the order they asked for it.
pub type Mutex<T> = spin::mutex::TicketMutex<T, BoardRelax>;
pub type MutexGuard<'a, T> = spin::mutex::TicketMutexGuard<'a, T>;
