//! The virtio-blk side of this guest's driver: the request types and
//! statuses (virtio 1.2 §5.2.6) and a disk, queue 0 of its device, over
//! the runtime's hostile-capable virtio-mmio driver (`guest_rt::virtio`).

use core::ops::{Deref, DerefMut};

pub use guest_rt::virtio::*;
use guest_rt::why;

const VIRTIO_BLK: u32 = 2;

// Feature bits.
pub const F_RO: u64 = 1 << 5;
pub const F_FLUSH: u64 = 1 << 9;

// Requests and their status (virtio 1.2 §5.2.6).
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

pub const SECTOR: u64 = 512;

/// One virtio-mmio virtio-blk device and its queue 0.
pub struct Disk {
    pub q: Virtq,
    pub capacity: u64,
    pub features: u64,
}

impl Deref for Disk {
    type Target = Virtq;
    fn deref(&self) -> &Virtq {
        &self.q
    }
}

impl DerefMut for Disk {
    fn deref_mut(&mut self) -> &mut Virtq {
        &mut self.q
    }
}

impl Disk {
    /// Device `index` of the ABI's virtio-mmio windows, its rings at
    /// `rings`.
    pub fn new(index: usize, rings: u64) -> Self {
        Disk {
            q: Virtq::new(index, 0, rings),
            capacity: 0,
            features: 0,
        }
    }

    /// Reset, ACKNOWLEDGE and DRIVER, on a block device.
    pub fn begin(&mut self) -> Res<()> {
        self.q.begin(VIRTIO_BLK)
    }

    /// The whole bring-up (virtio 1.2 §3.1.1, §4.2.3.2): status sequence,
    /// VERSION_1 (and FLUSH, RO if offered), queue 0 of at most `want`
    /// entries, DRIVER_OK, then the capacity.
    pub fn init(&mut self, mem: Mem, want: u16) -> Res<()> {
        self.begin()?;
        self.features = self.device_features();
        if self.features & F_VERSION_1 == 0 {
            return Err(why!("VERSION_1 not offered: {:#x}", self.features));
        }
        self.set_driver_features(F_VERSION_1 | self.features & (F_FLUSH | F_RO));
        self.set(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        if self.status() & S_FEATURES_OK == 0 {
            return Err(why!(
                "FEATURES_OK did not stick: status {:#x}",
                self.status()
            ));
        }
        self.q.init_queue(mem, want)?;
        self.set(
            STATUS,
            S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
        );
        self.capacity = self.read_capacity();
        let status = self.status();
        if status != S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK {
            return Err(why!("status {status:#x} after DRIVER_OK"));
        }
        Ok(())
    }

    /// virtio_blk_config.capacity, read until the generation is stable.
    fn read_capacity(&self) -> u64 {
        loop {
            let before = self.reg(CONFIG_GENERATION);
            let low = self.reg(CONFIG);
            let high = self.reg(CONFIG + 4);
            if self.reg(CONFIG_GENERATION) == before {
                return u64::from(high) << 32 | u64::from(low);
            }
        }
    }
}
