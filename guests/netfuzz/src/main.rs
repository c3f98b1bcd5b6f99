//! A hostile virtio-net driver: it brings its network device up as a
//! driver must, sends good frames, then throws malformed transmit chains,
//! spoofed frames and random chains at the hypervisor's virtio-net back-end
//! (`components/vnet`) and switch, and floods its network. Every transmit
//! chain must complete (used ring advanced, its head, length 0), none may
//! hang the guest, stop the VM or keep a later good frame from going out.
//! What it receives from the others on its network is checked too: a
//! well-formed header (`num_buffers` 1), a frame one of them sent as good
//! (never one sent with a spoofed source, which the switch drops), never
//! its own.
//!
//! Each check is a named case, `netfuzz: case <name>: ok` or `netfuzz:
//! case <name>: FAILED: <why>`; then `netfuzz: received <n> frames, <r>
//! from random chains, <m> bad` and `netfuzz: <n> cases ok, <m> failed`; the exit code is 0 only
//! if nothing failed.
//!
//! Command line: `seed=<n>` (1), `attempts=<n>` random chains (2000),
//! `flood=<n>` good frames sent as fast as the queue takes them (20000),
//! `listen-ms=<n>` how long to go on talking and receiving after the flood,
//! before and after the spoofed frame (200).
//!
//! Two other roles, for floods beside a neighbour (`net-flood`):
//! - `tx=flood`: only bring-up and the flood of `flood=<n>` frames, with
//!   `netfuzz: flood: <k> frames sent` every tenth of it (the scenario can
//!   see that the flood overlaps what it measures).
//! - `rx=irq`: a receiver as an operating system's driver is (Linux's
//!   virtio-net takes its interrupt, then NAPI drains): it sends nothing,
//!   sleeps in `wfi` until its device's interrupt (SPI, acknowledged at
//!   the device in the handler), then takes and checks what arrived and
//!   gives the buffers back. `rx=poll`: the same, but spinning on its
//!   receive ring without waiting. Either stops once nothing arrived for
//!   `quiet-ms=<n>` (500) after the first frame; `netfuzz: received ...`
//!   and the case `rx-<mode>` report it.
#![no_std]
#![no_main]
// No heap: a failure carries its line by value (`virtio::Msg`).
#![allow(clippy::result_large_err)]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abi::StartInfo;
use guest_rt::rng::Rng;
use guest_rt::virtio::{
    Mem, Res, Seg, Used, Virtq, CONFIG, D_INDIRECT, D_NEXT, D_WRITE, F_VERSION_1, STATUS,
    S_ACKNOWLEDGE, S_DRIVER, S_DRIVER_OK, S_FEATURES_OK,
};
use guest_rt::{cmdline, gic, irq, println, timer, why};

guest_rt::entry!(main);

const VIRTIO_NET: u32 = 1;
const F_CSUM: u64 = 1;
const F_MAC: u64 = 1 << 5;
const F_STATUS: u64 = 1 << 16;
const LINK_UP: u32 = 1;
/// `virtio_net_hdr` with VERSION_1: 12 bytes, `num_buffers` at 10.
const HDR: u32 = 12;
const MAX_FRAME: u32 = 1514;
/// The EtherType of its frames (IEEE local experimental).
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const MARK: &[u8; 7] = b"NETFUZZ";
const GOOD: u8 = b'G';
const SPOOFED: u8 = b'S';

// The DMA area (the top of RAM below the StartInfo page): offsets.
const DMA_SIZE: u64 = 0x4_0000;
const RX_RINGS: u64 = 0;
const TX_RINGS: u64 = 0x4000;
/// The transmit header (zero) and frames.
const TX_HDR: u64 = 0x8000;
const TX_FRAMES: u64 = 0x9000;
const TX_FRAME_STRIDE: u64 = 0x800;
/// Receive buffers, one per descriptor.
const RX_BUFS: u64 = 0x1_2000;
const RX_BUF_STRIDE: u64 = 0x800;
const RX_COUNT: u16 = 32;
/// Where random chains point when they point into RAM.
const SCRATCH: u64 = 0x3_0000;
const SCRATCH_SIZE: u64 = DMA_SIZE - SCRATCH;
/// Queue sizes asked for, and frames a flood batch puts in at once.
const QUEUE_SIZE: u16 = 64;
/// How long to wait for a neighbour's first good frame.
const HEAR_S: u64 = 10;
const BATCH: u16 = 16;
/// The device this driver uses: the VM's first virtio-mmio window, and
/// its interrupt.
const DEVICE: usize = 0;
const NET_INTID: u32 = abi::GUEST_VIRTIO_INTID + DEVICE as u32;
/// Priority of the receiver's interrupts.
const PRIORITY: u8 = 0x80;
/// The receiver's timer period, in milliseconds: how often it looks
/// whether the flood is over.
const CHECK_MS: u64 = 50;
const _: () = assert!(TX_FRAMES + BATCH as u64 * TX_FRAME_STRIDE <= RX_BUFS);
const _: () = assert!(RX_BUFS + RX_COUNT as u64 * RX_BUF_STRIDE <= SCRATCH);

/// A descriptor as written: address, length, flags, next.
type Desc = (u64, u32, u16, u16);

struct Net {
    mem: Mem,
    dma: u64,
    ram_end: u64,
    rx: Virtq,
    tx: Virtq,
    mac: [u8; 6],
    /// A neighbour's address, from a good frame it sent.
    peer: Option<[u8; 6]>,
    seq: u32,
    received: u64,
    noise: u64,
    bad: u64,
    ok: u32,
    failed: u32,
}

impl Net {
    fn case(&mut self, name: &str, result: Res<()>) {
        match result {
            Ok(()) => {
                self.ok += 1;
                println!("netfuzz: case {name}: ok");
            }
            Err(why) => {
                self.failed += 1;
                println!("netfuzz: case {name}: FAILED: {why}");
            }
        }
    }

    /// Reset and bring-up: probe, features (an unoffered one refused),
    /// both queues, DRIVER_OK, the MAC and link status.
    fn bring_up(&mut self) -> Res<()> {
        self.tx.begin(VIRTIO_NET)?;
        let offered = self.tx.device_features();
        if offered != F_VERSION_1 | F_MAC | F_STATUS {
            return Err(why!("features offered {offered:#x}"));
        }
        // An offload the device does not offer: FEATURES_OK must not stick.
        self.tx.set_driver_features(F_VERSION_1 | F_MAC | F_CSUM);
        self.tx
            .set(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        if self.tx.status() & S_FEATURES_OK != 0 {
            return Err(why!("FEATURES_OK accepted with CSUM, not offered"));
        }
        self.tx.begin(VIRTIO_NET)?;
        self.tx.set_driver_features(F_VERSION_1 | F_MAC | F_STATUS);
        self.tx
            .set(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        if self.tx.status() & S_FEATURES_OK == 0 {
            return Err(why!("FEATURES_OK refused: status {:#x}", self.tx.status()));
        }
        self.rx.init_queue(self.mem, QUEUE_SIZE)?;
        self.tx.init_queue(self.mem, QUEUE_SIZE)?;
        self.tx.set(
            STATUS,
            S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
        );
        let low = self.tx.reg(CONFIG);
        let high = self.tx.reg(CONFIG + 4);
        let bytes = [low.to_le_bytes(), high.to_le_bytes()];
        self.mac = [
            bytes[0][0],
            bytes[0][1],
            bytes[0][2],
            bytes[0][3],
            bytes[1][0],
            bytes[1][1],
        ];
        let link = high >> 16;
        if self.mac[..3] != [2, 0x54, 0x53] || link != LINK_UP {
            return Err(why!("MAC {:02x?}, link status {link}", self.mac));
        }
        for i in 0..RX_COUNT {
            self.rx
                .put(self.mem, i, self.rx_buf(i), HDR + MAX_FRAME, D_WRITE, 0);
            self.rx.offer(self.mem, i);
        }
        self.rx.kick(self.mem);
        Ok(())
    }

    fn rx_buf(&self, i: u16) -> u64 {
        self.dma + RX_BUFS + u64::from(i) * RX_BUF_STRIDE
    }

    fn tx_frame(&self, slot: u16) -> u64 {
        self.dma + TX_FRAMES + u64::from(slot) * TX_FRAME_STRIDE
    }

    /// A broadcast frame of `len` bytes from `src` in slot `slot`.
    fn write_frame(&mut self, slot: u16, src: [u8; 6], kind: u8, len: u32) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        let mut frame = [0u8; MAX_FRAME as usize + 3];
        frame[..6].fill(0xff);
        frame[6..12].copy_from_slice(&src);
        frame[12..14].copy_from_slice(&ETHERTYPE);
        frame[14..21].copy_from_slice(MARK);
        frame[21] = kind;
        frame[22..26].copy_from_slice(&self.seq.to_le_bytes());
        frame[26..32].copy_from_slice(&self.mac);
        let at = self.tx_frame(slot);
        for (i, word) in frame[..(len as usize).div_ceil(4) * 4]
            .chunks(4)
            .enumerate()
        {
            let word = u32::from_le_bytes(word.try_into().expect("4 bytes"));
            self.mem.w32(at + 4 * i as u64, word);
        }
        at
    }

    /// `segs` sent as one chain: it must complete, with its head and
    /// length 0.
    fn send(&mut self, segs: &[Seg]) -> Res<()> {
        let used = self.tx.chain(self.mem, segs)?;
        expect_used(used, 0)
    }

    fn good_frame(&mut self) -> Res<()> {
        let frame = self.write_frame(0, self.mac, GOOD, 60);
        self.send(&[Seg::r(self.dma + TX_HDR, HDR), Seg::r(frame, 60)])
    }

    /// Malformed transmit chains, each completed with length 0, and a
    /// good frame still going out after each.
    fn bad_chains(&mut self) {
        let hdr = self.dma + TX_HDR;
        let frame = self.write_frame(0, self.mac, GOOD, MAX_FRAME + 1);
        let cases: [(&str, &[Seg]); 7] = [
            ("tx-header-only", &[Seg::r(hdr, HDR)]),
            ("tx-runt", &[Seg::r(hdr, HDR), Seg::r(frame, 13)]),
            (
                "tx-oversized",
                &[Seg::r(hdr, HDR), Seg::r(frame, MAX_FRAME + 1)],
            ),
            ("tx-writable", &[Seg::r(hdr, HDR), Seg::w(frame, 60)]),
            ("tx-outside-ram", &[Seg::r(hdr, HDR), Seg::r(0x1000, 60)]),
            (
                "tx-past-ram-end",
                &[Seg::r(hdr, HDR), Seg::r(self.ram_end - 30, 60)],
            ),
            (
                "tx-wrapping",
                &[Seg::r(hdr, HDR), Seg::r(u64::MAX - 15, 60)],
            ),
        ];
        for (name, segs) in cases {
            let result = self.send(segs).and_then(|()| self.good_frame());
            self.case(name, result);
        }
        // Descriptors by hand: a loop, `next` past the queue, INDIRECT.
        let mem = self.mem;
        let hand: [(&str, [Desc; 2]); 3] = [
            ("tx-loop", [(hdr, HDR, D_NEXT, 1), (frame, 60, D_NEXT, 0)]),
            (
                "tx-next-past-queue",
                [(hdr, HDR, D_NEXT, 500), (frame, 60, 0, 0)],
            ),
            (
                "tx-indirect",
                [(hdr, HDR, D_NEXT, 1), (frame, 32, D_INDIRECT, 0)],
            ),
        ];
        for (name, descs) in hand {
            for (i, (addr, len, flags, next)) in descs.into_iter().enumerate() {
                self.tx.put(mem, i as u16, addr, len, flags, next);
            }
            let result = self
                .tx
                .submit(mem, 0)
                .and_then(|used| expect_used(used, 0))
                .and_then(|()| self.good_frame());
            self.case(name, result);
        }
    }

    /// A frame with a neighbour's source address (learnt from what it
    /// sent): completed, and dropped by the switch, since that address is
    /// the neighbour's port's own; the neighbour checks it never sees it.
    fn spoof(&mut self) -> Res<()> {
        let peer = self
            .peer
            .ok_or_else(|| why!("no good frame from a neighbour yet"))?;
        let hdr = self.dma + TX_HDR;
        let frame = self.write_frame(0, peer, SPOOFED, 60);
        self.send(&[Seg::r(hdr, HDR), Seg::r(frame, 60)])
    }

    /// Random chains of random descriptors, each completed.
    fn random_chains(&mut self, rng: &mut Rng, attempts: u64) -> Res<()> {
        let mem = self.mem;
        let num = self.tx.num;
        for attempt in 0..attempts {
            let count = 1 + rng.below(6) as u16;
            for i in 0..count {
                let addr = match rng.below(8) {
                    0 => rng.next_u64(),
                    1 => self.ram_end - rng.below(64),
                    _ => self.dma + SCRATCH + rng.below(SCRATCH_SIZE),
                };
                let len = match rng.below(4) {
                    0 => rng.next_u64() as u32,
                    _ => rng.below(2 * u64::from(HDR + MAX_FRAME)) as u32,
                };
                let flags = (rng.next_u64() as u16) & (D_NEXT | D_WRITE | D_INDIRECT);
                let flags = if i + 1 < count { flags | D_NEXT } else { flags };
                let next = match rng.below(4) {
                    0 => rng.next_u64() as u16,
                    _ => (i + 1) % num,
                };
                self.tx.put(mem, i, addr, len, flags, next);
            }
            let used = self
                .tx
                .submit(mem, 0)
                .map_err(|e| why!("attempt {attempt}: {e}"))?;
            if used.id != 0 {
                return Err(why!("attempt {attempt}: used id {}", used.id));
            }
            self.drain_rx();
        }
        self.good_frame()
    }

    /// `count` good broadcast frames of varied length, `BATCH` a notify;
    /// with `progress`, a line every tenth of them.
    fn flood(&mut self, count: u64, progress: bool) -> Res<()> {
        let mem = self.mem;
        let hdr = self.dma + TX_HDR;
        let step = count.div_ceil(10).max(1);
        let mut sent = 0;
        while sent < count {
            if progress && sent % step < u64::from(BATCH) && sent >= step {
                println!("netfuzz: flood: {} frames sent", sent - sent % step);
            }
            let batch = (count - sent).min(u64::from(BATCH)) as u16;
            for b in 0..batch {
                let len = 60 + (u32::from(b) * 97 + sent as u32) % (MAX_FRAME - 59);
                let frame = self.write_frame(b, self.mac, GOOD, len);
                let head = self
                    .tx
                    .put_chain(mem, 2 * b, &[Seg::r(hdr, HDR), Seg::r(frame, len)]);
                self.tx.offer(mem, head);
            }
            self.tx.kick(mem);
            self.tx.wait(mem, batch)?;
            for _ in 0..batch {
                let used = self.tx.take(mem);
                expect_used(used, 0)?;
            }
            self.tx.ack();
            sent += u64::from(batch);
            self.drain_rx();
        }
        Ok(())
    }

    /// For at least `ms` (and, `until_heard`, until a good frame from a
    /// neighbour came, up to [`HEAR_S`]): a good frame every millisecond,
    /// and what arrives taken.
    fn listen(&mut self, ms: u64, until_heard: bool) -> Res<()> {
        let start = timer::now();
        let enough = start + ms * timer::frequency() / 1000;
        let give_up = start + HEAR_S * timer::frequency();
        let mut next = start;
        loop {
            let now = timer::now();
            let heard = self.peer.is_some() || !until_heard;
            if now >= enough && heard {
                return Ok(());
            }
            if now >= give_up {
                return Err(why!("no good frame from a neighbour in {HEAR_S} s"));
            }
            if now >= next {
                self.good_frame()?;
                next = now + timer::frequency() / 1000;
            }
            self.drain_rx();
        }
    }

    /// Takes what arrived, checks it, gives the buffers back and
    /// acknowledges the interrupt.
    fn drain_rx(&mut self) {
        if self.take_rx() {
            self.rx.ack();
        }
    }

    /// Takes what arrived, checks it, and gives the buffers back (one
    /// notify for all of them); whether anything arrived.
    fn take_rx(&mut self) -> bool {
        let mem = self.mem;
        let mut taken = false;
        while self.rx.pending(mem) > 0 {
            let used = self.rx.take(mem);
            taken = true;
            let id = used.id as u16;
            match self.classify(id, used.len) {
                _ if used.id >= u32::from(RX_COUNT) => self.bad += 1,
                Frame::Good(from) => {
                    self.received += 1;
                    self.peer = Some(from);
                }
                Frame::Noise => self.noise += 1,
                Frame::Bad(why) => {
                    self.bad += 1;
                    if self.bad <= 5 {
                        println!("netfuzz: bad frame: used {used:?}: {why}");
                    }
                }
            }
            let id = id % RX_COUNT;
            self.rx
                .put(mem, id, self.rx_buf(id), HDR + MAX_FRAME, D_WRITE, 0);
            self.rx.offer(mem, id);
        }
        if taken {
            self.rx.kick(mem);
        }
        taken
    }

    /// The receiver roles: until nothing arrived for `quiet_ms` after the
    /// first frame (or none came in [`HEAR_S`]), take what arrives,
    /// sleeping until the device's interrupt (`irq`) or spinning on the
    /// receive ring.
    fn receiver(&mut self, irq: bool, quiet_ms: u64) -> Res<()> {
        let frequency = timer::frequency();
        let start = timer::now();
        let quiet = quiet_ms * frequency / 1000;
        let give_up = start + HEAR_S * frequency;
        let check = CHECK_MS * frequency / 1000;
        if irq {
            irq::set_handler(on_irq);
            gic::init();
            gic::enable(NET_INTID, PRIORITY);
            gic::enable(timer::INTID, PRIORITY);
            timer::set_deadline(start + check);
            irq::enable();
        }
        // The counter when the last frame came (0: none yet).
        let mut last = 0;
        let mut wakeups = 0u64;
        loop {
            if irq {
                irq::disable();
                if !NET_IRQ.load(Ordering::Relaxed) && !TICK.load(Ordering::Relaxed) {
                    irq::wait();
                }
                // The handler runs here.
                irq::enable();
                if NET_IRQ.load(Ordering::Relaxed) {
                    NET_IRQ.store(false, Ordering::Relaxed);
                    wakeups += 1;
                }
            }
            let taken = if irq {
                self.take_rx()
            } else {
                self.drain_rx_taken()
            };
            let now = timer::now();
            if taken {
                last = now;
            }
            if irq && TICK.load(Ordering::Relaxed) {
                TICK.store(false, Ordering::Relaxed);
                timer::set_deadline(now + check);
            }
            if last != 0 && now - last >= quiet {
                break;
            }
            if last == 0 && now >= give_up {
                if irq {
                    irq::disable();
                    timer::disable();
                }
                return Err(why!("no frame in {HEAR_S} s"));
            }
        }
        if irq {
            irq::disable();
            timer::disable();
            println!(
                "netfuzz: {wakeups} receive interrupts, {} handled in all",
                IRQS.load(Ordering::Relaxed)
            );
        }
        Ok(())
    }

    /// [`Net::drain_rx`], saying whether anything arrived.
    fn drain_rx_taken(&mut self) -> bool {
        let taken = self.take_rx();
        if taken {
            self.rx.ack();
        }
        taken
    }

    /// What arrived in buffer `id`: a header with `num_buffers` 1 and a
    /// frame from someone else, either one of its good frames (marked,
    /// carrying its own address) or what its random chains sent (noise);
    /// never a frame marked spoofed, never one from this VM's address.
    fn classify(&self, id: u16, len: u32) -> Frame {
        let at = self.rx_buf(id);
        let mem = self.mem;
        let header_ok =
            (0..10).all(|i| mem.r8(at + i) == 0) && mem.r8(at + 10) == 1 && mem.r8(at + 11) == 0;
        if !header_ok || !(HDR + 14..=HDR + MAX_FRAME).contains(&len) {
            return Frame::Bad("header or length");
        }
        let frame = at + u64::from(HDR);
        let src: [u8; 6] = core::array::from_fn(|i| mem.r8(frame + 6 + i as u64));
        if src == self.mac {
            return Frame::Bad("from this VM's own address");
        }
        if !mem.holds(frame + 14, MARK) {
            return Frame::Noise;
        }
        match mem.r8(frame + 21) {
            GOOD if mem.holds(frame + 26, &src) => Frame::Good(src),
            GOOD => Frame::Bad("a good frame from another address"),
            SPOOFED => Frame::Bad("a spoofed frame got through"),
            _ => Frame::Noise,
        }
    }
}

/// What a received frame is.
enum Frame {
    /// A good frame from this address.
    Good([u8; 6]),
    Noise,
    Bad(&'static str),
}

/// The receiver's device interrupt came (set by the handler).
static NET_IRQ: AtomicBool = AtomicBool::new(false);
/// The receiver's timer fired (set by the handler, which disables it).
static TICK: AtomicBool = AtomicBool::new(false);
/// Interrupts the handler took.
static IRQS: AtomicU64 = AtomicU64::new(0);

/// The receiver's IRQ handler: the device's interrupt is acknowledged at
/// the device (its line is level: InterruptStatus != 0), as Linux's
/// `vm_interrupt` does, and the main loop drains; the timer is disabled
/// until the main loop sets it again.
fn on_irq(intid: u32) {
    IRQS.store(IRQS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    match intid {
        NET_INTID => {
            // Only its registers: no rings.
            Virtq::new(DEVICE, 0, 0).ack();
            NET_IRQ.store(true, Ordering::Relaxed);
        }
        timer::INTID => {
            timer::disable();
            TICK.store(true, Ordering::Relaxed);
        }
        other => println!("netfuzz: unexpected interrupt {other}"),
    }
}

/// The word after `key=` on `line`.
fn word<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn expect_used(used: Used, len: u32) -> Res<()> {
    if used.len != len {
        return Err(why!("used length {} (want {len})", used.len));
    }
    Ok(())
}

fn main(info: &'static StartInfo) -> u64 {
    let line = info.cmdline();
    let seed = cmdline::number(line, "seed", 1);
    let attempts = cmdline::number(line, "attempts", 2000);
    let flood = cmdline::number(line, "flood", 20_000);
    let listen_ms = cmdline::number(line, "listen-ms", 200);
    let quiet_ms = cmdline::number(line, "quiet-ms", 500);
    let rx_irq = match word(line, "rx") {
        None => None,
        Some("irq") => Some(true),
        Some("poll") => Some(false),
        Some(other) => {
            println!("netfuzz: rx={other}: irq or poll");
            return 2;
        }
    };
    let tx_flood = word(line, "tx") == Some("flood");
    println!("netfuzz: seed={seed} attempts={attempts} flood={flood}");
    let ram_end = info.ram_base + info.ram_size;
    let dma = (ram_end - 0x1000 - DMA_SIZE) & !0xffff;
    let start_info = info as *const StartInfo as u64;
    if dma < info.ram_base
        || dma + DMA_SIZE > start_info & !0xfff
        || guest_rt::probe::check(info, dma).is_err()
    {
        println!("netfuzz: no room for the rings and buffers");
        return 2;
    }
    let mut net = Net {
        mem: Mem::new(info, dma, DMA_SIZE),
        dma,
        ram_end,
        rx: Virtq::new(DEVICE, 0, dma + RX_RINGS),
        tx: Virtq::new(DEVICE, 1, dma + TX_RINGS),
        mac: [0; 6],
        peer: None,
        seq: 0,
        received: 0,
        noise: 0,
        bad: 0,
        ok: 0,
        failed: 0,
    };
    net.mem.fill(dma + TX_HDR, 16, 0);
    let up = net.bring_up();
    let up_ok = up.is_ok();
    net.case("bring-up", up);
    if let (true, Some(irq)) = (up_ok, rx_irq) {
        let received = net.receiver(irq, quiet_ms);
        net.case(if irq { "rx-irq" } else { "rx-poll" }, received);
    } else if up_ok && tx_flood {
        println!("netfuzz: flood: started");
        let start = timer::now();
        let flooded = net.flood(flood, true);
        let ms = (timer::now() - start) * 1000 / timer::frequency();
        println!("netfuzz: flood: {flood} frames sent in {ms} ms");
        net.case("tx-flood", flooded);
    } else if up_ok {
        let good = net.good_frame();
        net.case("tx-good", good);
        net.bad_chains();
        let mut rng = Rng(seed);
        let random = net.random_chains(&mut rng, attempts);
        net.case("tx-random-chains", random);
        let flooded = net.flood(flood, false);
        net.case("tx-flood", flooded);
        // Hear from a neighbour (which may start later), then spoof it, then
        // keep talking a while so that it hears this one too.
        let heard = net.listen(listen_ms, true);
        net.case("rx-neighbour", heard);
        let spoofed = net.spoof();
        net.case("tx-spoofed-source", spoofed);
        let _ = net.listen(listen_ms, false);
        net.rx.ack();
    }
    println!(
        "netfuzz: received {} frames, {} from random chains, {} bad",
        net.received, net.noise, net.bad
    );
    if net.bad > 0 {
        net.failed += 1;
    }
    println!("netfuzz: {} cases ok, {} failed", net.ok, net.failed);
    u64::from(net.failed != 0)
}
