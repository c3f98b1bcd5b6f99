//! GICv3 (Arm IHI 0069) with affinity routing: the distributor at
//! [`abi::GUEST_GICD_BASE`] and this vCPU's redistributor in the region at
//! [`abi::GUEST_GICR_BASE`] (both emulated by the hypervisor; 32-bit single
//! loads and stores only, and 64-bit registers as two halves, low first),
//! and the system-register CPU interface (`ICC_*_EL1`). Every interrupt is
//! put in group 1 (non-secure group 1 on a GIC with two security states).

use super::{bank, GicFrame, INTID_LIMIT};
use crate::arch;

// Distributor registers.
const GICD_CTLR: u64 = 0x0000;
const GICD_IGROUPR: u64 = 0x0080;
const GICD_ISENABLER: u64 = 0x0100;
const GICD_ICENABLER: u64 = 0x0180;
const GICD_IPRIORITYR: u64 = 0x0400;
const GICD_IROUTER: u64 = 0x6000;

/// `GICD_CTLR.EnableGrp1NS` (`EnableGrp1` with one security state).
const GICD_CTLR_ENABLE_GRP1_NS: u32 = 1 << 1;
/// `GICD_CTLR.ARE_NS`: affinity routing (`ARE` with one security state).
const GICD_CTLR_ARE_NS: u32 = 1 << 4;
/// `GICD_CTLR.RWP`: a register write is still taking effect.
const GICD_CTLR_RWP: u32 = 1 << 31;

// Redistributor registers: RD_base frame.
const GICR_CTLR: u64 = 0x0000;
const GICR_WAKER: u64 = 0x0014;
/// `GICR_CTLR.RWP`: a register write is still taking effect.
const GICR_CTLR_RWP: u32 = 1 << 3;
/// `GICR_WAKER.ProcessorSleep`.
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// `GICR_WAKER.ChildrenAsleep`.
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

// Redistributor registers: SGI_base frame (SGIs and PPIs, INTIDs 0..32).
const GICR_IGROUPR0: u64 = 0x0080;
const GICR_ISENABLER0: u64 = 0x0100;
const GICR_ICENABLER0: u64 = 0x0180;
const GICR_IPRIORITYR: u64 = 0x0400;

/// `ICC_SGI1R_EL1` fields.
const SGI1R_AFF1_SHIFT: u32 = 16;
const SGI1R_INTID_SHIFT: u32 = 24;
const SGI1R_AFF2_SHIFT: u32 = 32;
const SGI1R_RS_SHIFT: u32 = 44;
const SGI1R_AFF3_SHIFT: u32 = 48;

/// How long a GIC may take to finish a register write or wake up, in
/// seconds, before the runtime gives up (panics).
const SETTLE_TIMEOUT_S: u64 = 1;

/// Enables the distributor (affinity routing, group 1).
pub(super) fn init_distributor() {
    arch::gic_write32(
        GicFrame::Distributor,
        GICD_CTLR,
        GICD_CTLR_ENABLE_GRP1_NS | GICD_CTLR_ARE_NS,
    );
    wait_distributor();
}

/// Enables this CPU's system-register interface, wakes this vCPU's
/// redistributor, and turns this CPU's interface on: every priority let
/// through (`ICC_PMR_EL1` = 0xff), no preemption grouping
/// (`ICC_BPR1_EL1` = 0), group 1 on (`ICC_IGRPEN1_EL1` = 1).
pub(super) fn init_cpu() {
    // Per CPU: `version` set it on the CPU that looked only.
    assert!(
        arch::icc_enable_sre(),
        "GICv3: ICC_SRE_EL1.SRE stays 0 (system-register interface disabled)"
    );

    let rd = GicFrame::Redistributor(redistributor());
    let waker = arch::gic_read32(rd, GICR_WAKER);
    arch::gic_write32(rd, GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
    settle("GICR_WAKER.ChildrenAsleep", || {
        arch::gic_read32(rd, GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP == 0
    });

    arch::icc_set_priority_mask(0xff);
    arch::icc_set_binary_point1(0);
    arch::icc_set_group1_enable(true);
}

/// Group 1 and priority, for an SPI the route to this CPU, then the enable
/// bit: SGIs and PPIs in this vCPU's redistributor, SPIs in the
/// distributor.
pub(super) fn enable(intid: u32, priority: u8) {
    let (frame, igroupr, ipriorityr, isenabler) = if intid < 32 {
        (
            GicFrame::RedistributorSgi(redistributor()),
            GICR_IGROUPR0,
            GICR_IPRIORITYR,
            GICR_ISENABLER0,
        )
    } else {
        (
            GicFrame::Distributor,
            GICD_IGROUPR,
            GICD_IPRIORITYR,
            GICD_ISENABLER,
        )
    };
    let (offset, bit) = bank(intid);
    // Read-modify-write: the other INTIDs of the register keep their group
    // and priority (one vCPU configures its interrupts at a time).
    let group = arch::gic_read32(frame, igroupr + offset);
    arch::gic_write32(frame, igroupr + offset, group | bit);

    let word = ipriorityr + u64::from(intid & !3);
    let shift = (intid % 4) * 8;
    let priorities = arch::gic_read32(frame, word);
    arch::gic_write32(
        frame,
        word,
        (priorities & !(0xff << shift)) | (u32::from(priority) << shift),
    );

    if intid >= 32 {
        // GICD_IROUTER<n>: Interrupt_Routing_Mode = 0, this CPU's affinity
        // (Aff0..2 in the low half, Aff3 in the high one).
        let [aff0, aff1, aff2, aff3] = arch::cpu_affinity();
        let router = GICD_IROUTER + 8 * u64::from(intid);
        let low = u32::from(aff0) | u32::from(aff1) << 8 | u32::from(aff2) << 16;
        arch::gic_write32(GicFrame::Distributor, router, low);
        arch::gic_write32(GicFrame::Distributor, router + 4, u32::from(aff3));
    }

    arch::gic_write32(frame, isenabler + offset, bit);
}

/// `GICR_ICENABLER0` or `GICD_ICENABLER<n>`, then waits for it to take
/// effect (RWP).
pub(super) fn disable(intid: u32) {
    let (offset, bit) = bank(intid);
    if intid < 32 {
        let n = redistributor();
        arch::gic_write32(GicFrame::RedistributorSgi(n), GICR_ICENABLER0, bit);
        settle("GICR_CTLR.RWP", || {
            arch::gic_read32(GicFrame::Redistributor(n), GICR_CTLR) & GICR_CTLR_RWP == 0
        });
    } else {
        arch::gic_write32(GicFrame::Distributor, GICD_ICENABLER + offset, bit);
        wait_distributor();
    }
}

/// `ICC_IAR1_EL1`: the INTID (bits 23:0). Special INTIDs (1020..1024,
/// 1023 = nothing pending) are `None`; so would LPIs be, but the runtime
/// never enables any.
pub(super) fn ack() -> Option<u32> {
    let iar = arch::icc_ack1() & 0x00ff_ffff;
    if iar >= INTID_LIMIT {
        None
    } else {
        Some(iar)
    }
}

/// `ICC_EOIR1_EL1` with the INTID.
pub(super) fn eoi(iar: u32) {
    arch::icc_eoi1(iar);
}

/// `ICC_SGI1R_EL1` with this CPU's affinity: Aff3..Aff1 as they are, Aff0
/// as range selector (`RS` = Aff0 / 16) and `TargetList` bit (Aff0 % 16).
pub(super) fn send_sgi_to_self(sgi: u32) {
    let [aff0, aff1, aff2, aff3] = arch::cpu_affinity();
    let value = 1u64 << (aff0 % 16)
        | u64::from(aff1) << SGI1R_AFF1_SHIFT
        | u64::from(sgi) << SGI1R_INTID_SHIFT
        | u64::from(aff2) << SGI1R_AFF2_SHIFT
        | u64::from(aff0 / 16) << SGI1R_RS_SHIFT
        | u64::from(aff3) << SGI1R_AFF3_SHIFT;
    arch::icc_send_sgi1(value);
}

/// `ICC_SGI1R_EL1` to vCPU `target` of this VM: its MPIDR has Aff3..Aff1
/// = 0 and Aff0 = `target`, so `RS` = target / 16 and the `TargetList` bit
/// target % 16 (`icc_send_sgi1` makes earlier stores visible first).
pub(super) fn send_sgi(sgi: u32, target: u8) {
    let value = 1u64 << (target % 16)
        | u64::from(sgi) << SGI1R_INTID_SHIFT
        | u64::from(target / 16) << SGI1R_RS_SHIFT;
    arch::icc_send_sgi1(value);
}

/// This vCPU's redistributor: frame `Aff0` of the GICR region.
fn redistributor() -> u32 {
    u32::from(arch::cpu_affinity()[0])
}

/// Waits until `GICD_CTLR.RWP` = 0.
fn wait_distributor() {
    settle("GICD_CTLR.RWP", || {
        arch::gic_read32(GicFrame::Distributor, GICD_CTLR) & GICD_CTLR_RWP == 0
    });
}

/// Polls `done` until it holds; panics, naming `what`, if it still does not
/// after [`SETTLE_TIMEOUT_S`].
fn settle(what: &str, done: impl Fn() -> bool) {
    let give_up = crate::counter() + SETTLE_TIMEOUT_S * crate::counter_frequency();
    while !done() {
        assert!(
            crate::counter() < give_up,
            "GICv3: {what} still set after {SETTLE_TIMEOUT_S}s"
        );
        core::hint::spin_loop();
    }
}
