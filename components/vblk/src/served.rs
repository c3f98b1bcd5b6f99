//! The component the composition links (`vblk::Component`): a VM's
//! virtio-blk device serving one volume of the hypervisor's own disk.
//! The device keeps only where its volume lies; the disk itself is the
//! core's, lent for each [`MmioDevice::work`] call.

use crate::backend::{BackendError, BlockBackend};
use crate::blk::ID_BYTES;
use crate::VirtioBlk;
use hv::device::{Backing, MmioDevice, Setup, SetupError, Signal};
use hv::disk::{BlockDevice, DiskError, Served, SECTOR};

/// A volume on the hypervisor's disk as a [`BlockBackend`]: each request
/// mapped through the volume's extents (sectors relative to the volume,
/// checked against its size), then run on the disk.
pub struct OnDisk<'a> {
    pub disk: &'a mut dyn BlockDevice,
    pub served: &'a Served,
}

impl OnDisk<'_> {
    /// Runs `op` on each disk run of `len` bytes at volume sector `sector`,
    /// with the matching piece of the buffer's byte range.
    fn each_run(
        &mut self,
        sector: u64,
        len: usize,
        mut op: impl FnMut(&mut dyn BlockDevice, u64, core::ops::Range<usize>) -> Result<(), DiskError>,
    ) -> Result<(), BackendError> {
        if !len.is_multiple_of(SECTOR) {
            return Err(BackendError::OutOfRange);
        }
        let runs = self
            .served
            .volume
            .map(sector, (len / SECTOR) as u64)
            .map_err(|_| BackendError::OutOfRange)?;
        let mut at = 0usize;
        for run in runs {
            // A run is at most the request, which fits in `len`.
            let bytes = run.sectors as usize * SECTOR;
            op(&mut *self.disk, run.disk_sector, at..at + bytes).map_err(|e| match e {
                DiskError::ReadOnly => BackendError::ReadOnly,
                DiskError::OutOfRange => BackendError::OutOfRange,
                DiskError::BadLength | DiskError::Device => BackendError::Io,
            })?;
            at += bytes;
        }
        Ok(())
    }
}

impl BlockBackend for OnDisk<'_> {
    fn sectors(&self) -> u64 {
        self.served.volume.sectors()
    }

    fn read_only(&self) -> bool {
        self.served.read_only || self.disk.read_only()
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.each_run(sector, buf.len(), |disk, at, range| {
            disk.read(at, &mut buf[range])
        })
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BackendError> {
        if self.read_only() {
            return Err(BackendError::ReadOnly);
        }
        self.each_run(sector, buf.len(), |disk, at, range| {
            disk.write(at, &buf[range])
        })
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        self.disk.flush().map_err(|_| BackendError::Io)
    }
}

/// A volume whose disk is not there: every request fails.
struct Unavailable<'a>(&'a Served);

impl BlockBackend for Unavailable<'_> {
    fn sectors(&self) -> u64 {
        self.0.volume.sectors()
    }
    fn read_only(&self) -> bool {
        self.0.read_only
    }
    fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), BackendError> {
        Err(BackendError::Io)
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), BackendError> {
        Err(BackendError::Io)
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        Err(BackendError::Io)
    }
}

/// A VM's disk: the virtio-blk device and the volume it serves.
pub struct VolumeDevice {
    device: VirtioBlk,
    served: Served,
}

impl VolumeDevice {
    /// The disk of `setup`: its volume must be given (the image resolved
    /// the profile's source on the hypervisor's disk).
    pub fn new(setup: Setup) -> Result<Self, SetupError> {
        let served = setup
            .volume
            .ok_or_else(|| alloc::string::String::from("a virtio-blk device needs a volume"))?;
        let device = VirtioBlk::new(
            setup.intid,
            served.volume.sectors(),
            served.read_only,
            serial(&served.source),
        );
        Ok(VolumeDevice { device, served })
    }

    pub fn device(&self) -> &VirtioBlk {
        &self.device
    }
}

/// GET_ID's answer: the source as the profile names it, cut to 20 bytes
/// (unterminated when it fills them, as virtio 1.2 §5.2.6 allows).
fn serial(source: &str) -> [u8; ID_BYTES] {
    let mut id = [0u8; ID_BYTES];
    let n = source.len().min(ID_BYTES);
    id[..n].copy_from_slice(&source.as_bytes()[..n]);
    id
}

impl MmioDevice for VolumeDevice {
    fn read(&mut self, vcpu: usize, offset: u64, width: u8) -> u64 {
        self.device.read(vcpu, offset, width)
    }

    fn write(&mut self, vcpu: usize, offset: u64, width: u8, value: u64) -> Signal {
        let signal = self.device.write(vcpu, offset, width, value);
        Signal {
            work: self.device.notified(),
            ..signal
        }
    }

    fn irq(&self) -> Option<u32> {
        self.device.irq()
    }

    fn level(&self) -> Option<bool> {
        self.device.level()
    }

    fn work(&mut self, backing: Backing<'_>) -> Signal {
        let Backing { ram, memory, disk } = backing;
        let mut memory = memory;
        let Some(disk) = disk else {
            // Not reached (the image makes no disk device without a disk);
            // should it be, every request fails rather than hangs.
            return self
                .device
                .process(ram, &mut memory, &mut Unavailable(&self.served));
        };
        let mut volume = OnDisk {
            disk,
            served: &self.served,
        };
        self.device.process(ram, &mut memory, &mut volume)
    }
}
