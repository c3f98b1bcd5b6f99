//! The hypervisor's own HYP-mode translation (LPAE long descriptors): an
//! identity map of the whole 32-bit address space the boot CPU builds
//! before its MMU is on. The hypervisor image gets 4 KiB pages with W^X
//! ([`hv::layout`]: text read-only executable, read-only data read-only,
//! the rest read-write never executable, an unmapped guard page below each
//! CPU's stack); everything else is 2 MiB blocks: RAM normal write-back
//! memory, read-write, never executable; the rest device memory, never
//! executable. 2 MiB rather than 1 GiB blocks because ARMv7 boards put
//! devices in the same GiB as RAM (Calxeda's above it, at 0xfff0_0000).
//! The first block stays unmapped unless it is RAM: a null guard, and the
//! address the fault self-test reads.

use crate::regs::{Htcr, Httbr, TlbiAllH};
use aarch32_cpu::{
    asm::{dsb, isb},
    cache::invalidate_data_cache_line_to_poc,
    register::{Hmair0, Hsctlr, SysRegWrite, SysRegWrite64},
};
use core::cell::UnsafeCell;
use hv::layout::{Access, HvLayout, PAGE};

const BLOCK_2M: u64 = 2 << 20;
const BLOCK: u64 = 0b01;
/// A table descriptor (levels 1, 2) or a page (level 3).
const TABLE_OR_PAGE: u64 = 0b11;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
/// AP[1] is RES1 in the HYP translation regime (Linux's `L_PTE_HYP`);
/// AP[2] makes a page read-only.
const AP_RW: u64 = 1 << 6;
const AP_RO: u64 = 0b11 << 6;
const XN: u64 = 1 << 54;
/// HMAIR0 index 0: Device-nGnRnE (strongly ordered); index 1: Normal
/// write-back.
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const NORMAL: u64 = AF | SH_INNER | ATTR_NORMAL;

/// End of the null guard: the first 2 MiB block, left unmapped unless it
/// is RAM.
pub const NULL_GUARD_END: u64 = BLOCK_2M;

#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

impl Table {
    const fn new() -> Table {
        Table(UnsafeCell::new([0; 512]))
    }

    fn addr(&self) -> u64 {
        self.0.get() as u32 as u64
    }

    fn set(&self, i: usize, entry: u64) {
        self.fill(i..i + 1, entry, 0);
    }

    /// Entries `slots` map consecutive blocks or pages: `first` in the
    /// first, `step` bytes more in each next. The addresses stay under
    /// 4 GiB (the whole map is 32-bit), so only the low words change: a
    /// 32-bit add and a doubleword store an entry, where 64-bit arithmetic
    /// an entry cost thousands of ticks at boot.
    fn fill(&self, slots: core::ops::Range<usize>, first: u64, step: u32) {
        let (low, high) = (first as u32, first & !u64::from(u32::MAX));
        // SAFETY: only the boot CPU writes the tables, once, before any
        // other CPU runs and before its own MMU walks them (`build`), so
        // nothing else reads or writes them meanwhile; `slots` is
        // bounds-checked by the slice index. The MMU is off, so these must
        // be plain stores (no exclusives), which u64 writes are.
        let entries = unsafe { &mut (&mut *self.0.get())[slots] };
        let mut at = low;
        for entry in entries {
            *entry = high | u64::from(at);
            at = at.wrapping_add(step);
        }
    }
}

/// Level 1 (T0SZ 0: four 1 GiB entries, 32-byte aligned). One for the
/// whole image, apart from [`Tables`] so it does not take a page of its own.
#[repr(C, align(32))]
struct Level1(UnsafeCell<[u64; 4]>);

// SAFETY: as for `Tables`: written once by the boot CPU in `Tables::build`,
// then only read by the MMUs.
unsafe impl Sync for Level1 {}

static LEVEL1: Level1 = Level1(UnsafeCell::new([0; 4]));

impl Level1 {
    fn addr(&self) -> u64 {
        self.0.get() as u32 as u64
    }

    fn set(&self, i: usize, entry: u64) {
        // SAFETY: as `Table::set`: the boot CPU alone writes it, once, MMU
        // off, before anything walks it.
        unsafe { (*self.0.get())[i] = entry };
    }
}

/// The HYP tables: one level-2 table per GiB and `L3` level-3 tables for
/// the 2 MiB blocks of the hypervisor where the access changes from page
/// to page; level 1 is [`LEVEL1`].
#[repr(C)]
pub struct Tables<const L3: usize> {
    level2: [Table; 4],
    l3: [Table; L3],
}

// SAFETY: the tables are written once by the boot CPU before the others
// start (see `Tables::build`); afterwards only the MMUs read them.
unsafe impl<const L3: usize> Sync for Tables<L3> {}

impl<const L3: usize> Tables<L3> {
    /// Empty tables (zero, so in `.bss`).
    pub const fn new() -> Self {
        Tables {
            level2: [const { Table::new() }; 4],
            l3: [const { Table::new() }; L3],
        }
    }

    /// Fills the tables (boot CPU, MMU off, once). RAM is expected to be
    /// 2 MiB aligned, which holds for every board here, and `L3` to cover
    /// the 2 MiB blocks where the access changes (build.rs budgets them).
    pub fn build(&self, ram_base: u64, ram_size: u64, hv: &HvLayout) {
        assert!(hv.is_valid(), "bad hypervisor layout {hv:?}");
        let ram = |base: u64, size: u64| base < ram_base + ram_size && ram_base < base + size;
        // The hypervisor's blocks: 4 KiB pages where the access changes
        // inside one, a block where it does not.
        let page_attrs = |page: u64| match hv.contains(page).then(|| hv.access(page)) {
            Some(Access::Text) => Some(NORMAL | AP_RO),
            Some(Access::ReadOnly) => Some(NORMAL | AP_RO | XN),
            Some(Access::ReadWrite) => Some(NORMAL | AP_RW | XN),
            Some(Access::Unmapped) => None,
            None if ram(page, PAGE) => Some(NORMAL | AP_RW | XN),
            None => (page >= NULL_GUARD_END).then_some(AF | AP_RW | ATTR_DEVICE | XN),
        };
        // The runs of pages with the same attributes in the 2 MiB block at
        // `base`, (start, end): a page's attributes change only where its
        // region, RAM or the device range does.
        let runs = |base: u64| {
            hv.page_runs(
                base,
                BLOCK_2M,
                PAGE,
                [ram_base, ram_base + ram_size, NULL_GUARD_END],
            )
        };
        // The other blocks by their 32-bit index (2048 of them): cheap
        // compares on this CPU, where 64-bit ones per entry cost thousands
        // of ticks at boot. Entries that map nothing stay zero (bss).
        let index = |address: u64| (address / BLOCK_2M).min(2048) as u32;
        let (ram_first, ram_end) = (
            index(ram_base),
            index((ram_base + ram_size).next_multiple_of(BLOCK_2M)),
        );
        let (hv_first, hv_last) = (index(hv.start), index(hv.end - 1));
        let devices_first = index(NULL_GUARD_END);
        let mut l3_tables = self.l3.iter();
        // Where the kind of a block may change, by block index.
        let edges = [ram_first, ram_end, devices_first, hv_first, hv_last + 1];
        for gib in 0..4 {
            // A GiB all RAM or all devices, without the hypervisor, is one
            // level-1 block.
            let (first, end) = (gib as u32 * 512, gib as u32 * 512 + 512);
            let gib_base = u64::from(first) << BLOCK_2M.trailing_zeros();
            if hv_last < first || hv_first >= end {
                let all_ram = ram_first <= first && end <= ram_end;
                let no_ram = ram_end <= first || ram_first >= end;
                if all_ram {
                    LEVEL1.set(gib, gib_base | NORMAL | AP_RW | XN | BLOCK);
                    continue;
                }
                if no_ram && devices_first <= first {
                    LEVEL1.set(gib, gib_base | AF | AP_RW | ATTR_DEVICE | XN | BLOCK);
                    continue;
                }
            }
            let level2 = &self.level2[gib];
            LEVEL1.set(gib, level2.addr() | TABLE_OR_PAGE);
            // A run of blocks of one kind at a time, up to the next edge;
            // the hypervisor's blocks one by one.
            let mut block = first;
            while block < end {
                let base = u64::from(block) << BLOCK_2M.trailing_zeros();
                let slot = (block - first) as usize;
                if block < hv_first || block > hv_last {
                    let next = edges
                        .iter()
                        .copied()
                        .filter(|&edge| edge > block)
                        .min()
                        .map_or(end, |edge| edge.min(end));
                    let entry = if block >= ram_first && block < ram_end {
                        Some(NORMAL | AP_RW | XN | BLOCK)
                    } else if block >= devices_first {
                        Some(AF | AP_RW | ATTR_DEVICE | XN | BLOCK)
                    } else {
                        None
                    };
                    if let Some(entry) = entry {
                        let slots = slot..(next - first) as usize;
                        level2.fill(slots, base | entry, BLOCK_2M as u32);
                    }
                    block = next;
                    continue;
                }
                block += 1;
                let attrs = page_attrs(base);
                if runs(base).all(|(at, _)| page_attrs(at) == attrs) {
                    let entry = attrs.map_or(0, |attrs| base | attrs | BLOCK);
                    level2.set(slot, entry);
                    continue;
                }
                let l3 = l3_tables
                    .next()
                    .expect("build.rs budgets a level-3 table per mixed 2 MiB block");
                level2.set(slot, l3.addr() | TABLE_OR_PAGE);
                for (at, end) in runs(base) {
                    if let Some(attrs) = page_attrs(at) {
                        let slots = ((at - base) / PAGE) as usize..((end - base) / PAGE) as usize;
                        l3.fill(slots, at | attrs | TABLE_OR_PAGE, PAGE as u32);
                    }
                }
            }
        }
        dsb();
        // The stores went to memory (MMU and caches off): drop any copy of
        // these lines the loader left in the cache, which cached walks
        // would otherwise see.
        let start = self as *const Self as u32;
        let end = start + core::mem::size_of::<Self>() as u32;
        for line in (start..end).step_by(64) {
            invalidate_data_cache_line_to_poc(line);
        }
        invalidate_data_cache_line_to_poc(LEVEL1.addr() as u32);
        dsb();
    }
}

impl<const L3: usize> Default for Tables<L3> {
    fn default() -> Self {
        Self::new()
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
/// ... plus M, C, I and WXN (a writable page is never executable, whatever
/// its XN bit says: defence in depth for W^X).
const HSCTLR_MMU_ON: u32 = HSCTLR_RESET | (1 << 19) | (1 << 12) | (1 << 2) | 1;

/// Turns on the HYP MMU and caches with `tables` (built by the boot CPU;
/// the walk starts at [`LEVEL1`], which links them).
pub fn enable<const L3: usize>(_tables: &'static Tables<L3>) {
    dsb();
    // SAFETY: these configure the HYP translation regime, which takes
    // effect when HSCTLR.M is set below; the tables identity-map all memory
    // the hypervisor uses (its image W^X, RAM normal, devices as device
    // memory), so the code keeps running at the same addresses.
    unsafe {
        <Hmair0 as SysRegWrite>::write_raw(HMAIR0);
        <Htcr as SysRegWrite>::write_raw(HTCR);
        <Httbr as SysRegWrite64>::write_raw(LEVEL1.addr());
        isb();
        // Drop stale HYP TLB entries before the MMU uses the new table.
        <TlbiAllH as SysRegWrite>::write_raw(0);
        dsb();
        isb();
        <Hsctlr as SysRegWrite>::write_raw(HSCTLR_MMU_ON);
    }
    isb();
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
    let sym = |s: *const u8| s as u32 as u64;
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
