//! Register-integrity soak (the `regcheck` guest): fills every general,
//! FP/SIMD and per-thread system register the architecture module lists
//! (`arch::SOAK_GPRS`, `SoakRegs::v`, `arch::SOAK_SYS_REGS`) with
//! seed-derived patterns, spins
//! in a loop that touches no memory and makes no hypercall, so the
//! hypervisor preempts it (and runs other VMs) in the middle, then checks
//! that every register still holds its pattern.

use core::fmt;

use crate::arch::{SoakRegs, GPR_PREFIX, SOAK_GPRS, SOAK_GPR_MASK, SOAK_SYS_REGS};

/// A register the soak checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// General-purpose register `N` (`xN` on AArch64, `rN` on AArch32).
    X(u8),
    /// FP/SIMD register `vN` (all 128 bits).
    V(u8),
    /// A system register, by its name.
    Sys(&'static str),
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Register::X(n) => write!(f, "{GPR_PREFIX}{n}"),
            Register::V(n) => write!(f, "v{n}"),
            Register::Sys(name) => f.write_str(name),
        }
    }
}

/// The first register that did not hold its pattern after a soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterMismatch {
    pub register: Register,
    pub expected: u128,
    pub found: u128,
}

/// SplitMix64 of `seed` and `index`: distinct, well-mixed patterns.
fn pattern(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(index.wrapping_add(1).wrapping_mul(0xd1b5_4a32_d192_ed03));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The register file the soak with `seed` loads, and must find again.
fn patterns(seed: u64, iterations: u64) -> SoakRegs {
    let mut regs = SoakRegs::default();
    regs.x[0] = iterations;
    for n in SOAK_GPRS {
        regs.x[n] = pattern(seed, n as u64) & SOAK_GPR_MASK;
    }
    for (n, v) in regs.v.iter_mut().enumerate() {
        let high = pattern(seed, 100 + 2 * n as u64);
        let mut low = pattern(seed, 101 + 2 * n as u64);
        if low == high {
            low = !low;
        }
        *v = (u128::from(high) << 64) | u128::from(low);
    }
    for (n, (value, (_, mask))) in regs.sys.iter_mut().zip(SOAK_SYS_REGS).enumerate() {
        *value = pattern(seed, 200 + n as u64) & mask;
    }
    regs
}

/// Loads the patterns of `seed` into the registers (AArch64: x1..x30,
/// v0..v31, TPIDR_EL0, TPIDRRO_EL0, TPIDR_EL1, CONTEXTIDR_EL1, SP_EL0,
/// FPSR, FPCR and NZCV; AArch32: r1..r14, d0..d31, FPSCR, TPIDRURW,
/// TPIDRURO, TPIDRPRW, CONTEXTIDR, SP_usr, LR_usr and APSR.Q/GE), spins `iterations` times (no
/// memory access, no hypercall), and checks them all. The first register
/// that changed is the error.
pub fn register_soak(seed: u64, iterations: u64) -> Result<(), RegisterMismatch> {
    let expected = patterns(seed, iterations);
    let mut regs = expected.clone();
    crate::arch::register_soak(&mut regs);
    let x = SOAK_GPRS.map(|n| {
        let found = regs.x[n] & SOAK_GPR_MASK;
        (Register::X(n as u8), expected.x[n].into(), found.into())
    });
    let v = (0..expected.v.len()).map(|n| (Register::V(n as u8), expected.v[n], regs.v[n]));
    let sys = SOAK_SYS_REGS.iter().enumerate().map(|(n, &(name, mask))| {
        (
            Register::Sys(name),
            expected.sys[n].into(),
            (regs.sys[n] & mask).into(),
        )
    });
    match x
        .chain(v)
        .chain(sys)
        .find(|&(_, expected, found)| expected != found)
    {
        None => Ok(()),
        Some((register, expected, found)) => Err(RegisterMismatch {
            register,
            expected,
            found,
        }),
    }
}
