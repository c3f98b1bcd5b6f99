//! Adversarial guests: random register traffic and random descriptor
//! tables and avail rings. Nothing may panic, every request taken is
//! completed exactly once and in order, and the disk is never touched
//! outside the volume.

use super::harness::*;
use crate::blk::{T_FLUSH, T_GET_ID, T_IN, T_OUT};
use crate::*;
use proptest::prelude::*;
use std::prelude::rust_2021::*;

/// Request slots in guest RAM that descriptors may point at.
const SLOTS: u64 = 64;
const SLOT: u64 = 1024;

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (0..SLOTS, 0..SLOT).prop_map(|(s, o)| BUFFERS + s * SLOT + if o < 900 { 0 } else { o }),
        1 => Just(IPA_BASE + RAM_SIZE - 16),
        1 => (0u64..64).prop_map(|d| (IPA_BASE + RAM_SIZE).wrapping_sub(d)),
        1 => (0u64..4096).prop_map(|d| u64::MAX - d),
        1 => any::<u64>(),
        // The queue's own rings.
        1 => DESC..USED + 0x800,
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(16u32),
        3 => Just(1u32),
        3 => Just(512u32),
        1 => Just(1024u32),
        1 => Just(0u32),
        1 => 0u32..2048,
        1 => any::<u32>(),
    ]
}

fn descriptor(num: u16) -> impl Strategy<Value = Desc> {
    (
        addr(),
        len(),
        prop_oneof![8 => 0u16..8, 1 => any::<u16>()],
        prop_oneof![8 => 0..num, 1 => num..2 * num, 1 => any::<u16>()],
    )
}

fn header() -> impl Strategy<Value = (u32, u64)> {
    (
        prop_oneof![
            Just(T_IN),
            Just(T_OUT),
            Just(T_FLUSH),
            Just(T_GET_ID),
            any::<u32>()
        ],
        prop_oneof![0u64..80, (0u64..8).prop_map(|d| u64::MAX - d), any::<u64>()],
    )
}

/// A descriptor: addr, len, flags, next.
type Desc = (u64, u32, u16, u16);
/// Queue size, descriptor table, batches of avail heads.
type Queue = (u16, Vec<Desc>, Vec<Vec<u16>>);

fn queue() -> impl Strategy<Value = Queue> {
    prop_oneof![Just(1u16), Just(2), Just(4), Just(8), Just(16), Just(128)].prop_flat_map(|num| {
        (
            Just(num),
            proptest::collection::vec(descriptor(num), usize::from(num)),
            proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![8 => 0..num, 1 => num..2 * num, 1 => any::<u16>()],
                    0..=usize::from(num),
                ),
                1..4,
            ),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_chains_are_each_completed_once(
        (num, descs, batches) in queue(),
        headers in proptest::collection::vec(header(), SLOTS as usize),
    ) {
        let mut vm = Vm::with_queue(num);
        for (s, (kind, sector)) in headers.iter().enumerate() {
            let mut h = [0u8; 16];
            h[..4].copy_from_slice(&kind.to_le_bytes());
            h[8..].copy_from_slice(&sector.to_le_bytes());
            vm.mem.put(BUFFERS + s as u64 * SLOT, &h);
        }
        for (i, &(a, l, f, n)) in descs.iter().enumerate() {
            vm.set_desc(i as u16, a, l, f, n);
        }
        // Buffers on the rings let the guest's device-writable data land on
        // them (its own fault): then only "no panic, nothing outside the
        // volume" holds.
        let clean = descs.iter().all(|&(a, l, _, _)| {
            a >= USED + 0x1000 || a.saturating_add(u64::from(l)) <= DESC
        });
        if clean {
            // Past the descriptor table, before the avail ring: only a
            // descriptor index >= num would lead there.
            vm.mem.watch.set((DESC + 16 * u64::from(num), AVAIL));
        }
        let mut completed = 0;
        for heads in batches {
            for &head in &heads {
                vm.push_avail(head);
            }
            let table = vm.mem.get(DESC, 16 * usize::from(num));
            let avail = vm.mem.get(AVAIL, 4 + 2 * usize::from(num));
            vm.mem.desc_reads.set(0);
            let signal = vm.kick();
            prop_assert_eq!(vm.disk.outside, 0);
            if !clean {
                continue;
            }
            // The guest's own structures are never written.
            prop_assert_eq!(vm.mem.get(DESC, 16 * usize::from(num)), table);
            prop_assert_eq!(vm.mem.get(AVAIL, 4 + 2 * usize::from(num)), avail);
            // Each descriptor read at most once per chain.
            prop_assert!(vm.mem.desc_reads.get() <= heads.len() as u64 * u64::from(num));
            let used = vm.used();
            let ids: Vec<u32> = used.iter().map(|u| u.0).collect();
            let want: Vec<u32> = heads.iter().map(|&h| u32::from(h)).collect();
            prop_assert_eq!(ids, want);
            completed += heads.len() as u64;
            prop_assert_eq!(vm.dev.stats().completed, completed);
            if !heads.is_empty() {
                prop_assert_eq!(signal.level, Some(true));
            }
            prop_assert_eq!(vm.disk.outside, 0);
            w32(&mut vm.dev, INTERRUPT_ACK, INT_USED);
        }
        if clean {
            prop_assert_eq!(vm.dev.status() & S_NEEDS_RESET, 0);
            prop_assert_eq!(vm.mem.watch_hits.get(), 0, "read outside the table");
        }
    }

    #[test]
    fn random_register_traffic_never_panics(
        probed in any::<bool>(),
        ops in proptest::collection::vec(
            (
                prop_oneof![4 => (0u64..0x110).prop_map(|o| o & !3), 1 => 0u64..0x220, 1 => any::<u64>()],
                prop_oneof![6 => Just(4u8), 1 => Just(1), 1 => Just(2), 1 => Just(8), 1 => Just(3)],
                prop_oneof![
                    2 => any::<u64>(),
                    2 => 0u64..300,
                    1 => Just(DESC), 1 => Just(AVAIL), 1 => Just(USED),
                    1 => Just(u64::from(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK)),
                ],
                0u8..4,
            ),
            0..64,
        ),
        rings in proptest::collection::vec(any::<u8>(), 0x3000),
    ) {
        let mut vm = if probed { Vm::with_queue(8) } else { Vm::unprobed() };
        vm.mem.put(DESC, &rings);
        for (offset, width, value, what) in ops {
            match what {
                0 => {
                    vm.dev.read(0, offset, width);
                }
                1 | 2 => {
                    let s = vm.dev.write(0, offset, width, value);
                    prop_assert_eq!(s.level, Some(vm.dev.line()));
                }
                _ => {
                    let ram = vm.mem.ram;
                    let s = vm.dev.process(&ram, &mut vm.mem, &mut vm.disk);
                    prop_assert_eq!(s.level, Some(vm.dev.line()));
                    prop_assert!(!vm.dev.notified());
                }
            }
            prop_assert_eq!(vm.dev.level(), Some(vm.dev.line()));
        }
        let ram = vm.mem.ram;
        vm.dev.process(&ram, &mut vm.mem, &mut vm.disk);
        prop_assert_eq!(vm.disk.outside, 0);
    }
}

/// A request as a driver would make it: type, sector, data segment
/// lengths, whether it ends in a status byte.
#[derive(Clone, Debug)]
struct Plan {
    kind: u32,
    sector: u64,
    segments: Vec<u32>,
    status: bool,
    fill: u8,
    /// Which buffer (header 0, data 1.., status last) has the wrong
    /// direction, if any.
    flip: Option<usize>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        prop_oneof![
            4 => Just(T_IN),
            4 => Just(T_OUT),
            1 => Just(T_FLUSH),
            1 => Just(T_GET_ID),
            1 => Just(3u32)
        ],
        prop_oneof![8 => 0u64..70, 1 => (0u64..4).prop_map(|d| u64::MAX - d)],
        proptest::collection::vec(
            prop_oneof![4 => Just(512u32), 2 => Just(1024), 1 => Just(20), 1 => Just(511), 1 => Just(0)],
            0..4,
        ),
        prop_oneof![9 => Just(true), 1 => Just(false)],
        any::<u8>(),
        prop_oneof![6 => Just(None), 1 => (0usize..6).prop_map(Some)],
    )
        .prop_map(|(kind, sector, segments, status, fill, flip)| {
            // Flip only a nonempty buffer of a request with a status and a
            // known type, so the model stays simple.
            let n = segments.len();
            let flip = flip.map(|f| f % (n + 2)).filter(|&f| {
                status && kind != 3 && (f == 0 || f == n + 1 || segments[f - 1] > 0)
            });
            Plan {
                kind,
                sector,
                segments,
                status,
                fill,
                flip,
            }
        })
}

/// What the device should answer: status (None: no status byte) and the
/// bytes it puts in data-in.
fn expect(p: &Plan, volume: &mut [u8], serial: &[u8; 20]) -> (Option<u8>, Vec<u8>) {
    use crate::blk::{whole_sectors_inside, S_IOERR, S_OK, S_UNSUPP};
    match p.flip {
        Some(f) if f == p.segments.len() + 1 => return (None, Vec::new()),
        Some(_) => return (Some(S_IOERR), Vec::new()),
        None => {}
    }
    let mut total: u64 = p.segments.iter().map(|&l| u64::from(l)).sum();
    if !p.status {
        // The status is the last byte of the last descriptor, whatever
        // the driver meant: a device-writable data buffer's, if nonempty.
        let writes = matches!(p.kind, T_IN | T_GET_ID);
        match p.segments.last() {
            Some(&l) if writes && l > 0 => total -= 1,
            _ => return (None, Vec::new()),
        }
    }
    let sectors = (volume.len() / SECTOR) as u64;
    match p.kind {
        T_IN if whole_sectors_inside(p.sector, total, sectors) => {
            let at = p.sector as usize * SECTOR;
            (Some(S_OK), volume[at..at + total as usize].to_vec())
        }
        T_OUT if whole_sectors_inside(p.sector, total, sectors) => {
            let at = p.sector as usize * SECTOR;
            volume[at..at + total as usize].fill(p.fill);
            (Some(S_OK), Vec::new())
        }
        T_IN | T_OUT => (Some(S_IOERR), Vec::new()),
        T_FLUSH if total == 0 => (Some(S_OK), Vec::new()),
        T_FLUSH => (Some(S_IOERR), Vec::new()),
        T_GET_ID => (Some(S_OK), serial[..total.min(20) as usize].to_vec()),
        _ => (Some(S_UNSUPP), Vec::new()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Linux-shaped requests, some of them wrong, in batches: each gets
    /// the status a model predicts, and the disk ends as the model says.
    #[test]
    fn driver_shaped_requests_match_a_model(
        num in prop_oneof![Just(8u16), Just(16), Just(128)],
        batches in proptest::collection::vec(proptest::collection::vec(plan(), 0..6), 1..5),
    ) {
        let mut vm = Vm::with_queue(num);
        let serial = *b"tessera-vblk-serial0";
        let mut model: Vec<u8> = (0..vm.disk.len).flat_map(|s| vm.disk.sector(s).to_vec()).collect();
        let mut slot = 0u64;
        for batch in batches {
            let mut sent = Vec::new();
            for p in &batch {
                let base = BUFFERS + (slot % 64) * 0x1000;
                slot += 1;
                let mut h = [0u8; 16];
                h[..4].copy_from_slice(&p.kind.to_le_bytes());
                h[8..].copy_from_slice(&p.sector.to_le_bytes());
                vm.mem.put(base, &h);
                let write = matches!(p.kind, T_IN | T_GET_ID);
                let mut bufs = vec![ro(base, 16)];
                let mut at = base + 16;
                for &l in &p.segments {
                    vm.mem.put(at, &vec![p.fill; l as usize]);
                    bufs.push(if write { wr(at, l) } else { ro(at, l) });
                    at += u64::from(l);
                }
                let status_at = at;
                vm.mem.put(status_at, &[0xff]);
                if p.status {
                    bufs.push(wr(status_at, 1));
                }
                if let Some(f) = p.flip {
                    bufs[f].write = !bufs[f].write;
                }
                let head = vm.chain(&bufs);
                vm.push_avail(head);
                sent.push((head, base + 16, status_at, bufs.len()));
            }
            let fits = sent.iter().map(|s| s.3).sum::<usize>() <= usize::from(num);
            vm.kick();
            let used = vm.used();
            prop_assert_eq!(used.len(), batch.len());
            prop_assert_eq!(vm.disk.outside, 0);
            if !fits {
                // Later chains overwrote earlier ones' descriptors: only
                // "completed once" is defined; resynchronise the model.
                model = (0..vm.disk.len).flat_map(|s| vm.disk.sector(s).to_vec()).collect();
                continue;
            }
            for (p, ((head, data, status_at, _), (id, len))) in batch.iter().zip(sent.iter().zip(used)) {
                prop_assert_eq!(id, u32::from(*head));
                let (status, data_in) = expect(p, &mut model, &serial);
                match status {
                    None => prop_assert_eq!(len, 0),
                    Some(s) => {
                        let status_at = if p.status { *status_at } else { *status_at - 1 };
                        prop_assert_eq!(vm.status_at(status_at), s, "{:?}", p);
                        prop_assert_eq!(len as usize, data_in.len() + 1, "{:?}", p);
                        prop_assert_eq!(vm.mem.get(*data, data_in.len()), data_in);
                    }
                }
            }
        }
        let disk: Vec<u8> = (0..vm.disk.len).flat_map(|s| vm.disk.sector(s).to_vec()).collect();
        prop_assert!(disk == model, "the disk is as the model says");
    }
}
