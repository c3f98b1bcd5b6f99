//! Both virtual GICs fuzzed through the interface the core drives them by:
//! random distributor and redistributor accesses at every width, raises,
//! device lines, list-register flushes, guest completions and CPU_OFF
//! releases. Whatever the guest writes: no panic, every list register holds
//! a supported INTID, no INTID is in two of one vCPU's list registers, no
//! SPI is in two vCPUs' list registers at once, and a level-sensitive SPI
//! whose line is high is never lost (pending or active somewhere).

use abi::{GUEST_GICD_BASE, GUEST_GICR_BASE};
use hv::vgic::{ListReg, LrState, Vgic};
use proptest::prelude::*;

const VCPUS: usize = 4;
const LRS: usize = 4;
/// The SPIs devices drive lines of, mostly.
const LINES: std::ops::Range<u32> = 32..36;

#[derive(Clone, Debug)]
enum Op {
    Read {
        vcpu: usize,
        ipa: u64,
        width: u8,
    },
    Write {
        vcpu: usize,
        ipa: u64,
        width: u8,
        value: u64,
    },
    Sgi1r {
        vcpu: usize,
        value: u64,
    },
    Raise {
        vcpu: usize,
        intid: u32,
    },
    Level {
        vcpu: usize,
        intid: u32,
        level: bool,
    },
    /// Fill the vCPU's list registers, then let the guest take (activate)
    /// or complete some of them, then sync.
    Run {
        vcpu: usize,
        guest: u8,
    },
    Release {
        vcpu: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let vcpu = 0..VCPUS + 1; // one past the last: must be ignored
                             // Anywhere in the frames, or the registers that move interrupts around
                             // (enable, pend, activate, route) for the first SPIs and each vCPU's
                             // private interrupts, so that sequences meet.
    let distributor = prop::sample::select(vec![
        0x000u64, 0x004, 0x104, 0x184, 0x204, 0x284, 0x304, 0x384, 0x420, 0x820, 0x824, 0xc08,
        0xf00,
    ]);
    let router = (0u64..8).prop_map(|k| 0x6100 + 8 * k);
    let redistributor = (
        0..VCPUS as u64,
        prop::sample::select(vec![0x0014u64, 0x1_0100, 0x1_0200, 0x1_0300, 0x1_0400]),
    )
        .prop_map(|(n, o)| GUEST_GICR_BASE + n * 0x2_0000 + o);
    let ipa = prop_oneof![
        2 => (0u64..0x1_0000).prop_map(|o| GUEST_GICD_BASE + o),
        1 => (0u64..0x8_0000).prop_map(|o| GUEST_GICR_BASE + o),
        4 => distributor.prop_map(|o| GUEST_GICD_BASE + o),
        2 => router.prop_map(|o| GUEST_GICD_BASE + o),
        2 => redistributor,
    ];
    let width = prop_oneof![4 => Just(4u8), 1 => Just(1), 1 => Just(2), 1 => Just(8)];
    let value = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(0xffff_ffff),
        (0u32..VCPUS as u32 + 1).prop_map(|n| 1u64 << n),
        (0u64..VCPUS as u64).prop_map(|n| n * 0x0101_0101),
        any::<u64>(),
    ];
    prop_oneof![
        1 => (vcpu.clone(), ipa.clone(), width.clone())
            .prop_map(|(vcpu, ipa, width)| Op::Read { vcpu, ipa, width }),
        3 => (vcpu.clone(), ipa, width, value.clone())
            .prop_map(|(vcpu, ipa, width, value)| Op::Write { vcpu, ipa, width, value }),
        1 => (vcpu.clone(), value).prop_map(|(vcpu, value)| Op::Sgi1r { vcpu, value }),
        2 => (vcpu.clone(), prop_oneof![4 => 32u32..36, 2 => 0u32..100, 1 => any::<u32>()])
            .prop_map(|(vcpu, intid)| Op::Raise { vcpu, intid }),
        2 => (vcpu.clone(), prop_oneof![8 => LINES, 1 => 0u32..100, 1 => any::<u32>()], any::<bool>())
            .prop_map(|(vcpu, intid, level)| Op::Level { vcpu, intid, level }),
        3 => (0..VCPUS, any::<u8>()).prop_map(|(vcpu, guest)| Op::Run { vcpu, guest }),
        1 => (0..VCPUS).prop_map(|vcpu| Op::Release { vcpu }),
    ]
}

/// Every live list register holds a supported INTID, none twice in one
/// vCPU's, and a shared interrupt (SPI) in one vCPU's at most.
fn check_list_registers(lrs: &[[ListReg; LRS]; VCPUS]) -> Result<(), TestCaseError> {
    let mut spis = Vec::new();
    for vcpu in lrs {
        let live: Vec<u32> = vcpu
            .iter()
            .filter(|lr| !lr.is_free())
            .map(|lr| lr.intid)
            .collect();
        for (i, intid) in live.iter().enumerate() {
            prop_assert!(*intid < 1020, "INTID {intid} in a list register");
            prop_assert!(
                !live[i + 1..].contains(intid),
                "INTID {intid} twice: {live:?}"
            );
            if *intid >= 32 {
                prop_assert!(
                    !spis.contains(intid),
                    "SPI {intid} held by two vCPUs: {lrs:?}"
                );
                spis.push(*intid);
            }
        }
    }
    Ok(())
}

/// Every SPI of [`LINES`] whose line is high and which the guest left
/// level-sensitive (ICFGR) is pending or active in the distributor or in
/// some vCPU's list registers.
fn check_lines<V: Vgic>(gic: &mut V, high: &[bool]) -> Result<(), TestCaseError> {
    let icfgr = gic.read(0, GUEST_GICD_BASE + 0xc08, 4);
    for (intid, _) in LINES.zip(high).filter(|(_, &high)| high) {
        let edge = icfgr >> (2 * (intid - 32) + 1) & 1 != 0;
        let in_flight = (0..VCPUS).any(|v| gic.in_flight(v, intid));
        prop_assert!(
            edge || in_flight,
            "level SPI {intid} with its line high lost"
        );
    }
    Ok(())
}

fn check<V: Vgic>(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut gic = V::new(VCPUS);
    // As a guest sets its GIC up: the distributor on, SPIs 32..63 enabled
    // (the random operations may undo either).
    gic.write(0, GUEST_GICD_BASE, 4, 0xffff_ffff);
    gic.write(0, GUEST_GICD_BASE + 0x104, 4, 0xffff_ffff);
    let mut lrs = [[ListReg::default(); LRS]; VCPUS];
    let mut high = [false; LINES.end as usize - LINES.start as usize];
    for op in ops {
        match *op {
            Op::Read { vcpu, ipa, width } => {
                if gic.windows().iter().any(|w| w.contains(ipa)) {
                    gic.read(vcpu, ipa, width);
                }
            }
            Op::Write {
                vcpu,
                ipa,
                width,
                value,
            } => {
                if gic.windows().iter().any(|w| w.contains(ipa)) {
                    let effects = gic.write(vcpu, ipa, width, value);
                    prop_assert!(
                        effects.kick < 1 << VCPUS,
                        "kicks a vCPU that does not exist"
                    );
                }
            }
            Op::Sgi1r { vcpu, value } => {
                let effects = gic.write_sgi1r(vcpu, value);
                prop_assert!(effects.kick < 1 << VCPUS);
            }
            Op::Raise { vcpu, intid } => {
                gic.raise(vcpu, intid);
            }
            Op::Level { vcpu, intid, level } => {
                let effects = gic.set_level(vcpu, intid, level);
                prop_assert!(effects.kick < 1 << VCPUS);
                if vcpu < VCPUS && LINES.contains(&intid) {
                    high[(intid - LINES.start) as usize] = level;
                }
            }
            Op::Run { vcpu, guest } => {
                let flushed = gic.flush(vcpu, &mut lrs[vcpu]);
                prop_assert!(flushed.effects.kick < 1 << VCPUS);
                check_list_registers(&lrs)?;
                for (i, lr) in lrs[vcpu].iter_mut().enumerate() {
                    // Two bits of `guest` per list register: leave, take, complete.
                    match (guest >> (2 * i)) & 3 {
                        1 if lr.state == LrState::Pending => lr.state = LrState::Active,
                        2 | 3 => *lr = ListReg::default(),
                        _ => {}
                    }
                }
                let effects = gic.sync(vcpu, &mut lrs[vcpu]);
                prop_assert!(effects.kick < 1 << VCPUS);
            }
            Op::Release { vcpu } => {
                let effects = gic.release_lrs(vcpu);
                prop_assert!(effects.kick < 1 << VCPUS);
                lrs[vcpu] = [ListReg::default(); LRS];
            }
        }
        check_lines(&mut gic, &high)?;
    }
    Ok(())
}

/// 4096 cases by default (about a minute in a debug build): the
/// two-holders finding needed 2,600 to 3,800 before it showed.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok());
    ProptestConfig {
        cases: cases.unwrap_or(4096),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn fuzz_vgic_v2(ops in prop::collection::vec(op(), 1..200)) {
        check::<vgic_v2::VgicV2>(&ops)?;
    }

    #[test]
    fn fuzz_vgic_v3(ops in prop::collection::vec(op(), 1..200)) {
        check::<vgic_v3::VgicV3>(&ops)?;
    }
}
