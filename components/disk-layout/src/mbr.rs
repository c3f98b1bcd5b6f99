//! The partition table: an MBR, or the GPT a protective MBR points to.
use crate::gpt::{self, GptPart};
use crate::{le32, read_sector, BlockRead, LayoutError};
use alloc::string::String;
use alloc::vec::Vec;

pub const MBR_LVM: u8 = 0x8e;
const MBR_PROTECTIVE: u8 = 0xee;
const MBR_EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];

#[derive(Debug, Clone, Copy)]
pub struct MbrEntry {
    pub ty: u8,
    pub start: u64,
    pub sectors: u64,
}

pub enum Table {
    Mbr { entries: [MbrEntry; 4], disk: u64 },
    Gpt { parts: Vec<GptPart>, disk: u64 },
}

/// A partition that lies inside the disk.
#[derive(Debug, Clone, Copy)]
pub struct Partition {
    pub start: u64,
    pub sectors: u64,
    pub lvm: bool,
}

fn inside(n: u32, start: u64, sectors: u64, disk: u64) -> Result<Partition, LayoutError> {
    match start.checked_add(sectors) {
        Some(end) if sectors > 0 && start > 0 && end <= disk => Ok(Partition {
            start,
            sectors,
            lvm: false,
        }),
        _ => Err(LayoutError::PartitionOutsideDisk(n)),
    }
}

/// Reads sector 0; `Ok(None)` when it has no 0x55AA signature.
pub fn read_mbr(disk: &mut impl BlockRead) -> Result<Option<[MbrEntry; 4]>, LayoutError> {
    let s = read_sector(disk, 0)?;
    if s[510] != 0x55 || s[511] != 0xaa {
        return Ok(None);
    }
    let mut entries = [MbrEntry {
        ty: 0,
        start: 0,
        sectors: 0,
    }; 4];
    for (i, e) in entries.iter_mut().enumerate() {
        let at = 446 + 16 * i;
        e.ty = s[at + 4];
        e.start = u64::from(le32(&s, at + 8).unwrap_or(0));
        e.sectors = u64::from(le32(&s, at + 12).unwrap_or(0));
    }
    Ok(Some(entries))
}

pub fn read_table(disk: &mut impl BlockRead) -> Result<Table, LayoutError> {
    let entries = read_mbr(disk)?.ok_or(LayoutError::NoMbrSignature)?;
    table_from(disk, entries)
}

pub fn table_from(disk: &mut impl BlockRead, entries: [MbrEntry; 4]) -> Result<Table, LayoutError> {
    let size = disk.sectors();
    // Any 0xEE entry (protective or hybrid MBR) means the GPT rules.
    if entries.iter().any(|e| e.ty == MBR_PROTECTIVE) {
        Ok(Table::Gpt {
            parts: gpt::read(disk)?,
            disk: size,
        })
    } else {
        Ok(Table::Mbr {
            entries,
            disk: size,
        })
    }
}

impl Table {
    /// Partition `n` (1-based).
    pub fn partition(&self, n: u32) -> Result<Partition, LayoutError> {
        let idx = usize::try_from(n.checked_sub(1).ok_or(LayoutError::NoSuchPartition(n))?)
            .map_err(|_| LayoutError::NoSuchPartition(n))?;
        match self {
            Table::Mbr { entries, disk } => {
                let e = match entries.get(idx) {
                    Some(e) => e,
                    None => return Err(LayoutError::LogicalPartition(n)),
                };
                if e.ty == 0 {
                    return Err(LayoutError::NoSuchPartition(n));
                }
                if MBR_EXTENDED.contains(&e.ty) {
                    return Err(LayoutError::ExtendedPartition(n));
                }
                let mut p = inside(n, e.start, e.sectors, *disk)?;
                p.lvm = e.ty == MBR_LVM;
                Ok(p)
            }
            Table::Gpt { parts, disk } => {
                let p = parts
                    .iter()
                    .find(|p| p.index == idx)
                    .ok_or(LayoutError::NoSuchPartition(n))?;
                p.check(n, *disk)
            }
        }
    }

    /// The GPT partition named `name`.
    pub fn by_name(&self, name: &str) -> Result<Partition, LayoutError> {
        let Table::Gpt { parts, disk } = self else {
            return Err(LayoutError::NotGpt);
        };
        let mut found = parts.iter().filter(|p| p.name_is(name));
        let p = found
            .next()
            .ok_or_else(|| LayoutError::NoGptName(String::from(name)))?;
        if found.next().is_some() {
            return Err(LayoutError::DuplicateGptName(String::from(name)));
        }
        // Indexes are below the 1 MiB array bound / 128, so they fit u32.
        p.check(
            u32::try_from(p.index).unwrap_or(u32::MAX).saturating_add(1),
            *disk,
        )
    }

    /// Every partition typed as an LVM PV, checked to lie inside the disk.
    pub fn lvm_partitions(&self) -> Result<Vec<Partition>, LayoutError> {
        let mut out = Vec::new();
        match self {
            Table::Mbr { entries, .. } => {
                for (i, e) in entries.iter().enumerate() {
                    if e.ty == MBR_LVM {
                        out.push(self.partition(i as u32 + 1)?);
                    }
                }
            }
            Table::Gpt { parts, disk } => {
                for p in parts.iter().filter(|p| p.is_lvm()) {
                    out.push(p.check(
                        u32::try_from(p.index).unwrap_or(u32::MAX).saturating_add(1),
                        *disk,
                    )?);
                }
            }
        }
        Ok(out)
    }
}

impl GptPart {
    fn check(&self, n: u32, disk: u64) -> Result<Partition, LayoutError> {
        let sectors = self
            .last
            .checked_sub(self.first)
            .and_then(|d| d.checked_add(1))
            .ok_or(LayoutError::PartitionOutsideDisk(n))?;
        let mut p = inside(n, self.first, sectors, disk)?;
        p.lvm = self.is_lvm();
        Ok(p)
    }
}
