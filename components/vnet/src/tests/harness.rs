//! A fake VM for the device: Vec-backed guest RAM that logs every write,
//! a switch whose room the test sets, and a driver that sets the device up
//! and builds both queues the way Linux's virtio_mmio and virtio_net do.

use crate::*;
use std::prelude::rust_2021::*;
use std::vec;
use virtio_dev::queue::{DESC_F_NEXT, DESC_F_WRITE};

pub use virtio_dev::testing::{TestRam, IPA_BASE, RAM_SIZE};
/// Each queue's rings: descriptors, avail, used (4 KiB each).
pub const RINGS: [Rings; 2] = [
    Rings {
        desc: IPA_BASE + 0x1000,
        avail: IPA_BASE + 0x2000,
        used: IPA_BASE + 0x3000,
    },
    Rings {
        desc: IPA_BASE + 0x4000,
        avail: IPA_BASE + 0x5000,
        used: IPA_BASE + 0x6000,
    },
];
/// Where the rings end and the driver's buffers start.
pub const RINGS_END: u64 = IPA_BASE + 0x7000;
pub const BUFFERS: u64 = IPA_BASE + 0x1_0000;

#[derive(Clone, Copy, Debug)]
pub struct Rings {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

/// Guest RAM whose descriptor tables are both queues'.
pub fn test_ram() -> TestRam {
    TestRam::new(&[RINGS[0].desc, RINGS[1].desc])
}

/// The switch: takes frames while it has room.
#[derive(Default)]
pub struct TestSwitch {
    pub frames: Vec<Vec<u8>>,
    pub room: usize,
    pub refused: u64,
}

impl FrameSink for TestSwitch {
    fn send(&mut self, frame: &[u8]) -> bool {
        if self.room == 0 {
            self.refused += 1;
            return false;
        }
        self.room -= 1;
        self.frames.push(frame.to_vec());
        true
    }
}

pub use virtio_dev::testing::{ro, wr, Buf};

/// The driver's side of one queue.
#[derive(Clone, Copy, Default)]
pub struct DriverQueue {
    pub num: u16,
    next_desc: u16,
    pub avail_idx: u16,
    used_seen: u16,
}

pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// A guest, its device and the switch.
pub struct Vm {
    pub dev: VirtioNet,
    pub mem: TestRam,
    pub switch: TestSwitch,
    pub q: [DriverQueue; 2],
    next_buf: u64,
}

pub fn r32(dev: &mut VirtioNet, offset: u64) -> u32 {
    dev.read(0, offset, 4) as u32
}

pub fn w32(dev: &mut VirtioNet, offset: u64, value: u32) -> Signal {
    dev.write(0, offset, 4, u64::from(value))
}

/// Linux's virtio_net: VERSION_1, MAC and STATUS if offered, no offloads.
pub const LINUX_WANTS: u64 = F_VERSION_1 | F_MAC | F_STATUS;

impl Vm {
    pub fn unprobed() -> Self {
        Vm {
            dev: VirtioNet::with_mac(41, MAC),
            mem: test_ram(),
            switch: TestSwitch {
                room: usize::MAX,
                ..TestSwitch::default()
            },
            q: [DriverQueue::default(); 2],
            next_buf: BUFFERS,
        }
    }

    /// Probed and running with both queues of `num`.
    pub fn with_queues(num: u16) -> Self {
        let mut vm = Vm::unprobed();
        vm.probe(num);
        vm
    }

    /// Negotiates `wanted` of what is offered; whether FEATURES_OK stuck.
    pub fn negotiate(&mut self, wanted: u64) -> bool {
        let d = &mut self.dev;
        assert_eq!(r32(d, MAGIC_VALUE), MAGIC);
        assert_eq!(r32(d, VERSION), 2);
        assert_eq!(r32(d, DEVICE_ID), VIRTIO_NET_ID);
        w32(d, STATUS, 0);
        w32(d, STATUS, S_ACKNOWLEDGE);
        w32(d, STATUS, S_ACKNOWLEDGE | S_DRIVER);
        w32(d, DEVICE_FEATURES_SEL, 1);
        let high = u64::from(r32(d, DEVICE_FEATURES));
        w32(d, DEVICE_FEATURES_SEL, 0);
        let low = u64::from(r32(d, DEVICE_FEATURES));
        let offered = high << 32 | low;
        let wanted = offered & wanted;
        w32(d, DRIVER_FEATURES_SEL, 1);
        w32(d, DRIVER_FEATURES, (wanted >> 32) as u32);
        w32(d, DRIVER_FEATURES_SEL, 0);
        w32(d, DRIVER_FEATURES, wanted as u32);
        w32(d, STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        r32(d, STATUS) & S_FEATURES_OK != 0
    }

    /// Linux's virtio_mmio probe and virtio_net's setup of both queues.
    pub fn probe(&mut self, num: u16) {
        assert!(self.negotiate(LINUX_WANTS), "features accepted");
        for (index, rings) in RINGS.iter().enumerate() {
            let d = &mut self.dev;
            w32(d, QUEUE_SEL, index as u32);
            assert_eq!(r32(d, QUEUE_READY), 0);
            assert!(r32(d, QUEUE_NUM_MAX_REG) >= u32::from(num));
            w32(d, QUEUE_NUM, u32::from(num));
            w32(d, QUEUE_DESC_LOW, rings.desc as u32);
            w32(d, QUEUE_DESC_HIGH, (rings.desc >> 32) as u32);
            w32(d, QUEUE_DRIVER_LOW, rings.avail as u32);
            w32(d, QUEUE_DRIVER_HIGH, (rings.avail >> 32) as u32);
            w32(d, QUEUE_DEVICE_LOW, rings.used as u32);
            w32(d, QUEUE_DEVICE_HIGH, (rings.used >> 32) as u32);
            w32(d, QUEUE_READY, 1);
            assert_eq!(r32(d, QUEUE_READY), 1);
            self.q[index] = DriverQueue {
                num,
                ..DriverQueue::default()
            };
            // A fresh ring, as Linux allocates it zeroed.
            self.mem.put(rings.avail, &[0; 0x1000]);
            self.mem.put(rings.used, &[0; 0x1000]);
        }
        w32(
            &mut self.dev,
            STATUS,
            S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
        );
    }

    /// Writes descriptor `i` of queue `q`.
    pub fn set_desc(&mut self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.put(RINGS[q].desc + 16 * u64::from(i), &d);
    }

    /// Makes `head` available on queue `q` (ring entry, then idx).
    pub fn push_avail(&mut self, q: usize, head: u16) {
        let dq = &mut self.q[q];
        let slot = u64::from(dq.avail_idx % dq.num);
        let idx = dq.avail_idx.wrapping_add(1);
        dq.avail_idx = idx;
        self.mem
            .put(RINGS[q].avail + 4 + 2 * slot, &head.to_le_bytes());
        self.mem.put(RINGS[q].avail + 2, &idx.to_le_bytes());
    }

    /// Chains `bufs` in free descriptors of queue `q`; the head.
    pub fn chain(&mut self, q: usize, bufs: &[Buf]) -> u16 {
        let num = self.q[q].num;
        let head = self.q[q].next_desc;
        for (k, b) in bufs.iter().enumerate() {
            let i = (head + k as u16) % num;
            let last = k + 1 == bufs.len();
            let flags = if b.write { DESC_F_WRITE } else { 0 } | if last { 0 } else { DESC_F_NEXT };
            self.set_desc(q, i, b.addr, b.len, flags, (i + 1) % num);
        }
        self.q[q].next_desc = (head + bufs.len() as u16) % num;
        head
    }

    /// `len` bytes of buffer space, filled with `fill`.
    pub fn alloc(&mut self, len: usize, fill: u8) -> u64 {
        let at = self.next_buf;
        self.mem.put(at, &vec![fill; len]);
        self.next_buf += (len as u64).div_ceil(64) * 64;
        if self.next_buf > IPA_BASE + RAM_SIZE - 0x2_0000 {
            self.next_buf = BUFFERS;
        }
        at
    }

    /// A transmit header (its contents do not matter: garbage) and frame
    /// in guest RAM; their address.
    pub fn packet(&mut self, frame: &[u8]) -> u64 {
        let at = self.alloc(HEADER + frame.len(), 0);
        self.mem.put(at, &[0xa5; HEADER]);
        self.mem.put(at + HEADER as u64, frame);
        at
    }

    /// QueueNotify of the transmit queue, then the work it asks for, as
    /// the core does.
    pub fn kick(&mut self) -> Signal {
        let s = w32(&mut self.dev, QUEUE_NOTIFY, TX as u32);
        assert!(s.work, "a transmit notify asks for work");
        assert_eq!(s.level, Some(self.dev.line()));
        self.work()
    }

    pub fn work(&mut self) -> Signal {
        let ram = self.mem.ram;
        self.dev.work(Backing {
            ram: &ram,
            memory: &mut self.mem,
            disk: None,
            frames: Some(&mut self.switch),
        })
    }

    pub fn receive(&mut self, frame: &[u8]) -> Signal {
        let ram = self.mem.ram;
        self.dev.receive(
            frame,
            Backing {
                ram: &ram,
                memory: &mut self.mem,
                disk: None,
                frames: None,
            },
        )
    }

    /// Queue `q`'s used entries added since the last call, as (id, len).
    pub fn used(&mut self, q: usize) -> Vec<(u32, u32)> {
        let used = RINGS[q].used;
        let idx = self.mem.u16_at(used + 2);
        let dq = &mut self.q[q];
        let mut out = Vec::new();
        while dq.used_seen != idx {
            let slot = u64::from(dq.used_seen % dq.num);
            let at = used + 4 + 8 * slot;
            out.push((self.mem.u32_at(at), self.mem.u32_at(at + 4)));
            dq.used_seen = dq.used_seen.wrapping_add(1);
        }
        out
    }

    /// Sends one chain: its used length (exactly one completion).
    pub fn send(&mut self, bufs: &[Buf]) -> u32 {
        let head = self.chain(TX, bufs);
        self.push_avail(TX, head);
        self.kick();
        let used = self.used(TX);
        assert_eq!(used, [(u32::from(head), used[0].1)], "completed once");
        used[0].1
    }

    /// Posts one receive chain.
    pub fn post(&mut self, bufs: &[Buf]) -> u16 {
        let head = self.chain(RX, bufs);
        self.push_avail(RX, head);
        head
    }
}

/// An Ethernet frame of `len` bytes, to us, each byte its index's.
pub fn frame(len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let n = len.min(6);
    f[..n].copy_from_slice(&MAC[..n]);
    f
}
