//! The hypervisor's own HYP-mode translation (LPAE long descriptors): an
//! identity map of the whole 32-bit address space built at compile time.
//! RAM is normal write-back memory, the rest device memory. The first
//! GiB is mapped in 2 MiB blocks through a level-2 table so its first
//! block can stay unmapped: a null guard, and the address the fault
//! self-test reads (unless the board has RAM there).

use crate::regs::{Htcr, Httbr, TlbiAllH};
use aarch32_cpu::{
    asm::{dsb, isb},
    register::{Hmair0, Hsctlr, SysRegWrite, SysRegWrite64},
};
use core::sync::atomic::{AtomicU32, Ordering};

const GIB: u64 = 1 << 30;
const BLOCK_2M: u64 = 2 << 20;
const BLOCK: u64 = 0b01;
const TABLE: u64 = 0b11;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
/// AP[1] is RES1 in the HYP translation regime (Linux's `L_PTE_HYP`).
const AP1: u64 = 1 << 6;
const XN: u64 = 1 << 54;
/// HMAIR0 index 0: Device-nGnRnE (strongly ordered); index 1: Normal
/// write-back.
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;

/// The first 2 MiB block, left unmapped unless it is RAM.
pub const NULL_GUARD: u64 = BLOCK_2M;

#[repr(C, align(4096))]
pub struct Table {
    /// The level-2 table for GiB 0.
    level2: [u64; 512],
    /// Level 1 (T0SZ 0: four 1 GiB entries), as 32-bit halves. Entry 0
    /// points at `level2`, whose address is only known at run time, so
    /// `enable` writes it; the halves are atomics to allow that through a
    /// shared reference, and 32-bit ones so the store is a plain STR
    /// (exclusives are not usable before the MMU is on).
    level1: [AtomicU32; 8],
}

const fn block(base: u64, ram_base: u64, ram_size: u64, size: u64) -> u64 {
    let is_ram = base < ram_base + ram_size && ram_base < base + size;
    base | AF
        | AP1
        | BLOCK
        | if is_ram {
            ATTR_NORMAL | SH_INNER
        } else {
            ATTR_DEVICE | XN
        }
}

impl Table {
    /// Identity map of the 4 GiB address space: blocks overlapping RAM are
    /// normal memory, the others device memory (never executable).
    pub const fn identity(ram_base: u64, ram_size: u64) -> Table {
        let mut level2 = [0u64; 512];
        let mut i = 0;
        while i < 512 {
            let base = i as u64 * BLOCK_2M;
            let is_ram = base < ram_base + ram_size && ram_base < base + BLOCK_2M;
            if base >= NULL_GUARD || is_ram {
                level2[i] = block(base, ram_base, ram_size, BLOCK_2M);
            }
            i += 1;
        }
        let mut level1 = [const { AtomicU32::new(0) }; 8];
        let mut i = 1;
        while i < 4 {
            let entry = block(i as u64 * GIB, ram_base, ram_size, GIB);
            level1[2 * i] = AtomicU32::new(entry as u32);
            level1[2 * i + 1] = AtomicU32::new((entry >> 32) as u32);
            i += 1;
        }
        Table { level2, level1 }
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
    // Every CPU writes the same value; nothing walks it before the MMU is
    // on, which happens below on this CPU.
    let level2 = table.level2.as_ptr() as u32;
    table.level1[0].store(level2 | TABLE as u32, Ordering::Relaxed);
    table.level1[1].store(0, Ordering::Relaxed);
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
