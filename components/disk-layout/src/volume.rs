//! A resolved volume: contiguous guest-relative extents on the disk.
use crate::LayoutError;
use alloc::vec::Vec;
use core::fmt;

/// The most extents (LV segments) a volume may have.
pub const MAX_EXTENTS: usize = 256;

/// `sectors` sectors of the volume from `volume_sector` live on the disk
/// from `disk_sector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub volume_sector: u64,
    pub disk_sector: u64,
    pub sectors: u64,
}

/// A piece of a mapped range: `sectors` sectors at `disk_sector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub disk_sector: u64,
    pub sectors: u64,
}

/// A guest range that `Volume::map` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapError {
    pub sector: u64,
    pub count: u64,
    pub volume_sectors: u64,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sectors {}+{} run past the volume's {} sectors",
            self.sector, self.count, self.volume_sectors
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    extents: Vec<Extent>,
    sectors: u64,
}

impl Volume {
    /// A volume from `(disk_sector, sectors)` pieces in volume order. Refuses
    /// empty pieces, too many pieces and sizes that overflow.
    pub fn from_runs(runs: impl IntoIterator<Item = Run>) -> Result<Self, LayoutError> {
        let mut extents = Vec::new();
        let mut total: u64 = 0;
        for r in runs {
            if r.sectors == 0 {
                return Err(LayoutError::EmptyVolume);
            }
            if extents.len() == MAX_EXTENTS {
                return Err(LayoutError::TooManyExtents);
            }
            r.disk_sector
                .checked_add(r.sectors)
                .ok_or(LayoutError::Overflow("extent end"))?;
            extents.push(Extent {
                volume_sector: total,
                disk_sector: r.disk_sector,
                sectors: r.sectors,
            });
            total = total
                .checked_add(r.sectors)
                .ok_or(LayoutError::Overflow("volume size"))?;
        }
        if total == 0 {
            return Err(LayoutError::EmptyVolume);
        }
        Ok(Volume {
            extents,
            sectors: total,
        })
    }

    pub(crate) fn single(disk_sector: u64, sectors: u64) -> Result<Self, LayoutError> {
        Self::from_runs([Run {
            disk_sector,
            sectors,
        }])
    }

    /// The volume's size in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Maps `count` sectors from guest-relative `sector` to disk runs. The
    /// range is checked against the volume's own size, never a disk end.
    pub fn map(&self, sector: u64, count: u64) -> Result<Runs<'_>, MapError> {
        let err = MapError {
            sector,
            count,
            volume_sectors: self.sectors,
        };
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => {}
            _ => return Err(err),
        }
        // First extent that ends after `sector`.
        let idx = self
            .extents
            .partition_point(|e| e.volume_sector.saturating_add(e.sectors) <= sector);
        Ok(Runs {
            extents: self.extents.get(idx..).unwrap_or(&[]),
            sector,
            left: count,
        })
    }
}

/// The disk runs of a mapped range, in order.
#[derive(Debug, Clone)]
pub struct Runs<'a> {
    extents: &'a [Extent],
    sector: u64,
    left: u64,
}

impl Iterator for Runs<'_> {
    type Item = Run;
    fn next(&mut self) -> Option<Run> {
        if self.left == 0 {
            return None;
        }
        let (e, rest) = self.extents.split_first()?;
        // Invariants of `Volume` (contiguous, no overflow) make these exact;
        // `checked_*` keeps a broken invariant from panicking.
        let within = self.sector.checked_sub(e.volume_sector)?;
        let avail = e.sectors.checked_sub(within)?;
        let n = avail.min(self.left);
        let run = Run {
            disk_sector: e.disk_sector.checked_add(within)?,
            sectors: n,
        };
        self.sector = self.sector.checked_add(n)?;
        self.left -= n;
        if n == avail {
            self.extents = rest;
        }
        Some(run)
    }
}
