//! Adversarial guests: random descriptor tables and avail rings on both
//! queues, a switch that fills up, and random register traffic. Nothing
//! may panic; every chain made available is completed exactly once and in
//! order, or (transmit, switch full) left available; nothing is written
//! outside the used rings and the receive chains' device-writable buffers.

use super::harness::*;
use crate::*;
use proptest::prelude::*;
use std::prelude::rust_2021::*;
use virtio_dev::queue::{DESC_F_NEXT, DESC_F_WRITE};

/// Buffer slots in guest RAM that descriptors may point at.
const SLOTS: u64 = 64;
const SLOT: u64 = 2048;

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        30 => (0..SLOTS, 0..SLOT).prop_map(|(s, o)| BUFFERS + s * SLOT + if o < 1800 { 0 } else { o }),
        2 => (0u64..64).prop_map(|d| (IPA_BASE + RAM_SIZE).wrapping_sub(d)),
        2 => (0u64..4096).prop_map(|d| u64::MAX - d),
        2 => any::<u64>(),
        // The queues' own rings (rarely, or few tables would be clean).
        1 => IPA_BASE + 0x1000..RINGS_END,
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => Just(HEADER as u32),
        2 => Just(26u32),
        2 => Just(72u32),
        2 => Just((HEADER + MAX_FRAME) as u32),
        1 => Just((HEADER + MAX_FRAME + 1) as u32),
        1 => Just(0u32),
        2 => 0u32..2048,
        1 => any::<u32>(),
    ]
}

/// A descriptor: addr, len, flags, next.
type Desc = (u64, u32, u16, u16);

/// A descriptor of a queue whose buffers are `dir` (WRITE or not):
/// mostly the right way round, so that chains get through.
fn descriptor(num: u16, dir: u16) -> impl Strategy<Value = Desc> {
    (
        addr(),
        len(),
        prop_oneof![4 => Just(dir), 3 => Just(dir | DESC_F_NEXT), 2 => 0u16..8, 1 => any::<u16>()],
        prop_oneof![8 => 0..num, 1 => num..2 * num, 1 => any::<u16>()],
    )
}

/// What the guest does next: make chains available on a queue, then
/// (transmit) notify with the switch's room, or (receive) have that many
/// frames of this length, and one more, delivered.
#[derive(Clone, Debug)]
struct Op {
    queue: usize,
    heads: Vec<u16>,
    room: usize,
    frame_len: usize,
}

fn op(num: u16) -> impl Strategy<Value = Op> {
    (
        prop_oneof![Just(RX), Just(TX)],
        proptest::collection::vec(
            prop_oneof![8 => 0..num, 1 => num..2 * num, 1 => any::<u16>()],
            0..=usize::from(num),
        ),
        prop_oneof![2 => Just(usize::MAX), 1 => 0usize..3],
        prop_oneof![
            4 => 0usize..200,
            1 => Just(60usize),
            1 => Just(MAX_FRAME),
            1 => Just(MAX_FRAME + 1),
            1 => 0usize..1600,
        ],
    )
        .prop_map(|(queue, heads, room, frame_len)| Op {
            queue,
            heads,
            room,
            frame_len,
        })
}

type Setup = (u16, [Vec<Desc>; 2], Vec<Op>);

fn setup() -> impl Strategy<Value = Setup> {
    prop_oneof![Just(1u16), Just(2), Just(4), Just(8), Just(16), Just(128)].prop_flat_map(|num| {
        let table = |dir| proptest::collection::vec(descriptor(num, dir), usize::from(num));
        (
            Just(num),
            [table(DESC_F_WRITE), table(0)],
            proptest::collection::vec(op(num), 1..8),
        )
    })
}

fn inside(range: (u64, u64), within: (u64, u64)) -> bool {
    range.0 >= within.0 && range.0.saturating_add(range.1) <= within.0.saturating_add(within.1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_chains_are_completed_once_or_left_for_a_full_switch(
        (num, tables, ops) in setup(),
        fill in any::<u8>(),
    ) {
        let mut vm = Vm::with_queues(num);
        vm.mem.put(BUFFERS, &vec![fill; (SLOTS * SLOT) as usize]);
        for (q, table) in tables.iter().enumerate() {
            for (i, &(a, l, f, n)) in table.iter().enumerate() {
                vm.set_desc(q, i as u16, a, l, f, n);
            }
        }
        // Buffers on the rings let the guest's device-writable data land on
        // them (its own fault): then only "no panic" holds.
        let clean = tables.iter().flatten().all(|&(a, l, _, _)| {
            a >= RINGS_END || a.saturating_add(u64::from(l)) <= IPA_BASE + 0x1000
        });
        // Where a receive may write: the receive table's device-writable
        // buffers (a superset of each chain's).
        let rx_writable: Vec<(u64, u64)> = tables[RX]
            .iter()
            .filter(|d| d.2 & DESC_F_WRITE != 0)
            .map(|d| (d.0, u64::from(d.1)))
            .collect();
        // Chains made available and not yet completed, per queue.
        let mut outstanding: [Vec<u16>; 2] = [Vec::new(), Vec::new()];
        for op in ops {
            let q = op.queue;
            // Never more than a queue ahead (that is a reset, tested apart).
            let room = usize::from(num) - outstanding[q].len();
            for &head in op.heads.iter().take(room) {
                vm.push_avail(q, head);
                outstanding[q].push(head);
            }
            vm.mem.writes.clear();
            let used_ring = (RINGS[q].used, 0x1000);
            if q == TX {
                vm.switch.room = op.room;
                let refused = vm.switch.refused;
                let sent = vm.switch.frames.len();
                let signal = vm.kick();
                let used = vm.used(TX);
                for f in &vm.switch.frames[sent..] {
                    prop_assert!((MIN_FRAME..=MAX_FRAME).contains(&f.len()));
                }
                if !clean {
                    outstanding[q].drain(..used.len().min(outstanding[q].len()));
                    continue;
                }
                let want: Vec<(u32, u32)> = outstanding[q]
                    .iter()
                    .take(used.len())
                    .map(|&h| (u32::from(h), 0))
                    .collect();
                prop_assert_eq!(&used, &want);
                outstanding[q].drain(..used.len());
                // Left available only when the switch said no.
                prop_assert_eq!(signal.work, !outstanding[q].is_empty());
                if signal.work {
                    prop_assert_eq!(vm.switch.refused, refused + 1);
                }
                prop_assert!(vm.mem.writes.iter().all(|&w| inside(w, used_ring)));
            } else {
                for _ in 0..=outstanding[q].len() {
                    let frame = frame(op.frame_len);
                    let before = vm.dev.stats();
                    vm.receive(&frame);
                    let used = vm.used(RX);
                    if !clean {
                        outstanding[q].drain(..used.len().min(outstanding[q].len()));
                        continue;
                    }
                    if op.frame_len > MAX_FRAME || outstanding[q].is_empty() {
                        prop_assert!(used.is_empty());
                        continue;
                    }
                    let head = outstanding[q].remove(0);
                    prop_assert_eq!(used.len(), 1);
                    prop_assert_eq!(used[0].0, u32::from(head));
                    let received = vm.dev.stats().received > before.received;
                    let len = if received { (HEADER + frame.len()) as u32 } else { 0 };
                    prop_assert_eq!(used[0].1, len);
                }
                if clean {
                    prop_assert!(vm.mem.writes.iter().all(|&w| {
                        inside(w, used_ring) || rx_writable.iter().any(|&b| inside(w, b))
                    }), "{:?}", vm.mem.writes);
                }
            }
            w32(&mut vm.dev, INTERRUPT_ACK, INT_USED);
        }
        if clean {
            prop_assert_eq!(vm.dev.status() & S_NEEDS_RESET, 0);
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
                    1 => Just(RINGS[0].desc), 1 => Just(RINGS[1].avail), 1 => Just(RINGS[1].used),
                    1 => Just(u64::from(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK)),
                ],
                0u8..5,
            ),
            0..64,
        ),
        rings in proptest::collection::vec(any::<u8>(), 0x6000),
    ) {
        let mut vm = if probed { Vm::with_queues(8) } else { Vm::unprobed() };
        vm.mem.put(RINGS[0].desc, &rings);
        for (offset, width, value, what) in ops {
            match what {
                0 => {
                    vm.dev.read(0, offset, width);
                }
                1 | 2 => {
                    let s = vm.dev.write(0, offset, width, value);
                    prop_assert_eq!(s.level, Some(vm.dev.line()));
                }
                3 => {
                    vm.switch.room = (value % 3) as usize;
                    let s = vm.work();
                    prop_assert_eq!(s.level, Some(vm.dev.line()));
                }
                _ => {
                    let s = vm.receive(&frame((value % 1600) as usize));
                    prop_assert_eq!(s.level, Some(vm.dev.line()));
                }
            }
            prop_assert_eq!(vm.dev.level(), Some(vm.dev.line()));
        }
        vm.switch.room = usize::MAX;
        let s = vm.work();
        prop_assert!(!s.work);
    }
}
