//! Cache and TLB maintenance.

use core::arch::asm;

/// Cleans `len` bytes at `address` (identity-mapped) to the point of
/// coherency and invalidates the instruction cache, so a guest that starts
/// with its MMU and caches off sees what the hypervisor wrote through its
/// cached mapping. Cleaning writes nothing new: any range is safe to clean.
pub fn clean_to_poc(address: usize, len: usize) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects (aarch64-cpu lacks it).
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4usize << ((ctr >> 16) & 0xf); // DminLine: log2 of words
    let start = address & !(line - 1);
    let end = address + len;
    for addr in (start..end).step_by(line) {
        // SAFETY: cleaning a line writes back data already there; it does
        // not change memory contents as seen by any observer.
        unsafe { asm!("dc cvac, {}", in(reg) addr, options(nostack)) };
    }
    // SAFETY: barriers and instruction-cache invalidation have no effect on
    // data.
    unsafe { asm!("dsb sy", "ic iallu", "dsb sy", "isb", options(nostack)) };
}

/// Zeroes `len` bytes at `address` (identity-mapped Normal memory, which
/// no Rust object uses) and cleans them to the point of coherency, then
/// invalidates the instruction cache: what a guest starting with its
/// caches off must see. Whole `DC ZVA` blocks of the same size as the
/// cache line go 4 at a time, a zero and a clean each; the rest, or all
/// where `DC ZVA` is prohibited or sized otherwise, with plain stores.
///
/// # Safety
///
/// Nothing may access the range meanwhile, and it must be mapped writable.
pub unsafe fn zero_to_poc(address: usize, len: usize) {
    let ctr: u64;
    let dczid: u64;
    // SAFETY: reading CTR_EL0 and DCZID_EL0 has no side effects.
    unsafe {
        asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack));
        asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack));
    }
    let line = 4usize << ((ctr >> 16) & 0xf);
    let zva = 4usize << (dczid & 0xf);
    let prohibited = dczid & (1 << 4) != 0;
    let end = address + len;
    let (body, body_end) = if !prohibited && zva == line {
        hv::memory::aligned_body(address, end, 4 * line)
    } else {
        (end, end)
    };
    // SAFETY: the caller gives the range, unused and writable.
    unsafe {
        core::ptr::write_bytes(address as *mut u8, 0, body - address);
        core::ptr::write_bytes(body_end as *mut u8, 0, end - body_end);
    }
    if body < body_end {
        // SAFETY: `body..body_end` is inside the range, whole groups of 4
        // lines; DC ZVA zeroes a line, DC CVAC writes it back.
        unsafe {
            asm!(
                "2:",
                "dc zva, {a}",
                "dc cvac, {a}",
                "add {a}, {a}, {l}",
                "dc zva, {a}",
                "dc cvac, {a}",
                "add {a}, {a}, {l}",
                "dc zva, {a}",
                "dc cvac, {a}",
                "add {a}, {a}, {l}",
                "dc zva, {a}",
                "dc cvac, {a}",
                "add {a}, {a}, {l}",
                "cmp {a}, {e}",
                "b.lo 2b",
                a = inout(reg) body => _,
                l = in(reg) line,
                e = in(reg) body_end,
                options(nostack),
            )
        };
    }
    // The plain stores' lines, then the barrier and the I-cache.
    clean_to_poc(address, body - address);
    clean_to_poc(body_end, end - body_end);
}

/// Invalidates every EL1&0 TLB entry of every VMID (a new VMID generation).
pub fn flush_guest_tlbs() {
    // SAFETY: TLB invalidation only drops cached translations.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi alle1is",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
}
