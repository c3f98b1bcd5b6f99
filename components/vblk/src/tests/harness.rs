//! A fake VM for the device: Vec-backed guest RAM, a volume inside a larger
//! disk that reports any access outside the volume, and a driver that sets
//! the device up and builds queues the way Linux's virtio_mmio does.

use crate::blk::{S_IOERR, T_IN};
use crate::queue::{DESC_F_NEXT, DESC_F_WRITE};
use crate::*;
use std::prelude::rust_2021::*;
use std::vec;

pub use virtio_dev::testing::{IPA_BASE, RAM_SIZE};
pub const DESC: u64 = IPA_BASE + 0x1000;
pub const AVAIL: u64 = IPA_BASE + 0x2000;
pub const USED: u64 = IPA_BASE + 0x3000;
/// Where the driver puts request buffers.
pub const BUFFERS: u64 = IPA_BASE + 0x1_0000;

/// Guest RAM whose descriptor table is the driver's.
pub fn test_ram() -> TestRam {
    TestRam::new(&[DESC])
}

pub use virtio_dev::testing::TestRam;

/// A volume of `len` sectors at sector `base` of a larger disk, the way a
/// partition is served. It does not refuse accesses past the volume (a
/// buggy mapping would not): it records them, and the tests check none
/// happened.
pub struct TestDisk {
    pub disk: Vec<u8>,
    pub base: u64,
    pub len: u64,
    pub read_only: bool,
    pub flushes: u64,
    pub reads: u64,
    pub writes: u64,
    pub outside: u64,
}

impl TestDisk {
    /// A volume of `len` sectors at `base` in a disk of `base + len + 64`.
    pub fn new(base: u64, len: u64) -> Self {
        let total = (base + len + 64) as usize * SECTOR;
        // Each sector starts with its absolute number, to see which was read.
        let mut disk = vec![0; total];
        for (n, s) in disk.chunks_mut(SECTOR).enumerate() {
            s[..8].copy_from_slice(&(n as u64).to_le_bytes());
        }
        TestDisk {
            disk,
            base,
            len,
            read_only: false,
            flushes: 0,
            reads: 0,
            writes: 0,
            outside: 0,
        }
    }

    /// The absolute byte range, noting accesses outside the volume.
    fn range(
        &mut self,
        sector: u64,
        bytes: usize,
    ) -> Result<core::ops::Range<usize>, BackendError> {
        assert_eq!(bytes % SECTOR, 0, "the device passes whole sectors");
        let n = (bytes / SECTOR) as u64;
        if sector.checked_add(n).is_none_or(|end| end > self.len) {
            self.outside += 1;
        }
        let start = self
            .base
            .checked_add(sector)
            .ok_or(BackendError::OutOfRange)? as usize
            * SECTOR;
        let end = start + bytes;
        if end > self.disk.len() {
            return Err(BackendError::OutOfRange);
        }
        Ok(start..end)
    }

    pub fn sector(&self, n: u64) -> &[u8] {
        let at = (self.base + n) as usize * SECTOR;
        &self.disk[at..at + SECTOR]
    }
}

impl BlockBackend for TestDisk {
    fn sectors(&self) -> u64 {
        self.len
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.reads += 1;
        let r = self.range(sector, buf.len())?;
        buf.copy_from_slice(&self.disk[r]);
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BackendError> {
        self.writes += 1;
        let r = self.range(sector, buf.len())?;
        self.disk[r].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        self.flushes += 1;
        Ok(())
    }
}

pub use virtio_dev::testing::{ro, wr, Buf};

/// A guest, its device and its disk.
pub struct Vm {
    pub dev: VirtioBlk,
    pub mem: TestRam,
    pub disk: TestDisk,
    pub num: u16,
    /// The next free descriptor and buffer byte, and avail.idx.
    next_desc: u16,
    next_buf: u64,
    avail_idx: u16,
    /// Used entries taken so far.
    used_seen: u16,
}

pub fn r32(dev: &mut VirtioBlk, offset: u64) -> u32 {
    dev.read(0, offset, 4) as u32
}

pub fn w32(dev: &mut VirtioBlk, offset: u64, value: u32) -> Signal {
    dev.write(0, offset, 4, u64::from(value))
}

impl Vm {
    /// A device for a 64-sector volume at sector 100, not yet probed.
    pub fn unprobed() -> Self {
        let disk = TestDisk::new(100, 64);
        Vm {
            dev: VirtioBlk::for_backend(40, &disk, *b"tessera-vblk-serial0"),
            mem: test_ram(),
            disk,
            num: 0,
            next_desc: 0,
            next_buf: BUFFERS,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    /// Probed and running with a queue of `num`.
    pub fn with_queue(num: u16) -> Self {
        let mut vm = Vm::unprobed();
        vm.probe(num);
        vm
    }

    pub fn read_only(num: u16) -> Self {
        let mut disk = TestDisk::new(100, 64);
        disk.read_only = true;
        let mut vm = Vm::unprobed();
        vm.dev = VirtioBlk::for_backend(40, &disk, *b"tessera-vblk-serial0");
        vm.disk = disk;
        vm.probe(num);
        vm
    }

    /// Linux's virtio_mmio probe and virtio_blk's setup of queue 0.
    pub fn probe(&mut self, num: u16) {
        let d = &mut self.dev;
        assert_eq!(r32(d, MAGIC_VALUE), MAGIC);
        assert_eq!(r32(d, VERSION), 2);
        assert_eq!(r32(d, DEVICE_ID), VIRTIO_BLK_ID);
        w32(d, STATUS, 0);
        w32(d, STATUS, S_ACKNOWLEDGE);
        w32(d, STATUS, S_ACKNOWLEDGE | S_DRIVER);
        w32(d, DEVICE_FEATURES_SEL, 1);
        let high = u64::from(r32(d, DEVICE_FEATURES));
        w32(d, DEVICE_FEATURES_SEL, 0);
        let low = u64::from(r32(d, DEVICE_FEATURES));
        let offered = high << 32 | low;
        let wanted = offered & (F_VERSION_1 | F_FLUSH | F_RO | F_SEG_MAX);
        w32(d, DRIVER_FEATURES_SEL, 1);
        w32(d, DRIVER_FEATURES, (wanted >> 32) as u32);
        w32(d, DRIVER_FEATURES_SEL, 0);
        w32(d, DRIVER_FEATURES, wanted as u32);
        w32(d, STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        assert_ne!(r32(d, STATUS) & S_FEATURES_OK, 0, "features accepted");
        w32(d, QUEUE_SEL, 0);
        assert_eq!(r32(d, QUEUE_READY), 0);
        assert!(r32(d, QUEUE_NUM_MAX_REG) >= u32::from(num));
        w32(d, QUEUE_NUM, u32::from(num));
        w32(d, QUEUE_DESC_LOW, DESC as u32);
        w32(d, QUEUE_DESC_HIGH, (DESC >> 32) as u32);
        w32(d, QUEUE_DRIVER_LOW, AVAIL as u32);
        w32(d, QUEUE_DRIVER_HIGH, (AVAIL >> 32) as u32);
        w32(d, QUEUE_DEVICE_LOW, USED as u32);
        w32(d, QUEUE_DEVICE_HIGH, (USED >> 32) as u32);
        w32(d, QUEUE_READY, 1);
        assert_eq!(r32(d, QUEUE_READY), 1);
        w32(
            d,
            STATUS,
            S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
        );
        self.num = num;
        self.next_desc = 0;
        self.avail_idx = 0;
        self.used_seen = 0;
        // A fresh ring, as Linux allocates it zeroed.
        self.mem.put(AVAIL, &[0; 0x1000]);
        self.mem.put(USED, &[0; 0x1000]);
    }

    /// Writes descriptor `i`.
    pub fn set_desc(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.put(DESC + 16 * u64::from(i), &d);
    }

    /// Makes `head` available (ring entry, then idx).
    pub fn push_avail(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.num);
        self.mem.put(AVAIL + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.put(AVAIL + 2, &self.avail_idx.to_le_bytes());
    }

    /// Chains `bufs` in free descriptors; the head.
    pub fn chain(&mut self, bufs: &[Buf]) -> u16 {
        let head = self.next_desc;
        for (k, b) in bufs.iter().enumerate() {
            let i = (self.next_desc + k as u16) % self.num;
            let last = k + 1 == bufs.len();
            let flags = if b.write { DESC_F_WRITE } else { 0 } | if last { 0 } else { DESC_F_NEXT };
            self.set_desc(i, b.addr, b.len, flags, (i + 1) % self.num);
        }
        self.next_desc = (self.next_desc + bufs.len() as u16) % self.num;
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

    /// A request header in guest RAM.
    pub fn header(&mut self, kind: u32, sector: u64) -> u64 {
        let mut h = [0; 16];
        h[..4].copy_from_slice(&kind.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        let at = self.alloc(16, 0);
        self.mem.put(at, &h);
        at
    }

    /// Processes the queue as the core would after QueueNotify.
    pub fn kick(&mut self) -> Signal {
        let s = w32(&mut self.dev, QUEUE_NOTIFY, 0);
        assert_eq!(s.level, Some(self.dev.line()));
        assert!(self.dev.notified());
        let ram = self.mem.ram;
        let s = self.dev.process(&ram, &mut self.mem, &mut self.disk);
        assert!(!self.dev.notified());
        s
    }

    /// The used entries added since the last call, as (id, len).
    pub fn used(&mut self) -> Vec<(u32, u32)> {
        let idx = self.mem.u16_at(USED + 2);
        let mut out = Vec::new();
        while self.used_seen != idx {
            let slot = u64::from(self.used_seen % self.num);
            let at = USED + 4 + 8 * slot;
            out.push((self.mem.u32_at(at), self.mem.u32_at(at + 4)));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    /// Submits one chain and processes it; its used length.
    pub fn submit(&mut self, bufs: &[Buf]) -> u32 {
        let head = self.chain(bufs);
        self.push_avail(head);
        self.kick();
        let used = self.used();
        assert_eq!(used.len(), 1, "completed exactly once");
        assert_eq!(used[0].0, u32::from(head));
        used[0].1
    }

    /// A read of `sectors` sectors at `sector` into one buffer: status,
    /// used length, data.
    pub fn read_sectors(&mut self, sector: u64, sectors: usize) -> (u8, u32, Vec<u8>) {
        let h = self.header(T_IN, sector);
        let data = self.alloc(sectors * SECTOR, 0xee);
        let status = self.alloc(1, 0xff);
        let len = self.submit(&[
            ro(h, 16),
            wr(data, (sectors * SECTOR) as u32),
            wr(status, 1),
        ]);
        (
            self.mem.get(status, 1)[0],
            len,
            self.mem.get(data, sectors * SECTOR),
        )
    }

    /// A status byte, freshly allocated and set to 0xff (not yet written).
    pub fn status_byte(&mut self) -> u64 {
        self.alloc(1, 0xff)
    }

    pub fn status_at(&self, at: u64) -> u8 {
        self.mem.get(at, 1)[0]
    }
}

pub const IOERR: u8 = S_IOERR;
