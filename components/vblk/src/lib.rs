//! An emulated virtio-blk device over virtio-mmio version 2 (virtio 1.2
//! §4.2.2, §5.2), for Linux's `virtio_mmio` and `virtio_blk` drivers. The
//! hypervisor serves the disk itself from a [`BlockBackend`] (no dom0).
//!
//! Wiring (the core's job, not this crate's): the device sits in a VM's
//! device table as an [`MmioDevice`]; its registers only record that the
//! guest wrote QueueNotify ([`VirtioBlk::notified`]), because an MMIO
//! access gets no guest memory. After such a write the core has
//! [`VirtioBlk::process`] called (through `MmioDevice::work`, on the
//! notifying CPU, without the hypervisor's lock) with the VM's
//! [`GuestRam`], guest memory and the volume's [`BlockBackend`], and
//! applies the returned [`Signal`] to [`MmioDevice::irq`] as it does a
//! write's.
//!
//! The virtio-mmio transport and the split virtqueue are `virtio-dev`'s,
//! shared with the virtio-net device (`vnet`).
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
use virtio_dev::transport::{read_config, Event, Transport};

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

/// The features offered: VERSION_1, FLUSH, SEG_MAX, and RO for a
/// read-only volume.
fn features(read_only: bool) -> u64 {
    let ro = if read_only { F_RO } else { 0 };
    F_VERSION_1 | F_FLUSH | F_SEG_MAX | ro
}

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
    /// The registers' state, with the one queue.
    transport: Transport<1>,
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
            transport: Transport::new(VIRTIO_BLK_ID, features(read_only)),
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
        self.transport.features()
    }

    /// The guest wrote QueueNotify since the last [`VirtioBlk::process`].
    pub fn notified(&self) -> bool {
        self.notified
    }

    pub fn status(&self) -> u32 {
        self.transport.status()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The interrupt line.
    pub fn line(&self) -> bool {
        self.transport.line()
    }

    fn signal(&self) -> Signal {
        self.transport.signal()
    }

    fn running(&self) -> bool {
        self.transport.running() && self.transport.queue(0).config.ready
    }

    fn needs_reset(&mut self) -> Signal {
        self.transport.needs_reset()
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut config = [0u8; CONFIG_LEN];
        config[..8].copy_from_slice(&self.capacity.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        config
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
        let Some(areas) = self.transport.queue(0).config.areas(ram) else {
            return self.needs_reset();
        };
        // avail.idx once; then only the entries it covered.
        let Ok(avail) = areas.avail_idx(ram, mem) else {
            return self.needs_reset();
        };
        let pending = avail.wrapping_sub(self.transport.queue(0).last_avail);
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
            let queue = self.transport.queue_mut(0);
            let Ok(head) = areas.avail_head(ram, mem, queue.last_avail) else {
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
                .put_used(ram, mem, queue.used_idx, u32::from(head), len)
                .is_err()
            {
                return self.needs_reset();
            }
            queue.last_avail = queue.last_avail.wrapping_add(1);
            queue.used_idx = queue.used_idx.wrapping_add(1);
            self.stats.completed += 1;
        }
        if pending > 0 {
            // Platform: release barrier before this store (see publish_used).
            let used_idx = self.transport.queue(0).used_idx;
            if areas.publish_used(ram, mem, used_idx).is_err() {
                return self.needs_reset();
            }
            self.transport.used_buffers();
        }
        self.signal()
    }
}

impl MmioDevice for VirtioBlk {
    fn read(&mut self, _vcpu: usize, offset: u64, width: u8) -> u64 {
        if offset >= CONFIG {
            return read_config(&self.config(), offset, width);
        }
        if width != 4 {
            return 0;
        }
        u64::from(self.transport.read(offset))
    }

    fn write(&mut self, _vcpu: usize, offset: u64, width: u8, value: u64) -> Signal {
        if width != 4 {
            // Includes the config space: nothing in it is writable.
            return self.signal();
        }
        match self.transport.write(offset, value as u32) {
            Event::Notify(_) => self.notified = true,
            // Back to the state after power-on; the counters stay.
            Event::Reset => self.notified = false,
            Event::None => {}
        }
        self.signal()
    }

    fn irq(&self) -> Option<u32> {
        Some(self.intid)
    }

    fn level(&self) -> Option<bool> {
        Some(self.line())
    }

    fn reset(&mut self) {
        self.transport.reset();
        self.notified = false;
    }
}

#[cfg(test)]
mod tests;
