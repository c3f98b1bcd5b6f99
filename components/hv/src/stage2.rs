//! Stage-2 translation tables (guest-physical to host-physical), in the
//! VMSAv8-64 / ARMv7 LPAE long-descriptor format both architectures share:
//! 4 KiB granule, 39-bit IPA space starting at level 1. Guest RAM is mapped
//! with 2 MiB level-2 blocks, device frames given to a guest (the GIC's
//! virtual CPU interface) with 4 KiB level-3 pages. Whatever is not mapped
//! faults to the hypervisor.
//!
//! Tables live on the boot-time heap; the hypervisor's identity map makes a
//! table's address its physical address.

use alloc::{boxed::Box, vec::Vec};

/// Guest-physical address bits (VTCR T0SZ = 64 - 39).
pub const IPA_BITS: u32 = 39;
/// Size of one level-2 block: the unit guest RAM is mapped in.
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
    /// normal cacheable read/write memory, in 2 MiB blocks.
    pub fn map_ram(&mut self, ipa: u64, pa: u64, size: u64) -> Result<(), MapError> {
        self.map(ipa, pa, size, BLOCK_SIZE, RAM_BLOCK)
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

    fn map(&mut self, ipa: u64, pa: u64, size: u64, unit: u64, attrs: u64) -> Result<(), MapError> {
        if [ipa, pa, size].iter().any(|v| !v.is_multiple_of(unit)) {
            return Err(MapError::Misaligned);
        }
        let end = ipa.checked_add(size).ok_or(MapError::OutsideIpaSpace)?;
        if end > 1 << IPA_BITS {
            return Err(MapError::OutsideIpaSpace);
        }
        // Check the whole range first so a failed call changes nothing.
        let units = size / unit;
        if let Some(mapped) = (0..units)
            .map(|i| ipa + i * unit)
            .find(|&at| self.overlaps(at, unit))
        {
            return Err(MapError::Overlap { ipa: mapped });
        }
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

    fn table_at(&self, address: u64) -> Option<&Table> {
        self.tables
            .iter()
            .map(|t| &**t)
            .find(|t| t.address() == address)
    }

    /// The table at `level` (2 or 3) that maps `ipa`, created if missing.
    fn table_for(&mut self, ipa: u64, level: u32) -> &mut Table {
        let mut address = self.root.address();
        for parent in 1..level {
            let slot = index(ipa, parent);
            let entry = self.table_mut(address).0[slot];
            address = if entry & 0b11 == VALID_TABLE {
                entry & OUTPUT_ADDRESS_MASK
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
            s2.map_ram(0x4000_1000, 0, 2 * MIB),
            Err(MapError::Misaligned)
        );
        assert_eq!(s2.map_ram(0, 0x1000, 2 * MIB), Err(MapError::Misaligned));
        assert_eq!(s2.map_ram(0, 0, MIB), Err(MapError::Misaligned));
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
            Err(MapError::Overlap { ipa: 0x4000_0000 })
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
