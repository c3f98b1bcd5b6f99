//! The virtio-mmio version 2 transport's state, whatever the device type:
//! status and feature negotiation, queue selection and setup, and the
//! interrupt status behind a level line. A device keeps one, answers its
//! own config space, and acts on the [`Event`]s a write returns.

use crate::queue::{QueueConfig, QUEUE_NUM_MAX};
use crate::*;
use hv::device::Signal;

/// One queue: the driver's setup and the device's two ring positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    pub config: QueueConfig,
    /// The next avail ring position to take, and used.idx as written.
    pub last_avail: u16,
    pub used_idx: u16,
}

/// What a register write asks of the device beyond the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    None,
    /// QueueNotify for this queue (one the device has).
    Notify(u16),
    /// Status written 0: the transport is back to power-on; the device
    /// drops whatever it holds for the guest.
    Reset,
}

/// The transport of a device with `QUEUES` queues.
#[derive(Clone, Debug)]
pub struct Transport<const QUEUES: usize> {
    device_id: u32,
    features: u64,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: [Queue; QUEUES],
    interrupt_status: u32,
}

impl<const QUEUES: usize> Transport<QUEUES> {
    /// A device of type `device_id` offering `features` (VERSION_1 among
    /// them).
    pub fn new(device_id: u32, features: u64) -> Self {
        Transport {
            device_id,
            features,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues: [Queue::default(); QUEUES],
            interrupt_status: 0,
        }
    }

    /// Back to the state after power-on (the driver wrote 0 to Status, or
    /// the VM resets).
    pub fn reset(&mut self) {
        *self = Transport::new(self.device_id, self.features);
    }

    /// The features offered.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The features the driver wrote (accepted only if FEATURES_OK is set).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    pub fn queue(&self, index: usize) -> &Queue {
        &self.queues[index]
    }

    pub fn queue_mut(&mut self, index: usize) -> &mut Queue {
        &mut self.queues[index]
    }

    /// The interrupt line: high while InterruptStatus is not 0.
    pub fn line(&self) -> bool {
        self.interrupt_status != 0
    }

    /// What an access leaves the line at.
    pub fn signal(&self) -> Signal {
        Signal {
            level: Some(self.line()),
            ..Signal::default()
        }
    }

    /// The driver has accepted features and said DRIVER_OK, and neither
    /// side gave up; whether a queue is ready is the device's question.
    pub fn running(&self) -> bool {
        let s = self.status;
        s & (S_DRIVER_OK | S_FEATURES_OK) == S_DRIVER_OK | S_FEATURES_OK
            && s & (S_FAILED | S_NEEDS_RESET) == 0
    }

    /// The driver corrupted its queue beyond repair: DEVICE_NEEDS_RESET
    /// and a configuration-change interrupt; nothing more is processed.
    pub fn needs_reset(&mut self) -> Signal {
        self.status |= S_NEEDS_RESET;
        self.interrupt_status |= INT_CONFIG;
        self.signal()
    }

    /// Buffers were put in a used ring.
    pub fn used_buffers(&mut self) {
        self.interrupt_status |= INT_USED;
    }

    fn set_status(&mut self, value: u32) -> Event {
        if value == 0 {
            self.reset();
            return Event::Reset;
        }
        let mut value = value & 0xff;
        // FEATURES_OK only for a subset of what was offered, with VERSION_1
        // (a version 2 transport has no legacy interface); the driver reads
        // Status back and gives up if it did not stick.
        if value & S_FEATURES_OK != 0 && self.status & S_FEATURES_OK == 0 {
            let f = self.driver_features;
            if f & !self.features != 0 || f & F_VERSION_1 == 0 {
                value &= !S_FEATURES_OK;
            }
        }
        // Only a reset clears status bits; NEEDS_RESET is the device's.
        self.status |= value & !S_NEEDS_RESET;
        Event::None
    }

    /// The selected queue, if the device has it.
    fn selected(&self) -> Option<&Queue> {
        self.queues.get(self.queue_sel as usize)
    }

    /// A 32-bit read of a register below the config space. Unknown
    /// registers, write-only ones and queues the device lacks read 0.
    pub fn read(&self, offset: u64) -> u32 {
        let q = self.selected();
        let queue = |f: fn(&Queue) -> u32| q.map_or(0, f);
        match offset {
            MAGIC_VALUE => MAGIC,
            VERSION => 2,
            DEVICE_ID => self.device_id,
            VENDOR_ID => VENDOR,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => self.features as u32,
                1 => (self.features >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX_REG => queue(|_| u32::from(QUEUE_NUM_MAX)),
            QUEUE_NUM => queue(|q| u32::from(q.config.num)),
            QUEUE_READY => queue(|q| u32::from(q.config.ready)),
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            QUEUE_DESC_LOW => queue(|q| q.config.desc as u32),
            QUEUE_DESC_HIGH => queue(|q| (q.config.desc >> 32) as u32),
            QUEUE_DRIVER_LOW => queue(|q| q.config.driver as u32),
            QUEUE_DRIVER_HIGH => queue(|q| (q.config.driver >> 32) as u32),
            QUEUE_DEVICE_LOW => queue(|q| q.config.device as u32),
            QUEUE_DEVICE_HIGH => queue(|q| (q.config.device >> 32) as u32),
            // The config space never changes.
            CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    /// A 32-bit write of a register below the config space.
    pub fn write(&mut self, offset: u64, value: u32) -> Event {
        let feature_setup = self.status & S_FEATURES_OK == 0;
        let selected = self.queue_sel as usize;
        // The selected queue's setup, only while it is not live.
        let setup = self.selected().is_some_and(|q| !q.config.ready);
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = value,
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            DRIVER_FEATURES if feature_setup => match self.driver_features_sel {
                0 => set_low(&mut self.driver_features, value),
                1 => set_high(&mut self.driver_features, value),
                _ => {}
            },
            QUEUE_SEL => self.queue_sel = value,
            QUEUE_NUM if setup => {
                self.queues[selected].config.num = value.min(u32::from(u16::MAX)) as u16
            }
            QUEUE_READY if selected < QUEUES => {
                let q = &mut self.queues[selected];
                if value & 1 == 0 {
                    q.config.ready = false;
                } else if !q.config.ready && QueueConfig::valid_size(q.config.num) {
                    // A new ring starts at index 0 on both sides.
                    q.config.ready = true;
                    q.last_avail = 0;
                    q.used_idx = 0;
                }
            }
            QUEUE_NOTIFY if (value as usize) < QUEUES => return Event::Notify(value as u16),
            INTERRUPT_ACK => self.interrupt_status &= !value,
            STATUS => return self.set_status(value),
            QUEUE_DESC_LOW if setup => set_low(&mut self.queues[selected].config.desc, value),
            QUEUE_DESC_HIGH if setup => set_high(&mut self.queues[selected].config.desc, value),
            QUEUE_DRIVER_LOW if setup => set_low(&mut self.queues[selected].config.driver, value),
            QUEUE_DRIVER_HIGH if setup => set_high(&mut self.queues[selected].config.driver, value),
            QUEUE_DEVICE_LOW if setup => set_low(&mut self.queues[selected].config.device, value),
            QUEUE_DEVICE_HIGH if setup => set_high(&mut self.queues[selected].config.device, value),
            _ => {}
        }
        Event::None
    }
}

/// A read of the device's config space at `offset` (from the window's
/// start, at or past [`CONFIG`]) whose bytes are `config`, the rest of
/// the window reading as zero. Any width: Linux reads config fields as
/// bytes, halves and words.
pub fn read_config(config: &[u8], offset: u64, width: u8) -> u64 {
    let Some(base) = offset.checked_sub(CONFIG).map(|o| o as usize) else {
        return 0;
    };
    if !matches!(width, 1 | 2 | 4 | 8) || offset >= WINDOW {
        return 0;
    }
    let mut bytes = [0u8; 8];
    for (i, b) in bytes.iter_mut().take(usize::from(width)).enumerate() {
        *b = config.get(base.saturating_add(i)).copied().unwrap_or(0);
    }
    u64::from_le_bytes(bytes)
}

fn set_low(reg: &mut u64, value: u32) {
    *reg = (*reg & !0xffff_ffff) | u64::from(value);
}

fn set_high(reg: &mut u64, value: u32) {
    *reg = (*reg & 0xffff_ffff) | u64::from(value) << 32;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-queue transport through a driver's negotiation.
    fn negotiated() -> Transport<2> {
        let mut t = Transport::<2>::new(1, F_VERSION_1 | 1 << 5);
        t.write(STATUS, S_ACKNOWLEDGE | S_DRIVER);
        t.write(DRIVER_FEATURES_SEL, 1);
        t.write(DRIVER_FEATURES, 1);
        t.write(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        t
    }

    #[test]
    fn each_queue_is_set_up_on_its_own_and_locked_while_ready() {
        let mut t = negotiated();
        assert_eq!(t.status() & S_FEATURES_OK, S_FEATURES_OK);
        for (q, desc) in [(0u32, 0x1000u32), (1, 0x2000)] {
            t.write(QUEUE_SEL, q);
            assert_eq!(t.read(QUEUE_NUM_MAX_REG), u32::from(QUEUE_NUM_MAX));
            t.write(QUEUE_NUM, 8);
            t.write(QUEUE_DESC_LOW, desc);
            t.write(QUEUE_DESC_HIGH, 1);
            t.write(QUEUE_READY, 1);
            // Live: its setup no longer changes.
            t.write(QUEUE_DESC_LOW, 0xdead);
            t.write(QUEUE_NUM, 4);
        }
        assert_eq!(t.queue(0).config.desc, 0x1_0000_1000);
        assert_eq!(t.queue(1).config.desc, 0x1_0000_2000);
        assert_eq!(t.queue(1).config.num, 8);
        // A queue the device lacks reads 0 and takes nothing.
        t.write(QUEUE_SEL, 2);
        assert_eq!(t.read(QUEUE_NUM_MAX_REG), 0);
        t.write(QUEUE_NUM, 8);
        t.write(QUEUE_READY, 1);
        assert_eq!(t.read(QUEUE_READY), 0);
        t.write(QUEUE_SEL, u32::MAX);
        assert_eq!(t.read(QUEUE_DESC_LOW), 0);
        // A size that is not a power of two never becomes ready.
        let mut t = negotiated();
        t.write(QUEUE_NUM, 6);
        t.write(QUEUE_READY, 1);
        assert!(!t.queue(0).config.ready);
    }

    #[test]
    fn notify_names_a_queue_the_device_has() {
        let mut t = negotiated();
        assert_eq!(t.write(QUEUE_NOTIFY, 0), Event::Notify(0));
        assert_eq!(t.write(QUEUE_NOTIFY, 1), Event::Notify(1));
        assert_eq!(t.write(QUEUE_NOTIFY, 2), Event::None);
        assert_eq!(t.write(QUEUE_NOTIFY, u32::MAX), Event::None);
    }

    #[test]
    fn features_are_checked_at_features_ok_and_frozen_after() {
        let mut t = Transport::<1>::new(2, F_VERSION_1);
        t.write(DRIVER_FEATURES, 1);
        t.write(STATUS, S_FEATURES_OK);
        assert_eq!(t.status() & S_FEATURES_OK, 0, "not offered, no VERSION_1");
        let mut t = negotiated();
        t.write(DRIVER_FEATURES_SEL, 0);
        t.write(DRIVER_FEATURES, 0xffff_ffff);
        assert_eq!(t.driver_features(), F_VERSION_1, "frozen after FEATURES_OK");
    }

    #[test]
    fn reset_and_needs_reset() {
        let mut t = negotiated();
        t.write(
            STATUS,
            S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
        );
        assert!(t.running());
        let s = t.needs_reset();
        assert_eq!(s.level, Some(true));
        assert!(!t.running());
        // The driver cannot clear it, only reset.
        t.write(STATUS, S_NEEDS_RESET);
        assert_ne!(t.status() & S_NEEDS_RESET, 0);
        t.write(INTERRUPT_ACK, INT_CONFIG);
        assert!(!t.line());
        assert_eq!(t.write(STATUS, 0), Event::Reset);
        assert_eq!(t.status(), 0);
        assert_eq!(t.features(), F_VERSION_1 | 1 << 5, "the offer stays");
    }

    #[test]
    fn config_reads_any_width_inside_the_window() {
        let config = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(read_config(&config, CONFIG, 1), 1);
        assert_eq!(read_config(&config, CONFIG + 1, 2), 0x0302);
        assert_eq!(read_config(&config, CONFIG + 6, 4), 0x09_0807);
        assert_eq!(read_config(&config, CONFIG, 8), 0x0807_0605_0403_0201);
        assert_eq!(read_config(&config, CONFIG, 3), 0);
        assert_eq!(read_config(&config, WINDOW, 1), 0);
        assert_eq!(read_config(&config, CONFIG - 1, 1), 0);
        assert_eq!(read_config(&config, u64::MAX, 8), 0);
    }
}
