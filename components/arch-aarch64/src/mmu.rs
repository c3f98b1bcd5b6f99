//! The hypervisor's own EL2 translation: an identity map built at compile
//! time (no heap, no code before the MMU is on), 1 GiB blocks, RAM as normal
//! write-back memory wherever it is below 512 GiB (X-Gene's is at 256 GiB),
//! the rest of the low 4 GiB (the devices) as device memory.

use aarch64_cpu::{
    asm::barrier,
    registers::{Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2},
};
use core::arch::asm;

/// Virtual (and physical) address bits the table covers.
const VA_BITS: u64 = 39;
const GIB: u64 = 1 << 30;
const BLOCK: u64 = 0b01;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
const XN: u64 = 1 << 54;
/// MAIR index 0: Device-nGnRnE; index 1: Normal write-back.
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;

#[repr(C, align(4096))]
pub struct Table([u64; 512]);

impl Table {
    /// Identity map: 1 GiB blocks overlapping RAM are normal memory, the
    /// other blocks of the low 4 GiB device memory (never executable),
    /// everything else unmapped. RAM is expected to be 1 GiB aligned, which
    /// holds for every board we support.
    pub const fn identity(ram_base: u64, ram_size: u64) -> Table {
        let mut entries = [0u64; 512];
        let mut i = 0;
        while i < entries.len() {
            let base = i as u64 * GIB;
            let is_ram = base < ram_base + ram_size && ram_base < base + GIB;
            entries[i] = if is_ram {
                base | AF | BLOCK | ATTR_NORMAL | SH_INNER
            } else if base < 4 * GIB {
                base | AF | BLOCK | ATTR_DEVICE | XN
            } else {
                0
            };
            i += 1;
        }
        Table(entries)
    }
}

/// MAIR_EL2: attribute 0 Device-nGnRnE, attribute 1 Normal write-back
/// read/write-allocate, inner and outer.
const MAIR: u64 = 0xff << 8;
/// TCR_EL2: T0SZ for 39 bits, walks inner-shareable write-back, 4 KiB
/// granule, RES1 bits 31 and 23; PS is filled in from the CPU.
const TCR: u64 = (1 << 31) | (1 << 23) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (64 - VA_BITS);
/// SCTLR_EL2: RES1 bits, M, C, I, SA.
pub const SCTLR_MMU_ON: u64 = 0x30c5_0830 | (1 << 12) | (1 << 3) | (1 << 2) | 1;

/// Physical address size to program (PS/IPS), capped at 40 bits: enough for
/// every board here and within what stage-2's 39-bit IPA needs.
pub fn pa_range() -> u64 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b010)
}

/// Turns on the EL2 MMU and caches with `table`.
pub fn enable(table: &'static Table) {
    MAIR_EL2.set(MAIR);
    TCR_EL2.set(TCR | (pa_range() << 16));
    TTBR0_EL2.set_baddr(table as *const Table as u64);
    // SAFETY: invalidates stale EL2 TLB entries before the MMU uses the new
    // table; no memory is accessed.
    unsafe { asm!("dsb ish", "tlbi alle2", "dsb ish", "isb", options(nostack)) };
    SCTLR_EL2.set(SCTLR_MMU_ON);
    barrier::isb(barrier::SY);
}
