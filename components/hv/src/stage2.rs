//! Stage-2 translation tables (guest-physical to host-physical), in the
//! VMSAv8-64 / ARMv7 LPAE long-descriptor format both architectures share:
//! 4 KiB granule, 39-bit IPA space starting at level 1, guest RAM mapped with
//! 2 MiB level-2 blocks. Whatever is not mapped faults to the hypervisor.
//!
//! Tables live on the boot-time heap; the hypervisor's identity map makes a
//! table's address its physical address.

use alloc::{boxed::Box, vec::Vec};

/// Guest-physical address bits (VTCR T0SZ = 64 - 39).
pub const IPA_BITS: u32 = 39;
/// Size of one level-2 block: the unit guest RAM is mapped in.
pub const BLOCK_SIZE: u64 = 2 << 20;

const ENTRIES: usize = 512;
const VALID_TABLE: u64 = 0b11;
const VALID_BLOCK: u64 = 0b01;
/// MemAttr = Normal, outer and inner write-back cacheable.
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
/// S2AP = read/write.
const S2AP_RW: u64 = 0b11 << 6;
/// SH = inner shareable.
const SH_INNER: u64 = 0b11 << 8;
/// Access flag, set so the first access does not fault.
const AF: u64 = 1 << 10;
const OUTPUT_ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

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
    /// Base or size not a multiple of [`BLOCK_SIZE`].
    Misaligned,
    /// The range goes past the IPA space.
    OutsideIpaSpace,
    /// Part of the range is mapped already.
    Overlap { ipa: u64 },
}

/// One VM's stage-2 tables.
pub struct Stage2 {
    root: Box<Table>,
    /// Level-2 tables, each with its physical address.
    level2: Vec<Box<Table>>,
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
            level2: Vec::new(),
        }
    }

    /// Physical address of the level-1 table, for VTTBR.
    pub fn root_address(&self) -> u64 {
        self.root.address()
    }

    /// The VTTBR value for this table under `vmid` (bits [55:48], the
    /// 8-bit VMID both architectures have).
    pub fn vttbr(&self, vmid: u8) -> u64 {
        (u64::from(vmid) << 48) | self.root_address()
    }

    /// Maps guest-physical `ipa..ipa+size` to host-physical `pa..pa+size` as
    /// normal cacheable read/write memory.
    pub fn map_ram(&mut self, ipa: u64, pa: u64, size: u64) -> Result<(), MapError> {
        if [ipa, pa, size]
            .iter()
            .any(|v| !v.is_multiple_of(BLOCK_SIZE))
        {
            return Err(MapError::Misaligned);
        }
        let end = ipa.checked_add(size).ok_or(MapError::OutsideIpaSpace)?;
        if end > 1 << IPA_BITS {
            return Err(MapError::OutsideIpaSpace);
        }
        // Check the whole range first so a failed call changes nothing.
        if let Some(mapped) = (0..size / BLOCK_SIZE)
            .map(|i| ipa + i * BLOCK_SIZE)
            .find(|&block| self.translate(block).is_some())
        {
            return Err(MapError::Overlap { ipa: mapped });
        }
        for i in 0..size / BLOCK_SIZE {
            let (block_ipa, block_pa) = (ipa + i * BLOCK_SIZE, pa + i * BLOCK_SIZE);
            let table = self.level2_for(block_ipa);
            table.0[level2_index(block_ipa)] =
                block_pa | AF | SH_INNER | S2AP_RW | MEMATTR_NORMAL_WB | VALID_BLOCK;
        }
        Ok(())
    }

    /// Host-physical address that `ipa` maps to, if it is mapped.
    pub fn translate(&self, ipa: u64) -> Option<u64> {
        if ipa >= 1 << IPA_BITS {
            return None;
        }
        let table = self.level2_at(self.root.0[level1_index(ipa)])?;
        let block = table.0[level2_index(ipa)];
        (block & 0b11 == VALID_BLOCK).then(|| (block & OUTPUT_ADDRESS_MASK) + ipa % BLOCK_SIZE)
    }

    fn level2_at(&self, descriptor: u64) -> Option<&Table> {
        if descriptor & 0b11 != VALID_TABLE {
            return None;
        }
        let address = descriptor & OUTPUT_ADDRESS_MASK;
        self.level2
            .iter()
            .map(|t| &**t)
            .find(|t| t.address() == address)
    }

    fn level2_for(&mut self, ipa: u64) -> &mut Table {
        let slot = level1_index(ipa);
        let descriptor = self.root.0[slot];
        let index = match self.level2.iter().position(|t| {
            descriptor & 0b11 == VALID_TABLE && t.address() == descriptor & OUTPUT_ADDRESS_MASK
        }) {
            Some(index) => index,
            None => {
                let table = Table::new();
                self.root.0[slot] = table.address() | VALID_TABLE;
                self.level2.push(table);
                self.level2.len() - 1
            }
        };
        &mut self.level2[index]
    }
}

fn level1_index(ipa: u64) -> usize {
    ((ipa >> 30) & 0x1ff) as usize
}

fn level2_index(ipa: u64) -> usize {
    ((ipa >> 21) & 0x1ff) as usize
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
        assert_eq!(s2.level2.len(), 1);
    }

    #[test]
    fn block_descriptor_bits() {
        let mut s2 = Stage2::new();
        s2.map_ram(0x4000_0000, 0x8000_0000, 2 * MIB).unwrap();
        let l1 = s2.root.0[1];
        assert_eq!(l1 & 0b11, 0b11, "level-1 entry is a table");
        assert_eq!(l1 & OUTPUT_ADDRESS_MASK, s2.level2[0].address());
        let block = s2.level2[0].0[0];
        // AF | SH=inner | S2AP=RW | MemAttr=normal WB | block
        assert_eq!(block, 0x8000_0000 | 0x7fd);
    }

    #[test]
    fn a_range_crossing_1gib_gets_two_level2_tables() {
        let mut s2 = Stage2::new();
        s2.map_ram(0x7fe0_0000, 0x1_0000_0000, 4 * MIB).unwrap();
        assert_eq!(s2.level2.len(), 2);
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
    fn vttbr_carries_vmid_and_root() {
        let s2 = Stage2::new();
        let vttbr = s2.vttbr(0xab);
        assert_eq!(vttbr >> 48, 0xab);
        assert_eq!(vttbr & OUTPUT_ADDRESS_MASK, s2.root_address());
        assert_eq!(s2.root_address() % 4096, 0);
    }
}
