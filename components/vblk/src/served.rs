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

    fn reset(&mut self) {
        self.device.reset();
    }

    fn work(&mut self, backing: Backing<'_>) -> Signal {
        let Backing {
            ram, memory, disk, ..
        } = backing;
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{vec, vec::Vec};
    use disk_layout::{Run, Volume};
    use proptest::prelude::*;

    /// A disk in memory, each sector filled with its number's low byte.
    struct Disk(Vec<u8>);

    impl Disk {
        fn new(sectors: usize) -> Self {
            Disk((0..sectors * SECTOR).map(|i| (i / SECTOR) as u8).collect())
        }
    }

    impl BlockDevice for Disk {
        fn sectors(&self) -> u64 {
            (self.0.len() / SECTOR) as u64
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
            hv::disk::check_request(self.sectors(), sector, buf.len())?;
            let at = sector as usize * SECTOR;
            buf.copy_from_slice(&self.0[at..at + buf.len()]);
            Ok(())
        }
        fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
            hv::disk::check_request(self.sectors(), sector, buf.len())?;
            let at = sector as usize * SECTOR;
            self.0[at..at + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), DiskError> {
            Ok(())
        }
    }

    /// Volume sectors 0..4 on disk 100..104, 4..6 on disk 200..202.
    fn two_segments(read_only: bool) -> Served {
        let runs = [
            Run {
                disk_sector: 100,
                sectors: 4,
            },
            Run {
                disk_sector: 200,
                sectors: 2,
            },
        ];
        Served {
            source: "lvm:vg0/web".into(),
            volume: Volume::from_runs(runs).unwrap(),
            read_only,
        }
    }

    #[test]
    fn requests_follow_the_segments() {
        let mut disk = Disk::new(256);
        let served = two_segments(false);
        let mut on = OnDisk {
            disk: &mut disk,
            served: &served,
        };
        assert_eq!(on.sectors(), 6);
        on.write(3, &[0xee; 3 * SECTOR]).unwrap();
        let mut buf = vec![0; 6 * SECTOR];
        on.read(0, &mut buf).unwrap();
        let firsts: Vec<u8> = buf.chunks(SECTOR).map(|s| s[0]).collect();
        assert_eq!(firsts, [100, 101, 102, 0xee, 0xee, 0xee]);
        assert_eq!(
            on.read(5, &mut buf[..2 * SECTOR]),
            Err(BackendError::OutOfRange)
        );
        assert_eq!(
            on.read(u64::MAX, &mut buf[..SECTOR]),
            Err(BackendError::OutOfRange)
        );
        assert_eq!(on.write(0, &buf[..100]), Err(BackendError::OutOfRange));
        let written: Vec<usize> = (0..256)
            .filter(|&s| disk.0[s * SECTOR] != s as u8)
            .collect();
        assert_eq!(written, [103, 200, 201]);
    }

    #[test]
    fn a_read_only_volume_refuses_writes() {
        let mut disk = Disk::new(256);
        let served = two_segments(true);
        let mut on = OnDisk {
            disk: &mut disk,
            served: &served,
        };
        assert!(on.read_only());
        assert_eq!(on.write(0, &[1; SECTOR]), Err(BackendError::ReadOnly));
        assert_eq!(disk.0[100 * SECTOR], 100);
    }

    #[test]
    fn a_device_needs_its_volume() {
        let setup = |volume| Setup {
            vm_name: "a",
            vm_index: 0,
            intid: 48,
            volume,
            mac: None,
        };
        assert!(VolumeDevice::new(setup(None)).is_err());
        let device = VolumeDevice::new(setup(Some(two_segments(true)))).unwrap();
        assert_eq!(device.irq(), Some(48));
        assert_eq!(device.device().device_features() & crate::F_RO, crate::F_RO);
        assert_eq!(
            &serial("lvm:vg0/a-very-long-name")[..],
            b"lvm:vg0/a-very-long-"
        );
    }

    proptest! {
        /// Whatever a guest asks, nothing outside its volume's extents is
        /// read into its buffer or written.
        #[test]
        fn no_request_leaves_the_volume(
            sector in prop_oneof![0u64..8, Just(u64::MAX - 1), any::<u64>()],
            sectors in 1usize..8,
            write in any::<bool>(),
        ) {
            let mut disk = Disk::new(256);
            let served = two_segments(false);
            let mut on = OnDisk { disk: &mut disk, served: &served };
            let mut buf = vec![0xaa; sectors * SECTOR];
            let result = if write { on.write(sector, &buf) } else { on.read(sector, &mut buf) };
            let inside = sector.checked_add(sectors as u64).is_some_and(|end| end <= 6);
            prop_assert_eq!(result.is_ok(), inside);
            for s in 0..256usize {
                let ours = (100..104).contains(&s) || (200..202).contains(&s);
                if !ours {
                    prop_assert!(disk.0[s * SECTOR..(s + 1) * SECTOR].iter().all(|&b| b == s as u8));
                }
            }
            if !write && inside {
                for (i, chunk) in buf.chunks(SECTOR).enumerate() {
                    let v = sector as usize + i;
                    let on_disk = if v < 4 { 100 + v } else { 200 + v - 4 };
                    prop_assert_eq!(chunk[0], on_disk as u8);
                }
            }
        }
    }
}
