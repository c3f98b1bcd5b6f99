//! What the devices' host tests share (feature `testing`): guest RAM, a
//! Vec at a fixed guest-physical and host-physical base, which counts reads
//! of the descriptor tables it is told of, counts reads of a watched range,
//! and logs every write; and the buffers a test driver chains.

use core::cell::Cell;
use hv::memory::{GuestMemory, GuestRam, GuestSlice};
use std::{vec, vec::Vec};

pub const IPA_BASE: u64 = 0x4000_0000;
pub const PA_BASE: u64 = 0x8_0000_0000;
pub const RAM_SIZE: u64 = 1 << 20;

pub struct TestRam {
    pub ram: GuestRam,
    bytes: Vec<u8>,
    /// Guest-physical descriptor tables (4 KiB each) whose reads count.
    desc_tables: Vec<u64>,
    /// read_guest calls that touched a descriptor table.
    pub desc_reads: Cell<u64>,
    /// A guest-physical range the device should never read, and how
    /// often it did.
    pub watch: Cell<(u64, u64)>,
    pub watch_hits: Cell<u64>,
    /// Every write, as guest-physical (start, len).
    pub writes: Vec<(u64, u64)>,
}

impl TestRam {
    /// RAM whose descriptor tables are at `desc_tables`.
    pub fn new(desc_tables: &[u64]) -> Self {
        TestRam {
            ram: GuestRam::new(IPA_BASE, PA_BASE, RAM_SIZE),
            bytes: vec![0; RAM_SIZE as usize],
            desc_tables: desc_tables.to_vec(),
            desc_reads: Cell::new(0),
            watch: Cell::new((0, 0)),
            watch_hits: Cell::new(0),
            writes: Vec::new(),
        }
    }

    pub fn put(&mut self, ipa: u64, bytes: &[u8]) {
        let at = (ipa - IPA_BASE) as usize;
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
    }

    pub fn get(&self, ipa: u64, len: usize) -> Vec<u8> {
        let at = (ipa - IPA_BASE) as usize;
        self.bytes[at..at + len].to_vec()
    }

    pub fn u16_at(&self, ipa: u64) -> u16 {
        u16::from_le_bytes(self.get(ipa, 2).try_into().unwrap())
    }

    pub fn u32_at(&self, ipa: u64) -> u32 {
        u32::from_le_bytes(self.get(ipa, 4).try_into().unwrap())
    }

    fn range(&self, s: GuestSlice) -> core::ops::Range<usize> {
        let start = (s.pa() - PA_BASE) as usize;
        start..start + s.len() as usize
    }
}

impl GuestMemory for TestRam {
    fn read_guest(&self, from: GuestSlice, buf: &mut [u8]) {
        assert_eq!(buf.len() as u64, from.len());
        let ipa = from.pa() - PA_BASE + IPA_BASE;
        let touches = |start: u64, end: u64| ipa < end && ipa + from.len() > start;
        if self.desc_tables.iter().any(|&d| touches(d, d + 0x1000)) {
            self.desc_reads.set(self.desc_reads.get() + 1);
        }
        let (start, end) = self.watch.get();
        if touches(start, end) {
            self.watch_hits.set(self.watch_hits.get() + 1);
        }
        buf.copy_from_slice(&self.bytes[self.range(from)]);
    }

    fn write_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        assert_eq!(bytes.len() as u64, to.len());
        self.writes.push((to.pa() - PA_BASE + IPA_BASE, to.len()));
        let r = self.range(to);
        self.bytes[r].copy_from_slice(bytes);
    }

    fn zero_guest(&mut self, to: GuestSlice) {
        let r = self.range(to);
        self.bytes[r].fill(0);
    }
}

/// A buffer of a chain: where, how long, device-writable or not.
#[derive(Clone, Copy, Debug)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

/// A device-readable buffer.
pub fn ro(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        write: false,
    }
}

/// A device-writable buffer.
pub fn wr(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        write: true,
    }
}
