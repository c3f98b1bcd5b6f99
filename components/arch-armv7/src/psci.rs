//! PSCI calls to the firmware, over SMC (the conduit QEMU `virt` with
//! virtualization and the supported boards' firmware use from HYP mode).

use core::arch::asm;

use abi::psci::{CPU_ON_32, SYSTEM_OFF};

/// Starts the CPU with affinity `mpidr` at `entry` (HYP mode, MMU off)
/// with `r0 = context`. Returns the PSCI status (0 = success). The
/// arguments are 64-bit to match the AArch64 interface; SMC32 takes 32.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    let status: i32;
    // SAFETY: CPU_ON starts another CPU at `entry`, our secondary entry
    // point; this CPU continues unaffected.
    unsafe {
        asm!(".arch_extension sec", "smc #0",
             inout("r0") CPU_ON_32 => status, in("r1") mpidr as u32, in("r2") entry as u32,
             in("r3") context as u32, options(nostack))
    };
    status.into()
}

/// Powers the machine off; halts if the firmware does not.
pub fn system_off() -> ! {
    // SAFETY: SYSTEM_OFF does not return on success; on failure it returns
    // an error in r0, which is discarded.
    unsafe { asm!(".arch_extension sec", "smc #0", inout("r0") SYSTEM_OFF => _, options(nostack)) };
    loop {
        aarch32_cpu::asm::wfe();
    }
}
