//! Stage-2 translation tables (guest-physical to host-physical), in the
//! VMSAv8-64 / ARMv7 LPAE long-descriptor format both architectures share:
//! 4 KiB granule, 39-bit IPA space starting at level 1. Guest RAM is mapped
//! with 2 MiB level-2 blocks where both addresses are 2 MiB aligned and 4
//! KiB level-3 pages elsewhere (a 64 KiB VM is one level-3 table), device
//! frames given to a guest (the GIC's virtual CPU interface) with 4 KiB
//! level-3 pages. Whatever is not mapped faults to the hypervisor.
//!
//! Tables live on the boot-time heap; the hypervisor's identity map makes a
//! table's address its physical address.
//!
//! What every VM maps alike (the GIC's virtual CPU interface) is built once
//! ([`Stage2::shared`]) and linked into each VM's root ([`Stage2::sharing`]):
//! two tables fewer per VM. Those tables are never written after; mapping
//! anything else under a shared entry first copies that subtree into the VM's
//! own tables.

use alloc::{boxed::Box, sync::Arc, vec::Vec};

/// Guest-physical address bits (VTCR T0SZ = 64 - 39).
pub const IPA_BITS: u32 = 39;
/// Size of one level-2 block: the unit guest RAM is mapped in where it can.
pub const BLOCK_SIZE: u64 = 2 << 20;
/// Size of one level-3 page: the unit device frames are mapped in.
pub const PAGE_SIZE: u64 = 4 << 10;

const ENTRIES: usize = 512;
const VALID_TABLE: u64 = 0b11;
const VALID_BLOCK: u64 = 0b01;
const VALID_PAGE: u64 = 0b11;
/// MemAttr = Normal, outer and inner write-back cacheable.
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
/// MemAttr = Device-nGnRE.
const MEMATTR_DEVICE: u64 = 0b0001 << 2;
/// S2AP = read/write.
const S2AP_RW: u64 = 0b11 << 6;
/// S2AP = read-only.
const S2AP_RO: u64 = 0b01 << 6;
/// SH = inner shareable.
const SH_INNER: u64 = 0b11 << 8;
/// Access flag, set so the first access does not fault.
const AF: u64 = 1 << 10;
/// XN: never executable by the guest.
const XN: u64 = 1 << 54;
const OUTPUT_ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

const RAM_BLOCK: u64 = AF | SH_INNER | S2AP_RW | MEMATTR_NORMAL_WB | VALID_BLOCK;
const RAM_PAGE: u64 = AF | SH_INNER | S2AP_RW | MEMATTR_NORMAL_WB | VALID_PAGE;
const DEVICE_PAGE: u64 = XN | AF | S2AP_RW | MEMATTR_DEVICE | VALID_PAGE;
/// A page shared between VMs (a channel): memory like RAM, but data only.
const SHARED_PAGE: u64 = XN | AF | SH_INNER | MEMATTR_NORMAL_WB | VALID_PAGE;

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

impl Table {
    fn new() -> Box<Table> {
        Box::new(Table([0; ENTRIES]))
    }

    fn address(&self) -> u64 {
        self as *const Table as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Base or size not a multiple of the mapping unit.
    Misaligned,
    /// The range goes past the IPA space.
    OutsideIpaSpace,
    /// Part of the range is mapped already.
    Overlap { ipa: u64 },
}

/// One VM's stage-2 tables.
pub struct Stage2 {
    root: Box<Table>,
    /// Level-2 and level-3 tables, found by their physical address.
    tables: Vec<Box<Table>>,
    /// Tables this one links to but does not own (read-only here).
    shared: Option<Arc<Stage2>>,
    /// The root's slots that may be non-zero: all others are. What
    /// [`Stage2::sharing`] copies (one slot for the GIC frame, where the
    /// whole 4 KiB root cost some 5,000 instructions a VM on ARMv7).
    root_used: core::ops::Range<usize>,
}

impl Default for Stage2 {
    fn default() -> Self {
        Self::new()
    }
}

impl Stage2 {
    pub fn new() -> Self {
        Stage2 {
            root: Table::new(),
            tables: Vec::new(),
            shared: None,
            root_used: 0..0,
        }
    }

    /// Tables to link into many VMs' ([`Stage2::sharing`]): `build` maps
    /// into them once, and they are read-only after.
    pub fn shared(
        build: impl FnOnce(&mut Stage2) -> Result<(), MapError>,
    ) -> Result<Arc<Stage2>, MapError> {
        let mut tables = Stage2::new();
        build(&mut tables)?;
        Ok(Arc::new(tables))
    }

    /// A VM's tables that start as `shared` maps (its level-1 entries
    /// point at `shared`'s tables, which it keeps alive).
    pub fn sharing(shared: &Arc<Stage2>) -> Self {
        let mut root = Table::new();
        let used = shared.root_used.clone();
        root.0[used.clone()].copy_from_slice(&shared.root.0[used.clone()]);
        Stage2 {
            root,
            tables: Vec::new(),
            shared: Some(shared.clone()),
            root_used: used,
        }
    }

    /// Physical address of the level-1 table, for VTTBR.
    pub fn root_address(&self) -> u64 {
        self.root.address()
    }

    /// The VTTBR value for this table under `vmid`: bits [55:48], the 8-bit
    /// VMID both architectures have, and [63:56] too on aarch64 with 16-bit
    /// VMIDs (VTCR_EL2.VS); an 8-bit allocator never sets those.
    pub fn vttbr(&self, vmid: u16) -> u64 {
        (u64::from(vmid) << 48) | self.root_address()
    }

    /// Maps guest-physical `ipa..ipa+size` to host-physical `pa..pa+size` as
    /// normal cacheable read/write memory: 2 MiB blocks where both
    /// addresses are block aligned and a whole block is left, 4 KiB pages
    /// elsewhere.
    pub fn map_ram(&mut self, ipa: u64, pa: u64, size: u64) -> Result<(), MapError> {
        self.check(ipa, pa, size, PAGE_SIZE)?;
        let mut done = 0;
        while done < size {
            let (at, to) = (ipa + done, pa + done);
            let block = at.is_multiple_of(BLOCK_SIZE)
                && to.is_multiple_of(BLOCK_SIZE)
                && size - done >= BLOCK_SIZE;
            let (unit, level, attrs) = if block {
                (BLOCK_SIZE, 2, RAM_BLOCK)
            } else {
                (PAGE_SIZE, 3, RAM_PAGE)
            };
            self.table_for(at, level).0[index(at, level)] = to | attrs;
            done += unit;
        }
        Ok(())
    }

    /// Translation tables this VM owns (the root included; not those it
    /// shares): what its stage 2 costs the hypervisor, 4 KiB each.
    pub fn tables(&self) -> usize {
        1 + self.tables.len()
    }

    /// Maps a device frame read/write, never executable, in 4 KiB pages.
    /// RAM as 4 KiB pages: where only part of a block is the guest's yet
    /// (see `core::clear`).
    pub fn map_ram_pages(&mut self, ipa: u64, pa: u64, size: u64) -> Result<(), MapError> {
        self.map(ipa, pa, size, PAGE_SIZE, RAM_PAGE)
    }

    pub fn map_device(&mut self, ipa: u64, pa: u64, size: u64) -> Result<(), MapError> {
        self.map(ipa, pa, size, PAGE_SIZE, DEVICE_PAGE)
    }

    /// Maps pages shared with another VM (a channel's) as normal
    /// write-back inner-shareable memory, never executable; read-only
    /// unless `writable`, so a store by the reading side faults.
    pub fn map_shared(
        &mut self,
        ipa: u64,
        pa: u64,
        size: u64,
        writable: bool,
    ) -> Result<(), MapError> {
        let access = if writable { S2AP_RW } else { S2AP_RO };
        self.map(ipa, pa, size, PAGE_SIZE, SHARED_PAGE | access)
    }

    /// Whether `ipa..ipa+size` may be mapped to `pa` in `unit`s: aligned,
    /// inside the IPA space, nothing mapped there yet. Checked whole before
    /// anything is written, so a failed call changes nothing.
    fn check(&self, ipa: u64, pa: u64, size: u64, unit: u64) -> Result<(), MapError> {
        if [ipa, pa, size].iter().any(|v| !v.is_multiple_of(unit)) {
            return Err(MapError::Misaligned);
        }
        let end = ipa.checked_add(size).ok_or(MapError::OutsideIpaSpace)?;
        if end > 1 << IPA_BITS {
            return Err(MapError::OutsideIpaSpace);
        }
        // A whole aligned block is one look (boot time), the rest by page.
        let mut at = ipa;
        while at < end {
            let whole_block = at.is_multiple_of(BLOCK_SIZE) && end - at >= BLOCK_SIZE;
            let step = if whole_block { BLOCK_SIZE } else { PAGE_SIZE };
            if self.overlaps(at, step) {
                // Name the first page mapped (the error path only).
                let first = (0..step / PAGE_SIZE)
                    .map(|i| at + i * PAGE_SIZE)
                    .find(|&page| self.translate(page).is_some())
                    .unwrap_or(at);
                return Err(MapError::Overlap { ipa: first });
            }
            at += step;
        }
        Ok(())
    }

    fn map(&mut self, ipa: u64, pa: u64, size: u64, unit: u64, attrs: u64) -> Result<(), MapError> {
        self.check(ipa, pa, size, unit)?;
        let units = size / unit;
        let level = if unit == BLOCK_SIZE { 2 } else { 3 };
        for i in 0..units {
            let at = ipa + i * unit;
            let table = self.table_for(at, level);
            table.0[index(at, level)] = (pa + i * unit) | attrs;
        }
        Ok(())
    }

    /// Whether anything is mapped in `ipa..ipa+unit`.
    fn overlaps(&self, ipa: u64, unit: u64) -> bool {
        if unit == BLOCK_SIZE {
            // The slot holds a block, or a table made for pages mapped
            // there: one look rather than 512 walks (boot time).
            return self
                .level2_entry(ipa)
                .is_some_and(|entry| entry & 0b11 != 0);
        }
        (0..unit / PAGE_SIZE).any(|i| self.translate(ipa + i * PAGE_SIZE).is_some())
    }

    /// The level-2 entry for `ipa`, if its level-2 table exists.
    fn level2_entry(&self, ipa: u64) -> Option<u64> {
        let entry = self.root.0[index(ipa, 1)];
        if entry & 0b11 != VALID_TABLE {
            return None;
        }
        Some(self.table_at(entry & OUTPUT_ADDRESS_MASK)?.0[index(ipa, 2)])
    }

    /// Host-physical address that `ipa` maps to, if it is mapped.
    pub fn translate(&self, ipa: u64) -> Option<u64> {
        if ipa >= 1 << IPA_BITS {
            return None;
        }
        let mut table: &Table = &self.root;
        for level in 1..=3 {
            let entry = table.0[index(ipa, level)];
            let offset_mask = match level {
                2 => BLOCK_SIZE - 1,
                3 => PAGE_SIZE - 1,
                _ => 0,
            };
            match (level, entry & 0b11) {
                (_, 0b00) | (_, 0b10) => return None,
                (2, VALID_BLOCK) => {
                    return Some((entry & OUTPUT_ADDRESS_MASK) + (ipa & offset_mask))
                }
                (3, VALID_PAGE) => {
                    return Some((entry & OUTPUT_ADDRESS_MASK) + (ipa & offset_mask))
                }
                (1 | 2, VALID_TABLE) => table = self.table_at(entry & OUTPUT_ADDRESS_MASK)?,
                _ => return None,
            }
        }
        None
    }

    /// The table at `address`: this VM's own, or one it shares.
    fn table_at(&self, address: u64) -> Option<&Table> {
        self.tables
            .iter()
            .map(|t| &**t)
            .find(|t| t.address() == address)
            .or_else(|| self.shared.as_ref()?.table_at(address))
    }

    fn owns(&self, address: u64) -> bool {
        self.tables.iter().any(|t| t.address() == address)
    }

    /// A copy of the shared table at `address` (at `level`) and of every
    /// table below it, as this VM's own; the copy's address.
    fn unshare(&mut self, address: u64, level: u32) -> u64 {
        let mut copy = Table::new();
        copy.0 = self
            .table_at(address)
            .expect("descriptors only point at our own or shared tables")
            .0;
        if level < 3 {
            for slot in 0..ENTRIES {
                let entry = copy.0[slot];
                if entry & 0b11 == VALID_TABLE {
                    let child = self.unshare(entry & OUTPUT_ADDRESS_MASK, level + 1);
                    copy.0[slot] = child | VALID_TABLE;
                }
            }
        }
        let at = copy.address();
        self.tables.push(copy);
        at
    }

    /// The table at `level` (2 or 3) that maps `ipa`, created if missing
    /// (copied if shared).
    fn table_for(&mut self, ipa: u64, level: u32) -> &mut Table {
        let mut address = self.root.address();
        let root_slot = index(ipa, 1);
        self.root_used = if self.root_used.is_empty() {
            root_slot..root_slot + 1
        } else {
            self.root_used.start.min(root_slot)..self.root_used.end.max(root_slot + 1)
        };
        for parent in 1..level {
            let slot = index(ipa, parent);
            let entry = self.table_mut(address).0[slot];
            address = if entry & 0b11 == VALID_TABLE {
                let child = entry & OUTPUT_ADDRESS_MASK;
                if self.owns(child) {
                    child
                } else {
                    let copy = self.unshare(child, parent + 1);
                    self.table_mut(address).0[slot] = copy | VALID_TABLE;
                    copy
                }
            } else {
                let child = Table::new();
                let child_address = child.address();
                self.tables.push(child);
                self.table_mut(address).0[slot] = child_address | VALID_TABLE;
                child_address
            };
        }
        self.table_mut(address)
    }

    fn table_mut(&mut self, address: u64) -> &mut Table {
        if address == self.root.address() {
            return &mut self.root;
        }
        self.tables
            .iter_mut()
            .map(|t| &mut **t)
            .find(|t| t.address() == address)
            .expect("descriptors only point at our own tables")
    }
}

/// Index into the table at `level` for `ipa` (9 bits per level).
fn index(ipa: u64, level: u32) -> usize {
    ((ipa >> (12 + 9 * (3 - level))) & 0x1ff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn maps_ram_with_2mib_blocks_and_nothing_else() {
        let mut s2 = Stage2::new();
        s2.map_ram(0x4000_0000, 0x40c0_0000, 16 * MIB).unwrap();
        assert_eq!(s2.translate(0x4000_0000), Some(0x40c0_0000));
        assert_eq!(s2.translate(0x4012_3456), Some(0x40d2_3456));
        assert_eq!(s2.translate(0x40ff_ffff), Some(0x41bf_ffff));
        assert_eq!(s2.translate(0x4100_0000), None, "one past the end");
        assert_eq!(s2.translate(0x3fff_ffff), None);
        assert_eq!(s2.translate(0x0900_0000), None, "host UART");
        assert_eq!(s2.translate(1 << IPA_BITS), None);
        assert_eq!(s2.tables.len(), 1);
    }

    #[test]
    fn block_descriptor_bits() {
        let mut s2 = Stage2::new();
        s2.map_ram(0x4000_0000, 0x8000_0000, 2 * MIB).unwrap();
        let l1 = s2.root.0[1];
        assert_eq!(l1 & 0b11, 0b11, "level-1 entry is a table");
        assert_eq!(l1 & OUTPUT_ADDRESS_MASK, s2.tables[0].address());
        let block = s2.tables[0].0[0];
        // AF | SH=inner | S2AP=RW | MemAttr=normal WB | block
        assert_eq!(block, 0x8000_0000 | 0x7fd);
    }

    #[test]
    fn a_range_crossing_1gib_gets_two_level2_tables() {
        let mut s2 = Stage2::new();
        s2.map_ram(0x7fe0_0000, 0x1_0000_0000, 4 * MIB).unwrap();
        assert_eq!(s2.tables.len(), 2);
        assert_eq!(s2.translate(0x8000_0000), Some(0x1_0020_0000));
    }

    #[test]
    fn refuses_misaligned_overlapping_and_out_of_range() {
        let mut s2 = Stage2::new();
        assert_eq!(
            s2.map_ram(0x4000_0800, 0, 2 * MIB),
            Err(MapError::Misaligned)
        );
        assert_eq!(s2.map_ram(0, 0x800, 2 * MIB), Err(MapError::Misaligned));
        assert_eq!(s2.map_ram(0, 0, 0x1800), Err(MapError::Misaligned));
        assert_eq!(
            s2.map_ram((1 << IPA_BITS) - 2 * MIB, 0, 4 * MIB),
            Err(MapError::OutsideIpaSpace)
        );
        s2.map_ram(0x4000_0000, 0, 4 * MIB).unwrap();
        assert_eq!(
            s2.map_ram(0x3fe0_0000, 0x100_0000, 4 * MIB),
            Err(MapError::Overlap { ipa: 0x4000_0000 })
        );
        assert_eq!(
            s2.translate(0x3fe0_0000),
            None,
            "failed call mapped nothing"
        );
    }

    #[test]
    fn device_frames_map_as_never_executable_4k_pages() {
        let mut s2 = Stage2::new();
        s2.map_ram(0x4000_0000, 0x8000_0000, 2 * MIB).unwrap();
        s2.map_device(0x0801_0000, 0x0804_0000, 0x2000).unwrap();
        assert_eq!(s2.translate(0x0801_0004), Some(0x0804_0004));
        assert_eq!(s2.translate(0x0801_1ffc), Some(0x0804_1ffc));
        assert_eq!(s2.translate(0x0801_2000), None, "only the two pages");
        assert_eq!(
            s2.translate(0x0800_0000),
            None,
            "the distributor stays trapped"
        );
        // Root -> level 2 for RAM; root -> level 2 -> level 3 for the frame.
        assert_eq!(s2.tables.len(), 3);
        let page = s2.tables[2].0[index(0x0801_0000, 3)];
        assert_eq!(
            page,
            0x0804_0000 | 1 << 54 | 0x4c7,
            "XN (bit 54), AF, RW, device-nGnRE, page"
        );
    }

    #[test]
    fn device_pages_and_blocks_do_not_overlap() {
        let mut s2 = Stage2::new();
        s2.map_device(0x4000_1000, 0x0900_0000, 0x1000).unwrap();
        assert_eq!(
            s2.map_ram(0x4000_0000, 0, 2 * MIB),
            Err(MapError::Overlap { ipa: 0x4000_1000 }),
            "the first page mapped already"
        );
        assert_eq!(
            s2.map_device(0x4000_1000, 0, 0x1000),
            Err(MapError::Overlap { ipa: 0x4000_1000 })
        );
        assert_eq!(
            s2.map_device(0x4000_0800, 0, 0x1000),
            Err(MapError::Misaligned)
        );
    }

    #[test]
    fn shared_pages_are_normal_memory_never_executable_and_read_only_unless_writable() {
        let mut s2 = Stage2::new();
        s2.map_ram(0x4000_0000, 0x8000_0000, 2 * MIB).unwrap();
        s2.map_shared(0x1000_0000, 0x9000_0000, 0x1000, false)
            .unwrap();
        s2.map_shared(0x1000_1000, 0x9000_1000, 0x2000, true)
            .unwrap();
        assert_eq!(s2.translate(0x1000_0010), Some(0x9000_0010));
        assert_eq!(s2.translate(0x1000_2ff8), Some(0x9000_2ff8));
        assert_eq!(s2.translate(0x1000_3000), None);
        let l3 = s2.tables.last().unwrap();
        // XN, AF, SH inner, S2AP RO (0b01) / RW (0b11), MemAttr normal WB, page
        assert_eq!(l3.0[0], 0x9000_0000 | 1 << 54 | 0x77f);
        assert_eq!(l3.0[1], 0x9000_1000 | 1 << 54 | 0x7ff);
        assert_eq!(
            s2.map_shared(0x1000_2000, 0, 0x1000, true),
            Err(MapError::Overlap { ipa: 0x1000_2000 })
        );
        assert_eq!(
            s2.map_shared(0x1000_3800, 0, 0x1000, true),
            Err(MapError::Misaligned)
        );
    }

    #[test]
    fn a_small_vm_is_one_level3_table_of_pages() {
        let mut s2 = Stage2::new();
        s2.map_ram(0x4000_0000, 0x4840_0000 + 0x1_0000, 64 << 10)
            .unwrap();
        assert_eq!(s2.translate(0x4000_0000), Some(0x4841_0000));
        assert_eq!(s2.translate(0x4000_fffc), Some(0x4841_fffc));
        assert_eq!(s2.translate(0x4001_0000), None, "one past the end");
        assert_eq!(s2.translate(0x3fff_f000), None);
        // Root, the level 2 of the GiB, one level 3.
        assert_eq!(s2.tables(), 3);
        let page = s2.tables[1].0[0];
        // AF | SH inner | S2AP RW | MemAttr normal WB | page
        assert_eq!(page, 0x4841_0000 | 0x7ff);
    }

    #[test]
    fn unaligned_ram_takes_pages_around_its_blocks() {
        let mut s2 = Stage2::new();
        // Starts 4 KiB below a block boundary in both spaces: one page, one
        // block, then the rest in pages.
        let (ipa, pa) = (0x401f_f000, 0x801f_f000);
        s2.map_ram(ipa, pa, 2 * MIB + 0x3000).unwrap();
        for off in [0, 0x1000, 0x1000 + 2 * MIB - 8, 2 * MIB + 0x2ff8] {
            assert_eq!(s2.translate(ipa + off), Some(pa + off), "offset {off:#x}");
        }
        assert_eq!(s2.translate(ipa + 2 * MIB + 0x3000), None);
        let l2 = s2.tables[0].0[index(0x4020_0000, 2)];
        assert_eq!(l2 & 0b11, VALID_BLOCK, "the aligned middle is a block");
        // Root, level 2, the level 3 below the block and the one above.
        assert_eq!(s2.tables(), 4);
        // Different alignment in the two spaces: pages only.
        let mut s2 = Stage2::new();
        s2.map_ram(0x4000_0000, 0x8000_1000, 2 * MIB).unwrap();
        assert_eq!(s2.translate(0x401f_f123), Some(0x8020_0123));
        assert_eq!(s2.tables(), 3);
        assert_eq!(
            s2.map_ram(0x401f_f000, 0, 0x1000),
            Err(MapError::Overlap { ipa: 0x401f_f000 })
        );
    }

    #[test]
    fn shared_tables_are_linked_not_copied_until_written_under() {
        let gicv = Stage2::shared(|s2| s2.map_device(0x0801_0000, 0x0804_0000, 0x2000)).unwrap();
        let mut a = Stage2::sharing(&gicv);
        a.map_ram(0x4000_0000, 0x4841_0000, 64 << 10).unwrap();
        assert_eq!(a.translate(0x0801_1ffc), Some(0x0804_1ffc));
        assert_eq!(a.translate(0x4000_0010), Some(0x4841_0010));
        // Root, and RAM's level 2 and level 3: the frame's two are shared.
        assert_eq!(a.tables(), 3);
        assert_eq!(a.root.0[0], gicv.root.0[0]);
        assert_eq!(
            a.map_device(0x0801_0000, 0, 0x1000),
            Err(MapError::Overlap { ipa: 0x0801_0000 })
        );
        // Mapping beside the frame copies its subtree; the shared one and
        // its other users do not see it.
        let b = Stage2::sharing(&gicv);
        a.map_device(0x0900_0000, 0x0a00_0000, 0x1000).unwrap();
        assert_eq!(
            a.tables(),
            6,
            "RAM's two, copies of the two shared, one new"
        );
        assert_ne!(a.root.0[0], gicv.root.0[0]);
        assert_eq!(a.translate(0x0900_0ff8), Some(0x0a00_0ff8));
        assert_eq!(a.translate(0x0801_0004), Some(0x0804_0004), "copied");
        assert_eq!(b.translate(0x0900_0000), None);
        assert_eq!(gicv.translate(0x0900_0000), None);
        assert_eq!(b.translate(0x0801_0004), Some(0x0804_0004));
        // Within the frame's own level-3 table too.
        let mut c = Stage2::sharing(&gicv);
        c.map_shared(0x0802_0000, 0x9000_0000, 0x1000, true)
            .unwrap();
        assert_eq!(c.translate(0x0802_0000), Some(0x9000_0000));
        assert_eq!(gicv.translate(0x0802_0000), None);
        assert_eq!(c.tables(), 3, "root and copies of both levels");
    }

    #[test]
    fn sharing_copies_every_root_slot_the_shared_tables_use_and_no_other() {
        // Root slots 0, 3 and 200 (1 GiB each): the span copied runs from
        // the lowest to the highest.
        let shared = Stage2::shared(|s2| {
            s2.map_device(3 << 30, 0x0804_0000, 0x1000)?;
            s2.map_device(200 << 30, 0x0805_0000, 0x1000)?;
            s2.map_device(0x0801_0000, 0x0806_0000, 0x1000)
        })
        .unwrap();
        assert_eq!(shared.root_used, 0..201);
        let a = Stage2::sharing(&shared);
        assert_eq!(a.root.0, shared.root.0);
        assert_eq!(a.translate(3 << 30), Some(0x0804_0000));
        assert_eq!(a.translate((200 << 30) + 8), Some(0x0805_0008));
        assert_eq!(a.translate(0x0801_0ff8), Some(0x0806_0ff8));
        // A VM's own mappings widen its own span, not the shared one's.
        let mut b = Stage2::sharing(&shared);
        b.map_ram(300 << 30, 0x4000_0000, 2 << 20).unwrap();
        assert_eq!(
            (b.root_used.clone(), shared.root_used.clone()),
            (0..301, 0..201)
        );
        let c = Stage2::new();
        assert_eq!(c.root_used, 0..0);
        assert!(Stage2::sharing(&Arc::new(c)).root.0.iter().all(|&e| e == 0));
    }

    #[test]
    fn vttbr_carries_vmid_and_root() {
        let s2 = Stage2::new();
        let vttbr = s2.vttbr(0xab);
        assert_eq!(vttbr >> 48, 0xab);
        assert_eq!(vttbr & OUTPUT_ADDRESS_MASK, s2.root_address());
        let wide = s2.vttbr(0xcdab);
        assert_eq!(wide >> 48, 0xcdab, "16-bit VMIDs fill bits [63:48]");
        assert_eq!(wide & OUTPUT_ADDRESS_MASK, s2.root_address());
        assert_eq!(s2.root_address() % 4096, 0);
    }
}
