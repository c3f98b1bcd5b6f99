//! A polled driver of the virtio-mmio version 2 transport and its split
//! virtqueues (virtio 1.2 §2.7, §4.2.2), for the hostile device guests
//! (`guests/blkfuzz`, `guests/netfuzz`): it lets its caller build any
//! descriptor chain, well formed or not, and hand any head to the device.
//!
//! The rings and buffers live in guest RAM outside the image ([`Mem`]):
//! the device writes them during the QueueNotify trap, behind the
//! compiler's back, so they are never Rust objects; every access is a
//! volatile word through `guest_rt::probe`. The registers are reached with
//! `guest_rt::fuzz`'s checked MMIO accesses.

// No heap: a failure carries its line by value (`Msg`).
#![allow(clippy::result_large_err)]

use core::fmt::{self, Write};
use core::sync::atomic::{fence, Ordering};

use crate::{fuzz, probe, timer};
use abi::StartInfo;

// virtio-mmio registers (virtio 1.2 §4.2.2).
pub const MAGIC_VALUE: u64 = 0x000;
pub const VERSION: u64 = 0x004;
pub const DEVICE_ID: u64 = 0x008;
pub const DEVICE_FEATURES: u64 = 0x010;
pub const DEVICE_FEATURES_SEL: u64 = 0x014;
pub const DRIVER_FEATURES: u64 = 0x020;
pub const DRIVER_FEATURES_SEL: u64 = 0x024;
pub const QUEUE_SEL: u64 = 0x030;
pub const QUEUE_NUM_MAX: u64 = 0x034;
pub const QUEUE_NUM: u64 = 0x038;
pub const QUEUE_READY: u64 = 0x044;
pub const QUEUE_NOTIFY: u64 = 0x050;
pub const INTERRUPT_STATUS: u64 = 0x060;
pub const INTERRUPT_ACK: u64 = 0x064;
pub const STATUS: u64 = 0x070;
pub const QUEUE_DESC_LOW: u64 = 0x080;
pub const QUEUE_DESC_HIGH: u64 = 0x084;
pub const QUEUE_DRIVER_LOW: u64 = 0x090;
pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
pub const CONFIG_GENERATION: u64 = 0x0fc;
pub const CONFIG: u64 = 0x100;

const MAGIC: u32 = 0x7472_6976; // "virt"

// Device status bits (virtio 1.2 §2.1).
pub const S_ACKNOWLEDGE: u32 = 1;
pub const S_DRIVER: u32 = 2;
pub const S_DRIVER_OK: u32 = 4;
pub const S_FEATURES_OK: u32 = 8;
pub const S_NEEDS_RESET: u32 = 0x40;
pub const S_FAILED: u32 = 0x80;

pub const INT_USED: u32 = 1;
pub const INT_CONFIG: u32 = 2;

// Feature bits every device type shares.
pub const F_INDIRECT_DESC: u64 = 1 << 28;
pub const F_VERSION_1: u64 = 1 << 32;

// Descriptor flags.
pub const D_NEXT: u16 = 1;
pub const D_WRITE: u16 = 2;
pub const D_INDIRECT: u16 = 4;

/// `guest_rt::fuzz` load/store form 2: a plain 32-bit `ldr`/`str` on both
/// arches, the only width the device answers outside its config space.
pub const WORD: u32 = 2;

/// How long (ms) a request may take before it counts as hung. The device
/// completes in the trap, so the first poll should already see it; a
/// device that served later would still be well within this.
const HANG_MS: u64 = 1000;

/// A line saying what went wrong (no heap).
pub struct Msg {
    buf: [u8; 200],
    len: usize,
}

impl Msg {
    pub const fn new() -> Self {
        Msg {
            buf: [0; 200],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in (cut at a char boundary).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Default for Msg {
    fn default() -> Self {
        Msg::new()
    }
}

impl Write for Msg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `why!("...", args)`: a [`Msg`].
#[macro_export]
macro_rules! why {
    ($($arg:tt)*) => {{
        let mut m = $crate::virtio::Msg::new();
        let _ = core::fmt::Write::write_fmt(&mut m, format_args!($($arg)*));
        m
    }};
}

pub type Res<T> = Result<T, Msg>;

/// The DMA area (guest RAM outside the image and the StartInfo page), as
/// volatile words; an address outside it is this guest's own bug.
#[derive(Clone, Copy)]
pub struct Mem {
    info: &'static StartInfo,
    area: (u64, u64),
}

impl Mem {
    pub fn new(info: &'static StartInfo, base: u64, size: u64) -> Self {
        Mem {
            info,
            area: (base, base + size),
        }
    }

    fn check(self, addr: u64) {
        let (base, end) = self.area;
        if addr < base || addr >= end {
            panic!("virtio: {addr:#x} is not in its DMA area {base:#x}..{end:#x}");
        }
    }

    pub fn r32(self, addr: u64) -> u32 {
        self.check(addr);
        match probe::read(self.info, addr) {
            Ok(v) => v,
            Err(why) => panic!("virtio: own memory at {addr:#x}: {why}"),
        }
    }

    pub fn w32(self, addr: u64, value: u32) {
        self.check(addr);
        if let Err(why) = probe::write(self.info, addr, value) {
            panic!("virtio: own memory at {addr:#x}: {why}");
        }
    }

    pub fn r16(self, addr: u64) -> u16 {
        (self.r32(addr & !3) >> ((addr & 2) * 8)) as u16
    }

    pub fn w16(self, addr: u64, value: u16) {
        let shift = (addr & 2) * 8;
        let word = self.r32(addr & !3) & !(0xffff << shift) | u32::from(value) << shift;
        self.w32(addr & !3, word);
    }

    pub fn r8(self, addr: u64) -> u8 {
        (self.r32(addr & !3) >> ((addr & 3) * 8)) as u8
    }

    pub fn w64(self, addr: u64, value: u64) {
        self.w32(addr, value as u32);
        self.w32(addr + 4, (value >> 32) as u32);
    }

    /// `len` bytes (a multiple of 4) at `addr`, each word `word`.
    pub fn fill(self, addr: u64, len: u64, word: u32) {
        for at in (addr..addr + len).step_by(4) {
            self.w32(at, word);
        }
    }

    /// Whether the bytes at `addr` are `bytes`.
    pub fn holds(self, addr: u64, bytes: &[u8]) -> bool {
        bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| self.r8(addr + i as u64) == b)
    }
}

/// One buffer of a chain the helpers build (NEXT and `next` are added).
#[derive(Clone, Copy)]
pub struct Seg {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
}

impl Seg {
    /// Device-readable.
    pub fn r(addr: u64, len: u32) -> Self {
        Seg {
            addr,
            len,
            flags: 0,
        }
    }

    /// Device-writable.
    pub fn w(addr: u64, len: u32) -> Self {
        Seg {
            addr,
            len,
            flags: D_WRITE,
        }
    }
}

/// A used ring element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    pub id: u32,
    pub len: u32,
}

/// One queue of a virtio-mmio device (and the device's registers, which
/// every queue of it reaches alike).
pub struct Virtq {
    mmio: u64,
    /// Its index on the device (QueueSel, QueueNotify).
    pub queue: u32,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub num: u16,
    /// The next avail.idx to publish, and the used.idx seen so far.
    avail_idx: u16,
    used_seen: u16,
    /// The longest QueueNotify write since the caller last cleared it, in
    /// counter ticks: the device serves in the trap, so this is how long
    /// the vCPU (and the physical CPU under it) was in the hypervisor.
    pub longest: u64,
}

/// Bytes of guest RAM [`Virtq::new`]'s rings take.
pub const RINGS_SIZE: u64 = 0x3000;

impl Virtq {
    /// Queue `queue` of device `index` of the ABI's virtio-mmio windows,
    /// its rings at `rings` (the descriptor table, then the avail and used
    /// rings a page apart).
    pub fn new(index: usize, queue: u32, rings: u64) -> Self {
        Virtq {
            mmio: abi::GUEST_VIRTIO_BASE + index as u64 * abi::GUEST_VIRTIO_SIZE,
            queue,
            desc: rings,
            avail: rings + 0x1000,
            used: rings + 0x2000,
            num: 0,
            avail_idx: 0,
            used_seen: 0,
            longest: 0,
        }
    }

    /// A register (32-bit read).
    pub fn reg(&self, offset: u64) -> u32 {
        fuzz::virtio_read(self.mmio + offset, WORD).map_or(0, |v| v as u32)
    }

    /// Writes a register (32-bit).
    pub fn set(&self, offset: u64, value: u32) {
        let _ = fuzz::virtio_write(self.mmio + offset, WORD, value.into());
    }

    /// A random access of any form, for the register fuzzing.
    pub fn raw_write(&self, offset: u64, form: u32, value: u64) {
        let _ = fuzz::virtio_write(self.mmio + offset, form, value);
    }

    pub fn raw_read(&self, offset: u64, form: u32) -> u64 {
        fuzz::virtio_read(self.mmio + offset, form).unwrap_or(0)
    }

    pub fn status(&self) -> u32 {
        self.reg(STATUS)
    }

    /// Status 0 (virtio 1.2 §4.2.3.1: reading it back 0 says it is done).
    pub fn reset(&mut self) -> Res<()> {
        self.set(STATUS, 0);
        let status = self.status();
        if status != 0 {
            return Err(why!("status {status:#x} after reset"));
        }
        Ok(())
    }

    pub fn device_features(&self) -> u64 {
        self.set(DEVICE_FEATURES_SEL, 0);
        let low = self.reg(DEVICE_FEATURES);
        self.set(DEVICE_FEATURES_SEL, 1);
        let high = self.reg(DEVICE_FEATURES);
        u64::from(high) << 32 | u64::from(low)
    }

    pub fn set_driver_features(&self, features: u64) {
        self.set(DRIVER_FEATURES_SEL, 0);
        self.set(DRIVER_FEATURES, features as u32);
        self.set(DRIVER_FEATURES_SEL, 1);
        self.set(DRIVER_FEATURES, (features >> 32) as u32);
    }

    /// Reset, ACKNOWLEDGE and DRIVER: where feature negotiation starts,
    /// on a device of type `device_id`.
    pub fn begin(&mut self, device_id: u32) -> Res<()> {
        let (magic, version, id) = (
            self.reg(MAGIC_VALUE),
            self.reg(VERSION),
            self.reg(DEVICE_ID),
        );
        if magic != MAGIC || version != 2 || id != device_id {
            return Err(why!(
                "not a virtio-mmio v2 device of type {device_id}: magic {magic:#x} version {version} id {id}"
            ));
        }
        self.reset()?;
        self.set(STATUS, S_ACKNOWLEDGE);
        self.set(STATUS, S_ACKNOWLEDGE | S_DRIVER);
        Ok(())
    }

    /// Sets this queue up with `num` entries at the rings, zeroed, without
    /// checking that QueueReady stuck.
    pub fn setup_queue(&mut self, mem: Mem, num: u16) {
        self.num = num;
        mem.fill(self.desc, RINGS_SIZE, 0);
        self.avail_idx = 0;
        self.used_seen = 0;
        self.set(QUEUE_SEL, self.queue);
        self.set(QUEUE_NUM, num.into());
        self.set(QUEUE_DESC_LOW, self.desc as u32);
        self.set(QUEUE_DESC_HIGH, (self.desc >> 32) as u32);
        self.set(QUEUE_DRIVER_LOW, self.avail as u32);
        self.set(QUEUE_DRIVER_HIGH, (self.avail >> 32) as u32);
        self.set(QUEUE_DEVICE_LOW, self.used as u32);
        self.set(QUEUE_DEVICE_HIGH, (self.used >> 32) as u32);
        self.set(QUEUE_READY, 1);
    }

    /// Queue bring-up after FEATURES_OK: this queue, not ready yet, of at
    /// most `want` entries, and ready.
    pub fn init_queue(&mut self, mem: Mem, want: u16) -> Res<()> {
        self.set(QUEUE_SEL, self.queue);
        if self.reg(QUEUE_READY) != 0 {
            return Err(why!("queue {} ready before setup", self.queue));
        }
        let max = self.reg(QUEUE_NUM_MAX);
        if max == 0 {
            return Err(why!("queue {} not available (QueueNumMax 0)", self.queue));
        }
        self.setup_queue(mem, want.min(max as u16));
        if self.reg(QUEUE_READY) != 1 {
            return Err(why!("QueueReady did not stick (size {})", self.num));
        }
        Ok(())
    }

    /// Writes descriptor `i` (any index: the table has room for
    /// [`QUEUE_MAX`] entries).
    pub fn put(&self, mem: Mem, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.desc + 16 * u64::from(i % QUEUE_MAX);
        mem.w64(at, addr);
        mem.w32(at + 8, len);
        mem.w32(at + 12, u32::from(flags) | u32::from(next) << 16);
    }

    /// Puts `segs` in descriptors `first..`, linked in order; the head.
    pub fn put_chain(&self, mem: Mem, first: u16, segs: &[Seg]) -> u16 {
        for (i, s) in segs.iter().enumerate() {
            let i = first + i as u16;
            let last = usize::from(i - first) + 1 == segs.len();
            let (flags, next) = if last {
                (s.flags, 0)
            } else {
                (s.flags | D_NEXT, i + 1)
            };
            self.put(mem, i, s.addr, s.len, flags, next);
        }
        first
    }

    /// Makes `head` available (not yet published).
    pub fn offer(&mut self, mem: Mem, head: u16) {
        let slot = u64::from(self.avail_idx % self.num);
        mem.w16(self.avail + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Publishes avail.idx.
    pub fn publish(&self, mem: Mem) {
        // The ring entries and descriptors before the index, the index
        // before the notification (virtio 1.2 §2.7.13).
        fence(Ordering::SeqCst);
        mem.w16(self.avail + 2, self.avail_idx);
        fence(Ordering::SeqCst);
    }

    /// Publishes avail.idx and notifies this queue.
    pub fn kick(&mut self, mem: Mem) {
        self.publish(mem);
        let start = timer::now();
        self.set(QUEUE_NOTIFY, self.queue);
        self.longest = self.longest.max(timer::now() - start);
    }

    /// The next avail.idx this driver publishes.
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// Sets avail.idx to anything (for the hostile cases).
    pub fn publish_raw(&mut self, mem: Mem, idx: u16) {
        self.avail_idx = idx;
        self.kick(mem);
    }

    /// Completions not taken yet.
    pub fn pending(&self, mem: Mem) -> u16 {
        mem.r16(self.used + 2).wrapping_sub(self.used_seen)
    }

    /// Waits, bounded, for `n` completions.
    pub fn wait(&self, mem: Mem, n: u16) -> Res<()> {
        let start = timer::now();
        let limit = timer::frequency() * HANG_MS / 1000;
        loop {
            if self.pending(mem) >= n {
                fence(Ordering::SeqCst);
                return Ok(());
            }
            if timer::now() - start > limit {
                return Err(why!(
                    "hang: {} of {n} completions after {HANG_MS} ms (device status {:#x})",
                    self.pending(mem),
                    self.status()
                ));
            }
        }
    }

    /// The next used element.
    pub fn take(&mut self, mem: Mem) -> Used {
        let at = self.used + 4 + 8 * u64::from(self.used_seen % self.num);
        self.used_seen = self.used_seen.wrapping_add(1);
        Used {
            id: mem.r32(at),
            len: mem.r32(at + 4),
        }
    }

    /// Acknowledges what InterruptStatus says; returns it.
    pub fn ack(&self) -> u32 {
        let status = self.reg(INTERRUPT_STATUS);
        self.set(INTERRUPT_ACK, status);
        status
    }

    /// Offers `head`, notifies, and takes its completion: exactly one,
    /// with the used-buffer interrupt raised.
    pub fn submit(&mut self, mem: Mem, head: u16) -> Res<Used> {
        self.offer(mem, head);
        self.kick(mem);
        self.wait(mem, 1)?;
        let used = self.take(mem);
        let extra = self.pending(mem);
        if extra != 0 {
            return Err(why!("{extra} completions more than submitted"));
        }
        let int = self.ack();
        if int & INT_USED == 0 {
            return Err(why!("InterruptStatus {int:#x} after a completion"));
        }
        Ok(used)
    }

    /// `segs` as one chain from descriptor 0, submitted.
    pub fn chain(&mut self, mem: Mem, segs: &[Seg]) -> Res<Used> {
        let head = self.put_chain(mem, 0, segs);
        self.submit(mem, head)
    }
}

/// The descriptor table's room, and the largest queue this driver asks
/// for (the device's QUEUE_NUM_MAX).
pub const QUEUE_MAX: u16 = 128;
const _: () = assert!(16 * QUEUE_MAX as u64 <= 0x1000);
