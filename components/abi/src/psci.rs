//! PSCI 1.0 (Arm DEN 0022): the function IDs and results the hypervisor
//! uses toward its firmware, serves to its guests, and the guests call.
//! The Arm specification fixes them, so they are not in `abi.manifest`;
//! this is the one place the tree spells them.

/// `PSCI_VERSION`: `(major << 16) | minor`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_OFF`: turns the calling CPU off. Does not return.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON`: target MPIDR, entry point, context ID (SMC32 and SMC64).
pub const CPU_ON_32: u32 = 0x8400_0003;
pub const CPU_ON_64: u32 = 0xc400_0003;
/// `AFFINITY_INFO`: target MPIDR, lowest affinity level.
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
/// `MIGRATE_INFO_TYPE`: whether a trusted OS needs migrating.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// `SYSTEM_OFF`. Does not return.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET`. Does not return.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES`: whether a function is implemented.
pub const FEATURES: u32 = 0x8400_000a;

/// `PSCI_VERSION`'s answer for PSCI 1.0.
pub const VERSION_1_0: i64 = 0x0001_0000;

pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const INVALID_PARAMETERS: i64 = -2;
pub const DENIED: i64 = -3;
pub const ALREADY_ON: i64 = -4;
pub const ON_PENDING: i64 = -5;
pub const INTERNAL_FAILURE: i64 = -6;
pub const INVALID_ADDRESS: i64 = -9;

/// `AFFINITY_INFO`'s answers.
pub const AFFINITY_ON: i64 = 0;
pub const AFFINITY_OFF: i64 = 1;
pub const AFFINITY_ON_PENDING: i64 = 2;

/// `MIGRATE_INFO_TYPE`'s answer when no trusted OS needs migrating.
pub const TRUSTED_OS_NOT_PRESENT: i64 = 2;

/// Where an AArch32 vCPU starts from a CPU_ON entry address, and whether
/// in T32 (Thumb) state: bit 0 set asks for Thumb, as for BX (PSCI
/// DEN0022, CPU_ON). AArch64 entry addresses have no such bit.
pub fn aarch32_entry(entry: u64) -> (u64, bool) {
    (entry & !1, entry & 1 != 0)
}

/// The T bit of an AArch32 CPSR/SPSR: the vCPU executes T32 (Thumb).
pub const PSR_T: u32 = 1 << 5;

#[cfg(test)]
mod tests {
    #[test]
    fn bit_0_of_an_aarch32_entry_is_thumb() {
        assert_eq!(super::aarch32_entry(0x4000_8001), (0x4000_8000, true));
        assert_eq!(super::aarch32_entry(0x4000_8000), (0x4000_8000, false));
    }
}
