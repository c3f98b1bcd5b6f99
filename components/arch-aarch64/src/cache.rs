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
