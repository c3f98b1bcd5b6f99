//! PSCI calls to the firmware, over SMC (the conduit QEMU `virt` with
//! virtualization and the supported boards' firmware use at EL2).

use core::arch::asm;

use abi::psci::{CPU_ON_64, SYSTEM_OFF};

/// Starts the CPU with affinity `mpidr` at `entry` (EL2, MMU off) with
/// `x0 = context`. Returns the PSCI status (0 = success).
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    let status: i64;
    // SAFETY: CPU_ON starts another CPU at `entry`, our secondary entry
    // point; this CPU continues unaffected.
    unsafe {
        asm!("smc #0", inout("x0") u64::from(CPU_ON_64) => status, in("x1") mpidr, in("x2") entry, in("x3") context,
             options(nostack))
    };
    status
}

/// Powers the machine off; halts if the firmware does not.
pub fn system_off() -> ! {
    // SAFETY: SYSTEM_OFF does not return on success; on failure it returns
    // an error in x0, which is discarded.
    unsafe { asm!("smc #0", inout("x0") u64::from(SYSTEM_OFF) => _, options(nostack)) };
    loop {
        aarch64_cpu::asm::wfe();
    }
}
