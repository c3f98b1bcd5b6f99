//! Raw memory probes for isolation tests (the `prober` guest): volatile
//! 32-bit reads, writes and branches to addresses the guest does not own,
//! which the hypervisor's stage 2 must stop; and the hostile instructions
//! of the hostile-guest tests (`SMC`, `HVC` with a non-zero immediate, an
//! EL2 register read from EL1).
//!
//! Addresses inside the guest image or its StartInfo page are refused, so a
//! probe never aliases a Rust object; everything else in the identity map
//! (below 4 GiB) reaches stage 2. Above 4 GiB the guest's own stage 1 faults
//! and the runtime reports a guest exception (AArch64); a 32-bit guest
//! cannot name such an address and refuses it.

/// Why a probe was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The address is not 4-byte aligned.
    Misaligned,
    /// The address is in the guest image (code, data, stacks).
    InImage,
    /// The address is in the StartInfo page.
    InStartInfo,
    /// The address does not fit in a pointer (above 4 GiB on AArch32).
    BeyondAddressSpace,
    /// Not inside a GIC frame of the ABI, or not aligned to the access
    /// (`crate::fuzz`).
    NotInGicFrame,
    /// Not inside a virtio-mmio window of the ABI, or not aligned to the
    /// access (`crate::fuzz`).
    NotInVirtioWindow,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Refused::Misaligned => "not 4-byte aligned",
            Refused::InImage => "inside this guest's image",
            Refused::InStartInfo => "inside this guest's StartInfo page",
            Refused::BeyondAddressSpace => "beyond this guest's address space",
            Refused::NotInGicFrame => "not an aligned register of a GIC frame",
            Refused::NotInVirtioWindow => "not an aligned register of a virtio-mmio window",
        })
    }
}

/// Whether `addr` may be probed (the probes below check it again).
pub fn check(info: &abi::StartInfo, addr: u64) -> Result<(), Refused> {
    if !addr.is_multiple_of(4) {
        return Err(Refused::Misaligned);
    }
    if usize::try_from(addr).is_err() {
        return Err(Refused::BeyondAddressSpace);
    }
    // The image starts on a page and the access is an aligned word, so
    // checking its first byte is enough.
    if crate::arch::image().contains(&addr) {
        return Err(Refused::InImage);
    }
    let start_info_page = info as *const abi::StartInfo as u64 & !0xfff;
    if addr & !0xfff == start_info_page {
        return Err(Refused::InStartInfo);
    }
    Ok(())
}

/// Reads the 32-bit word at `addr` (volatile).
pub fn read(info: &abi::StartInfo, addr: u64) -> Result<u32, Refused> {
    check(info, addr)?;
    Ok(crate::arch::probe_read(addr))
}

/// Writes `value` to the 32-bit word at `addr` (volatile).
pub fn write(info: &abi::StartInfo, addr: u64, value: u32) -> Result<(), Refused> {
    check(info, addr)?;
    crate::arch::probe_write(addr, value);
    Ok(())
}

/// Branches to `addr`; returns only if the code there returns.
pub fn exec(info: &abi::StartInfo, addr: u64) -> Result<(), Refused> {
    check(info, addr)?;
    crate::arch::probe_exec(addr);
    Ok(())
}

/// `SMC #0` with SMCCC function `id` and arguments: the hypervisor traps it;
/// returns the raw `x0` it answers (AArch32: 32-bit `r0`..`r3`, the result
/// sign-extended).
pub fn smc(id: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    crate::arch::smc_call(id, a1, a2, a3)
}

/// `HVC #1` (an immediate the ABI does not define) with function `id`;
/// returns the raw `x0`.
pub fn hvc_imm1(id: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    crate::arch::hypercall_imm1(id, a1, a2, a3)
}

/// Reads `HCR_EL2` from EL1 (`HCR` from PL1 on AArch32), which is
/// UNDEFINED there: the guest takes its own exception and the runtime stops
/// the VM (`guest exception: ESR=0x2000000` on both). Returns only if the read
/// went through, which would be a hypervisor bug.
pub fn read_hcr_el2() -> u64 {
    crate::arch::read_hcr_el2()
}

/// The debug and PMU registers of the debug-state probe, short names for
/// MDSCR_EL1, DBGBVR0_EL1 .. PMCCFILTR_EL0 (AArch32: DBGDSCRext, DBGBVR0
/// .. PMCCFILTR),
/// with the value its writer puts in each: recognisable, and enabling no
/// breakpoint, watchpoint, counter or interrupt (PMCR.E, DBGxCR.E clear).
pub const DEBUG_REGS: [(&str, u64); DEBUG_REG_COUNT] = [
    ("mdscr", 0x1000),
    ("bvr0", 0x4000_1000),
    ("bcr0", 0x1e0),
    ("wvr0", 0x4000_2000),
    ("wcr0", 0x1fe0),
    ("pmcr", 0x48),
    ("pmselr", 0x1f),
    ("pmcntenset", 0x8000_0000),
    ("pmintenset", 0x8000_0000),
    ("pmuserenr", 0xd),
    ("pmccfiltr", 0x8000_0000),
];
pub const DEBUG_REG_COUNT: usize = 11;

/// Writes [`DEBUG_REGS`]' values to the debug and PMU registers. Under
/// Tessera the writes are ignored; a hypervisor that let them through
/// without switching them would show them to the next VM on this CPU.
pub fn debug_regs_write() {
    crate::arch::debug_regs_write(&DEBUG_REGS.map(|(_, value)| value));
}

/// Reads the debug and PMU registers of [`DEBUG_REGS`], in that order.
pub fn debug_regs_read() -> [u64; DEBUG_REG_COUNT] {
    crate::arch::debug_regs_read()
}
