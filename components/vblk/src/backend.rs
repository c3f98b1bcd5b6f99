//! What serves the disk: a volume of 512-byte sectors, numbered from 0 at
//! the volume's own start (a partition or LV maps them to the disk itself).

use alloc::vec::Vec;

/// The sector size virtio-blk counts in.
pub const SECTOR: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The range is not inside the volume.
    OutOfRange,
    /// A write to a read-only volume.
    ReadOnly,
    /// The medium failed.
    Io,
}

/// A volume the device serves. `buf` lengths are whole sectors; the device
/// checks ranges against [`BlockBackend::sectors`] before it calls, and a
/// backend should check again.
pub trait BlockBackend {
    /// The volume's size in 512-byte sectors.
    fn sectors(&self) -> u64;
    fn read_only(&self) -> bool;
    /// Reads `buf.len() / 512` sectors from `sector` (volume-relative).
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError>;
    /// Writes `buf.len() / 512` sectors at `sector` (volume-relative).
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BackendError>;
    /// Makes completed writes durable.
    fn flush(&mut self) -> Result<(), BackendError>;
}

/// A volume in hypervisor memory (a RAM disk; the tests' disk).
pub struct MemDisk {
    data: Vec<u8>,
    read_only: bool,
    flushes: u64,
}

impl MemDisk {
    /// A zeroed disk of `sectors` sectors.
    pub fn new(sectors: usize, read_only: bool) -> Self {
        Self::from_bytes(alloc::vec![0; sectors * SECTOR], read_only)
    }

    /// A disk holding `data`, cut to whole sectors.
    pub fn from_bytes(mut data: Vec<u8>, read_only: bool) -> Self {
        data.truncate(data.len() / SECTOR * SECTOR);
        MemDisk {
            data,
            read_only,
            flushes: 0,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// How many times it was flushed.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// The byte range of `len` bytes at `sector`, if inside the disk.
    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, BackendError> {
        let start = usize::try_from(sector)
            .ok()
            .and_then(|s| s.checked_mul(SECTOR))
            .ok_or(BackendError::OutOfRange)?;
        let end = start.checked_add(len).ok_or(BackendError::OutOfRange)?;
        if end > self.data.len() || !len.is_multiple_of(SECTOR) {
            return Err(BackendError::OutOfRange);
        }
        Ok(start..end)
    }
}

impl BlockBackend for MemDisk {
    fn sectors(&self) -> u64 {
        (self.data.len() / SECTOR) as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let range = self.range(sector, buf.len())?;
        buf.copy_from_slice(&self.data[range]);
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        let range = self.range(sector, buf.len())?;
        self.data[range].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        self.flushes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_disk_checks_ranges_and_read_only() {
        let mut d = MemDisk::new(4, false);
        assert_eq!(d.sectors(), 4);
        assert_eq!(d.write(3, &[7; 512]), Ok(()));
        let mut buf = [0; 1024];
        assert_eq!(d.read(2, &mut buf), Ok(()));
        assert_eq!((buf[0], buf[512]), (0, 7));
        assert_eq!(d.read(3, &mut buf), Err(BackendError::OutOfRange));
        assert_eq!(
            d.read(u64::MAX, &mut buf[..512]),
            Err(BackendError::OutOfRange)
        );
        assert_eq!(d.read(0, &mut buf[..100]), Err(BackendError::OutOfRange));
        assert_eq!(d.flush(), Ok(()));
        assert_eq!(d.flushes(), 1);
        let mut r = MemDisk::from_bytes(alloc::vec![1; 1000], true);
        assert_eq!(r.sectors(), 1);
        assert_eq!(r.write(0, &[0; 512]), Err(BackendError::ReadOnly));
        assert_eq!(r.bytes(), &[1; 512][..]);
    }
}
