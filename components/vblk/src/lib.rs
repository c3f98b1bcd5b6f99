//! An emulated virtio-blk device over virtio-mmio version 2 (virtio 1.2
//! §4.2.2, §5.2), for Linux's `virtio_mmio` and `virtio_blk` drivers. The
//! hypervisor serves the disk itself from a [`BlockBackend`] (no dom0).
//!
//! Wiring (the core's job, not this crate's): the device sits in a VM's
//! device table as an [`MmioDevice`]; its registers only record that the
//! guest wrote QueueNotify ([`VirtioBlk::notified`]), because an MMIO
//! access gets no guest memory. After such a write, still in the trap, the
//! core calls [`VirtioBlk::process`] with the VM's [`GuestRam`], the
//! platform's [`GuestMemory`] and the volume's [`BlockBackend`], and
//! applies the returned [`Signal`] to [`MmioDevice::irq`] as it does a
//! write's; since the table holds `dyn MmioDevice`, that needs either a
//! typed list of block devices beside it or a trait hook for "has work".
//!
//! Choices, and why:
//! - Features offered: VERSION_1, FLUSH, SEG_MAX (so Linux sends up to
//!   `QUEUE_NUM_MAX - 2` data segments per request instead of one), and RO
//!   for a read-only volume. Not offered, so refused at FEATURES_OK:
//!   INDIRECT_DESC (a descriptor flagged INDIRECT ends its chain as an
//!   error), EVENT_IDX (every batch interrupts), DISCARD, WRITE_ZEROES,
//!   config write-back, multiqueue.
//! - Requests are served synchronously in `process`: every chain the guest
//!   made available is completed, in order, before it returns. A chain
//!   that is malformed (INDIRECT, buffer outside RAM) or a request that is
//!   wrong (direction, lengths, range) still goes in the used ring, with
//!   status IOERR if its last descriptor has a device-writable byte for
//!   it, else with length 0; so does a chain with no end (an index past
//!   the queue, a loop), with length 0: nothing is ever left hanging.
//! - The interrupt is a level line, `InterruptStatus != 0`, as QEMU's
//!   virtio-mmio model drives it; the guest's InterruptACK lowers it, and
//!   a completion the guest has not acknowledged keeps it high, so none is
//!   lost between the handler's read and its ACK. The guest's device tree
//!   should say level-high (QEMU's own says edge).
//! - Sectors are 512 bytes and relative to the volume; the range check is
//!   against the volume's own size, with checked arithmetic.
//! - A driver that corrupts its queue beyond repair (rings outside RAM,
//!   avail.idx more than a queue ahead) gets DEVICE_NEEDS_RESET and a
//!   configuration-change interrupt, and nothing more is processed.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod backend;
pub mod blk;
pub mod served;
/// The split virtqueue, shared with the other virtio devices.
pub use virtio_dev::queue;

pub use backend::{BackendError, BlockBackend, MemDisk, SECTOR};
pub use queue::{ChainError, QueueConfig, QUEUE_NUM_MAX};

use blk::{Volume, BOUNCE, ID_BYTES};
use hv::device::{MmioDevice, Signal};
use hv::memory::{GuestMemory, GuestRam};
use queue::Chain;

/// This device as the component table names it (`vblk::Component`).
pub type Component = served::VolumeDevice;

// The virtio-mmio registers and bits every device shares.
pub use virtio_dev::{
    CONFIG, CONFIG_GENERATION, DEVICE_FEATURES, DEVICE_FEATURES_SEL, DEVICE_ID, DRIVER_FEATURES,
    DRIVER_FEATURES_SEL, F_VERSION_1, INTERRUPT_ACK, INTERRUPT_STATUS, INT_CONFIG, INT_USED, MAGIC,
    MAGIC_VALUE, QUEUE_DESC_HIGH, QUEUE_DESC_LOW, QUEUE_DEVICE_HIGH, QUEUE_DEVICE_LOW,
    QUEUE_DRIVER_HIGH, QUEUE_DRIVER_LOW, QUEUE_NOTIFY, QUEUE_NUM, QUEUE_NUM_MAX_REG, QUEUE_READY,
    QUEUE_SEL, STATUS, S_ACKNOWLEDGE, S_DRIVER, S_DRIVER_OK, S_FAILED, S_FEATURES_OK,
    S_NEEDS_RESET, VENDOR, VENDOR_ID, VERSION, WINDOW,
};

pub const VIRTIO_BLK_ID: u32 = 2;

// Feature bits.
pub const F_SEG_MAX: u64 = 1 << 2;
pub const F_RO: u64 = 1 << 5;
pub const F_FLUSH: u64 = 1 << 9;

/// virtio_blk_config as far as it is defined here: capacity (u64 at 0),
/// size_max (8), seg_max (12), geometry (16), blk_size (20); the rest of
/// the window reads as zero.
const CONFIG_LEN: usize = 24;
const SEG_MAX: u32 = QUEUE_NUM_MAX as u32 - 2;

/// Counters for the hypervisor's own log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Chains put in the used ring.
    pub completed: u64,
    /// Of those, chains refused (completed with IOERR, or with length 0
    /// if they had no end or no status byte).
    pub bad_chains: u64,
    /// The last such chain's fault.
    pub last_fault: Option<ChainError>,
}

/// One VM's virtio-blk device.
pub struct VirtioBlk {
    intid: u32,
    capacity: u64,
    read_only: bool,
    serial: [u8; ID_BYTES],
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queue: QueueConfig,
    /// The next avail ring position to take, and used.idx as written.
    last_avail: u16,
    used_idx: u16,
    interrupt_status: u32,
    notified: bool,
    stats: Stats,
    chain: Chain,
    /// On the heap: too big for a hypervisor stack.
    bounce: alloc::boxed::Box<[u8; BOUNCE]>,
}

impl VirtioBlk {
    /// A device for a volume of `sectors` 512-byte sectors, interrupting on
    /// SPI `intid`; `serial` is what GET_ID answers.
    pub fn new(intid: u32, sectors: u64, read_only: bool, serial: [u8; ID_BYTES]) -> Self {
        VirtioBlk {
            intid,
            capacity: sectors,
            read_only,
            serial,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queue: QueueConfig::default(),
            last_avail: 0,
            used_idx: 0,
            interrupt_status: 0,
            notified: false,
            stats: Stats::default(),
            chain: Chain::default(),
            bounce: alloc::vec![0u8; BOUNCE]
                .into_boxed_slice()
                .try_into()
                .expect("BOUNCE bytes"),
        }
    }

    /// A device for `disk`, with its size and read-only-ness.
    pub fn for_backend(intid: u32, disk: &impl BlockBackend, serial: [u8; ID_BYTES]) -> Self {
        Self::new(intid, disk.sectors(), disk.read_only(), serial)
    }

    /// The features offered.
    pub fn device_features(&self) -> u64 {
        let ro = if self.read_only { F_RO } else { 0 };
        F_VERSION_1 | F_FLUSH | F_SEG_MAX | ro
    }

    /// The guest wrote QueueNotify since the last [`VirtioBlk::process`].
    pub fn notified(&self) -> bool {
        self.notified
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The interrupt line.
    pub fn line(&self) -> bool {
        self.interrupt_status != 0
    }

    fn signal(&self) -> Signal {
        Signal {
            level: Some(self.line()),
            ..Signal::default()
        }
    }

    /// Back to the state after power-on (Status written 0).
    fn reset(&mut self) {
        *self = VirtioBlk {
            stats: self.stats,
            ..VirtioBlk::new(self.intid, self.capacity, self.read_only, self.serial)
        };
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut value = value & 0xff;
        // FEATURES_OK only for a subset of what was offered, with VERSION_1
        // (a version 2 transport has no legacy interface); the driver reads
        // Status back and gives up if it did not stick.
        if value & S_FEATURES_OK != 0 && self.status & S_FEATURES_OK == 0 {
            let f = self.driver_features;
            if f & !self.device_features() != 0 || f & F_VERSION_1 == 0 {
                value &= !S_FEATURES_OK;
            }
        }
        // Only a reset clears status bits; NEEDS_RESET is the device's.
        self.status |= value & !S_NEEDS_RESET;
    }

    fn running(&self) -> bool {
        let s = self.status;
        s & (S_DRIVER_OK | S_FEATURES_OK) == S_DRIVER_OK | S_FEATURES_OK
            && s & (S_FAILED | S_NEEDS_RESET) == 0
            && self.queue.ready
    }

    fn needs_reset(&mut self) -> Signal {
        self.status |= S_NEEDS_RESET;
        self.interrupt_status |= INT_CONFIG;
        self.signal()
    }

    fn config_byte(&self, at: usize) -> u8 {
        let mut config = [0u8; CONFIG_LEN];
        config[..8].copy_from_slice(&self.capacity.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        config.get(at).copied().unwrap_or(0)
    }

    /// Serves every request the guest made available since the last call,
    /// completing each exactly once, and says what the line is now.
    pub fn process(
        &mut self,
        ram: &GuestRam,
        mem: &mut impl GuestMemory,
        disk: &mut impl BlockBackend,
    ) -> Signal {
        self.notified = false;
        if !self.running() {
            return self.signal();
        }
        let Some(areas) = self.queue.areas(ram) else {
            return self.needs_reset();
        };
        // avail.idx once; then only the entries it covered.
        let Ok(avail) = areas.avail_idx(ram, mem) else {
            return self.needs_reset();
        };
        let pending = avail.wrapping_sub(self.last_avail);
        if pending > areas.num() {
            return self.needs_reset();
        }
        let mut volume = Volume {
            // The volume's size, whichever is smaller if they disagree.
            capacity: self.capacity.min(disk.sectors()),
            read_only: self.read_only || disk.read_only(),
            disk,
            serial: &self.serial,
            bounce: &mut self.bounce,
        };
        for _ in 0..pending {
            let Ok(head) = areas.avail_head(ram, mem, self.last_avail) else {
                return self.needs_reset();
            };
            let walked = areas.walk(ram, mem, head, &mut self.chain);
            if let Some(fault) = walked.err().or(self.chain.fault) {
                self.stats.bad_chains += 1;
                self.stats.last_fault = Some(fault);
            }
            let len = match walked {
                Ok(()) => blk::serve(ram, mem, &mut self.chain, &mut volume),
                // No end, so no status byte: length 0.
                Err(_) => 0,
            };
            // The head as the guest gave it, even out of range: the driver
            // must learn the chain is done.
            if areas
                .put_used(ram, mem, self.used_idx, u32::from(head), len)
                .is_err()
            {
                return self.needs_reset();
            }
            self.last_avail = self.last_avail.wrapping_add(1);
            self.used_idx = self.used_idx.wrapping_add(1);
            self.stats.completed += 1;
        }
        if pending > 0 {
            // Platform: release barrier before this store (see publish_used).
            if areas.publish_used(ram, mem, self.used_idx).is_err() {
                return self.needs_reset();
            }
            self.interrupt_status |= INT_USED;
        }
        self.signal()
    }
}

impl MmioDevice for VirtioBlk {
    fn read(&mut self, _vcpu: usize, offset: u64, width: u8) -> u64 {
        if offset >= CONFIG {
            // Any width: Linux reads config fields as bytes, halves, words.
            let Some(base) = offset.checked_sub(CONFIG).map(|o| o as usize) else {
                return 0;
            };
            if !matches!(width, 1 | 2 | 4 | 8) || offset >= WINDOW {
                return 0;
            }
            let mut bytes = [0u8; 8];
            for (i, b) in bytes.iter_mut().take(usize::from(width)).enumerate() {
                *b = self.config_byte(base.saturating_add(i));
            }
            return u64::from_le_bytes(bytes);
        }
        if width != 4 {
            return 0;
        }
        let q0 = self.queue_sel == 0;
        let value = match offset {
            MAGIC_VALUE => MAGIC,
            VERSION => 2,
            DEVICE_ID => VIRTIO_BLK_ID,
            VENDOR_ID => VENDOR,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features() as u32,
                1 => (self.device_features() >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX_REG if q0 => u32::from(QUEUE_NUM_MAX),
            QUEUE_NUM if q0 => u32::from(self.queue.num),
            QUEUE_READY if q0 => u32::from(self.queue.ready),
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            QUEUE_DESC_LOW if q0 => self.queue.desc as u32,
            QUEUE_DESC_HIGH if q0 => (self.queue.desc >> 32) as u32,
            QUEUE_DRIVER_LOW if q0 => self.queue.driver as u32,
            QUEUE_DRIVER_HIGH if q0 => (self.queue.driver >> 32) as u32,
            QUEUE_DEVICE_LOW if q0 => self.queue.device as u32,
            QUEUE_DEVICE_HIGH if q0 => (self.queue.device >> 32) as u32,
            // The config space never changes.
            CONFIG_GENERATION => 0,
            // Write-only registers, other queues, shared memory, the rest.
            _ => 0,
        };
        u64::from(value)
    }

    fn write(&mut self, _vcpu: usize, offset: u64, width: u8, value: u64) -> Signal {
        if width != 4 {
            // Includes the config space: nothing in it is writable.
            return self.signal();
        }
        let value = value as u32;
        // Queue 0's setup, only while it is not live.
        let setup = self.queue_sel == 0 && !self.queue.ready;
        let feature_setup = self.status & S_FEATURES_OK == 0;
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = value,
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            DRIVER_FEATURES if feature_setup => match self.driver_features_sel {
                0 => {
                    self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value)
                }
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | u64::from(value) << 32
                }
                _ => {}
            },
            QUEUE_SEL => self.queue_sel = value,
            QUEUE_NUM if setup => self.queue.num = value.min(u32::from(u16::MAX)) as u16,
            QUEUE_READY if self.queue_sel == 0 => {
                if value & 1 == 0 {
                    self.queue.ready = false;
                } else if !self.queue.ready && QueueConfig::valid_size(self.queue.num) {
                    // A new ring starts at index 0 on both sides.
                    self.queue.ready = true;
                    self.last_avail = 0;
                    self.used_idx = 0;
                }
            }
            QUEUE_NOTIFY if value == 0 => self.notified = true,
            INTERRUPT_ACK => self.interrupt_status &= !value,
            STATUS => self.set_status(value),
            QUEUE_DESC_LOW if setup => set_low(&mut self.queue.desc, value),
            QUEUE_DESC_HIGH if setup => set_high(&mut self.queue.desc, value),
            QUEUE_DRIVER_LOW if setup => set_low(&mut self.queue.driver, value),
            QUEUE_DRIVER_HIGH if setup => set_high(&mut self.queue.driver, value),
            QUEUE_DEVICE_LOW if setup => set_low(&mut self.queue.device, value),
            QUEUE_DEVICE_HIGH if setup => set_high(&mut self.queue.device, value),
            _ => {}
        }
        self.signal()
    }

    fn irq(&self) -> Option<u32> {
        Some(self.intid)
    }

    fn level(&self) -> Option<bool> {
        Some(self.line())
    }
}

fn set_low(reg: &mut u64, value: u32) {
    *reg = (*reg & !0xffff_ffff) | u64::from(value);
}

fn set_high(reg: &mut u64, value: u32) {
    *reg = (*reg & 0xffff_ffff) | u64::from(value) << 32;
}

#[cfg(test)]
mod tests;
