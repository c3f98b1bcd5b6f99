//! PSCI (Arm DEN 0022) as the hypervisor emulates it for guests, over
//! `SMC #0` (SMCCC): the guest's own power management, as on hardware:
//! start and stop its vCPUs, power its VM off or reset it.
//!
//! A vCPU is named by its MPIDR: for a Tessera vCPU, `Aff0` = its index
//! (see [`crate::smp`]). Results are PSCI's: `>= 0` success (or a state),
//! `< 0` one of the error codes below.

use crate::arch;

/// `CPU_ON` and `AFFINITY_INFO` as the runtime calls them: the SMC64 IDs
/// (passed in their SMC32 form on AArch32, see [`call`]).
pub use abi::psci::{AFFINITY_INFO_64 as AFFINITY_INFO, CPU_ON_64 as CPU_ON};
pub use abi::psci::{
    AFFINITY_OFF, AFFINITY_ON, AFFINITY_ON_PENDING, ALREADY_ON, CPU_OFF, DENIED, FEATURES,
    INTERNAL_FAILURE, INVALID_ADDRESS, INVALID_PARAMETERS, NOT_SUPPORTED, ON_PENDING, SUCCESS,
    SYSTEM_OFF, SYSTEM_RESET, VERSION,
};

/// Issues PSCI function `function` with arguments `a1`..`a3` and returns
/// the raw result. On AArch32 an SMC64 ID (`CPU_ON`, `AFFINITY_INFO`) is
/// passed in its SMC32 form, with 32-bit arguments.
pub fn call(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    arch::psci_call(function, a1, a2, a3)
}

/// The PSCI version, `(major, minor)`; `(0, 0)` if the call failed.
pub fn version() -> (u16, u16) {
    let raw = call(VERSION, 0, 0, 0);
    if raw < 0 {
        (0, 0)
    } else {
        ((raw >> 16) as u16, raw as u16)
    }
}

/// `CPU_ON`: starts the vCPU `target` (MPIDR) at `entry` (guest-physical,
/// the same as virtual under the runtime's identity map) with the MMU off,
/// interrupts masked and `x0` = `context`. The error is PSCI's code
/// ([`INVALID_PARAMETERS`], [`ALREADY_ON`], ...).
///
/// Safe because the vCPU starts with its own state at a given address: it
/// only reaches Rust code through the runtime's entry point, which
/// [`crate::smp::start_vcpu`] uses.
pub fn cpu_on(target: u64, entry: u64, context: u64) -> Result<(), i64> {
    match call(CPU_ON, target, entry, context) {
        SUCCESS => Ok(()),
        error => Err(error),
    }
}

/// `CPU_OFF`: turns the calling vCPU off (another may start it again with
/// [`cpu_on`], from the entry point). If the hypervisor refuses, says so
/// and halts.
pub fn cpu_off() -> ! {
    let raw = call(CPU_OFF, 0, 0, 0);
    crate::println!("psci: CPU_OFF returned {raw}; halting");
    arch::halt()
}

/// `AFFINITY_INFO` of `target` (MPIDR) at level 0: [`AFFINITY_ON`],
/// [`AFFINITY_OFF`], [`AFFINITY_ON_PENDING`] or an error code.
pub fn affinity_info(target: u64) -> i64 {
    call(AFFINITY_INFO, target, 0, 0)
}

/// `SYSTEM_OFF`: the whole VM stops.
pub fn system_off() -> ! {
    let raw = call(SYSTEM_OFF, 0, 0, 0);
    crate::println!("psci: SYSTEM_OFF returned {raw}; halting");
    arch::halt()
}

/// `SYSTEM_RESET`: the VM restarts from its image.
pub fn system_reset() -> ! {
    let raw = call(SYSTEM_RESET, 0, 0, 0);
    crate::println!("psci: SYSTEM_RESET returned {raw}; halting");
    arch::halt()
}

/// `PSCI_FEATURES` of the PSCI function `function`: `>= 0` (its feature
/// flags) if it is implemented, [`NOT_SUPPORTED`] if not.
pub fn features(function: u32) -> i64 {
    call(FEATURES, u64::from(function), 0, 0)
}
