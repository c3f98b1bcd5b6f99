//! The hypervisor's own EL2 translation: an identity map the boot CPU
//! builds before its MMU is on. The hypervisor image gets 4 KiB pages with
//! W^X ([`hv::layout`]: text read-only executable, read-only data
//! read-only, the rest read-write never executable, an unmapped guard page
//! below each CPU's stack); the rest of its 2 MiB blocks and of its GiB is
//! RAM in 2 MiB blocks, other RAM below 512 GiB (X-Gene's is at 256 GiB)
//! 1 GiB blocks, all read-write and never executable; the rest of the low
//! 4 GiB (the devices) device memory, never executable.

use aarch64_cpu::{
    asm::barrier,
    registers::{Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2},
};
use core::{arch::asm, cell::UnsafeCell};
use hv::layout::{Access, HvLayout, PAGE};

/// Virtual (and physical) address bits the table covers.
const VA_BITS: u64 = 39;
const GIB: u64 = 1 << 30;
const BLOCK_2M: u64 = 2 << 20;
const BLOCK: u64 = 0b01;
/// A table descriptor (levels 1, 2) or a page (level 3).
const TABLE_OR_PAGE: u64 = 0b11;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
/// AP[1] is RES1 in the EL2 regime (E2H 0); AP[2] makes a page read-only.
const AP_RW: u64 = 1 << 6;
const AP_RO: u64 = 0b11 << 6;
const XN: u64 = 1 << 54;
/// MAIR index 0: Device-nGnRnE; index 1: Normal write-back.
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const NORMAL: u64 = AF | SH_INNER | ATTR_NORMAL;
const DEVICE: u64 = AF | ATTR_DEVICE | AP_RW | XN;

#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

impl Table {
    const fn new() -> Table {
        Table(UnsafeCell::new([0; 512]))
    }

    fn addr(&self) -> u64 {
        self.0.get() as u64
    }

    fn set(&self, i: usize, entry: u64) {
        // SAFETY: only the boot CPU writes the tables, once, before any
        // other CPU runs and before its own MMU walks them (`build`); `i`
        // is bounds-checked by the array index.
        unsafe { (*self.0.get())[i] = entry };
    }
}

/// The EL2 tables: level 1, the level 2 of the hypervisor's GiB, and
/// `L3` level-3 tables for the 2 MiB blocks of the hypervisor where the
/// access changes from page to page.
#[repr(C)]
pub struct Tables<const L3: usize> {
    l1: Table,
    l2: Table,
    l3: [Table; L3],
}

// SAFETY: the tables are written once by the boot CPU before the others
// start (see `Tables::build`); afterwards only the MMUs read them.
unsafe impl<const L3: usize> Sync for Tables<L3> {}

impl<const L3: usize> Tables<L3> {
    /// Empty tables (zero, so in `.bss`).
    pub const fn new() -> Self {
        Tables {
            l1: Table::new(),
            l2: Table::new(),
            l3: [const { Table::new() }; L3],
        }
    }

    /// Fills the tables (boot CPU, MMU off, once). RAM is expected to be
    /// 2 MiB aligned and the hypervisor not to cross a GiB boundary, which
    /// holds for every board here (build.rs checks the latter), and `L3`
    /// to cover the 2 MiB blocks where the access changes (build.rs
    /// budgets them).
    pub fn build(&self, ram_base: u64, ram_size: u64, hv: &HvLayout) {
        assert!(hv.is_valid(), "bad hypervisor layout {hv:?}");
        let ram = |base: u64, size: u64| base < ram_base + ram_size && ram_base < base + size;
        let leaf = |base: u64, size: u64, kind: u64| {
            if ram(base, size) {
                base | NORMAL | AP_RW | XN | kind
            } else if base < 4 * GIB {
                base | DEVICE | kind
            } else {
                0
            }
        };
        let hv_gib = hv.start / GIB;
        assert_eq!(hv_gib, (hv.end - 1) / GIB, "hypervisor crosses a GiB");
        // Entries past 4 GiB and RAM map nothing: zero already (bss).
        let top = (ram_base + ram_size).max(4 * GIB).div_ceil(GIB).min(512) as usize;
        for i in 0..top {
            let base = i as u64 * GIB;
            if i as u64 == hv_gib {
                self.l1.set(i, self.l2.addr() | TABLE_OR_PAGE);
            } else {
                self.l1.set(i, leaf(base, GIB, BLOCK));
            }
        }
        // The hypervisor's blocks: 4 KiB pages where the access changes
        // inside one, a block where it does not.
        let first_block = hv.start / BLOCK_2M;
        let blocks = first_block..=(hv.end - 1) / BLOCK_2M;
        let page_attrs = |page: u64| match hv.contains(page).then(|| hv.access(page)) {
            Some(Access::Text) => Some(NORMAL | AP_RO),
            Some(Access::ReadOnly) => Some(NORMAL | AP_RO | XN),
            Some(Access::ReadWrite) => Some(NORMAL | AP_RW | XN),
            Some(Access::Unmapped) => None,
            None if ram(page, PAGE) => Some(NORMAL | AP_RW | XN),
            None => (page < 4 * GIB).then_some(DEVICE),
        };
        // The runs of pages with the same attributes in the 2 MiB block at
        // `base`, (start, end): a page's attributes change only where its
        // region, RAM or the device range does.
        let runs = |base: u64| {
            hv.page_runs(
                base,
                BLOCK_2M,
                PAGE,
                [ram_base, ram_base + ram_size, 4 * GIB],
            )
        };
        let mut l3_tables = self.l3.iter();
        for i in 0..512 {
            let base = hv_gib * GIB + i as u64 * BLOCK_2M;
            if !blocks.contains(&(base / BLOCK_2M)) {
                self.l2.set(i, leaf(base, BLOCK_2M, BLOCK));
                continue;
            }
            let first = page_attrs(base);
            if runs(base).all(|(at, _)| page_attrs(at) == first) {
                self.l2
                    .set(i, first.map_or(0, |attrs| base | attrs | BLOCK));
                continue;
            }
            let l3 = l3_tables
                .next()
                .expect("build.rs budgets a level-3 table per mixed 2 MiB block");
            self.l2.set(i, l3.addr() | TABLE_OR_PAGE);
            for (at, end) in runs(base) {
                let attrs = page_attrs(at);
                for page in (at..end).step_by(PAGE as usize) {
                    let entry = attrs.map_or(0, |attrs| page | attrs | TABLE_OR_PAGE);
                    l3.set(((page - base) / PAGE) as usize, entry);
                }
            }
        }
        // The stores went to memory (MMU and caches off): drop any copy of
        // these lines the loader left in the cache, which cached walks
        // would otherwise see.
        let start = self as *const Self as u64;
        let end = start + core::mem::size_of::<Self>() as u64;
        for line in (start..end).step_by(64) {
            // SAFETY: invalidating lines of the tables just written to
            // memory discards only stale cached copies of them.
            unsafe { asm!("dc ivac, {}", in(reg) line, options(nostack)) };
        }
        // SAFETY: a barrier, no memory access of its own.
        unsafe { asm!("dsb sy", options(nostack)) };
    }
}

impl<const L3: usize> Default for Tables<L3> {
    fn default() -> Self {
        Self::new()
    }
}

/// MAIR_EL2: attribute 0 Device-nGnRnE, attribute 1 Normal write-back
/// read/write-allocate, inner and outer.
const MAIR: u64 = 0xff << 8;
/// TCR_EL2: T0SZ for 39 bits, walks inner-shareable write-back, 4 KiB
/// granule, RES1 bits 31 and 23; PS is filled in from the CPU.
const TCR: u64 = (1 << 31) | (1 << 23) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (64 - VA_BITS);
/// SCTLR_EL2: RES1 bits, M, C, I, SA, and WXN (a writable page is never
/// executable, whatever its XN bit says: defence in depth for W^X).
pub const SCTLR_MMU_ON: u64 = 0x30c5_0830 | (1 << 19) | (1 << 12) | (1 << 3) | (1 << 2) | 1;

/// Physical address size to program (PS/IPS), capped at 40 bits: enough for
/// every board here and within what stage-2's 39-bit IPA needs.
pub fn pa_range() -> u64 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b010)
}

/// Turns on the EL2 MMU and caches with `tables` (built by the boot CPU).
pub fn enable<const L3: usize>(tables: &'static Tables<L3>) {
    MAIR_EL2.set(MAIR);
    TCR_EL2.set(TCR | (pa_range() << 16));
    TTBR0_EL2.set_baddr(tables.l1.addr());
    // SAFETY: invalidates stale EL2 TLB entries before the MMU uses the new
    // table; no memory is accessed.
    unsafe { asm!("dsb ish", "tlbi alle2", "dsb ish", "isb", options(nostack)) };
    SCTLR_EL2.set(SCTLR_MMU_ON);
    barrier::isb(barrier::SY);
}

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __heap_end: u8;
    static __stack_slot0: u8;
    static __stack_guard0_end: u8;
    static __hv_end: u8;
}

/// The image's layout, from its linker script's symbols: all addresses in
/// the image (sizes as absolute symbols would be out of PC-relative reach
/// of an image above 4 GiB, as on X-Gene).
pub fn layout() -> HvLayout {
    let sym = |s: *const u8| s as u64;
    let end = sym(&raw const __hv_end);
    let slot0 = sym(&raw const __stack_slot0);
    let stack_slot = end - slot0;
    HvLayout {
        start: sym(&raw const __text_start),
        text_end: sym(&raw const __text_end),
        rodata_end: sym(&raw const __rodata_end),
        end,
        cpus: (end - sym(&raw const __heap_end)) / stack_slot,
        stack_slot,
        guard: sym(&raw const __stack_guard0_end) - slot0,
    }
}
