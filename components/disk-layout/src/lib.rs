//! Reads a physical disk's layout (MBR, GPT, LVM2 on a partition or on the
//! whole disk) and resolves a volume source (`part:N`, `gpt:NAME`,
//! `lvm:vg/lv`) to the disk extents that back it, so that the hypervisor can
//! serve it to a guest as a virtio-blk device.
//!
//! Everything read from the disk is untrusted: every on-disk number goes
//! through checked arithmetic, every read is bounded, and nothing panics on
//! any input. Sectors are 512 bytes (disks with 4 KiB logical sectors are not
//! supported).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod crc;
mod error;
mod gpt;
mod list;
mod lvm;
mod mbr;
mod source;
mod text;
mod volume;

pub use error::{IoError, LayoutError};
pub use list::{list, Item, Listing, TableKind};
pub use source::{ParseError, Source};
pub use volume::{Extent, MapError, Run, Runs, Volume, MAX_EXTENTS};

use alloc::vec;
use alloc::vec::Vec;

/// Bytes per sector.
pub const SECTOR: usize = 512;

/// A disk read in 512-byte sectors.
pub trait BlockRead {
    /// Reads `buf.len() / 512` sectors starting at `sector`. `buf.len()` is a
    /// multiple of 512 and the range lies inside `sectors()`: `resolve` checks
    /// that before it asks.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// The disk's size in sectors.
    fn sectors(&self) -> u64;
}

/// Resolves `source` on `disk` to the extents that back it.
pub fn resolve(disk: &mut impl BlockRead, source: &Source) -> Result<Volume, LayoutError> {
    let volume = match *source {
        Source::Partition(n) => {
            let p = mbr::read_table(disk)?.partition(n)?;
            Volume::single(p.start, p.sectors)?
        }
        Source::GptName(name) => {
            let p = mbr::read_table(disk)?.by_name(name)?;
            Volume::single(p.start, p.sectors)?
        }
        Source::Lvm { vg, lv } => lvm::resolve(disk, vg, lv)?,
    };
    // Belt and braces: whatever the checks above missed, no extent may leave
    // the disk.
    let disk_sectors = disk.sectors();
    for e in volume.extents() {
        match e.disk_sector.checked_add(e.sectors) {
            Some(end) if end <= disk_sectors => {}
            _ => return Err(LayoutError::ExtentPastDisk),
        }
    }
    Ok(volume)
}

/// Reads `count` sectors at `sector`, refusing ranges outside the disk.
fn read_sectors(
    disk: &mut impl BlockRead,
    sector: u64,
    count: usize,
) -> Result<Vec<u8>, LayoutError> {
    let bytes = count
        .checked_mul(SECTOR)
        .ok_or(LayoutError::ReadPastDisk { sector })?;
    let end = sector
        .checked_add(count as u64)
        .ok_or(LayoutError::ReadPastDisk { sector })?;
    if end > disk.sectors() {
        return Err(LayoutError::ReadPastDisk { sector });
    }
    let mut buf = vec![0u8; bytes];
    disk.read(sector, &mut buf)
        .map_err(|error| LayoutError::Io { sector, error })?;
    Ok(buf)
}

fn read_sector(disk: &mut impl BlockRead, sector: u64) -> Result<[u8; SECTOR], LayoutError> {
    let v = read_sectors(disk, sector, 1)?;
    let mut out = [0u8; SECTOR];
    out.copy_from_slice(&v);
    Ok(out)
}

/// Little-endian field readers; `None` past the slice's end.
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests;
