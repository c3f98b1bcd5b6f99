//! The hypervisor's own HYP-mode translation (LPAE long descriptors): an
//! identity map of the whole 32-bit address space built at compile time,
//! in 2 MiB blocks. RAM is normal write-back memory, the rest device
//! memory: 2 MiB rather than 1 GiB blocks because ARMv7 boards put
//! devices in the same GiB as RAM (Calxeda's above it, at 0xfff0_0000).
//! The first block stays unmapped unless it is RAM: a null guard, and the
//! address the fault self-test reads.

use crate::regs::{Htcr, Httbr, TlbiAllH};
use aarch32_cpu::{
    asm::{dsb, isb},
    cache::invalidate_data_cache_line_to_poc,
    register::{Hmair0, Hsctlr, SysRegWrite, SysRegWrite64},
};
use core::sync::atomic::{AtomicU32, Ordering};

const BLOCK_2M: u64 = 2 << 20;
const BLOCK: u64 = 0b01;
const TABLE: u32 = 0b11;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
/// AP[1] is RES1 in the HYP translation regime (Linux's `L_PTE_HYP`).
const AP1: u64 = 1 << 6;
const XN: u64 = 1 << 54;
/// HMAIR0 index 0: Device-nGnRnE (strongly ordered); index 1: Normal
/// write-back.
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;

/// End of the null guard: the first 2 MiB block, left unmapped unless it
/// is RAM.
pub const NULL_GUARD_END: u64 = BLOCK_2M;

#[repr(C, align(4096))]
pub struct Table {
    /// One level-2 table per GiB.
    level2: [[u64; 512]; 4],
    /// Level 1 (T0SZ 0: four 1 GiB entries), as 32-bit halves. Its entries
    /// point at `level2`, whose address is only known at run time, so
    /// `enable` writes them; atomics allow that through a shared reference,
    /// and 32-bit ones make each store a plain STR (exclusives are not
    /// usable before the MMU is on).
    level1: [AtomicU32; 8],
}

impl Table {
    /// Identity map of the 4 GiB address space: blocks overlapping RAM are
    /// normal memory, the others device memory (never executable). RAM is
    /// expected to be 2 MiB aligned, which holds for every board here.
    pub const fn identity(ram_base: u64, ram_size: u64) -> Table {
        let mut level2 = [[0u64; 512]; 4];
        let mut i = 0;
        while i < 4 * 512 {
            let base = i as u64 * BLOCK_2M;
            let is_ram = base < ram_base + ram_size && ram_base < base + BLOCK_2M;
            let attrs = if is_ram {
                ATTR_NORMAL | SH_INNER
            } else {
                ATTR_DEVICE | XN
            };
            if base >= NULL_GUARD_END || is_ram {
                level2[i / 512][i % 512] = base | AF | AP1 | BLOCK | attrs;
            }
            i += 1;
        }
        Table {
            level2,
            level1: [const { AtomicU32::new(0) }; 8],
        }
    }
}

/// HMAIR0: attribute 0 Device-nGnRnE, attribute 1 Normal write-back
/// read/write-allocate, inner and outer.
const HMAIR0: u32 = 0xff << 8;
/// HTCR: RES1 bits 31 and 23, walks inner-shareable write-back
/// write-allocate, T0SZ 0 (the whole 4 GiB, starting at level 1).
const HTCR: u32 = (1 << 31) | (1 << 23) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8);
/// HSCTLR at reset: RES1 bits only (MMU, caches, alignment checks off,
/// exceptions taken in ARM state, little-endian).
pub const HSCTLR_RESET: u32 = 0x30c5_0818;
/// ... plus M, C and I.
const HSCTLR_MMU_ON: u32 = HSCTLR_RESET | (1 << 12) | (1 << 2) | 1;

/// Turns on the HYP MMU and caches with `table`.
pub fn enable(table: &'static Table) {
    // The boot CPU links the level-2 tables (the upper halves of the
    // entries stay 0); nothing walks them before its MMU is on.
    // Secondaries find them linked.
    let linked = |i: usize| table.level2[i].as_ptr() as u32 | TABLE;
    if table.level1[0].load(Ordering::Relaxed) != linked(0) {
        for i in 0..4 {
            table.level1[2 * i].store(linked(i), Ordering::Relaxed);
        }
        dsb();
        // The MMU is off, so the stores went to memory: drop any copy of
        // the line the loader left in the cache, which the cached table
        // walks would otherwise see.
        invalidate_data_cache_line_to_poc(table.level1.as_ptr() as u32);
    }
    dsb();
    // SAFETY: these configure the HYP translation regime, which takes
    // effect when HSCTLR.M is set below; the table identity-maps all memory
    // the hypervisor uses (RAM normal, devices as device memory), so the
    // code keeps running at the same addresses.
    unsafe {
        <Hmair0 as SysRegWrite>::write_raw(HMAIR0);
        <Htcr as SysRegWrite>::write_raw(HTCR);
        <Httbr as SysRegWrite64>::write_raw(table.level1.as_ptr() as u64);
        isb();
        // Drop stale HYP TLB entries before the MMU uses the new table.
        <TlbiAllH as SysRegWrite>::write_raw(0);
        dsb();
        isb();
        <Hsctlr as SysRegWrite>::write_raw(HSCTLR_MMU_ON);
    }
    isb();
}
