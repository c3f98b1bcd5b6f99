//! The seeded phases: random chains (flags, lengths, addresses in and out
//! of RAM, request types, sectors, heads), each of which must complete;
//! then random register accesses to each device, a reset and a
//! re-initialisation that must work.

use guest_rt::{fuzz, println, rng::Rng};

use crate::driver::{
    Msg, D_INDIRECT, D_NEXT, D_WRITE, INTERRUPT_STATUS, QUEUE_NOTIFY, QUEUE_READY, RINGS_SIZE,
    S_FAILED, S_NEEDS_RESET, T_FLUSH, T_GET_ID, T_IN, T_OUT,
};
use crate::{why, Blk, SCRATCH, SCRATCH_SIZE};

/// Chains in flight at once, and descriptors each may use.
const BATCH_MAX: u16 = 4;
const CHAIN_MAX: u16 = 16;

impl Blk {
    fn scratch(&self) -> u64 {
        self.dma + SCRATCH
    }

    fn random_len(rng: &mut Rng) -> u32 {
        let lens = [0, 1, 15, 16, 17, 511, 512, 513, 1024, 4096, 4097, u32::MAX];
        match rng.below(4) {
            0 => rng.below(0x1_0000) as u32,
            1 => rng.next_u64() as u32,
            _ => rng.pick(&lens),
        }
    }

    /// A buffer in the scratch area (cut to fit it) or outside RAM: never
    /// elsewhere in RAM, so the device cannot write this guest's code.
    fn random_buffer(&self, rng: &mut Rng) -> (u64, u32) {
        let len = Self::random_len(rng);
        if rng.below(10) < 6 {
            let mut off = rng.below(SCRATCH_SIZE);
            if !rng.chance(4) {
                off &= !0xf;
            }
            let room = SCRATCH_SIZE - off;
            return (self.scratch() + off, len.min(room as u32));
        }
        let (base, end) = (self.ram_base, self.ram_end);
        let addr = match rng.below(10) {
            0 => 0,
            1 => base - 16 - rng.below(0x1000),
            // Straddling RAM's start or end: all or nothing.
            2 if len > 256 => base - 256,
            3 if len > 8 => end - 8,
            4 => end + rng.below(0x10_0000),
            5 => rng.next_u64(),
            6 => u64::MAX - rng.below(0x1000),
            7 => abi::GUEST_VIRTIO_BASE + rng.below(0x1000),
            8 => 1 << 32 | base | rng.below(0x1000),
            _ => end,
        };
        (addr, len)
    }

    /// Fills the scratch area with random words (garbage headers).
    fn scramble(&self, rng: &mut Rng) {
        for at in (self.scratch()..self.scratch() + SCRATCH_SIZE).step_by(4) {
            self.mem.w32(at, rng.next_u64() as u32);
        }
    }

    /// Puts a random chain in descriptors `first..first + CHAIN_MAX` of
    /// disk `d`; the head to offer.
    fn random_chain(&self, rng: &mut Rng, d: usize, first: u16) -> u16 {
        let disk = &self.disks[d];
        let num = disk.num;
        let len = rng.pick(&[1, 2, 3, 3, 3, 4, 5, 8, CHAIN_MAX]);
        for i in 0..len {
            let (addr, size) = self.random_buffer(rng);
            let last = i + 1 == len;
            let mut flags = if last { D_WRITE } else { D_NEXT };
            if i > 0 && !last && rng.chance(2) {
                flags |= D_WRITE;
            }
            if rng.chance(8) {
                flags ^= D_WRITE;
            }
            if rng.chance(20) {
                flags ^= D_NEXT;
            }
            if rng.chance(40) {
                flags |= D_INDIRECT;
            }
            let next = if rng.chance(16) {
                rng.below(u64::from(num) + 8) as u16
            } else {
                first + i + 1
            };
            // A header where the first buffer is a word-aligned place in
            // the scratch area.
            // (Checked: an address near u64::MAX must not wrap inside.)
            let in_scratch = addr >= self.scratch()
                && addr
                    .checked_add(16)
                    .is_some_and(|end| end <= self.scratch() + SCRATCH_SIZE);
            if i == 0 && in_scratch && addr % 4 == 0 {
                let cap = disk.capacity;
                let kind = rng.pick(&[T_IN, T_IN, T_OUT, T_OUT, T_FLUSH, T_GET_ID, 3, 11]);
                let sector = match rng.below(6) {
                    0 => 0,
                    1 => cap.saturating_sub(1),
                    2 => cap,
                    3 => rng.next_u64(),
                    4 => u64::MAX - rng.below(8),
                    _ => rng.below(cap.max(1)),
                };
                self.mem.w32(addr, kind);
                self.mem.w64(addr + 8, sector);
            }
            disk.put(self.mem, first + i, addr, size, flags, next);
        }
        match rng.below(32) {
            0 => rng.next_u64() as u16,
            1 => rng.below(u64::from(num)) as u16,
            _ => first,
        }
    }
}

/// Random chains in batches of 1..=4 per notification on every disk; all
/// must complete, in order, with their heads.
pub fn chains(b: &mut Blk, seed: u64, attempts: u64) {
    let mut rng = Rng(seed);
    b.scramble(&mut rng);
    let (mut submitted, mut completed) = (0u64, 0u64);
    let mut first_problem: Option<Msg> = None;
    let mut problems = 0u64;
    let mem = b.mem;
    while submitted < attempts {
        let d = rng.below(b.count as u64) as usize;
        if !b.up[d] {
            if !b.up.iter().any(|&up| up) {
                break;
            }
            continue;
        }
        let batch = (1 + rng.below(u64::from(BATCH_MAX))).min(attempts - submitted) as u16;
        let mut heads = [0u16; BATCH_MAX as usize];
        for (k, head) in heads.iter_mut().enumerate().take(batch.into()) {
            *head = b.random_chain(&mut rng, d, k as u16 * CHAIN_MAX);
            b.disks[d].offer(mem, *head);
        }
        b.disks[d].kick(mem);
        let what = why!("random batch at {submitted}: disk {d}, {batch} chains, seed {seed}");
        b.timed(what.as_str());
        submitted += u64::from(batch);
        let mut problem = b.disks[d].wait(mem, batch).err();
        if problem.is_none() {
            for &head in &heads[..batch.into()] {
                let used = b.disks[d].take(mem);
                completed += 1;
                if used.id != u32::from(head) && problem.is_none() {
                    problem = Some(why!("used id {} for head {head}", used.id));
                }
            }
            let extra = b.disks[d].pending(mem);
            if extra != 0 {
                problem = Some(why!("{extra} completions more than submitted"));
            }
            b.disks[d].ack();
            let status = b.disks[d].status();
            if status & (S_NEEDS_RESET | S_FAILED) != 0 {
                problem = Some(why!("status {status:#x}"));
            }
        }
        if let Some(p) = problem {
            problems += 1;
            if first_problem.is_none() {
                println!("blkfuzz: random: disk {d}, after {submitted} submitted: {p}");
                first_problem = Some(p);
            }
            if let Err(e) = b.reinit(d) {
                println!("blkfuzz: disk {d}: re-init failed: {e}");
                b.up[d] = false;
            }
        }
    }
    println!("blkfuzz: random: {submitted} submitted, {completed} completed");
    b.case("random-chains", |_| match first_problem {
        None if completed == submitted => Ok("all completed"),
        None => Err(why!("{completed} of {submitted} completed")),
        Some(p) => Err(why!("{problems} problems, the first: {p}")),
    });
}

/// Random register accesses of every form to each device (not only
/// QueueNotify), then Status 0 and a bring-up that must work.
pub fn registers(b: &mut Blk, seed: u64, count: u64) {
    let mut rng = Rng(seed ^ 0x7e55_e7a5_0000_0001);
    for d in 0..b.count {
        if !b.up[d] {
            continue;
        }
        for _ in 0..count {
            let disk = &b.disks[d];
            let roll = rng.below(16);
            if roll < 4 {
                let form = rng.below(fuzz::LOAD_FORMS.into()) as u32;
                let width = fuzz::load_width(form);
                disk.raw_read(rng.below(0x200) & !(width - 1), form);
            } else if roll < 6 {
                disk.raw_write(QUEUE_NOTIFY, crate::driver::WORD, rng.below(2));
            } else {
                let form = rng.below(fuzz::STORE_FORMS.into()) as u32;
                let width = fuzz::store_width(form);
                let offset = rng.below(0x200) & !(width - 1);
                let mut value = rng.next_u64();
                // A ring address: the scratch area or outside RAM, so a
                // queue made of garbage never reaches this guest's code.
                if (0x80..0xa8).contains(&offset) && offset.is_multiple_of(16) {
                    value = if rng.chance(2) {
                        let room = SCRATCH_SIZE - RINGS_SIZE;
                        b.dma + SCRATCH + (rng.below(room) & !0xf)
                    } else {
                        value | 0x8000_0000
                    };
                }
                disk.raw_write(offset, form, value);
            }
        }
        let name = why!("random-registers-{d}");
        b.case(name.as_str(), |b| {
            let disk = &mut b.disks[d];
            disk.reset()?;
            let ready = disk.reg(QUEUE_READY);
            let int = disk.reg(INTERRUPT_STATUS);
            if ready != 0 || int != 0 {
                return Err(why!(
                    "after reset: QueueReady {ready}, InterruptStatus {int:#x}"
                ));
            }
            b.reinit(d)?;
            Ok("reset and re-init")
        });
    }
}
