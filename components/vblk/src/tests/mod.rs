use std::prelude::rust_2021::*;
use std::vec;

mod harness;
mod props;

use crate::blk::*;
use crate::queue::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use crate::*;
use harness::*;

#[test]
fn probe_sequence_and_registers() {
    let mut vm = Vm::unprobed();
    let d = &mut vm.dev;
    assert_eq!(r32(d, MAGIC_VALUE), 0x7472_6976);
    assert_eq!(r32(d, VERSION), 2);
    assert_eq!(r32(d, DEVICE_ID), 2);
    assert_eq!(r32(d, VENDOR_ID), VENDOR);
    w32(d, DEVICE_FEATURES_SEL, 0);
    assert_eq!(r32(d, DEVICE_FEATURES), (F_FLUSH | F_SEG_MAX) as u32);
    w32(d, DEVICE_FEATURES_SEL, 1);
    assert_eq!(r32(d, DEVICE_FEATURES), 1, "VERSION_1");
    w32(d, DEVICE_FEATURES_SEL, 2);
    assert_eq!(r32(d, DEVICE_FEATURES), 0);
    assert_eq!(r32(d, QUEUE_NUM_MAX_REG), 128);
    w32(d, QUEUE_SEL, 1);
    assert_eq!(r32(d, QUEUE_NUM_MAX_REG), 0, "one queue");
    w32(d, QUEUE_SEL, 0);
    // Config: capacity as two words (Linux's 64-bit read) and as bytes.
    let lo = d.read(0, CONFIG, 4);
    let hi = d.read(0, CONFIG + 4, 4);
    assert_eq!(hi << 32 | lo, 64);
    assert_eq!(d.read(0, CONFIG, 1), 64);
    assert_eq!(d.read(0, CONFIG, 8), 64);
    assert_eq!(d.read(0, CONFIG + 12, 4), 126, "seg_max");
    assert_eq!(d.read(0, CONFIG + 20, 4), 512, "blk_size");
    assert_eq!(d.read(0, CONFIG + 0x40, 4), 0);
    assert_eq!(r32(d, CONFIG_GENERATION), 0);
    // Not running before DRIVER_OK: a notify does nothing.
    vm.probe(8);
    assert_eq!(
        r32(&mut vm.dev, STATUS),
        S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK
    );
    assert_eq!(r32(&mut vm.dev, QUEUE_NUM), 8);
    assert_eq!(r32(&mut vm.dev, QUEUE_DESC_LOW), DESC as u32);
    assert_eq!(r32(&mut vm.dev, QUEUE_DEVICE_LOW), USED as u32);
    assert_eq!(vm.dev.irq(), Some(40));
}

#[test]
fn features_not_offered_are_refused() {
    for (features, ok) in [
        (F_VERSION_1, true),
        (F_VERSION_1 | F_FLUSH | F_SEG_MAX, true),
        (F_FLUSH, false),               // no VERSION_1
        (F_VERSION_1 | F_RO, false),    // RO on a writable disk
        (F_VERSION_1 | 1 << 28, false), // INDIRECT_DESC
        (F_VERSION_1 | 1 << 29, false), // EVENT_IDX
        (F_VERSION_1 | 1 << 33, false), // ACCESS_PLATFORM
    ] {
        let mut vm = Vm::unprobed();
        let d = &mut vm.dev;
        w32(d, STATUS, S_ACKNOWLEDGE | S_DRIVER);
        w32(d, DRIVER_FEATURES_SEL, 0);
        w32(d, DRIVER_FEATURES, features as u32);
        w32(d, DRIVER_FEATURES_SEL, 1);
        w32(d, DRIVER_FEATURES, (features >> 32) as u32);
        w32(d, STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        assert_eq!(r32(d, STATUS) & S_FEATURES_OK != 0, ok, "{features:#x}");
        if ok {
            // Once accepted, features are fixed.
            w32(d, DRIVER_FEATURES_SEL, 0);
            w32(d, DRIVER_FEATURES, 1 << 28);
            w32(d, STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
            assert_ne!(r32(d, STATUS) & S_FEATURES_OK, 0);
        }
    }
}

#[test]
fn queue_sizes_must_be_powers_of_two_offered() {
    for (num, ok) in [(0, false), (3, false), (256, false), (1, true), (128, true)] {
        let mut vm = Vm::unprobed();
        w32(&mut vm.dev, QUEUE_NUM, num);
        w32(&mut vm.dev, QUEUE_READY, 1);
        assert_eq!(r32(&mut vm.dev, QUEUE_READY) == 1, ok, "{num}");
    }
}

#[test]
fn bad_widths_and_unknown_offsets() {
    let mut vm = Vm::with_queue(8);
    let d = &mut vm.dev;
    for width in [1, 2, 8, 3, 0] {
        assert_eq!(d.read(0, MAGIC_VALUE, width), 0);
        d.write(0, STATUS, width, 0);
    }
    assert_ne!(r32(d, STATUS), 0, "a narrow write does not reset");
    for offset in [0x018, 0x0b0, 0x0fd, 0x1ff, 0x200, u64::MAX] {
        assert_eq!(d.read(0, offset, 4), 0, "{offset:#x}");
        d.write(0, offset, 4, u64::MAX);
    }
    // Config space is not writable.
    d.write(0, CONFIG, 4, 0);
    assert_eq!(d.read(0, CONFIG, 4), 64);
    // A live queue's setup cannot change.
    w32(d, QUEUE_NUM, 4);
    w32(d, QUEUE_DESC_LOW, 0);
    assert_eq!(r32(d, QUEUE_NUM), 8);
    assert_eq!(r32(d, QUEUE_DESC_LOW), DESC as u32);
}

#[test]
fn read_and_write_round_trip() {
    let mut vm = Vm::with_queue(16);
    // Three sectors written from two data-out buffers (512 + 1024).
    let payload: Vec<u8> = (0..3 * SECTOR).map(|i| (i * 7 % 251) as u8).collect();
    let h = vm.header(T_OUT, 5);
    let a = vm.alloc(512, 0);
    vm.mem.put(a, &payload[..512]);
    let b = vm.alloc(1024, 0);
    vm.mem.put(b, &payload[512..]);
    let st = vm.status_byte();
    let len = vm.submit(&[ro(h, 16), ro(a, 512), ro(b, 1024), wr(st, 1)]);
    assert_eq!((vm.status_at(st), len), (S_OK, 1));
    let written: Vec<u8> = (5..8).flat_map(|s| vm.disk.sector(s).to_vec()).collect();
    assert_eq!(written, payload, "at the volume's sectors 5..8");
    // Read back into three buffers of other sizes.
    let h = vm.header(T_IN, 5);
    let x = vm.alloc(1024 + 100, 0);
    let y = vm.alloc(300, 0);
    let z = vm.alloc(112, 0);
    let st = vm.status_byte();
    let len = vm.submit(&[ro(h, 16), wr(x, 1124), wr(y, 300), wr(z, 112), wr(st, 1)]);
    assert_eq!((vm.status_at(st), len), (S_OK, 3 * 512 + 1));
    let mut back = vm.mem.get(x, 1124);
    back.extend(vm.mem.get(y, 300));
    back.extend(vm.mem.get(z, 112));
    assert_eq!(back, payload);
    // More than the bounce buffer holds, and the volume's first sector.
    let (status, len, data) = vm.read_sectors(0, 20);
    assert_eq!((status, len), (S_OK, 20 * 512 + 1));
    for s in 0..20 {
        let at = s * SECTOR;
        assert_eq!(&data[at..at + SECTOR], vm.disk.sector(s as u64));
    }
    assert_eq!(&data[..8], &100u64.to_le_bytes(), "relative to the volume");
    assert_eq!(vm.disk.outside, 0);
}

#[test]
fn flush_calls_the_backend() {
    let mut vm = Vm::with_queue(8);
    let h = vm.header(T_FLUSH, 0);
    let st = vm.status_byte();
    assert_eq!(vm.submit(&[ro(h, 16), wr(st, 1)]), 1);
    assert_eq!(vm.status_at(st), S_OK);
    assert_eq!(vm.disk.flushes, 1);
}

#[test]
fn get_id_fills_at_most_the_buffer() {
    let mut vm = Vm::with_queue(8);
    let serial = b"tessera-vblk-serial0";
    for size in [20u32, 32, 8, 1, 0] {
        let h = vm.header(T_GET_ID, 0);
        let buf = vm.alloc(size as usize + 16, 0xaa);
        let st = vm.status_byte();
        let bufs = if size == 0 {
            vec![ro(h, 16), wr(st, 1)]
        } else {
            vec![ro(h, 16), wr(buf, size), wr(st, 1)]
        };
        let len = vm.submit(&bufs);
        let n = size.min(20) as usize;
        assert_eq!((vm.status_at(st), len), (S_OK, n as u32 + 1), "{size}");
        let got = vm.mem.get(buf, size as usize + 16);
        assert_eq!(&got[..n], &serial[..n]);
        assert!(
            got[n..].iter().all(|&b| b == 0xaa),
            "nothing past {size} bytes"
        );
    }
    // The status byte's own descriptor may hold the data, the status last.
    let h = vm.header(T_GET_ID, 0);
    let buf = vm.alloc(12, 0xaa);
    let len = vm.submit(&[ro(h, 16), wr(buf, 11)]);
    assert_eq!(len, 11);
    assert_eq!(&vm.mem.get(buf, 10), &serial[..10]);
    assert_eq!(vm.mem.get(buf, 12)[10..], [S_OK, 0xaa]);
}

#[test]
fn unknown_types_are_unsupported_and_lengths_checked() {
    let mut vm = Vm::with_queue(8);
    for kind in [2, 11, 13, u32::MAX] {
        let h = vm.header(kind, 0);
        let st = vm.status_byte();
        assert_eq!(vm.submit(&[ro(h, 16), wr(st, 1)]), 1);
        assert_eq!(vm.status_at(st), S_UNSUPP);
    }
    // Data not whole sectors.
    let h = vm.header(T_IN, 0);
    let d = vm.alloc(511, 0xee);
    let st = vm.status_byte();
    vm.submit(&[ro(h, 16), wr(d, 511), wr(st, 1)]);
    assert_eq!(vm.status_at(st), IOERR);
    assert!(vm.mem.get(d, 511).iter().all(|&b| b == 0xee));
    // A header shorter than 16 bytes.
    let h = vm.header(T_IN, 0);
    let st = vm.status_byte();
    vm.submit(&[ro(h, 15), wr(st, 1)]);
    assert_eq!(vm.status_at(st), IOERR);
    assert_eq!(vm.disk.reads, 0);
}

// --- The bugs other hypervisors shipped ---

#[test]
fn descriptor_index_past_the_queue_is_completed_not_followed() {
    let mut vm = Vm::with_queue(8);
    // A head of 512 (panicked another hypervisor) and of 8.
    for head in [512u16, 8, u16::MAX] {
        vm.push_avail(head);
        vm.kick();
        assert_eq!(vm.used(), [(u32::from(head), 0)]);
        assert_eq!(vm.dev.stats().last_fault, Some(ChainError::BadIndex(head)));
    }
    // A `next` past the queue.
    let h = vm.header(T_IN, 0);
    let st = vm.status_byte();
    vm.set_desc(0, h, 16, DESC_F_NEXT, 600);
    vm.set_desc(1, st, 1, DESC_F_WRITE, 0);
    vm.push_avail(0);
    vm.kick();
    assert_eq!(vm.used(), [(0, 0)]);
    assert_eq!(vm.dev.stats().last_fault, Some(ChainError::BadIndex(600)));
    assert_eq!(vm.status_at(st), 0xff);
    assert_eq!(vm.disk.reads, 0);
}

#[test]
fn a_chain_loop_is_refused_after_at_most_a_queue_of_descriptors() {
    let mut vm = Vm::with_queue(8);
    let h = vm.header(T_IN, 0);
    vm.set_desc(3, h, 16, DESC_F_NEXT, 3);
    vm.push_avail(3);
    vm.mem.desc_reads.set(0);
    vm.kick();
    assert_eq!(vm.used(), [(3, 0)]);
    assert_eq!(vm.dev.stats().last_fault, Some(ChainError::TooLong));
    assert!(vm.mem.desc_reads.get() <= 8, "{}", vm.mem.desc_reads.get());
}

#[test]
fn a_chain_longer_than_the_queue_is_refused() {
    let mut vm = Vm::with_queue(8);
    let h = vm.header(T_IN, 0);
    // 0 -> 1 -> ... -> 7 -> 0: every descriptor, then round again.
    vm.set_desc(0, h, 16, DESC_F_NEXT, 1);
    for i in 1..8 {
        let d = vm.alloc(512, 0);
        vm.set_desc(i, d, 512, DESC_F_NEXT | DESC_F_WRITE, (i + 1) % 8);
    }
    vm.push_avail(0);
    vm.mem.desc_reads.set(0);
    vm.kick();
    assert_eq!(vm.used(), [(0, 0)]);
    assert_eq!(vm.dev.stats().last_fault, Some(ChainError::TooLong));
    assert_eq!(vm.mem.desc_reads.get(), 8, "each descriptor read once");
    assert_eq!(vm.disk.reads, 0);
    // Exactly a queue's worth is fine.
    let (status, len, _) = {
        let h = vm.header(T_IN, 0);
        let mut bufs = vec![ro(h, 16)];
        let d = vm.alloc(6 * 512, 0);
        for k in 0..6 {
            bufs.push(wr(d + k * 512, 512));
        }
        let st = vm.status_byte();
        bufs.push(wr(st, 1));
        let len = vm.submit(&bufs);
        (vm.status_at(st), len, ())
    };
    assert_eq!((status, len), (S_OK, 6 * 512 + 1));
}

#[test]
fn addr_plus_len_overflow_is_refused_with_ioerr() {
    let mut vm = Vm::with_queue(8);
    let h = vm.header(T_IN, 0);
    let st = vm.status_byte();
    // IPA_BASE + (u64::MAX - IPA_BASE) + 512 wraps to inside RAM.
    let addr = u64::MAX - 255;
    let len = vm.submit(&[ro(h, 16), wr(addr, 512), wr(st, 1)]);
    assert_eq!((vm.status_at(st), len), (IOERR, 1));
    assert_eq!(vm.dev.stats().last_fault, Some(ChainError::OutsideRam));
    assert_eq!(vm.disk.reads, 0);
    // In the header too: nothing is read from it.
    let st = vm.status_byte();
    let len = vm.submit(&[ro(u64::MAX - 7, 16), wr(st, 1)]);
    assert_eq!((vm.status_at(st), len), (IOERR, 1));
}

#[test]
fn buffers_outside_ram_are_refused_with_ioerr() {
    let mut vm = Vm::with_queue(8);
    for (addr, size) in [
        (IPA_BASE - 512, 512),
        (IPA_BASE - 1, 512),
        (IPA_BASE + RAM_SIZE - 511, 512),
        (IPA_BASE + RAM_SIZE, 512),
        (0, 512),
    ] {
        let h = vm.header(T_OUT, 0);
        let st = vm.status_byte();
        let len = vm.submit(&[ro(h, 16), ro(addr, size), wr(st, 1)]);
        assert_eq!((vm.status_at(st), len), (IOERR, 1), "{addr:#x}");
    }
    // The status byte itself outside RAM: no status, length 0.
    let h = vm.header(T_FLUSH, 0);
    assert_eq!(vm.submit(&[ro(h, 16), wr(IPA_BASE + RAM_SIZE, 1)]), 0);
    assert_eq!(vm.disk.writes, 0);
    assert_eq!(vm.disk.flushes, 0);
}

#[test]
fn indirect_descriptors_are_refused() {
    let mut vm = Vm::with_queue(8);
    let table = vm.alloc(64, 0);
    let st = vm.status_byte();
    vm.set_desc(0, table, 64, DESC_F_INDIRECT | DESC_F_NEXT, 1);
    vm.set_desc(1, st, 1, DESC_F_WRITE, 0);
    vm.push_avail(0);
    vm.kick();
    assert_eq!(vm.used(), [(0, 1)]);
    assert_eq!(vm.status_at(st), IOERR);
    assert_eq!(vm.dev.stats().last_fault, Some(ChainError::Indirect));
}

#[test]
fn wrong_directions_are_refused() {
    let mut vm = Vm::with_queue(8);
    // Data-in the device may not write.
    let h = vm.header(T_IN, 0);
    let d = vm.alloc(512, 0xee);
    let st = vm.status_byte();
    assert_eq!(vm.submit(&[ro(h, 16), ro(d, 512), wr(st, 1)]), 1);
    assert_eq!(vm.status_at(st), IOERR);
    assert!(vm.mem.get(d, 512).iter().all(|&b| b == 0xee));
    // Data-out the device may write (the guest's data is not in it).
    let h = vm.header(T_OUT, 0);
    let d = vm.alloc(512, 0xee);
    let st = vm.status_byte();
    assert_eq!(vm.submit(&[ro(h, 16), wr(d, 512), wr(st, 1)]), 1);
    assert_eq!(vm.status_at(st), IOERR);
    // A device-writable header.
    let h = vm.header(T_OUT, 0);
    let st = vm.status_byte();
    vm.submit(&[wr(h, 16), wr(st, 1)]);
    assert_eq!(vm.status_at(st), IOERR);
    // Readable after writable: half the data-in in a buffer the device
    // may only read.
    let h = vm.header(T_IN, 0);
    let d = vm.alloc(256, 0xee);
    let x = vm.alloc(256, 0xee);
    let st = vm.status_byte();
    vm.submit(&[ro(h, 16), wr(d, 256), ro(x, 256), wr(st, 1)]);
    assert_eq!(vm.status_at(st), IOERR);
    assert!(vm.mem.get(x, 256).iter().all(|&b| b == 0xee));
    // A status byte the device may not write: completed, length 0.
    let h = vm.header(T_IN, 0);
    let d = vm.alloc(512, 0xee);
    let st = vm.status_byte();
    assert_eq!(vm.submit(&[ro(h, 16), wr(d, 512), ro(st, 1)]), 0);
    assert_eq!(vm.status_at(st), 0xff);
    assert!(vm.mem.get(d, 512).iter().all(|&b| b == 0xee));
    assert_eq!((vm.disk.reads, vm.disk.writes), (0, 0));
}

#[test]
fn sectors_are_checked_against_the_volume_not_the_disk() {
    // Sectors 100..164 of a 228-sector disk: sector 64 of the volume is
    // absolute 164, inside the disk but not the volume.
    let mut vm = Vm::with_queue(8);
    let (status, _, data) = vm.read_sectors(63, 1);
    assert_eq!(status, S_OK);
    assert_eq!(&data[..8], &163u64.to_le_bytes());
    for (sector, sectors) in [(64, 1), (63, 2), (60, 8), (u64::MAX, 1), (u64::MAX - 1, 4)] {
        let (status, len, data) = vm.read_sectors(sector, sectors);
        assert_eq!((status, len), (IOERR, 1), "{sector} + {sectors}");
        assert!(data.iter().all(|&b| b == 0xee));
    }
    let h = vm.header(T_OUT, 64);
    let d = vm.alloc(512, 0x55);
    let st = vm.status_byte();
    vm.submit(&[ro(h, 16), ro(d, 512), wr(st, 1)]);
    assert_eq!(vm.status_at(st), IOERR);
    assert_eq!(vm.disk.outside, 0, "never past the volume");
    assert_eq!(vm.disk.writes, 0);
}

#[test]
fn rejected_requests_are_still_completed_in_order() {
    let mut vm = Vm::with_queue(16);
    let mut heads = Vec::new();
    let h = vm.header(T_IN, 1000);
    let st = vm.status_byte();
    let d = vm.alloc(512, 0);
    heads.push(vm.chain(&[ro(h, 16), wr(d, 512), wr(st, 1)])); // out of range
    heads.push(600); // bad index
    let h = vm.header(T_OUT, 0);
    heads.push(vm.chain(&[ro(h, 16), ro(0, 512), wr(st, 1)])); // outside RAM
    let h = vm.header(T_FLUSH, 0);
    heads.push(vm.chain(&[ro(h, 16)])); // no status byte
    let h = vm.header(T_FLUSH, 0);
    let good = vm.status_byte();
    heads.push(vm.chain(&[ro(h, 16), wr(good, 1)]));
    for &head in &heads {
        vm.push_avail(head);
    }
    let s = vm.kick();
    assert_eq!(s.level, Some(true));
    let used = vm.used();
    let ids: Vec<u32> = used.iter().map(|u| u.0).collect();
    assert_eq!(ids, heads.iter().map(|&h| u32::from(h)).collect::<Vec<_>>());
    assert_eq!(
        used.iter().map(|u| u.1).collect::<Vec<_>>(),
        [1, 0, 1, 0, 1]
    );
    assert_eq!(vm.status_at(good), S_OK);
    assert_eq!(vm.dev.stats().completed, 5);
    // Nothing more on a second notify.
    vm.kick();
    assert!(vm.used().is_empty());
}

#[test]
fn read_only_volumes_refuse_writes() {
    let mut vm = Vm::read_only(8);
    assert_ne!(vm.dev.device_features() & F_RO, 0);
    let before = vm.disk.sector(0).to_vec();
    let h = vm.header(T_OUT, 0);
    let d = vm.alloc(512, 0x55);
    let st = vm.status_byte();
    vm.submit(&[ro(h, 16), ro(d, 512), wr(st, 1)]);
    assert_eq!(vm.status_at(st), IOERR);
    assert_eq!(vm.disk.writes, 0);
    assert_eq!(vm.disk.sector(0), &before[..]);
    let (status, _, _) = vm.read_sectors(0, 1);
    assert_eq!(status, S_OK);
}

#[test]
fn interrupts_are_a_level_line_the_guest_acks() {
    let mut vm = Vm::with_queue(8);
    assert_eq!(vm.dev.level(), Some(false));
    let h = vm.header(T_FLUSH, 0);
    let st = vm.status_byte();
    vm.submit(&[ro(h, 16), wr(st, 1)]);
    assert_eq!(r32(&mut vm.dev, INTERRUPT_STATUS), INT_USED);
    assert_eq!(vm.dev.level(), Some(true));
    let s = w32(&mut vm.dev, INTERRUPT_ACK, INT_USED);
    assert_eq!(s.level, Some(false));
    assert_eq!(r32(&mut vm.dev, INTERRUPT_STATUS), 0);
}

#[test]
fn a_driver_more_than_a_queue_ahead_needs_a_reset() {
    let mut vm = Vm::with_queue(8);
    vm.mem.put(AVAIL + 2, &9u16.to_le_bytes());
    let s = vm.kick();
    assert_eq!(s.level, Some(true));
    assert_eq!(r32(&mut vm.dev, INTERRUPT_STATUS), INT_CONFIG);
    assert_ne!(r32(&mut vm.dev, STATUS) & S_NEEDS_RESET, 0);
    assert_eq!(vm.mem.u16_at(USED + 2), 0);
    // Rings outside RAM, likewise.
    let mut vm = Vm::unprobed();
    w32(&mut vm.dev, QUEUE_NUM, 8);
    w32(
        &mut vm.dev,
        QUEUE_DEVICE_LOW,
        (IPA_BASE + RAM_SIZE - 8) as u32,
    );
    w32(&mut vm.dev, QUEUE_DEVICE_HIGH, 0);
    w32(&mut vm.dev, QUEUE_READY, 1);
    w32(&mut vm.dev, DRIVER_FEATURES_SEL, 1);
    w32(&mut vm.dev, DRIVER_FEATURES, 1);
    w32(&mut vm.dev, STATUS, S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    let ram = vm.mem.ram;
    vm.dev.process(&ram, &mut vm.mem, &mut vm.disk);
    assert_ne!(r32(&mut vm.dev, STATUS) & S_NEEDS_RESET, 0);
}

#[test]
fn reset_clears_the_queue_state() {
    let mut vm = Vm::with_queue(8);
    for _ in 0..3 {
        vm.read_sectors(0, 1);
    }
    assert_eq!(vm.mem.u16_at(USED + 2), 3);
    let d = &mut vm.dev;
    w32(d, STATUS, 0);
    assert_eq!(r32(d, STATUS), 0);
    assert_eq!(r32(d, QUEUE_READY), 0);
    assert_eq!(r32(d, QUEUE_NUM), 0);
    assert_eq!(r32(d, QUEUE_DESC_LOW), 0);
    assert_eq!(r32(d, QUEUE_DRIVER_LOW), 0);
    assert_eq!(r32(d, QUEUE_DEVICE_LOW), 0);
    assert_eq!(r32(d, INTERRUPT_STATUS), 0);
    assert!(!d.line());
    // Not running: a notify does nothing.
    vm.push_avail(0);
    vm.kick();
    assert_eq!(vm.dev.stats().completed, 3);
    // A fresh ring starts at index 0 on both sides.
    vm.probe(4);
    let (status, len, _) = vm.read_sectors(1, 1);
    assert_eq!((status, len), (S_OK, 513));
    assert_eq!(vm.mem.u16_at(USED + 2), 1);
}

#[test]
fn failed_status_stops_processing() {
    let mut vm = Vm::with_queue(8);
    let st = r32(&mut vm.dev, STATUS);
    w32(&mut vm.dev, STATUS, st | S_FAILED);
    let h = vm.header(T_FLUSH, 0);
    let s = vm.status_byte();
    let head = vm.chain(&[ro(h, 16), wr(s, 1)]);
    vm.push_avail(head);
    vm.kick();
    assert!(vm.used().is_empty());
}

#[test]
fn ring_indices_wrap_at_u16() {
    let mut vm = Vm::with_queue(8);
    let mut heads = Vec::new();
    for _ in 0..4 {
        let h = vm.header(T_FLUSH, 0);
        let st = vm.status_byte();
        heads.push(vm.chain(&[ro(h, 16), wr(st, 1)]));
    }
    // 65544 requests, 8 at a time: avail.idx and used.idx wrap once.
    for round in 0..65544 / 4 {
        for &head in &heads {
            vm.push_avail(head);
        }
        if round % 2 == 1 {
            vm.kick();
            assert_eq!(vm.used().len(), 8);
        }
    }
    assert_eq!(vm.mem.u16_at(USED + 2), (65544u32 % 65536) as u16);
    assert_eq!(vm.dev.stats().completed, 65544);
    assert_eq!(vm.disk.flushes, 65544);
}
