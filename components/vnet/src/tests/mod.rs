use std::prelude::rust_2021::*;
use std::vec;

mod harness;
mod props;

use crate::*;
use harness::*;
use virtio_dev::queue::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};

#[test]
fn probe_sequence_registers_and_config() {
    let mut vm = Vm::unprobed();
    let d = &mut vm.dev;
    assert_eq!(r32(d, MAGIC_VALUE), 0x7472_6976);
    assert_eq!(r32(d, VERSION), 2);
    assert_eq!(r32(d, DEVICE_ID), 1);
    assert_eq!(r32(d, VENDOR_ID), VENDOR);
    w32(d, DEVICE_FEATURES_SEL, 0);
    assert_eq!(r32(d, DEVICE_FEATURES), (F_MAC | F_STATUS) as u32);
    w32(d, DEVICE_FEATURES_SEL, 1);
    assert_eq!(r32(d, DEVICE_FEATURES), 1, "VERSION_1");
    w32(d, DEVICE_FEATURES_SEL, 2);
    assert_eq!(r32(d, DEVICE_FEATURES), 0);
    for q in [0, 1] {
        w32(d, QUEUE_SEL, q);
        assert_eq!(r32(d, QUEUE_NUM_MAX_REG), 128);
    }
    w32(d, QUEUE_SEL, 2);
    assert_eq!(r32(d, QUEUE_NUM_MAX_REG), 0, "no control queue");
    // Config: the MAC as bytes (Linux's virtio_cread_bytes), the status.
    let mac: Vec<u8> = (0..6).map(|i| d.read(0, CONFIG + i, 1) as u8).collect();
    assert_eq!(mac, MAC);
    assert_eq!(d.read(0, CONFIG + 6, 2), u64::from(LINK_UP));
    assert_eq!(
        d.read(0, CONFIG, 8),
        u64::from_le_bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0])
    );
    assert_eq!(d.read(0, CONFIG + 8, 4), 0);
    assert_eq!(d.read(0, CONFIG + 0x100, 4), 0, "past the window");
    // Config is read-only.
    d.write(0, CONFIG, 1, 0xff);
    assert_eq!(d.read(0, CONFIG, 1), 0x52);
    assert_eq!(d.mac(), Some(MAC));
    assert_eq!(d.irq(), Some(41));
    vm.probe(8);
    assert_eq!(vm.dev.status() & S_DRIVER_OK, S_DRIVER_OK);
}

#[test]
fn offloads_and_legacy_are_refused_at_features_ok() {
    for (wanted, ok) in [
        (F_VERSION_1 | F_MAC, true),
        (F_VERSION_1, true),
        (F_VERSION_1 | F_MAC | F_STATUS, true),
        (F_MAC, false),
        (0, false),
    ] {
        let mut vm = Vm::unprobed();
        assert_eq!(vm.negotiate(wanted), ok, "{wanted:#x}");
    }
    // Features not offered, written raw: CSUM, GUEST_CSUM, GSO bits,
    // MRG_RXBUF, CTRL_VQ, MQ, INDIRECT, EVENT_IDX.
    for bit in [0, 1, 7, 11, 15, 17, 22, 28, 29] {
        let mut vm = Vm::unprobed();
        let d = &mut vm.dev;
        w32(d, STATUS, S_ACKNOWLEDGE | S_DRIVER);
        w32(d, DRIVER_FEATURES_SEL, 1);
        w32(d, DRIVER_FEATURES, 1);
        w32(d, DRIVER_FEATURES_SEL, 0);
        w32(d, DRIVER_FEATURES, (F_MAC as u32) | 1 << bit);
        w32(d, STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        assert_eq!(r32(d, STATUS) & S_FEATURES_OK, 0, "bit {bit}");
    }
}

#[test]
fn setup_needs_a_mac() {
    let setup = |mac| hv::device::Setup {
        vm_name: "a",
        vm_index: 0,
        intid: 50,
        volume: None,
        mac,
    };
    assert!(VirtioNet::new(setup(None)).is_err());
    let dev = Component::new(setup(Some(MAC))).unwrap();
    assert_eq!(dev.mac(), Some(MAC));
    assert_eq!(dev.irq(), Some(50));
}

#[test]
fn frames_of_60_and_1514_bytes_are_sent_and_1515_dropped() {
    let mut vm = Vm::with_queues(8);
    for len in [60, 1514] {
        let f = frame(len);
        let at = vm.packet(&f);
        assert_eq!(vm.send(&[ro(at, (HEADER + len) as u32)]), 0);
        assert_eq!(vm.switch.frames.last().unwrap(), &f);
    }
    let at = vm.packet(&frame(1515));
    assert_eq!(vm.send(&[ro(at, (HEADER + 1515) as u32)]), 0);
    let stats = vm.dev.stats();
    assert_eq!((stats.sent, stats.tx_oversized), (2, 1));
    assert_eq!(vm.switch.frames.len(), 2);
    assert!(vm.dev.line(), "completions interrupt");
    assert_eq!(r32(&mut vm.dev, INTERRUPT_STATUS), INT_USED);
    let s = w32(&mut vm.dev, INTERRUPT_ACK, INT_USED);
    assert_eq!(s.level, Some(false));
    // Transmitting writes nothing but the used ring.
    let used = RINGS[TX].used;
    assert!(vm
        .mem
        .writes
        .iter()
        .all(|&(at, len)| at >= used && at + len <= used + 0x1000));
}

#[test]
fn a_frame_split_over_descriptors_is_sent_whole() {
    let mut vm = Vm::with_queues(8);
    let f = frame(1000);
    let at = vm.packet(&f);
    // Header alone, then the frame in three pieces.
    let h = HEADER as u64;
    vm.send(&[
        ro(at, 12),
        ro(at + h, 14),
        ro(at + h + 14, 500),
        ro(at + h + 514, 486),
    ]);
    // The header itself split, and the frame starting mid-descriptor.
    vm.send(&[ro(at, 5), ro(at + 5, 7 + 100), ro(at + h + 100, 900)]);
    assert_eq!(vm.switch.frames, [f.clone(), f]);
    // Each descriptor read once per chain.
    let head = vm.chain(TX, &[ro(at, 512), ro(at + 512, 500)]);
    vm.push_avail(TX, head);
    vm.mem.desc_reads.set(0);
    vm.kick();
    assert_eq!(vm.mem.desc_reads.get(), 2);
}

#[test]
fn short_chains_are_completed_and_counted() {
    let mut vm = Vm::with_queues(8);
    let at = vm.packet(&frame(60));
    for len in [0u32, 11, 12, 12 + 13] {
        assert_eq!(vm.send(&[ro(at, len)]), 0, "{len}");
    }
    assert_eq!(vm.dev.stats().tx_short, 4);
    // Exactly header and Ethernet header goes.
    vm.send(&[ro(at, 26)]);
    assert_eq!(vm.switch.frames, [frame(60)[..14].to_vec()]);
}

#[test]
fn a_full_switch_leaves_the_chain_available_and_asks_again() {
    let mut vm = Vm::with_queues(8);
    vm.switch.room = 1;
    let mut heads = Vec::new();
    for len in [60, 61, 62] {
        let at = vm.packet(&frame(len));
        let head = vm.chain(TX, &[ro(at, (HEADER + len) as u32)]);
        vm.push_avail(TX, head);
        heads.push(head);
    }
    let s = vm.kick();
    assert!(s.work, "the core must drain the switch and call again");
    assert_eq!(s.level, Some(true));
    assert_eq!(vm.used(TX), [(u32::from(heads[0]), 0)]);
    assert_eq!(vm.dev.stats().tx_switch_full, 1);
    // Still full: nothing moves.
    let s = vm.work();
    assert!(s.work);
    assert!(vm.used(TX).is_empty());
    // Drained: the rest goes, in order.
    vm.switch.room = 10;
    let s = vm.work();
    assert!(!s.work);
    let ids: Vec<u32> = vm.used(TX).iter().map(|u| u.0).collect();
    assert_eq!(ids, [u32::from(heads[1]), u32::from(heads[2])]);
    let lens: Vec<usize> = vm.switch.frames.iter().map(|f| f.len()).collect();
    assert_eq!(lens, [60, 61, 62]);
    assert_eq!(vm.dev.stats().sent, 3);
}

#[test]
fn no_switch_completes_and_counts() {
    let mut vm = Vm::with_queues(8);
    let at = vm.packet(&frame(60));
    let head = vm.chain(TX, &[ro(at, 72)]);
    vm.push_avail(TX, head);
    w32(&mut vm.dev, QUEUE_NOTIFY, TX as u32);
    let ram = vm.mem.ram;
    let s = vm.dev.work(Backing {
        ram: &ram,
        memory: &mut vm.mem,
        disk: None,
        frames: None,
    });
    assert!(!s.work);
    assert_eq!(vm.used(TX), [(u32::from(head), 0)]);
    assert_eq!(vm.dev.stats().tx_no_network, 1);
}

#[test]
fn the_receive_queue_notify_asks_for_nothing() {
    let mut vm = Vm::with_queues(8);
    let s = w32(&mut vm.dev, QUEUE_NOTIFY, RX as u32);
    assert!(!s.work);
    let s = w32(&mut vm.dev, QUEUE_NOTIFY, 2);
    assert!(!s.work);
}

fn header_then(frame: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; HEADER];
    h[10] = 1;
    h.extend_from_slice(frame);
    h
}

#[test]
fn a_frame_is_received_into_one_descriptor() {
    let mut vm = Vm::with_queues(8);
    let buf = vm.alloc(HEADER + 1514 + 16, 0xee);
    let head = vm.post(&[wr(buf, (HEADER + 1514) as u32)]);
    let f = frame(60);
    let s = vm.receive(&f);
    assert_eq!(s.level, Some(true));
    assert_eq!(vm.used(RX), [(u32::from(head), 72)]);
    assert_eq!(vm.mem.get(buf, 72), header_then(&f));
    assert!(vm
        .mem
        .get(buf + 72, 1514 - 60 + 16)
        .iter()
        .all(|&b| b == 0xee));
    assert_eq!(vm.dev.stats().received, 1);
}

#[test]
fn a_frame_is_received_across_descriptors() {
    let mut vm = Vm::with_queues(8);
    // Header alone, then the frame in pieces (Linux's big-packet layout).
    let h = vm.alloc(HEADER, 0xee);
    let a = vm.alloc(100, 0xee);
    let b = vm.alloc(1000, 0xee);
    let c = vm.alloc(600, 0xee);
    let head = vm.post(&[wr(h, 12), wr(a, 100), wr(b, 1000), wr(c, 600)]);
    let f = frame(1514);
    vm.receive(&f);
    assert_eq!(vm.used(RX), [(u32::from(head), 1526)]);
    let mut got = vm.mem.get(h, 12);
    got.extend(vm.mem.get(a, 100));
    got.extend(vm.mem.get(b, 1000));
    got.extend(vm.mem.get(c, 414));
    assert_eq!(got, header_then(&f));
    assert!(vm.mem.get(c + 414, 186).iter().all(|&b| b == 0xee));
    // The header split over two buffers.
    let x = vm.alloc(5, 0xee);
    let y = vm.alloc(200, 0xee);
    vm.post(&[wr(x, 5), wr(y, 200)]);
    let f = frame(150);
    vm.receive(&f);
    assert_eq!(vm.used(RX).len(), 1);
    let mut got = vm.mem.get(x, 5);
    got.extend(vm.mem.get(y, 157));
    assert_eq!(got, header_then(&f));
}

#[test]
fn frames_without_a_buffer_or_a_running_device_are_dropped() {
    let mut vm = Vm::unprobed();
    vm.receive(&frame(60));
    assert_eq!(vm.dev.stats().rx_not_running, 1);
    let mut vm = Vm::with_queues(8);
    let s = vm.receive(&frame(60));
    assert_eq!(s.level, Some(false));
    assert_eq!(vm.dev.stats().rx_no_buffer, 1);
    // Oversized: dropped, the buffer kept for the next frame.
    let buf = vm.alloc(2048, 0xee);
    let head = vm.post(&[wr(buf, 2048)]);
    vm.receive(&frame(1515));
    assert_eq!(vm.dev.stats().rx_oversized, 1);
    assert!(vm.used(RX).is_empty());
    vm.receive(&frame(1514));
    assert_eq!(vm.used(RX), [(u32::from(head), 1526)]);
    assert!(vm.mem.writes.iter().all(|&(at, len)| {
        (at >= buf && at + len <= buf + 2048)
            || at >= RINGS[RX].used && at < RINGS[RX].used + 0x1000
    }));
}

#[test]
fn a_buffer_too_small_is_completed_empty_and_the_frame_dropped() {
    let mut vm = Vm::with_queues(8);
    let buf = vm.alloc(128, 0xee);
    let head = vm.post(&[wr(buf, 71)]);
    vm.receive(&frame(60));
    assert_eq!(vm.used(RX), [(u32::from(head), 0)]);
    assert!(vm.mem.get(buf, 128).iter().all(|&b| b == 0xee));
    assert_eq!(vm.dev.stats().rx_too_small, 1);
    // Exactly enough is fine.
    let head = vm.post(&[wr(buf, 72)]);
    vm.receive(&frame(60));
    assert_eq!(vm.used(RX), [(u32::from(head), 72)]);
}

// --- Adversarial chains, on both queues ---

/// Runs a chain the test made available on queue `q`: a frame sent
/// (transmit) or delivered (receive). Returns the used entries.
fn run(vm: &mut Vm, q: usize) -> Vec<(u32, u32)> {
    if q == TX {
        vm.kick();
    } else {
        vm.receive(&frame(60));
    }
    vm.used(q)
}

/// A buffer that would do for either queue: a packet's worth.
fn good(vm: &mut Vm, q: usize) -> (u64, u32, u16) {
    let at = vm.packet(&frame(100));
    let flags = if q == RX { DESC_F_WRITE } else { 0 };
    (at, 112, flags)
}

fn nothing_sent_or_received(vm: &Vm) {
    assert!(vm.switch.frames.is_empty());
    assert_eq!(vm.dev.stats().received, 0);
    assert_eq!(vm.dev.status() & S_NEEDS_RESET, 0);
}

#[test]
fn indices_past_the_queue_are_completed_not_followed() {
    for q in [RX, TX] {
        let mut vm = Vm::with_queues(8);
        for head in [8u16, 512, u16::MAX] {
            vm.push_avail(q, head);
            assert_eq!(run(&mut vm, q), [(u32::from(head), 0)]);
            let fault = Some(Fault::Chain(ChainError::BadIndex(head)));
            assert_eq!(vm.dev.stats().last_fault, fault);
        }
        let (at, _, flags) = good(&mut vm, q);
        vm.set_desc(q, 0, at, 12, flags | DESC_F_NEXT, 600);
        vm.push_avail(q, 0);
        assert_eq!(run(&mut vm, q), [(0, 0)]);
        nothing_sent_or_received(&vm);
        let s = vm.dev.stats();
        assert_eq!(s.tx_bad_chains + s.rx_bad_chains, 4);
    }
}

#[test]
fn loops_and_chains_longer_than_the_queue_are_refused() {
    for q in [RX, TX] {
        let mut vm = Vm::with_queues(8);
        let (at, _, flags) = good(&mut vm, q);
        // A descriptor that is its own next.
        vm.set_desc(q, 3, at, 112, flags | DESC_F_NEXT, 3);
        vm.push_avail(q, 3);
        vm.mem.desc_reads.set(0);
        assert_eq!(run(&mut vm, q), [(3, 0)]);
        assert!(vm.mem.desc_reads.get() <= 8);
        // Every descriptor, then round again.
        for i in 0..8 {
            vm.set_desc(q, i, at, 14, flags | DESC_F_NEXT, (i + 1) % 8);
        }
        vm.push_avail(q, 0);
        vm.mem.desc_reads.set(0);
        assert_eq!(run(&mut vm, q), [(0, 0)]);
        assert_eq!(vm.mem.desc_reads.get(), 8, "each descriptor read once");
        let fault = Some(Fault::Chain(ChainError::TooLong));
        assert_eq!(vm.dev.stats().last_fault, fault);
        nothing_sent_or_received(&vm);
        // Exactly a queue's worth is fine.
        let f = frame(100);
        let at = vm.packet(&f);
        let mut bufs = vec![Buf {
            addr: at,
            len: 12,
            write: q == RX,
        }];
        for k in 0..7 {
            let len = if k < 6 { 14 } else { 100 - 6 * 14 };
            bufs.push(Buf {
                addr: at + 12 + 14 * k,
                len,
                write: q == RX,
            });
        }
        let head = vm.chain(q, &bufs);
        vm.push_avail(q, head);
        let used = run(&mut vm, q);
        if q == TX {
            assert_eq!(vm.switch.frames, [f]);
        } else {
            assert_eq!(used, [(u32::from(head), 72)]);
        }
    }
}

#[test]
fn indirect_descriptors_are_refused() {
    for q in [RX, TX] {
        let mut vm = Vm::with_queues(8);
        let (at, len, flags) = good(&mut vm, q);
        vm.set_desc(q, 0, at, len, flags | DESC_F_INDIRECT, 0);
        vm.push_avail(q, 0);
        assert_eq!(run(&mut vm, q), [(0, 0)]);
        let fault = Some(Fault::Chain(ChainError::Indirect));
        assert_eq!(vm.dev.stats().last_fault, fault);
        nothing_sent_or_received(&vm);
    }
}

#[test]
fn buffers_outside_ram_and_overflowing_are_refused() {
    for q in [RX, TX] {
        let mut vm = Vm::with_queues(8);
        for addr in [
            IPA_BASE - 112,
            IPA_BASE - 1,
            IPA_BASE + RAM_SIZE - 111,
            IPA_BASE + RAM_SIZE,
            0,
            // addr + len wraps to inside RAM.
            u64::MAX - 7,
        ] {
            let flags = if q == RX { DESC_F_WRITE } else { 0 };
            vm.set_desc(q, 0, addr, 112, flags, 0);
            vm.push_avail(q, 0);
            assert_eq!(run(&mut vm, q), [(0, 0)], "{addr:#x}");
            let fault = Some(Fault::Chain(ChainError::OutsideRam));
            assert_eq!(vm.dev.stats().last_fault, fault);
        }
        // One good buffer and one outside: the whole chain is refused.
        let (at, _, flags) = good(&mut vm, q);
        vm.set_desc(q, 0, at, 60, flags | DESC_F_NEXT, 1);
        vm.set_desc(q, 1, u64::MAX - 10, 52, flags, 0);
        vm.push_avail(q, 0);
        assert_eq!(run(&mut vm, q), [(0, 0)]);
        nothing_sent_or_received(&vm);
    }
}

#[test]
fn wrong_directions_are_refused() {
    let mut vm = Vm::with_queues(8);
    // A device-writable buffer in a transmit chain.
    let at = vm.packet(&frame(100));
    vm.send(&[ro(at, 12), wr(at + 12, 100)]);
    // A device-readable one in a receive chain: nothing written to it.
    let a = vm.alloc(64, 0xee);
    let b = vm.alloc(64, 0xee);
    let head = vm.post(&[wr(a, 64), ro(b, 64)]);
    vm.receive(&frame(60));
    assert_eq!(vm.used(RX), [(u32::from(head), 0)]);
    assert!(vm.mem.get(a, 64).iter().all(|&x| x == 0xee));
    assert!(vm.mem.get(b, 64).iter().all(|&x| x == 0xee));
    assert_eq!(vm.dev.stats().last_fault, Some(Fault::WrongDirection));
    let s = vm.dev.stats();
    assert_eq!((s.tx_bad_chains, s.rx_bad_chains), (1, 1));
    nothing_sent_or_received(&vm);
}

#[test]
fn bad_chains_are_completed_in_order_with_good_ones() {
    let mut vm = Vm::with_queues(16);
    let mut heads = Vec::new();
    let at = vm.packet(&frame(80));
    heads.push(vm.chain(TX, &[ro(at, 92)]));
    heads.push(600);
    heads.push(vm.chain(TX, &[ro(at, 20)]));
    heads.push(vm.chain(TX, &[ro(0, 92)]));
    heads.push(vm.chain(TX, &[ro(at, 92)]));
    for &h in &heads {
        vm.push_avail(TX, h);
    }
    let s = vm.kick();
    assert_eq!(s.level, Some(true));
    let ids: Vec<u32> = vm.used(TX).iter().map(|u| u.0).collect();
    assert_eq!(ids, heads.iter().map(|&h| u32::from(h)).collect::<Vec<_>>());
    assert_eq!(vm.switch.frames.len(), 2);
    // Nothing more on a second notify.
    vm.kick();
    assert!(vm.used(TX).is_empty());
}

#[test]
fn a_driver_more_than_a_queue_ahead_needs_a_reset() {
    for q in [RX, TX] {
        let mut vm = Vm::with_queues(8);
        vm.mem.put(RINGS[q].avail + 2, &9u16.to_le_bytes());
        let s = if q == TX {
            vm.kick()
        } else {
            vm.receive(&frame(60))
        };
        assert_eq!(s.level, Some(true));
        assert_eq!(r32(&mut vm.dev, INTERRUPT_STATUS), INT_CONFIG);
        assert_ne!(r32(&mut vm.dev, STATUS) & S_NEEDS_RESET, 0);
        assert_eq!(vm.mem.u16_at(RINGS[q].used + 2), 0);
        // Nothing more is processed.
        let at = vm.packet(&frame(60));
        let head = vm.chain(TX, &[ro(at, 72)]);
        vm.push_avail(TX, head);
        vm.kick();
        assert!(vm.switch.frames.is_empty());
    }
    // Rings outside RAM, likewise.
    let mut vm = Vm::unprobed();
    assert!(vm.negotiate(LINUX_WANTS));
    let d = &mut vm.dev;
    w32(d, QUEUE_SEL, TX as u32);
    w32(d, QUEUE_NUM, 8);
    w32(d, QUEUE_DEVICE_LOW, (IPA_BASE + RAM_SIZE - 8) as u32);
    w32(d, QUEUE_READY, 1);
    let st = r32(d, STATUS);
    w32(d, STATUS, st | S_DRIVER_OK);
    vm.work();
    assert_ne!(r32(&mut vm.dev, STATUS) & S_NEEDS_RESET, 0);
}

#[test]
fn reset_clears_the_queues() {
    let mut vm = Vm::with_queues(8);
    for _ in 0..3 {
        let at = vm.packet(&frame(60));
        vm.send(&[ro(at, 72)]);
    }
    assert_eq!(vm.mem.u16_at(RINGS[TX].used + 2), 3);
    let d = &mut vm.dev;
    w32(d, STATUS, 0);
    assert_eq!(r32(d, STATUS), 0);
    for q in [0, 1] {
        w32(d, QUEUE_SEL, q);
        assert_eq!(r32(d, QUEUE_READY), 0);
        assert_eq!(r32(d, QUEUE_NUM), 0);
        assert_eq!(r32(d, QUEUE_DESC_LOW), 0);
        assert_eq!(r32(d, QUEUE_DRIVER_LOW), 0);
        assert_eq!(r32(d, QUEUE_DEVICE_LOW), 0);
    }
    assert_eq!(r32(d, INTERRUPT_STATUS), 0);
    assert!(!d.line());
    // Not running: nothing is taken.
    vm.push_avail(TX, 0);
    vm.kick();
    assert_eq!(vm.dev.stats().sent, 3);
    // A fresh ring starts at index 0 on both sides.
    vm.probe(4);
    let at = vm.packet(&frame(60));
    vm.send(&[ro(at, 72)]);
    assert_eq!(vm.mem.u16_at(RINGS[TX].used + 2), 1);
    assert_eq!(vm.dev.stats().sent, 4, "counters survive a reset");
}

#[test]
fn failed_status_stops_both_queues() {
    let mut vm = Vm::with_queues(8);
    let st = r32(&mut vm.dev, STATUS);
    w32(&mut vm.dev, STATUS, st | S_FAILED);
    let at = vm.packet(&frame(60));
    let head = vm.chain(TX, &[ro(at, 72)]);
    vm.push_avail(TX, head);
    vm.kick();
    assert!(vm.used(TX).is_empty());
    let buf = vm.alloc(2048, 0);
    vm.post(&[wr(buf, 2048)]);
    vm.receive(&frame(60));
    assert!(vm.used(RX).is_empty());
    assert_eq!(vm.dev.stats().rx_not_running, 1);
}

#[test]
fn ring_indices_wrap_at_u16() {
    let mut vm = Vm::with_queues(4);
    let at = vm.packet(&frame(60));
    let buf = vm.alloc(2048, 0);
    let tx = vm.chain(TX, &[ro(at, 72)]);
    let rx = vm.chain(RX, &[wr(buf, 2048)]);
    for round in 0..65540u32 {
        vm.push_avail(TX, tx);
        vm.push_avail(RX, rx);
        if round % 4 == 3 {
            vm.kick();
            assert_eq!(vm.used(TX).len(), 4);
            vm.switch.frames.clear();
        }
        vm.receive(&frame(60));
        assert_eq!(vm.used(RX), [(u32::from(rx), 72)]);
    }
    let s = vm.dev.stats();
    assert_eq!((s.sent, s.received), (65540, 65540));
}
