//! A hostile virtio-blk driver: it brings its disks up as a driver must,
//! checks good requests, then throws malformed chains, bad requests and
//! random register writes at the hypervisor's virtio-blk back-end
//! (`components/vblk`). Each bad request must complete (used ring
//! advanced, its head id) with the status the spec calls for, or with used
//! length 0 when it has no device-writable status byte; none may hang the
//! guest, stop the VM or disturb a later good request. Completion is
//! polled with a bound: a hang is a failure, not a hung guest.
//!
//! Each check is a named case, `blkfuzz: case <name>: <result> ok` or
//! `blkfuzz: case <name>: FAILED: <why>`; the last line is
//! `blkfuzz: <n> cases ok, <m> failed`, and the exit code is 0 only if
//! none failed.
//!
//! Command line (`key=value` words):
//! - `seed=<n>` (default 1), `attempts=<n>` (default 2000): the random
//!   phase, chains submitted in all (splitmix64, as `guests/fuzzer`);
//! - `regs=<n>` (default 2000): random register accesses per disk before
//!   the reset and re-initialisation;
//! - `disks=<n>` (default 2): the VM's disks, slots 0.. of the ABI;
//! - `latency=1` (opt-in, known to fail): a case that fails if a
//!   QueueNotify write kept this vCPU in the hypervisor for 1 ms or more
//!   (the neighbour's latency bound); the hypervisor serves requests
//!   synchronously on the notifying CPU, so the disk's own latency (a
//!   FLUSH, a cold read) holds that CPU. Without it the longest is only
//!   reported;
//! - `load=<ms>` (default 0): after the cases, that much guest time of
//!   disk traffic (a write and a FLUSH with a writable disk, a read of
//!   every block of the read-only disk, in rounds), for a neighbour's
//!   latency beside it, or for contention on the hypervisor's disk;
//! - per disk n: `cap<n>=<sectors>` its expected capacity, `ro<n>=1` if it
//!   is read-only, `tag<n>=<text>` the marker at the start of each 4 KiB
//!   block of it (`<text>-<block, 4 digits>`, as the disk-layout
//!   fixture's LVs have).
//!
//! Memory: the rings and buffers are the top of guest RAM below the
//! StartInfo page (see `driver::Mem`); random chains point only into a
//! scratch area there, or outside RAM, so the device never writes this
//! guest's code.
#![no_std]
#![no_main]
// No heap: a failure carries its line by value (`driver::Msg`).
#![allow(clippy::result_large_err)]

mod cases;
mod driver;
mod random;

use abi::StartInfo;
use guest_rt::{cmdline, println};

use driver::{Disk, Mem, Msg, Res, Seg, Used, SECTOR};
pub(crate) use guest_rt::why;

guest_rt::entry!(main);

/// Most disks this guest drives.
const MAX_DISKS: usize = 4;
/// Queue size asked for on disk 0 (the device's maximum) and on the others
/// (smaller, so both sizes are covered).
const QUEUE_SIZES: [u16; 2] = [128, 64];

// The DMA area: offsets from its base.
const DMA_SIZE: u64 = 0x4_0000;
/// Rings of disk n at RINGS + n * RING_STRIDE.
const RINGS: u64 = 0;
const RING_STRIDE: u64 = 0x4000;
/// 16-byte request headers, by slot.
const HEADERS: u64 = 0x1_0000;
/// Status bytes, one 16-byte slot each (the rest of the slot is a canary).
const STATUSES: u64 = 0x1_1000;
/// Data read from the disks (32 KiB).
const BUF: u64 = 0x1_2000;
/// Data written to the disks (16 KiB).
const PAT: u64 = 0x1_a000;
/// Small buffers with canaries, indirect tables, copies (8 KiB).
const AUX: u64 = 0x1_e000;
/// Where random chains point when they point into RAM (128 KiB).
const SCRATCH: u64 = 0x2_0000;
const SCRATCH_SIZE: u64 = DMA_SIZE - SCRATCH;
const _: () = assert!(RINGS + MAX_DISKS as u64 * RING_STRIDE <= HEADERS);

/// What the status byte slot holds before a request.
const CANARY: u32 = 0xeeee_eeee;
/// A notification this long (µs) is reported: the neighbour's interrupt
/// latency bound (62500 ticks of 62.5 MHz) is 1 ms.
const SLOW_US: u64 = 1000;
const SLOW_SHOWN: u32 = 10;

/// Sector the write test writes (inside a 4 KiB block, not its marker).
const WRITE_SECTOR: u64 = 9;

/// What the command line says to expect of a disk.
#[derive(Clone, Copy, Default)]
struct Expect {
    capacity: Option<u64>,
    read_only: bool,
    tag: Option<&'static str>,
}

/// The run: memory, disks, what to expect, the tally.
pub struct Blk {
    mem: Mem,
    dma: u64,
    ram_base: u64,
    ram_end: u64,
    disks: [Disk; MAX_DISKS],
    count: usize,
    up: [bool; MAX_DISKS],
    expect: [Expect; MAX_DISKS],
    /// The first writable and the first read-only disk.
    rw: Option<usize>,
    ro: Option<usize>,
    /// The longest notification so far, in ticks, and where it was.
    slowest: (u64, Msg),
    /// Notifications longer than the neighbour's bound, [`SLOW`].
    slow: u32,
    /// Checksums of each disk's first sweep.
    sums: [u64; MAX_DISKS],
    ok: u32,
    failed: u32,
}

/// What a request should have got.
#[derive(Clone, Copy)]
enum Want {
    /// This status byte, and this used length.
    Status(u8, u32),
    /// No status byte (none writable): used length 0, the slot untouched.
    NoStatus,
}

impl Want {
    /// Whether the request fails (so its data buffer stays as it was).
    fn fails(self) -> bool {
        !matches!(self, Want::Status(driver::S_OK, _))
    }
}

fn status_name(s: u8) -> &'static str {
    match s {
        driver::S_OK => "OK",
        driver::S_IOERR => "IOERR",
        driver::S_UNSUPP => "UNSUPP",
        _ => "?",
    }
}

impl Blk {
    fn header_at(&self, slot: u64) -> u64 {
        self.dma + HEADERS + 16 * slot
    }

    /// Writes a request header in `slot`; its address.
    fn header(&self, slot: u64, kind: u32, sector: u64) -> u64 {
        let at = self.header_at(slot);
        self.mem.w32(at, kind);
        self.mem.w32(at + 4, 0);
        self.mem.w64(at + 8, sector);
        at
    }

    /// A status byte slot, canary-filled; its address.
    fn status_slot(&self, slot: u64) -> u64 {
        let at = self.dma + STATUSES + 16 * slot;
        self.mem.fill(at, 16, CANARY);
        at
    }

    fn buf(&self) -> u64 {
        self.dma + BUF
    }

    fn pat(&self) -> u64 {
        self.dma + PAT
    }

    fn aux(&self) -> u64 {
        self.dma + AUX
    }

    /// Checks a completion against `want`; the result's name.
    fn check(&self, used: Used, head: u16, status_at: u64, want: Want) -> Res<&'static str> {
        if used.id != u32::from(head) {
            return Err(why!("used id {} for head {head}", used.id));
        }
        let byte = self.mem.r8(status_at);
        let rest = self.mem.r32(status_at + 4);
        match want {
            Want::NoStatus => {
                if used.len != 0 || byte != 0xee {
                    return Err(why!(
                        "used len {} status {byte:#x}, wanted no status and len 0",
                        used.len
                    ));
                }
                Ok("no status, used len 0")
            }
            Want::Status(s, len) => {
                if byte != s || used.len != len {
                    return Err(why!(
                        "status {byte:#x} used len {}, wanted {} ({s}) len {len}",
                        used.len,
                        status_name(s)
                    ));
                }
                if self.mem.r32(status_at & !3) >> 8 != CANARY >> 8 || rest != CANARY {
                    return Err(why!("bytes after the status byte were written"));
                }
                Ok(status_name(s))
            }
        }
    }

    /// `segs` from descriptor 0 on disk `d`, checked against `want`.
    fn expect_chain(
        &mut self,
        d: usize,
        segs: &[Seg],
        status_at: u64,
        want: Want,
    ) -> Res<&'static str> {
        let used = self.disks[d].chain(self.mem, segs)?;
        self.check(used, 0, status_at, want)
    }

    /// A good read of `count` sectors at `sector` into `buf`.
    fn read(&mut self, d: usize, sector: u64, count: u32, buf: u64) -> Res<()> {
        let h = self.header(0, driver::T_IN, sector);
        let st = self.status_slot(0);
        let len = count * SECTOR as u32;
        let segs = [Seg::r(h, 16), Seg::w(buf, len), Seg::w(st, 1)];
        self.expect_chain(d, &segs, st, Want::Status(driver::S_OK, len + 1))
            .map(|_| ())
            .map_err(|e| why!("read of sector {sector} on disk {d}: {e}"))
    }

    /// A good write of `count` sectors at `sector` from `buf`.
    fn write(&mut self, d: usize, sector: u64, count: u32, buf: u64) -> Res<()> {
        let h = self.header(0, driver::T_OUT, sector);
        let st = self.status_slot(0);
        let segs = [
            Seg::r(h, 16),
            Seg::r(buf, count * SECTOR as u32),
            Seg::w(st, 1),
        ];
        self.expect_chain(d, &segs, st, Want::Status(driver::S_OK, 1))
            .map(|_| ())
            .map_err(|e| why!("write of sector {sector} on disk {d}: {e}"))
    }

    /// Whether the 4 KiB block `block` of disk `d` starts, as read at
    /// `addr`, with its marker (true when the disk has no tag).
    fn marker_ok(&self, d: usize, addr: u64, block: u64) -> bool {
        let Some(tag) = self.expect[d].tag else {
            return true;
        };
        let want = why!("{tag}-{block:04}");
        self.mem.holds(addr, want.as_str().as_bytes())
    }

    /// Reads sector 0 of disk `d` and checks its marker: the request that
    /// must keep working whatever came before.
    fn good_read(&mut self, d: usize) -> Res<()> {
        let buf = self.buf();
        self.mem.fill(buf, SECTOR, 0x5a5a_5a5a);
        self.read(d, 0, 1, buf)?;
        if !self.marker_ok(d, buf, 0) {
            return Err(why!("sector 0 of disk {d} lacks its marker"));
        }
        Ok(())
    }

    /// Every disk still healthy: status as after DRIVER_OK, a good read.
    fn healthy(&mut self) -> Res<()> {
        for d in 0..self.count {
            if !self.up[d] {
                continue;
            }
            let status = self.disks[d].status();
            if status & (driver::S_NEEDS_RESET | driver::S_FAILED) != 0 {
                return Err(why!("disk {d} status {status:#x}"));
            }
            self.good_read(d)
                .map_err(|e| why!("a good read after it: {e}"))?;
        }
        Ok(())
    }

    /// Brings disk `d` up again (after a case that broke its queue).
    fn reinit(&mut self, d: usize) -> Res<()> {
        let num = QUEUE_SIZES[d.min(1)];
        self.disks[d].init(self.mem, num)?;
        self.up[d] = true;
        Ok(())
    }

    /// Notes how long the disks' notifications took in `what`, and clears
    /// their record.
    fn timed(&mut self, what: &str) {
        let longest = self.disks.iter().map(|d| d.longest).max().unwrap_or(0);
        for d in &mut self.disks {
            d.longest = 0;
        }
        let slow = longest * 1_000_000 / guest_rt::timer::frequency() >= SLOW_US;
        if slow {
            self.slow += 1;
            if self.slow <= SLOW_SHOWN {
                println!(
                    "blkfuzz: slow notification: {} us in {what}",
                    self.micros(longest)
                );
            }
        }
        if longest > self.slowest.0 {
            self.slowest = (longest, why!("{what}"));
        }
    }

    fn micros(&self, ticks: u64) -> u64 {
        ticks * 1_000_000 / guest_rt::timer::frequency()
    }

    fn pass(&mut self, name: &str, what: &str) {
        println!("blkfuzz: case {name}: {what} ok");
        self.ok += 1;
    }

    fn fail(&mut self, name: &str, why: &Msg) {
        println!("blkfuzz: case {name}: FAILED: {why}");
        self.failed += 1;
    }

    /// Runs a case, then checks every disk still serves a good read; a
    /// disk left broken is brought up again so the next cases run.
    fn case(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Res<&'static str>) {
        let result = f(self).and_then(|what| self.healthy().map(|()| what));
        self.timed(name);
        match result {
            Ok(what) => self.pass(name, what),
            Err(why) => {
                self.fail(name, &why);
                for d in 0..self.count {
                    if let Err(e) = self.reinit(d) {
                        println!("blkfuzz: disk {d}: re-init failed: {e}");
                        self.up[d] = false;
                    }
                }
            }
        }
    }
}

/// The value of `key=` on the command line, as text.
fn word(line: &'static str, key: &str) -> Option<&'static str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn main(info: &'static StartInfo) -> u64 {
    let line = info.cmdline();
    let seed = cmdline::number(line, "seed", 1);
    let attempts = cmdline::number(line, "attempts", 2000);
    let regs = cmdline::number(line, "regs", 2000);
    let count = (cmdline::number(line, "disks", 2) as usize).min(MAX_DISKS);
    println!(
        "blkfuzz: seed={seed} attempts={attempts} regs={regs} disks={count} {}",
        if cfg!(target_arch = "arm") {
            "aarch32"
        } else {
            "aarch64"
        }
    );

    // The DMA area: the top of RAM below the StartInfo page, 64 KiB
    // aligned, clear of the image.
    let ram_base = info.ram_base;
    let ram_end = ram_base + info.ram_size;
    let dma = (ram_end - 0x1000 - DMA_SIZE) & !0xffff;
    // The image starts at ram_base, so an area that starts past it and ends
    // below the StartInfo page is clear of both.
    let start_info = info as *const StartInfo as u64;
    if dma < ram_base
        || dma + DMA_SIZE > start_info & !0xfff
        || guest_rt::probe::check(info, dma).is_err()
    {
        println!(
            "blkfuzz: no room for the rings and buffers in {} bytes of RAM",
            info.ram_size
        );
        return 2;
    }

    let mut expect = [Expect::default(); MAX_DISKS];
    for (n, e) in expect.iter_mut().enumerate().take(count) {
        let key = |k: &str| why!("{k}{n}");
        e.capacity = word(line, key("cap").as_str()).and_then(|v| v.parse().ok());
        e.read_only = cmdline::number(line, key("ro").as_str(), 0) != 0;
        e.tag = word(line, key("tag").as_str());
    }
    let rw = (0..count).find(|&n| !expect[n].read_only);
    let ro = (0..count).find(|&n| expect[n].read_only);
    let mut b = Blk {
        mem: Mem::new(info, dma, DMA_SIZE),
        dma,
        ram_base,
        ram_end,
        disks: core::array::from_fn(|n| Disk::new(n, dma + RINGS + n as u64 * RING_STRIDE)),
        count,
        up: [false; MAX_DISKS],
        expect,
        rw,
        ro,
        slowest: (0, Msg::new()),
        slow: 0,
        sums: [0; MAX_DISKS],
        ok: 0,
        failed: 0,
    };
    b.mem.fill(dma, DMA_SIZE, 0);

    cases::interrupts_init();
    cases::bring_up(&mut b);
    cases::good(&mut b);
    cases::bad_requests(&mut b);
    cases::bad_chains(&mut b);
    cases::bad_setup(&mut b);
    random::chains(&mut b, seed, attempts);
    random::registers(&mut b, seed, regs);
    cases::finally(&mut b);
    cases::load(&mut b, cmdline::number(line, "load", 0));

    let longest = b.micros(b.slowest.0);
    println!(
        "blkfuzz: longest notification {longest} us ({}), {} over {SLOW_US} us",
        b.slowest.1, b.slow
    );
    if cmdline::number(line, "latency", 0) != 0 {
        // Known to fail (opt-in): requests are served synchronously on
        // the notifying CPU, so the disk's own latency holds it.
        b.case("notify-latency", |b| match b.slow {
            0 => Ok("every notification under 1 ms"),
            n => Err(why!(
                "{n} notifications over {SLOW_US} us, the longest {longest} us"
            )),
        });
    }
    println!("blkfuzz: {} cases ok, {} failed", b.ok, b.failed);
    u64::from(b.failed != 0)
}
