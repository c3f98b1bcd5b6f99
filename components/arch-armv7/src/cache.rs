//! Cache and TLB maintenance.

use crate::regs::{IciAllUIs, TlbiAllNsNhIs};
use aarch32_cpu::{
    asm::{dsb, isb},
    cache::clean_data_cache_line_to_poc,
    register::{Ctr, SysRegRead, SysRegWrite},
};
use core::arch::asm;

/// Cleans `len` bytes at `address` (identity-mapped) to the point of
/// coherency and invalidates the instruction cache, so a guest that starts
/// with its MMU and caches off sees what the hypervisor wrote through its
/// cached mapping. Cleaning writes nothing new: any range is safe to clean.
pub fn clean_to_poc(address: usize, len: usize) {
    // CTR.DminLine: log2 of the smallest data cache line, in words.
    let line = 4usize << ((<Ctr as SysRegRead>::read_raw() >> 16) & 0xf);
    let start = address & !(line - 1);
    let end = address + len;
    for addr in (start..end).step_by(line) {
        clean_data_cache_line_to_poc(addr as u32);
    }
    dsb();
    // SAFETY: instruction-cache invalidation has no effect on data.
    unsafe { <IciAllUIs as SysRegWrite>::write_raw(0) };
    dsb();
    isb();
}

/// Invalidates every PL1&0 TLB entry of every VMID (a new VMID generation).
pub fn flush_guest_tlbs() {
    // SAFETY: a barrier orders the table updates before the invalidation.
    unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
    // SAFETY: TLB invalidation only drops cached translations.
    unsafe { <TlbiAllNsNhIs as SysRegWrite>::write_raw(0) };
    // SAFETY: barriers only order and complete the invalidation.
    unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}
