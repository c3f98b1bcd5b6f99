//! An emulated virtio-net device over virtio-mmio version 2 (virtio 1.2
//! §4.2.2, §5.1), for Linux's `virtio_mmio` and `virtio_net` drivers. The
//! hypervisor carries the frames itself (no dom0): what the guest sends
//! goes to the core's switch through a [`FrameSink`], what the switch
//! delivers comes in through [`MmioDevice::receive`].
//!
//! Wiring (the core's job): a QueueNotify of the transmit queue returns
//! [`Signal::work`]; the core then calls [`MmioDevice::work`] with the
//! VM's RAM and the switch as `backing.frames`, and delivers what the
//! switch holds with `receive` on the destination devices.
//!
//! Choices, and why:
//! - Features offered: VERSION_1, MAC (the composer assigns it) and
//!   STATUS (the link is always up). Not offered, so refused at
//!   FEATURES_OK: checksum offload and GSO (a frame is sent as the guest
//!   wrote it, and the header's contents are ignored), MRG_RXBUF (each
//!   frame fits one receive chain: Linux then posts buffers of a whole
//!   frame), the control queue, multiqueue, EVENT_IDX (every batch
//!   interrupts), INDIRECT_DESC (a descriptor flagged INDIRECT makes its
//!   chain malformed).
//! - The header is `virtio_net_hdr` with `num_buffers`: 12 bytes with
//!   VERSION_1. Transmit: the chain must hold it and an Ethernet header,
//!   and at most [`MAX_FRAME`] bytes of frame after it. Receive: a zero
//!   header with `num_buffers = 1`, then the frame.
//! - Transmit chains are taken in order and copied out once, header and
//!   frame, into the device's own buffer, then given to the switch. A
//!   chain that is malformed (no end, INDIRECT, outside RAM, a
//!   device-writable buffer), short or oversized is completed with length
//!   0 and counted: nothing is ever left hanging. If the switch is full,
//!   that chain and those after it stay available and `work` asks to be
//!   called again ([`Signal::work`]) once the core has drained the switch.
//! - A received frame goes in the next receive chain, or is dropped and
//!   counted (no chain, device not running, frame too big). A chain that
//!   is malformed (as above, with a device-readable buffer for the wrong
//!   direction) or too small for the header and frame is completed with
//!   length 0, and the frame dropped.
//! - The interrupt is a level line, `InterruptStatus != 0`, as vblk's.
//! - A driver that corrupts a queue beyond repair (rings outside RAM,
//!   avail.idx more than a queue ahead) gets DEVICE_NEEDS_RESET and a
//!   configuration-change interrupt, and nothing more is processed.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

use hv::device::{Backing, FrameSink, MmioDevice, Setup, SetupError, Signal, MAX_FRAME};
use hv::memory::{GuestMemory, GuestRam};
use virtio_dev::queue::{Areas, Chain, ChainError, Cursor};
use virtio_dev::transport::{read_config, Event, Transport};

// The virtio-mmio registers and bits every device shares.
pub use virtio_dev::{
    CONFIG, CONFIG_GENERATION, DEVICE_FEATURES, DEVICE_FEATURES_SEL, DEVICE_ID, DRIVER_FEATURES,
    DRIVER_FEATURES_SEL, F_VERSION_1, INTERRUPT_ACK, INTERRUPT_STATUS, INT_CONFIG, INT_USED, MAGIC,
    MAGIC_VALUE, QUEUE_DESC_HIGH, QUEUE_DESC_LOW, QUEUE_DEVICE_HIGH, QUEUE_DEVICE_LOW,
    QUEUE_DRIVER_HIGH, QUEUE_DRIVER_LOW, QUEUE_NOTIFY, QUEUE_NUM, QUEUE_NUM_MAX, QUEUE_NUM_MAX_REG,
    QUEUE_READY, QUEUE_SEL, STATUS, S_ACKNOWLEDGE, S_DRIVER, S_DRIVER_OK, S_FAILED, S_FEATURES_OK,
    S_NEEDS_RESET, VENDOR, VENDOR_ID, VERSION, WINDOW,
};

/// This device as the component table names it (`vnet::Component`).
pub type Component = VirtioNet;

pub const VIRTIO_NET_ID: u32 = 1;

// Feature bits.
pub const F_MAC: u64 = 1 << 5;
pub const F_STATUS: u64 = 1 << 16;
/// Everything offered.
pub const FEATURES: u64 = F_VERSION_1 | F_MAC | F_STATUS;

/// virtio_net_config.status.
pub const LINK_UP: u16 = 1;

/// The queues: receiveq1 and transmitq1.
pub const RX: usize = 0;
pub const TX: usize = 1;
const QUEUES: usize = 2;

/// `virtio_net_hdr` with `num_buffers`, as VERSION_1 makes it.
pub const HEADER: usize = 12;
/// The bytes of a transmitted frame at least: its Ethernet header.
pub const MIN_FRAME: usize = 14;
/// Where `num_buffers` is in the header.
const NUM_BUFFERS: usize = 10;

/// Counters for the hypervisor's own log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames the switch took from this guest.
    pub sent: u64,
    /// Frames put in this guest's receive buffers.
    pub received: u64,
    /// Transmit chains completed without sending, by reason: shorter than
    /// header and Ethernet header; a frame over [`MAX_FRAME`]; no switch
    /// to take it; malformed.
    pub tx_short: u64,
    pub tx_oversized: u64,
    pub tx_no_network: u64,
    pub tx_bad_chains: u64,
    /// Times the switch was full: the chain was left available.
    pub tx_switch_full: u64,
    /// Frames dropped on receive, by reason: the device not running (or
    /// its receive queue not ready); no receive buffer; a buffer too
    /// small; a frame over [`MAX_FRAME`]; a malformed chain.
    pub rx_not_running: u64,
    pub rx_no_buffer: u64,
    pub rx_too_small: u64,
    pub rx_oversized: u64,
    pub rx_bad_chains: u64,
    /// The last malformed chain's fault, either queue.
    pub last_fault: Option<Fault>,
}

/// Why a chain was malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Chain(ChainError),
    /// A device-writable buffer in a transmit chain, or a device-readable
    /// one in a receive chain.
    WrongDirection,
}

/// One VM's virtio-net device.
pub struct VirtioNet {
    intid: u32,
    mac: [u8; 6],
    transport: Transport<QUEUES>,
    stats: Stats,
    chain: Chain,
    /// A transmitted chain's header and frame, copied out of the guest.
    frame: [u8; HEADER + MAX_FRAME],
}

impl VirtioNet {
    /// The device of `setup`, which must give its MAC address.
    pub fn new(setup: Setup) -> Result<Self, SetupError> {
        let mac = setup.mac.ok_or_else(|| {
            alloc::string::String::from("a virtio-net device needs a MAC address")
        })?;
        Ok(Self::with_mac(setup.intid, mac))
    }

    /// A device with address `mac`, interrupting on SPI `intid`.
    pub fn with_mac(intid: u32, mac: [u8; 6]) -> Self {
        VirtioNet {
            intid,
            mac,
            transport: Transport::new(VIRTIO_NET_ID, FEATURES),
            stats: Stats::default(),
            chain: Chain::default(),
            frame: [0; HEADER + MAX_FRAME],
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn status(&self) -> u32 {
        self.transport.status()
    }

    /// The interrupt line.
    pub fn line(&self) -> bool {
        self.transport.line()
    }

    /// Queue `index` may be used: the driver is done and set it up.
    fn ready(&self, index: usize) -> bool {
        self.transport.running() && self.transport.queue(index).config.ready
    }

    /// virtio_net_config: mac, then status.
    fn config(&self) -> [u8; 8] {
        let mut config = [0; 8];
        config[..6].copy_from_slice(&self.mac);
        config[6..].copy_from_slice(&LINK_UP.to_le_bytes());
        config
    }

    fn bad_chain(&mut self, fault: Fault) {
        self.stats.last_fault = Some(fault);
    }

    /// Queue `index`'s areas and how many chains the driver made available
    /// since the last taken (avail.idx read once), or `None` if the queue
    /// is corrupt beyond repair.
    fn pending(
        &self,
        index: usize,
        ram: &GuestRam,
        mem: &impl GuestMemory,
    ) -> Option<(Areas, u16)> {
        let queue = self.transport.queue(index);
        let areas = queue.config.areas(ram)?;
        let avail = areas.avail_idx(ram, mem).ok()?;
        let pending = avail.wrapping_sub(queue.last_avail);
        (pending <= areas.num()).then_some((areas, pending))
    }

    /// Puts `head` in queue `index`'s used ring with `len` and moves past
    /// it in the avail ring; `false` if the ring could not be written.
    fn complete(
        &mut self,
        index: usize,
        areas: &Areas,
        ram: &GuestRam,
        mem: &mut impl GuestMemory,
        head: u16,
        len: u32,
    ) -> bool {
        let queue = self.transport.queue_mut(index);
        // The head as the guest gave it, even out of range: the driver
        // must learn the chain is done.
        if areas
            .put_used(ram, mem, queue.used_idx, u32::from(head), len)
            .is_err()
        {
            return false;
        }
        queue.last_avail = queue.last_avail.wrapping_add(1);
        queue.used_idx = queue.used_idx.wrapping_add(1);
        true
    }

    /// Moves used.idx past what was completed and raises the interrupt.
    fn publish(
        &mut self,
        index: usize,
        areas: &Areas,
        ram: &GuestRam,
        mem: &mut impl GuestMemory,
    ) -> bool {
        let used = self.transport.queue(index).used_idx;
        // Platform: release barrier before this store (see publish_used).
        if areas.publish_used(ram, mem, used).is_err() {
            return false;
        }
        self.transport.used_buffers();
        true
    }

    /// The walked chain's fault, if it is malformed for a queue whose
    /// buffers are all device-writable (`writable`) or all readable.
    fn chain_fault(&self, walked: Result<(), ChainError>, writable: bool) -> Option<Fault> {
        if let Some(fault) = walked.err().or(self.chain.fault) {
            return Some(Fault::Chain(fault));
        }
        if self.chain.segments.iter().any(|s| s.writable != writable) {
            return Some(Fault::WrongDirection);
        }
        None
    }

    /// Sends every frame the guest made available on the transmit queue,
    /// in order, until the switch is full.
    pub fn transmit(
        &mut self,
        ram: &GuestRam,
        mem: &mut impl GuestMemory,
        mut frames: Option<&mut dyn FrameSink>,
    ) -> Signal {
        if !self.ready(TX) {
            return self.transport.signal();
        }
        let Some((areas, pending)) = self.pending(TX, ram, mem) else {
            return self.transport.needs_reset();
        };
        let mut completed = false;
        let mut switch_full = false;
        for _ in 0..pending {
            let last_avail = self.transport.queue(TX).last_avail;
            let Ok(head) = areas.avail_head(ram, mem, last_avail) else {
                return self.transport.needs_reset();
            };
            let walked = areas.walk(ram, mem, head, &mut self.chain);
            let total: u64 = self.chain.segments.iter().map(|s| s.len).sum();
            if let Some(fault) = self.chain_fault(walked, false) {
                self.bad_chain(fault);
                self.stats.tx_bad_chains += 1;
            } else if total < (HEADER + MIN_FRAME) as u64 {
                self.stats.tx_short += 1;
            } else if total > (HEADER + MAX_FRAME) as u64 {
                self.stats.tx_oversized += 1;
            } else {
                // Header and frame copied out once; the header is ignored
                // (no offload was negotiated).
                let bytes = &mut self.frame[..total as usize];
                if !Cursor::new(&self.chain.segments).read(ram, mem, bytes) {
                    // Not reached: the walk checked every buffer.
                    self.stats.tx_bad_chains += 1;
                } else if let Some(sink) = frames.as_deref_mut() {
                    if !sink.send(&bytes[HEADER..]) {
                        // Left available, read again on the next call.
                        self.stats.tx_switch_full += 1;
                        switch_full = true;
                        break;
                    }
                    self.stats.sent += 1;
                } else {
                    self.stats.tx_no_network += 1;
                }
            }
            if !self.complete(TX, &areas, ram, mem, head, 0) {
                return self.transport.needs_reset();
            }
            completed = true;
        }
        if completed && !self.publish(TX, &areas, ram, mem) {
            return self.transport.needs_reset();
        }
        Signal {
            work: switch_full,
            ..self.transport.signal()
        }
    }

    /// Puts `frame` in the guest's next receive buffer, or drops it.
    pub fn deliver(&mut self, ram: &GuestRam, mem: &mut impl GuestMemory, frame: &[u8]) -> Signal {
        if frame.len() > MAX_FRAME {
            self.stats.rx_oversized += 1;
            return self.transport.signal();
        }
        if !self.ready(RX) {
            self.stats.rx_not_running += 1;
            return self.transport.signal();
        }
        let Some((areas, pending)) = self.pending(RX, ram, mem) else {
            self.stats.rx_not_running += 1;
            return self.transport.needs_reset();
        };
        if pending == 0 {
            self.stats.rx_no_buffer += 1;
            return self.transport.signal();
        }
        let last_avail = self.transport.queue(RX).last_avail;
        let Ok(head) = areas.avail_head(ram, mem, last_avail) else {
            self.stats.rx_not_running += 1;
            return self.transport.needs_reset();
        };
        let walked = areas.walk(ram, mem, head, &mut self.chain);
        let room: u64 = self.chain.segments.iter().map(|s| s.len).sum();
        let wanted = HEADER + frame.len();
        let len = if let Some(fault) = self.chain_fault(walked, true) {
            self.bad_chain(fault);
            self.stats.rx_bad_chains += 1;
            0
        } else if room < wanted as u64 {
            self.stats.rx_too_small += 1;
            0
        } else {
            let mut header = [0u8; HEADER];
            header[NUM_BUFFERS..].copy_from_slice(&1u16.to_le_bytes());
            let mut cursor = Cursor::new(&self.chain.segments);
            // Both fit: the walk checked every buffer, and `room` was.
            if cursor.write(ram, mem, &header) && cursor.write(ram, mem, frame) {
                self.stats.received += 1;
                wanted as u32
            } else {
                self.stats.rx_bad_chains += 1;
                0
            }
        };
        if !self.complete(RX, &areas, ram, mem, head, len) || !self.publish(RX, &areas, ram, mem) {
            return self.transport.needs_reset();
        }
        self.transport.signal()
    }
}

impl MmioDevice for VirtioNet {
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
            return self.transport.signal();
        }
        let event = self.transport.write(offset, value as u32);
        Signal {
            // The receive queue's notify needs nothing: its buffers are
            // taken as frames arrive.
            work: event == Event::Notify(TX as u16),
            ..self.transport.signal()
        }
    }

    fn irq(&self) -> Option<u32> {
        Some(self.intid)
    }

    fn level(&self) -> Option<bool> {
        Some(self.line())
    }

    fn work(&mut self, backing: Backing<'_>) -> Signal {
        let Backing {
            ram,
            mut memory,
            frames,
            ..
        } = backing;
        self.transmit(ram, &mut memory, frames)
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }

    fn receive(&mut self, frame: &[u8], backing: Backing<'_>) -> Signal {
        let Backing {
            ram, mut memory, ..
        } = backing;
        self.deliver(ram, &mut memory, frame)
    }
    fn reset(&mut self) {
        self.transport.reset();
    }
}

#[cfg(test)]
mod tests;
