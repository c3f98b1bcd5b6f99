//! The split virtqueue (virtio 1.2 §2.7) as the device sees it. Every ring
//! entry and descriptor is copied out of guest RAM once, into hypervisor
//! memory, and checked there: the guest's other vCPUs may rewrite it at
//! any time.

use hv::memory::{GuestMemory, GuestRam, GuestSlice};

/// The largest queue the device offers (QueueNumMax): a power of two, and
/// the bound on a descriptor chain's length.
pub const QUEUE_NUM_MAX: u16 = 128;

pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;
pub const DESC_F_INDIRECT: u16 = 4;

const DESC_SIZE: u64 = 16;
const USED_ELEM_SIZE: u64 = 8;

/// One queue's driver-chosen setup, as the registers hold it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueConfig {
    pub num: u16,
    pub ready: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

impl QueueConfig {
    /// A queue the device may use: a power-of-two size it offered (ring
    /// positions are `idx % num`, which only wraps with the u16 index if
    /// `num` divides 65536).
    pub fn valid_size(num: u16) -> bool {
        num.is_power_of_two() && num <= QUEUE_NUM_MAX
    }

    /// The three areas, each checked to lie inside RAM, of a queue of a
    /// valid size, or `None`.
    pub fn areas(&self, ram: &GuestRam) -> Option<Areas> {
        // Ring positions are taken modulo `num`: never 0, whatever the
        // register state machine let through.
        if !Self::valid_size(self.num) {
            return None;
        }
        let num = u64::from(self.num);
        ram.slice(self.desc, DESC_SIZE * num).ok()?;
        // flags, idx, ring[num], used_event
        ram.slice(self.driver, 6 + 2 * num).ok()?;
        // flags, idx, ring[num] of {id, len}, avail_event
        ram.slice(self.device, 6 + USED_ELEM_SIZE * num).ok()?;
        Some(Areas { q: *self })
    }
}

/// A queue whose areas were checked to be inside RAM. Offsets into them
/// cannot overflow or leave RAM, but every access still goes through
/// [`GuestRam::slice`], so a mistake here is an error, not a stray access.
pub struct Areas {
    q: QueueConfig,
}

/// A guest structure that could not be reached (only if [`Areas`] were
/// wrong: the checks make it unreachable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreachable;

fn read<const N: usize>(
    ram: &GuestRam,
    mem: &impl GuestMemory,
    ipa: u64,
) -> Result<[u8; N], Unreachable> {
    let slice = ram.slice(ipa, N as u64).map_err(|_| Unreachable)?;
    let mut buf = [0; N];
    mem.read_guest(slice, &mut buf);
    Ok(buf)
}

fn write(
    ram: &GuestRam,
    mem: &mut impl GuestMemory,
    ipa: u64,
    bytes: &[u8],
) -> Result<(), Unreachable> {
    let slice = ram
        .slice(ipa, bytes.len() as u64)
        .map_err(|_| Unreachable)?;
    mem.write_guest(slice, bytes);
    Ok(())
}

impl Areas {
    pub fn num(&self) -> u16 {
        self.q.num
    }

    /// avail.idx: read once per batch. (On the platform an acquire barrier
    /// must follow it, before the ring entries and descriptors are read.)
    pub fn avail_idx(&self, ram: &GuestRam, mem: &impl GuestMemory) -> Result<u16, Unreachable> {
        read::<2>(ram, mem, self.q.driver + 2).map(u16::from_le_bytes)
    }

    /// avail.ring[pos % num]: the head of the next chain, unchecked.
    pub fn avail_head(
        &self,
        ram: &GuestRam,
        mem: &impl GuestMemory,
        pos: u16,
    ) -> Result<u16, Unreachable> {
        let slot = u64::from(pos % self.q.num);
        read::<2>(ram, mem, self.q.driver + 4 + 2 * slot).map(u16::from_le_bytes)
    }

    /// Writes used.ring[pos % num] = {id, len}. The guest sees it only once
    /// [`Areas::publish_used`] moves used.idx past it.
    pub fn put_used(
        &self,
        ram: &GuestRam,
        mem: &mut impl GuestMemory,
        pos: u16,
        id: u32,
        len: u32,
    ) -> Result<(), Unreachable> {
        let slot = u64::from(pos % self.q.num);
        let mut elem = [0; 8];
        elem[..4].copy_from_slice(&id.to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        write(ram, mem, self.q.device + 4 + USED_ELEM_SIZE * slot, &elem)
    }

    /// Writes used.idx. On the platform a release barrier (DMB ISHST) must
    /// come before it, so the guest never sees the index before the
    /// elements and data it covers.
    pub fn publish_used(
        &self,
        ram: &GuestRam,
        mem: &mut impl GuestMemory,
        idx: u16,
    ) -> Result<(), Unreachable> {
        write(ram, mem, self.q.device + 2, &idx.to_le_bytes())
    }

    /// Copies descriptor `index` out of the table once; `None` if `index`
    /// is not a descriptor of this queue.
    fn descriptor(
        &self,
        ram: &GuestRam,
        mem: &impl GuestMemory,
        index: u16,
    ) -> Result<Option<Descriptor>, Unreachable> {
        if index >= self.q.num {
            return Ok(None);
        }
        let raw = read::<16>(ram, mem, self.q.desc + DESC_SIZE * u64::from(index))?;
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = raw;
        Ok(Some(Descriptor {
            addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            next: u16::from_le_bytes([n0, n1]),
        }))
    }

    /// Walks the chain from `head` into `chain`, reading each descriptor
    /// once. A chain without an end (an index that is not a descriptor, a
    /// loop) is an error; a descriptor that may not be used (INDIRECT, a
    /// buffer outside RAM) becomes an empty segment and [`Chain::fault`],
    /// and the walk goes on, so the request can still get a status.
    pub fn walk(
        &self,
        ram: &GuestRam,
        mem: &impl GuestMemory,
        head: u16,
        chain: &mut Chain,
    ) -> Result<(), ChainError> {
        chain.segments.clear();
        chain.fault = None;
        let mut index = head;
        loop {
            // A chain has at most `num` descriptors; more means a loop.
            if chain.segments.len() >= usize::from(self.q.num) {
                return Err(ChainError::TooLong);
            }
            let d = self
                .descriptor(ram, mem, index)
                .map_err(|_| ChainError::Unreachable)?
                .ok_or(ChainError::BadIndex(index))?;
            let writable = d.flags & DESC_F_WRITE != 0;
            let mut segment = Segment {
                ipa: d.addr,
                len: u64::from(d.len),
                writable,
            };
            // VIRTIO_F_INDIRECT_DESC is not offered, so the flag is an
            // error; the buffer must be inside the VM's RAM (checked
            // arithmetic: addr + len must not wrap).
            let fault = if d.flags & DESC_F_INDIRECT != 0 {
                Some(ChainError::Indirect)
            } else if ram.slice(d.addr, u64::from(d.len)).is_err() {
                Some(ChainError::OutsideRam)
            } else {
                None
            };
            if let Some(fault) = fault {
                chain.fault.get_or_insert(fault);
                segment = Segment {
                    ipa: 0,
                    len: 0,
                    writable,
                };
            }
            chain
                .segments
                .push(segment)
                .map_err(|_| ChainError::TooLong)?;
            if d.flags & DESC_F_NEXT == 0 {
                return Ok(());
            }
            index = d.next;
        }
    }
}

/// A descriptor as copied out of guest RAM.
#[derive(Clone, Copy, Debug)]
struct Descriptor {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// Why a chain was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// A head or `next` that is not below the queue size (no end).
    BadIndex(u16),
    /// More descriptors than the queue has: a loop (no end).
    TooLong,
    /// An indirect table (not negotiated).
    Indirect,
    /// A buffer not entirely inside the VM's RAM.
    OutsideRam,
    /// The queue's own areas (never, once [`QueueConfig::areas`] passed).
    Unreachable,
}

/// One buffer of a chain, checked to be inside RAM when walked (or empty,
/// standing for a refused descriptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub ipa: u64,
    pub len: u64,
    pub writable: bool,
}

/// A walked chain. Kept in the device so the hot path allocates nothing.
#[derive(Default)]
pub struct Chain {
    pub segments: heapless::Vec<Segment, { QUEUE_NUM_MAX as usize }>,
    /// The first descriptor refused, if any (virtio-blk fails the request
    /// with IOERR; virtio-net completes the chain with length 0).
    pub fault: Option<ChainError>,
}

/// A position in a run of segments, read or written in order so that each
/// guest byte is touched once.
pub struct Cursor<'a> {
    segments: &'a [Segment],
    index: usize,
    offset: u64,
}

impl<'a> Cursor<'a> {
    pub fn new(segments: &'a [Segment]) -> Self {
        Cursor {
            segments,
            index: 0,
            offset: 0,
        }
    }

    /// The next piece of at most `want` bytes, advancing past it.
    fn next_slice(&mut self, ram: &GuestRam, want: u64) -> Option<GuestSlice> {
        loop {
            let seg = self.segments.get(self.index)?;
            let left = seg.len - self.offset;
            if left == 0 {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let n = left.min(want);
            let slice = ram.slice(seg.ipa + self.offset, n).ok()?;
            self.offset += n;
            return Some(slice);
        }
    }

    /// Fills `buf` from the segments; `false` if they ran out first.
    pub fn read(&mut self, ram: &GuestRam, mem: &impl GuestMemory, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let Some(slice) = self.next_slice(ram, (buf.len() - done) as u64) else {
                return false;
            };
            let n = slice.len() as usize;
            mem.read_guest(slice, &mut buf[done..done + n]);
            done += n;
        }
        true
    }

    /// Writes `bytes` into the segments; `false` if they ran out first.
    pub fn write(&mut self, ram: &GuestRam, mem: &mut impl GuestMemory, bytes: &[u8]) -> bool {
        let mut done = 0;
        while done < bytes.len() {
            let Some(slice) = self.next_slice(ram, (bytes.len() - done) as u64) else {
                return false;
            };
            let n = slice.len() as usize;
            mem.write_guest(slice, &bytes[done..done + n]);
            done += n;
        }
        true
    }
}
