//! The named cases: bring-up, good requests, then bad requests, malformed
//! chains and bad setups, each of which must be refused in the way the
//! spec (and `components/vblk`) says, and leave the device serving.

use core::sync::atomic::{AtomicU32, Ordering};

use guest_rt::{fuzz, gic, irq, println};

use crate::driver::{
    self, Res, Seg, D_INDIRECT, D_NEXT, D_WRITE, F_FLUSH, F_INDIRECT_DESC, F_RO, F_VERSION_1,
    INT_CONFIG, QUEUE_DESC_HIGH, QUEUE_DESC_LOW, QUEUE_DEVICE_HIGH, QUEUE_DEVICE_LOW,
    QUEUE_DRIVER_HIGH, QUEUE_DRIVER_LOW, QUEUE_NUM, QUEUE_READY, QUEUE_SEL, SECTOR, STATUS,
    S_ACKNOWLEDGE, S_DRIVER, S_DRIVER_OK, S_FEATURES_OK, S_IOERR, S_NEEDS_RESET, S_OK, S_UNSUPP,
    T_FLUSH, T_GET_ID, T_IN, T_OUT,
};
use crate::{why, Blk, Want, MAX_DISKS, QUEUE_SIZES, WRITE_SECTOR};

/// Interrupts taken per disk, the InterruptStatus each handler saw last,
/// and interrupts of no disk.
static IRQS: [AtomicU32; MAX_DISKS] = [const { AtomicU32::new(0) }; MAX_DISKS];
static LAST_STATUS: [AtomicU32; MAX_DISKS] = [const { AtomicU32::new(0) }; MAX_DISKS];
static OTHER_IRQS: AtomicU32 = AtomicU32::new(0);

/// The IRQ handler: acknowledges a disk's interrupt at the device, or the
/// level line would stay high.
fn on_irq(intid: u32) {
    let disk = intid.wrapping_sub(abi::GUEST_VIRTIO_INTID) as usize;
    if disk >= MAX_DISKS {
        OTHER_IRQS.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let base = abi::GUEST_VIRTIO_BASE + disk as u64 * abi::GUEST_VIRTIO_SIZE;
    let status = fuzz::virtio_read(base + driver::INTERRUPT_STATUS, driver::WORD).unwrap_or(0);
    let _ = fuzz::virtio_write(base + driver::INTERRUPT_ACK, driver::WORD, status);
    LAST_STATUS[disk].store(status as u32, Ordering::SeqCst);
    IRQS[disk].fetch_add(1, Ordering::SeqCst);
}

/// Sets the GIC up for [`on_irq`] (every disk's line disabled until a case
/// enables it).
pub fn interrupts_init() {
    irq::set_handler(on_irq);
    gic::init();
}

const IOERR: Want = Want::Status(S_IOERR, 1);
/// What fills a data buffer the device must not write.
const UNTOUCHED: u32 = 0x5a5a_5a5a;

impl Blk {
    /// Fills `len` bytes at `addr` with a pattern of `seed`.
    pub(crate) fn pattern(&self, addr: u64, len: u64, seed: u32) {
        for i in 0..len / 4 {
            let w = (i as u32 ^ seed).wrapping_mul(0x9e37_79b9) ^ seed.rotate_left(13);
            self.mem.w32(addr + 4 * i, w);
        }
    }

    /// Whether `len` bytes at `a` and `b` are the same.
    pub(crate) fn same(&self, a: u64, b: u64, len: u64) -> bool {
        (0..len)
            .step_by(4)
            .all(|i| self.mem.r32(a + i) == self.mem.r32(b + i))
    }

    /// Whether `len` bytes at `addr` still hold [`UNTOUCHED`].
    fn untouched(&self, addr: u64, len: u64) -> bool {
        (0..len)
            .step_by(4)
            .all(|i| self.mem.r32(addr + i) == UNTOUCHED)
    }

    /// Reads all of disk `d`, 8 sectors at a time from sector 4 (so each
    /// read crosses a 4 KiB block and, on an LV of several segments, one
    /// read crosses each segment boundary); checks every block's marker
    /// and returns a checksum.
    pub(crate) fn sweep(&mut self, d: usize) -> Res<u64> {
        let cap = self.disks[d].capacity;
        let buf = self.buf();
        let mut sum: u64 = 0xcbf2_9ce4_8422_2325;
        let mut sector = 0;
        while sector < cap {
            let count = if sector == 0 { 4 } else { 8 }.min(cap - sector);
            self.read(d, sector, count as u32, buf)?;
            for s in sector..sector + count {
                let at = buf + (s - sector) * SECTOR;
                if s % 8 == 0 && !self.marker_ok(d, at, s / 8) {
                    return Err(why!("block {} of disk {d} lacks its marker", s / 8));
                }
            }
            for i in (0..count * SECTOR).step_by(4) {
                sum = (sum ^ u64::from(self.mem.r32(buf + i))).wrapping_mul(0x100_0000_01b3);
            }
            sector += count;
        }
        Ok(sum)
    }
}

/// Brings every disk up and says what it is.
pub fn bring_up(b: &mut Blk) {
    for d in 0..b.count {
        let name = why!("bring-up-{d}");
        b.case(name.as_str(), |b| {
            b.reinit(d)?;
            let disk = &b.disks[d];
            let e = b.expect[d];
            println!(
                "blkfuzz: disk {d}: {} sectors, features {:#x}, queue {}",
                disk.capacity, disk.features, disk.num
            );
            if e.capacity.is_some_and(|c| c != disk.capacity) {
                return Err(why!(
                    "capacity {}, expected {:?}",
                    disk.capacity,
                    e.capacity
                ));
            }
            if (disk.features & F_RO != 0) != e.read_only {
                return Err(why!("RO offered: {}", disk.features & F_RO != 0));
            }
            if disk.features & F_FLUSH == 0 {
                return Err(why!("FLUSH not offered"));
            }
            Ok("ready")
        });
    }
}

/// Requests that must work, and the data they move.
pub fn good(b: &mut Blk) {
    for d in 0..b.count {
        b.case(why!("sweep-{d}").as_str(), |b| {
            b.sums[d] = b.sweep(d)?;
            Ok("every block's marker")
        });
        b.case(why!("get-id-{d}").as_str(), |b| {
            let h = b.header(0, T_GET_ID, 0);
            let st = b.status_slot(0);
            let id = b.aux();
            b.mem.fill(id, 32, 0);
            let segs = [Seg::r(h, 16), Seg::w(id, 20), Seg::w(st, 1)];
            let what = b.expect_chain(d, &segs, st, Want::Status(S_OK, 21))?;
            let mut text = [0u8; 20];
            for (i, c) in text.iter_mut().enumerate() {
                *c = b.mem.r8(id + i as u64);
            }
            let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
            let text = core::str::from_utf8(&text[..end]).unwrap_or("(not UTF-8)");
            println!("blkfuzz: disk {d}: id \"{text}\"");
            Ok(what)
        });
    }
    let Some(w) = b.rw else {
        println!("blkfuzz: no writable disk: write cases skipped");
        return;
    };
    b.case("read-sector-0", |b| b.good_read(w).map(|()| "OK"));
    b.case("write-read-back", |b| {
        let (pat, buf) = (b.pat(), b.buf());
        b.pattern(pat, 2 * SECTOR, 0x1234);
        b.write(w, WRITE_SECTOR, 2, pat)?;
        b.mem.fill(buf, 2 * SECTOR, UNTOUCHED);
        b.read(w, WRITE_SECTOR, 2, buf)?;
        if !b.same(pat, buf, 2 * SECTOR) {
            return Err(why!("read back differs from what was written"));
        }
        Ok("OK")
    });
    b.case("flush", |b| {
        let h = b.header(0, T_FLUSH, 0);
        let st = b.status_slot(0);
        b.expect_chain(
            w,
            &[Seg::r(h, 16), Seg::w(st, 1)],
            st,
            Want::Status(S_OK, 1),
        )
    });
    b.case("header-split", |b| {
        // Legal: the header in two descriptors.
        let h = b.header(0, T_IN, 0);
        let (st, buf) = (b.status_slot(0), b.buf());
        b.mem.fill(buf, SECTOR, UNTOUCHED);
        let segs = [
            Seg::r(h, 8),
            Seg::r(h + 8, 8),
            Seg::w(buf, 512),
            Seg::w(st, 1),
        ];
        let what = b.expect_chain(w, &segs, st, Want::Status(S_OK, 513))?;
        if !b.marker_ok(w, buf, 0) {
            return Err(why!("wrong data"));
        }
        Ok(what)
    });
    b.case("full-queue-chain", |b| {
        // Legal: as many descriptors as the queue has, one sector read
        // into num - 2 pieces of 4 bytes, and 8 in the last two.
        let num = b.disks[w].num;
        let h = b.header(0, T_IN, 0);
        let (st, buf) = (b.status_slot(0), b.buf());
        b.mem.fill(buf, SECTOR, UNTOUCHED);
        let pieces = u64::from(num) - 2;
        let small = (SECTOR - 16) / (pieces - 2);
        let last = (SECTOR - small * (pieces - 2)) / 2;
        let disk = &b.disks[w];
        disk.put(b.mem, 0, h, 16, D_NEXT, 1);
        let mut at = buf;
        for i in 0..pieces {
            let len = if i < pieces - 2 { small } else { last };
            let i = i as u16 + 1;
            disk.put(b.mem, i, at, len as u32, D_NEXT | D_WRITE, i + 1);
            at += len;
        }
        if at != buf + SECTOR {
            return Err(why!("pieces add up to {}", at - buf));
        }
        disk.put(b.mem, num - 1, st, 1, D_WRITE, 0);
        let used = b.disks[w].submit(b.mem, 0)?;
        let what = b.check(used, 0, st, Want::Status(S_OK, 513))?;
        if !b.marker_ok(w, buf, 0) {
            return Err(why!("wrong data"));
        }
        Ok(what)
    });
    b.case("read-32k", |b| {
        // Eight of the device's bounce chunks, not aligned to a block.
        let buf = b.buf();
        let count = 64.min(b.disks[w].capacity - 4);
        b.read(w, 4, count as u32, buf)?;
        for s in (8..4 + count).step_by(8) {
            if !b.marker_ok(w, buf + (s - 4) * SECTOR, s / 8) {
                return Err(why!("block {} lacks its marker", s / 8));
            }
        }
        Ok("OK")
    });
    b.case("write-32k-read-back", |b| {
        // Across the LV's segments when it has two (web: at sector 1024).
        let (pat, buf) = (b.pat(), b.buf());
        let sector = 1000.min(b.disks[w].capacity - 64);
        b.pattern(pat, 16 * 1024, 0x3232);
        b.pattern(pat + 16 * 1024, 16 * 1024, 0x4242);
        b.write(w, sector, 64, pat)?;
        b.mem.fill(buf, 64 * SECTOR, UNTOUCHED);
        b.read(w, sector, 64, buf)?;
        if !b.same(pat, buf, 64 * SECTOR) {
            return Err(why!("read back differs from what was written"));
        }
        Ok("OK")
    });
    b.case("header-and-data-one-descriptor", |b| {
        // Legal: the header and the data-out in one buffer.
        let at = b.aux();
        b.mem.w32(at, T_OUT);
        b.mem.w32(at + 4, 0);
        b.mem.w64(at + 8, WRITE_SECTOR + 2);
        b.pattern(at + 16, SECTOR, 0x0d0d);
        let st = b.status_slot(0);
        let what = b.expect_chain(
            w,
            &[Seg::r(at, 16 + 512), Seg::w(st, 1)],
            st,
            Want::Status(S_OK, 1),
        )?;
        let buf = b.buf();
        b.read(w, WRITE_SECTOR + 2, 1, buf)?;
        if !b.same(at + 16, buf, SECTOR) {
            return Err(why!("read back differs from what was written"));
        }
        Ok(what)
    });
    b.case("data-and-status-one-descriptor", |b| {
        // Legal: the data-in and the status byte in one buffer.
        let h = b.header(0, T_IN, 0);
        let buf = b.buf();
        b.mem.fill(buf, 2 * SECTOR, UNTOUCHED);
        let used = b.disks[w].chain(b.mem, &[Seg::r(h, 16), Seg::w(buf, 513)])?;
        let status = b.mem.r8(buf + 512);
        if used.id != 0 || used.len != 513 || status != S_OK {
            return Err(why!("used {used:?}, status {status:#x}"));
        }
        if !b.marker_ok(w, buf, 0) || b.mem.r32(buf + 516) != UNTOUCHED {
            return Err(why!("wrong data"));
        }
        Ok("OK")
    });
    b.case("interrupt", |b| {
        // The used-buffer interrupt: a level line while InterruptStatus is
        // not 0; the handler acknowledges it at the device, so exactly one
        // is taken per completion and none after.
        for d in (0..b.count).filter(|&d| b.up[d]) {
            b.disks[d].ack();
            gic::enable(abi::GUEST_VIRTIO_INTID + d as u32, 0x80);
        }
        let before = IRQS[w].load(Ordering::SeqCst);
        let (h, st, buf, mem) = (b.header(0, T_IN, 0), b.status_slot(0), b.buf(), b.mem);
        let disk = &mut b.disks[w];
        let head = disk.put_chain(mem, 0, &[Seg::r(h, 16), Seg::w(buf, 512), Seg::w(st, 1)]);
        disk.offer(mem, head);
        irq::enable();
        disk.kick(mem);
        let waited = disk.wait(mem, 1);
        guest_rt::busy_loop(100_000);
        irq::disable();
        for d in 0..b.count {
            gic::disable(abi::GUEST_VIRTIO_INTID + d as u32);
        }
        waited?;
        let used = b.disks[w].take(mem);
        b.check(used, head, st, Want::Status(S_OK, 513))?;
        let taken = IRQS[w].load(Ordering::SeqCst) - before;
        let status = LAST_STATUS[w].load(Ordering::SeqCst);
        let other = OTHER_IRQS.load(Ordering::SeqCst);
        if taken != 1 || status & driver::INT_USED == 0 || other != 0 {
            return Err(why!(
                "{taken} interrupts (InterruptStatus {status:#x}), {other} others"
            ));
        }
        Ok("one, acknowledged")
    });
    b.case("config-write-ignored", |b| {
        let disk = &b.disks[w];
        disk.set(driver::CONFIG, 0);
        disk.set(driver::CONFIG + 4, 0xffff_ffff);
        let low = disk.reg(driver::CONFIG);
        let high = disk.reg(driver::CONFIG + 4);
        let cap = u64::from(high) << 32 | u64::from(low);
        if cap != disk.capacity {
            return Err(why!(
                "capacity reads {cap} after a write, was {}",
                disk.capacity
            ));
        }
        Ok("ignored")
    });
}

/// Requests a driver must not make: out of range, read-only, bad types,
/// wrong directions and lengths.
pub fn bad_requests(b: &mut Blk) {
    let Some(w) = b.rw else {
        return;
    };
    let cap = b.disks[w].capacity;
    // An IN of `len` bytes at `sector` with the data buffer untouched.
    let read = |b: &mut Blk, sector: u64, len: u32, want: Want| -> Res<&'static str> {
        let h = b.header(0, T_IN, sector);
        let (st, buf) = (b.status_slot(0), b.buf());
        b.mem.fill(buf, 2 * SECTOR, UNTOUCHED);
        let what = b.expect_chain(
            w,
            &[Seg::r(h, 16), Seg::w(buf, len), Seg::w(st, 1)],
            st,
            want,
        )?;
        if want.fails() && !b.untouched(buf, 2 * SECTOR) {
            return Err(why!("the data buffer was written"));
        }
        Ok(what)
    };
    b.case("read-at-capacity", |b| read(b, cap, 512, IOERR));
    b.case("read-straddling-end", |b| read(b, cap - 1, 1024, IOERR));
    b.case("read-last-sector", |b| {
        read(b, cap - 1, 512, Want::Status(S_OK, 513))
    });
    b.case("read-sector-overflow", |b| {
        read(b, u64::MAX - 1, 1024, IOERR)
    });
    b.case("read-sector-max", |b| read(b, u64::MAX, 512, IOERR));
    b.case("read-sector-bytes-overflow", |b| {
        read(b, 1 << 55, 512, IOERR)
    });
    b.case("read-partial-sector", |b| read(b, 0, 100, IOERR));
    b.case("zero-length-data", |b| read(b, 0, 0, Want::Status(S_OK, 1)));

    // An OUT of `len` bytes from the pattern at `sector`.
    let write = |b: &mut Blk, d: usize, sector: u64, len: u32| -> Res<&'static str> {
        let h = b.header(0, T_OUT, sector);
        let (st, pat) = (b.status_slot(0), b.pat());
        b.pattern(pat, 2 * SECTOR, 0xbad);
        b.expect_chain(
            d,
            &[Seg::r(h, 16), Seg::r(pat, len), Seg::w(st, 1)],
            st,
            IOERR,
        )
    };
    b.case("write-at-capacity", |b| write(b, w, cap, 512));
    b.case("write-straddling-end", |b| write(b, w, cap - 1, 1024));
    b.case("write-sector-overflow", |b| write(b, w, u64::MAX - 1, 1024));
    b.case("write-partial-sector", |b| write(b, w, WRITE_SECTOR, 100));
    if let Some(r) = b.ro {
        b.case("write-read-only", |b| {
            let (buf, copy) = (b.buf(), b.aux() + 0x1000);
            b.read(r, 0, 1, buf)?;
            for i in (0..SECTOR).step_by(4) {
                b.mem.w32(copy + i, b.mem.r32(buf + i));
            }
            let what = write(b, r, 0, 512)?;
            b.read(r, 0, 1, buf)?;
            if !b.same(buf, copy, SECTOR) {
                return Err(why!("sector 0 of the read-only disk changed"));
            }
            Ok(what)
        });
        b.case("write-read-only-flushed", |b| {
            // FLUSH on a read-only disk is harmless: OK.
            let h = b.header(0, T_FLUSH, 0);
            let st = b.status_slot(0);
            b.expect_chain(
                r,
                &[Seg::r(h, 16), Seg::w(st, 1)],
                st,
                Want::Status(S_OK, 1),
            )
        });
    }

    b.case("get-id-short", |b| {
        // 4 bytes for the id, a canary right after: the device must stop.
        let h = b.header(0, T_GET_ID, 0);
        let (st, id) = (b.status_slot(0), b.aux());
        b.mem.fill(id, 32, UNTOUCHED);
        let segs = [Seg::r(h, 16), Seg::w(id, 4), Seg::w(st, 1)];
        let what = b.expect_chain(w, &segs, st, Want::Status(S_OK, 5))?;
        if !b.untouched(id + 4, 28) {
            return Err(why!("GET_ID wrote past its 4-byte buffer"));
        }
        if b.mem.r32(id) == UNTOUCHED {
            return Err(why!("GET_ID wrote nothing"));
        }
        Ok(what)
    });
    b.case("get-id-with-data-out", |b| {
        let h = b.header(0, T_GET_ID, 0);
        let (st, id) = (b.status_slot(0), b.aux());
        let segs = [
            Seg::r(h, 16),
            Seg::r(b.pat(), 20),
            Seg::w(id, 20),
            Seg::w(st, 1),
        ];
        b.expect_chain(w, &segs, st, IOERR)
    });
    b.case("unknown-type", |b| {
        let h = b.header(0, 0x1234_5678, 0);
        let st = b.status_slot(0);
        let segs = [Seg::r(h, 16), Seg::w(b.buf(), 512), Seg::w(st, 1)];
        b.expect_chain(w, &segs, st, Want::Status(S_UNSUPP, 1))
    });
    b.case("flush-with-data", |b| {
        let h = b.header(0, T_FLUSH, 0);
        let st = b.status_slot(0);
        let segs = [Seg::r(h, 16), Seg::w(b.buf(), 512), Seg::w(st, 1)];
        b.expect_chain(w, &segs, st, IOERR)
    });
    b.case("read-buffer-device-readable", |b| {
        let h = b.header(0, T_IN, 0);
        let (st, buf) = (b.status_slot(0), b.buf());
        b.mem.fill(buf, SECTOR, UNTOUCHED);
        let what = b.expect_chain(
            w,
            &[Seg::r(h, 16), Seg::r(buf, 512), Seg::w(st, 1)],
            st,
            IOERR,
        )?;
        if !b.untouched(buf, SECTOR) {
            return Err(why!("a device-readable buffer was written"));
        }
        Ok(what)
    });
    b.case("write-buffer-device-writable", |b| {
        let h = b.header(0, T_OUT, WRITE_SECTOR);
        let (st, junk) = (b.status_slot(0), b.aux());
        b.pattern(junk, SECTOR, 0xdead);
        let what = b.expect_chain(
            w,
            &[Seg::r(h, 16), Seg::w(junk, 512), Seg::w(st, 1)],
            st,
            IOERR,
        )?;
        // WRITE_SECTOR still holds what write-read-back wrote.
        let (pat, buf) = (b.pat(), b.buf());
        b.pattern(pat, SECTOR, 0x1234);
        b.read(w, WRITE_SECTOR, 1, buf)?;
        if !b.same(pat, buf, SECTOR) {
            return Err(why!("the sector changed"));
        }
        Ok(what)
    });
    b.case("readable-after-writable", |b| {
        let h = b.header(0, T_IN, 0);
        let (st, buf) = (b.status_slot(0), b.buf());
        let segs = [
            Seg::r(h, 16),
            Seg::w(buf, 512),
            Seg::r(buf + 512, 512),
            Seg::w(st, 1),
        ];
        b.expect_chain(w, &segs, st, IOERR)
    });
    b.case("header-short", |b| {
        let h = b.header(0, T_IN, 0);
        let st = b.status_slot(0);
        let segs = [Seg::r(h, 8), Seg::w(b.buf(), 512), Seg::w(st, 1)];
        b.expect_chain(w, &segs, st, IOERR)
    });
    b.case("header-empty", |b| {
        let h = b.header(0, T_IN, 0);
        let st = b.status_slot(0);
        let segs = [Seg::r(h, 0), Seg::w(b.buf(), 512), Seg::w(st, 1)];
        b.expect_chain(w, &segs, st, IOERR)
    });
    b.case("status-only", |b| {
        let st = b.status_slot(0);
        b.expect_chain(w, &[Seg::w(st, 1)], st, IOERR)
    });
}

/// A descriptor's buffer in [`bad_chains`]: the header, the data buffer,
/// the status slot, or an address.
#[derive(Clone, Copy)]
enum A {
    Hdr,
    Buf,
    St,
    At(u64),
}

/// Chains that break the virtqueue's rules: loops, indices past the
/// queue, INDIRECT, buffers outside RAM, wrong directions, heads past the
/// queue; and several requests, good and bad, in one notification.
pub fn bad_chains(b: &mut Blk) {
    let Some(w) = b.rw else {
        return;
    };
    let num = b.disks[w].num;
    // A chain of raw descriptors `(index, addr, len, flags, next)` from
    // `head`, checked against `want`, with the data buffer untouched.
    let raw = |b: &mut Blk, descs: &[(u16, A, u32, u16, u16)], head: u16, want: Want| {
        let st = b.status_slot(0);
        b.mem.fill(b.buf(), SECTOR, UNTOUCHED);
        for &(i, addr, len, flags, next) in descs {
            let addr = match addr {
                A::Hdr => b.header(0, T_IN, 0),
                A::Buf => b.buf(),
                A::St => st,
                A::At(a) => a,
            };
            b.disks[w].put(b.mem, i, addr, len, flags, next);
        }
        let used = b.disks[w].submit(b.mem, head)?;
        let what = b.check(used, head, st, want)?;
        if !b.untouched(b.buf(), SECTOR) {
            return Err(why!("the data buffer was written"));
        }
        Ok(what)
    };
    use A::{Buf as BUF, Hdr as HDR, St as ST};
    const R: u16 = D_NEXT;
    const W: u16 = D_NEXT | D_WRITE;
    b.case("chain-loop", |b| {
        raw(
            b,
            &[(0, HDR, 16, R, 1), (1, BUF, 512, W, 0)],
            0,
            Want::NoStatus,
        )
    });
    b.case("chain-self-loop", |b| {
        raw(b, &[(0, HDR, 16, R, 0)], 0, Want::NoStatus)
    });
    b.case("next-out-of-queue", |b| {
        raw(
            b,
            &[(0, HDR, 16, R, 1), (1, BUF, 512, W, num)],
            0,
            Want::NoStatus,
        )
    });
    b.case("next-0xffff", |b| {
        raw(b, &[(0, HDR, 16, R, 0xffff)], 0, Want::NoStatus)
    });
    b.case("chain-longer-than-queue", |b| {
        // Every descriptor, in a ring: num of them and one more.
        let disk = &b.disks[w];
        let h = b.header(0, T_IN, 0);
        disk.put(b.mem, 0, h, 16, R, 1);
        for i in 1..num {
            disk.put(b.mem, i, b.buf(), 4, W, (i + 1) % num);
        }
        raw(b, &[], 0, Want::NoStatus)
    });
    b.case("avail-head-out-of-queue", |b| {
        raw(b, &[], num, Want::NoStatus)
    });
    b.case("avail-head-0xffff", |b| raw(b, &[], 0xffff, Want::NoStatus));
    b.case("indirect-data", |b| {
        // An indirect table that would be a good read, were it allowed.
        let table = b.aux();
        b.mem.w64(table, b.buf());
        b.mem.w32(table + 8, 512);
        b.mem.w32(table + 12, u32::from(D_WRITE));
        raw(
            b,
            &[
                (0, HDR, 16, R, 1),
                (1, A::At(table), 16, R | D_INDIRECT, 2),
                (2, ST, 1, D_WRITE, 0),
            ],
            0,
            IOERR,
        )
    });
    b.case("indirect-head", |b| {
        let table = b.aux();
        b.mem.w64(table, b.header(0, T_IN, 0));
        b.mem.w32(table + 8, 16);
        b.mem.w32(table + 12, 0);
        raw(
            b,
            &[
                (0, A::At(table), 16, R | D_INDIRECT, 1),
                (1, ST, 1, D_WRITE, 0),
            ],
            0,
            IOERR,
        )
    });
    let (ram_base, ram_end) = (b.ram_base, b.ram_end);
    let outside = |b: &mut Blk, name: &str, addr: u64, len: u32| {
        b.case(name, |b| {
            raw(
                b,
                &[
                    (0, HDR, 16, R, 1),
                    (1, A::At(addr), len, W, 2),
                    (2, ST, 1, D_WRITE, 0),
                ],
                0,
                IOERR,
            )
        });
    };
    outside(b, "buffer-past-ram", ram_end, 512);
    outside(b, "buffer-straddling-ram-end", ram_end - 256, 512);
    outside(b, "buffer-straddling-ram-start", ram_base - 256, 512);
    outside(b, "buffer-at-zero", 0, 512);
    outside(b, "buffer-in-mmio", abi::GUEST_VIRTIO_BASE, 512);
    outside(b, "addr-len-overflow", u64::MAX - 255, 512);
    outside(b, "buffer-len-4g", b.buf(), u32::MAX);
    outside(b, "buffer-above-4g", 1 << 32 | ram_base, 512);
    b.case("header-outside-ram", |b| {
        raw(
            b,
            &[
                (0, A::At(ram_end), 16, R, 1),
                (1, BUF, 512, W, 2),
                (2, ST, 1, D_WRITE, 0),
            ],
            0,
            IOERR,
        )
    });
    b.case("status-outside-ram", |b| {
        raw(
            b,
            &[
                (0, HDR, 16, R, 1),
                (1, BUF, 512, W, 2),
                (2, A::At(ram_end), 1, D_WRITE, 0),
            ],
            0,
            Want::NoStatus,
        )
    });
    b.case("status-device-readable", |b| {
        raw(
            b,
            &[(0, HDR, 16, R, 1), (1, BUF, 512, W, 2), (2, ST, 1, 0, 0)],
            0,
            Want::NoStatus,
        )
    });
    b.case("status-zero-length", |b| {
        raw(
            b,
            &[
                (0, HDR, 16, R, 1),
                (1, BUF, 512, W, 2),
                (2, ST, 0, D_WRITE, 0),
            ],
            0,
            Want::NoStatus,
        )
    });
    b.case("read-into-own-ring", |b| {
        // The data lands on the descriptor table, after the device copied
        // the chain out of it: a good read (its completion is in the used
        // ring, elsewhere).
        let h = b.header(0, T_IN, 0);
        let st = b.status_slot(0);
        let table = b.disks[w].desc;
        let len = 16 * u32::from(num);
        let used = b.disks[w].chain(b.mem, &[Seg::r(h, 16), Seg::w(table, len), Seg::w(st, 1)])?;
        let what = b.check(used, 0, st, Want::Status(S_OK, len + 1))?;
        if !b.marker_ok(w, table, 0) {
            return Err(why!("wrong data in the table"));
        }
        Ok(what)
    });
    b.case("read-into-used-ring", |b| {
        // The data lands on the used ring; the device writes this chain's
        // element and used.idx after it.
        let h = b.header(0, T_IN, 0);
        let st = b.status_slot(0);
        let ring = b.disks[w].used;
        let used = b.disks[w].chain(b.mem, &[Seg::r(h, 16), Seg::w(ring, 512), Seg::w(st, 1)])?;
        b.check(used, 0, st, Want::Status(S_OK, 513))
    });
    b.case("read-into-avail-ring", |b| {
        // Two chains in one notification; the first reads into the avail
        // ring, over the second's head and avail.idx (which the device
        // read once, before): the second completes with the head the data
        // left in its slot, whatever it is.
        let (h, st) = (b.header(0, T_IN, 0), b.status_slot(0));
        let (h2, st2) = (b.header(1, T_IN, 0), b.status_slot(1));
        let (avail, buf, mem) = (b.disks[w].avail, b.buf(), b.mem);
        let disk = &mut b.disks[w];
        let first = disk.put_chain(mem, 0, &[Seg::r(h, 16), Seg::w(avail, 512), Seg::w(st, 1)]);
        let second = disk.put_chain(mem, 4, &[Seg::r(h2, 16), Seg::w(buf, 512), Seg::w(st2, 1)]);
        let slot = disk.avail_idx().wrapping_add(1) % disk.num;
        disk.offer(mem, first);
        disk.offer(mem, second);
        disk.kick(mem);
        disk.wait(mem, 2)?;
        let (u1, u2) = (disk.take(mem), disk.take(mem));
        disk.ack();
        b.check(u1, first, st, Want::Status(S_OK, 513))?;
        let seen = b.mem.r16(avail + 4 + 2 * u64::from(slot));
        if u2.id != u32::from(seen) {
            return Err(why!(
                "second completion id {}, its slot holds {seen}",
                u2.id
            ));
        }
        Ok("OK, then the head the data left")
    });
    b.case("read-whole-volume", |b| {
        // Legal and long: the whole volume (up to num - 2 pieces of 32
        // KiB, all the same buffer) in one request, served in one trap.
        let disk = &b.disks[w];
        let pieces = (disk.capacity / 64).min(u64::from(disk.num) - 2);
        let h = b.header(0, T_IN, 0);
        let st = b.status_slot(0);
        disk.put(b.mem, 0, h, 16, D_NEXT, 1);
        for i in 1..=pieces as u16 {
            disk.put(b.mem, i, b.buf(), 32 * 1024, D_NEXT | D_WRITE, i + 1);
        }
        disk.put(b.mem, pieces as u16 + 1, st, 1, D_WRITE, 0);
        let used = b.disks[w].submit(b.mem, 0)?;
        let len = (pieces * 32 * 1024) as u32;
        let what = b.check(used, 0, st, Want::Status(S_OK, len + 1))?;
        println!(
            "blkfuzz: read-whole-volume: {} KiB in {} us",
            pieces * 32,
            b.micros(b.disks[w].longest)
        );
        Ok(what)
    });
    b.case("batch", |b| {
        // Eight chains in one notification, good and bad by turns: each
        // completes, in order, with its own status.
        let disk_num = b.disks[w].num;
        let cap = b.disks[w].capacity;
        let mut heads = [0u16; 8];
        for (k, head) in heads.iter_mut().enumerate() {
            let k = k as u64;
            let sector = if k.is_multiple_of(2) { k } else { cap + k };
            let h = b.header(k, T_IN, sector);
            let st = b.status_slot(k);
            let buf = b.buf() + k * SECTOR;
            let first = (k * 4) as u16;
            *head = b.disks[w].put_chain(
                b.mem,
                first,
                &[Seg::r(h, 16), Seg::w(buf, 512), Seg::w(st, 1)],
            );
            if k == 7 {
                *head = disk_num; // no chain at all
            }
            b.disks[w].offer(b.mem, *head);
        }
        b.disks[w].kick(b.mem);
        b.disks[w].wait(b.mem, 8)?;
        for (k, &head) in heads.iter().enumerate() {
            let used = b.disks[w].take(b.mem);
            let st = b.dma + crate::STATUSES + 16 * k as u64;
            let want = match k {
                7 => Want::NoStatus,
                _ if k % 2 == 0 => Want::Status(S_OK, 513),
                _ => IOERR,
            };
            b.check(used, head, st, want)
                .map_err(|e| why!("chain {k}: {e}"))?;
        }
        b.disks[w].ack();
        Ok("in order")
    });
}

/// Setups a driver must not make: features, queue sizes, notifications
/// before DRIVER_OK, and queues broken beyond repair (DEVICE_NEEDS_RESET).
pub fn bad_setup(b: &mut Blk) {
    let Some(w) = b.rw else {
        return;
    };
    let mem = b.mem;
    let features_refused = |b: &mut Blk, features: u64| -> Res<&'static str> {
        let disk = &mut b.disks[w];
        disk.begin()?;
        disk.set_driver_features(features);
        disk.set(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        let status = disk.status();
        let result = if status & S_FEATURES_OK != 0 {
            Err(why!("FEATURES_OK stuck: status {status:#x}"))
        } else {
            Ok("refused")
        };
        b.reinit(w)?;
        result
    };
    b.case("features-without-version-1", |b| {
        features_refused(b, F_FLUSH)
    });
    b.case("features-not-offered", |b| {
        features_refused(b, F_VERSION_1 | F_INDIRECT_DESC)
    });
    let size_refused = |b: &mut Blk, num: u16| -> Res<&'static str> {
        let disk = &mut b.disks[w];
        disk.begin()?;
        disk.set_driver_features(F_VERSION_1);
        disk.set(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        disk.setup_queue(mem, num);
        let ready = disk.reg(QUEUE_READY);
        b.reinit(w)?;
        if ready != 0 {
            return Err(why!("queue of {num} made ready"));
        }
        Ok("refused")
    };
    b.case("queue-size-not-power-of-two", |b| size_refused(b, 100));
    b.case("queue-size-too-big", |b| size_refused(b, 256));
    b.case("queue-size-zero", |b| size_refused(b, 0));
    b.case("notify-before-driver-ok", |b| {
        let disk = &mut b.disks[w];
        disk.begin()?;
        disk.set_driver_features(F_VERSION_1);
        disk.set(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        disk.setup_queue(mem, QUEUE_SIZES[0]);
        let h = b.header(0, T_IN, 0);
        let st = b.status_slot(0);
        let head = b.disks[w].put_chain(
            mem,
            0,
            &[Seg::r(h, 16), Seg::w(b.buf(), 512), Seg::w(st, 1)],
        );
        let disk = &mut b.disks[w];
        disk.offer(mem, head);
        disk.kick(mem);
        if disk.pending(mem) != 0 {
            return Err(why!("served before DRIVER_OK"));
        }
        disk.set(
            STATUS,
            S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
        );
        disk.kick(mem);
        disk.wait(mem, 1)?;
        let used = disk.take(mem);
        disk.ack();
        b.check(used, head, st, Want::Status(S_OK, 513))?;
        Ok("held until DRIVER_OK")
    });
    b.case("notify-nothing-new", |b| {
        let disk = &mut b.disks[w];
        disk.kick(mem);
        match disk.pending(mem) {
            0 => Ok("nothing completed"),
            n => Err(why!("{n} completions of nothing")),
        }
    });
    b.case("notify-queue-1", |b| {
        // A queue the device does not have: ignored; queue 0's request
        // waits for its own notification.
        let (h, st, buf) = (b.header(0, T_IN, 0), b.status_slot(0), b.buf());
        let disk = &mut b.disks[w];
        let head = disk.put_chain(mem, 0, &[Seg::r(h, 16), Seg::w(buf, 512), Seg::w(st, 1)]);
        disk.offer(mem, head);
        disk.publish(mem);
        disk.set(driver::QUEUE_NOTIFY, 1);
        if disk.pending(mem) != 0 {
            return Err(why!("served on queue 1's notification"));
        }
        disk.kick(mem);
        disk.wait(mem, 1)?;
        let used = disk.take(mem);
        disk.ack();
        b.check(used, head, st, Want::Status(S_OK, 513))?;
        Ok("ignored")
    });
    b.case("avail-idx-jump", |b| {
        // More than a queue ahead of what the device has taken.
        let disk = &mut b.disks[w];
        let idx = disk.avail_idx().wrapping_add(disk.num + 1);
        disk.publish_raw(mem, idx);
        needs_reset(b, w)
    });
    let broken_ring = |b: &mut Blk, which: u64, at: u64| -> Res<&'static str> {
        let disk = &mut b.disks[w];
        disk.begin()?;
        disk.set_driver_features(F_VERSION_1);
        disk.set(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        disk.set(QUEUE_SEL, 0);
        disk.set(QUEUE_NUM, QUEUE_SIZES[0].into());
        for (low, high, addr) in [
            (QUEUE_DESC_LOW, QUEUE_DESC_HIGH, disk.desc),
            (QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, disk.avail),
            (QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, disk.used),
        ] {
            let addr = if low == which { at } else { addr };
            disk.set(low, addr as u32);
            disk.set(high, (addr >> 32) as u32);
        }
        disk.set(QUEUE_READY, 1);
        disk.set(
            STATUS,
            S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
        );
        disk.kick(mem);
        needs_reset(b, w)
    };
    let end = b.ram_end;
    b.case("desc-table-outside-ram", |b| {
        broken_ring(b, QUEUE_DESC_LOW, end)
    });
    b.case("avail-ring-straddling-ram-end", |b| {
        broken_ring(b, QUEUE_DRIVER_LOW, end - 8)
    });
    b.case("used-ring-straddling-ram-end", |b| {
        broken_ring(b, QUEUE_DEVICE_LOW, end - 8)
    });
    b.case("reset-and-reinit", |b| {
        b.disks[w].reset()?;
        if b.disks[w].reg(QUEUE_READY) != 0 {
            return Err(why!("queue still ready after reset"));
        }
        b.reinit(w)?;
        Ok("OK")
    });
}

/// Checks disk `w` went to DEVICE_NEEDS_RESET with a config interrupt and
/// completed nothing, then brings it up again.
fn needs_reset(b: &mut Blk, w: usize) -> Res<&'static str> {
    let disk = &mut b.disks[w];
    let status = disk.status();
    let int = disk.ack();
    let pending = disk.pending(b.mem);
    if status & S_NEEDS_RESET == 0 || int & INT_CONFIG == 0 || pending != 0 {
        return Err(why!(
            "status {status:#x} interrupt {int:#x} completions {pending}, wanted NEEDS_RESET"
        ));
    }
    b.reinit(w)?;
    Ok("NEEDS_RESET")
}

/// After the random phases: the disks still work, and the read-only one
/// is as it was.
pub fn finally(b: &mut Blk) {
    if let Some(w) = b.rw {
        b.case("final-write-read-back", |b| {
            let (pat, buf) = (b.pat(), b.buf());
            b.pattern(pat, 8 * SECTOR, 0x5eed);
            b.write(w, 16, 8, pat)?;
            b.mem.fill(buf, 8 * SECTOR, UNTOUCHED);
            b.read(w, 16, 8, buf)?;
            if !b.same(pat, buf, 8 * SECTOR) {
                return Err(why!("read back differs from what was written"));
            }
            Ok("OK")
        });
    }
    if let Some(r) = b.ro {
        b.case("read-only-unchanged", |b| {
            let sum = b.sweep(r)?;
            if sum != b.sums[r] {
                return Err(why!("checksum {sum:#x}, was {:#x}", b.sums[r]));
            }
            Ok("same checksum")
        });
    }
}

/// Disk traffic to measure a neighbour's latency beside (`load=<ms>`):
/// for that much guest time, rounds of a write and a FLUSH (if it has a
/// writable disk) and a read of every block of the read-only disk
/// (checked against its checksum).
pub fn load(b: &mut Blk, ms: u64) {
    let (Some(r), 1..) = (b.ro, ms) else {
        return;
    };
    b.case("load", |b| {
        let start = guest_rt::timer::now();
        let end = start + ms * guest_rt::timer::frequency() / 1000;
        let mut rounds = 0u64;
        while guest_rt::timer::now() < end {
            if let Some(w) = b.rw {
                let pat = b.pat();
                b.pattern(pat, SECTOR, rounds as u32);
                b.write(w, WRITE_SECTOR, 1, pat)?;
                let (h, st) = (b.header(0, T_FLUSH, 0), b.status_slot(0));
                b.expect_chain(
                    w,
                    &[Seg::r(h, 16), Seg::w(st, 1)],
                    st,
                    Want::Status(S_OK, 1),
                )?;
            }
            let sum = b.sweep(r)?;
            if sum != b.sums[r] {
                return Err(why!(
                    "round {rounds}: checksum {sum:#x}, was {:#x}",
                    b.sums[r]
                ));
            }
            rounds += 1;
        }
        println!(
            "blkfuzz: load: {rounds} rounds in {} us",
            b.micros(guest_rt::timer::now() - start)
        );
        Ok("every request OK")
    });
}
