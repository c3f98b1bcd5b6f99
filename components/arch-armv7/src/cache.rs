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

/// Zeroes `len` bytes at `address` (identity-mapped Normal memory, which
/// no Rust object uses) and cleans them to the point of coherency, then
/// invalidates the instruction cache: what a guest starting with its
/// caches off must see. ARMv7 has no `DC ZVA`: whole 64-byte lines go as
/// two 32-byte `STM`s and a clean each; the rest with plain stores.
///
/// # Safety
///
/// Nothing may access the range meanwhile, and it must be mapped writable.
pub unsafe fn zero_to_poc(address: usize, len: usize) {
    const LINE: usize = 64;
    // CTR.DminLine: log2 of the smallest data cache line, in words.
    let line = 4usize << ((<Ctr as SysRegRead>::read_raw() >> 16) & 0xf);
    let end = address + len;
    let (body, body_end) = if line == LINE {
        hv::memory::aligned_body(address, end, LINE)
    } else {
        (end, end)
    };
    // SAFETY: the caller gives the range, unused and writable.
    unsafe {
        core::ptr::write_bytes(address as *mut u8, 0, body - address);
        core::ptr::write_bytes(body_end as *mut u8, 0, end - body_end);
    }
    if body < body_end {
        // SAFETY: `body..body_end` is inside the range, whole lines; each
        // is written with zeroes, then cleaned (DCCMVAC) through the
        // trailing pointer.
        unsafe {
            asm!(
                "2:",
                "stm {p}!, {{r0, r1, r2, r3, r4, r5, r8, r10}}",
                "stm {p}!, {{r0, r1, r2, r3, r4, r5, r8, r10}}",
                "mcr p15, 0, {q}, c7, c10, 1",
                "add {q}, {q}, #64",
                "cmp {p}, {e}",
                "blo 2b",
                p = inout(reg) body => _,
                q = inout(reg) body => _,
                e = in(reg) body_end,
                in("r0") 0, in("r1") 0, in("r2") 0, in("r3") 0,
                in("r4") 0, in("r5") 0, in("r8") 0, in("r10") 0,
                options(nostack),
            )
        };
    }
    // The plain stores' lines, then the barrier and the I-cache.
    clean_to_poc(address, body - address);
    clean_to_poc(body_end, end - body_end);
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
