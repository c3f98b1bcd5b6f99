//! PSCI calls to the firmware, over SMC (the conduit QEMU `virt` with
//! virtualization and the supported boards' firmware use at EL2).

use core::arch::asm;

const SYSTEM_OFF: u64 = 0x8400_0008;

/// Powers the machine off; halts if the firmware does not.
pub fn system_off() -> ! {
    // SAFETY: SYSTEM_OFF does not return on success; on failure it returns
    // an error in x0, which is discarded.
    unsafe { asm!("smc #0", inout("x0") SYSTEM_OFF => _, options(nostack)) };
    loop {
        aarch64_cpu::asm::wfe();
    }
}
