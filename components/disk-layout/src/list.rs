//! What is on a disk, for the hypervisor's boot report: every partition
//! and every LV of the VGs on its LVM PVs, each with its size, or the error
//! that kept it from being read.
use crate::mbr::{read_mbr, table_from, Partition, Table, MBR_LVM};
use crate::{lvm, BlockRead, LayoutError};
use alloc::string::String;
use alloc::vec::Vec;

/// The partition table `list` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Mbr,
    Gpt,
    /// No 0x55AA signature: the whole disk may be a PV.
    None,
}

/// One thing on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Partition `number` (1-based); `name` is a GPT partition's name.
    Partition {
        number: u32,
        name: Option<String>,
        start: u64,
        sectors: u64,
        lvm: bool,
    },
    /// A partition entry that does not lie inside the disk (or is extended).
    BadPartition { number: u32, error: LayoutError },
    /// A linear LV of VG `vg`, `sectors` long (`Ok`), or why it cannot be
    /// served (`Err`: a striped LV, a VG of several PVs, ...).
    Lv {
        vg: String,
        lv: String,
        sectors: Result<u64, LayoutError>,
    },
    /// An LVM-typed partition (`pv` its number; 0 for the whole disk) whose
    /// label or metadata could not be read.
    BadPv { pv: u32, error: LayoutError },
}

/// The disk's layout, as far as it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub table: TableKind,
    pub items: Vec<Item>,
}

/// Lists the partitions of `disk` and the LVs on its LVM PVs (at most
/// [`lvm::MAX_PVS`] of them). An error reading the partition table is the
/// result; an error in one partition or PV is an item, and the rest go on.
pub fn list(disk: &mut impl BlockRead) -> Result<Listing, LayoutError> {
    let mut items = Vec::new();
    let mut pvs: Vec<(u32, Partition)> = Vec::new();
    let table = match read_mbr(disk)? {
        None => {
            pvs.push((
                0,
                Partition {
                    start: 0,
                    sectors: disk.sectors(),
                    lvm: true,
                },
            ));
            TableKind::None
        }
        Some(entries) => {
            let table = table_from(disk, entries)?;
            let (kind, numbered) = match &table {
                Table::Mbr { entries, .. } => (
                    TableKind::Mbr,
                    entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.ty != 0)
                        .map(|(i, e)| (i as u32 + 1, None, e.ty == MBR_LVM))
                        .collect::<Vec<_>>(),
                ),
                Table::Gpt { parts, .. } => (
                    TableKind::Gpt,
                    parts
                        .iter()
                        .map(|p| {
                            let number =
                                u32::try_from(p.index).unwrap_or(u32::MAX).saturating_add(1);
                            (number, Some(p.name.chars().collect()), p.is_lvm())
                        })
                        .collect(),
                ),
            };
            for (number, name, lvm) in numbered {
                match table.partition(number) {
                    Ok(p) => {
                        items.push(Item::Partition {
                            number,
                            name,
                            start: p.start,
                            sectors: p.sectors,
                            lvm,
                        });
                        if lvm {
                            pvs.push((number, p));
                        }
                    }
                    Err(error) => items.push(Item::BadPartition { number, error }),
                }
            }
            kind
        }
    };
    let whole_disk = table == TableKind::None;
    for (number, pv) in pvs.into_iter().take(lvm::MAX_PVS) {
        match lvm::list_pv(disk, pv) {
            Ok(lvs) => {
                items.extend(
                    lvs.into_iter()
                        .map(|(vg, lv, sectors)| Item::Lv { vg, lv, sectors }),
                )
            }
            // A bare disk without a PV label is simply an empty disk.
            Err(LayoutError::NoLvmLabel) if whole_disk => {}
            Err(error) => items.push(Item::BadPv { pv: number, error }),
        }
    }
    Ok(Listing { table, items })
}
