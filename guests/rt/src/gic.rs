//! The guest's GICv2: the distributor at [`abi::GUEST_GICD_BASE`] (emulated
//! by the hypervisor) and the CPU interface at [`abi::GUEST_GICC_BASE`] (the
//! hardware's virtual CPU interface).
//!
//! Every access is a single 32-bit (or, for priorities and targets, 8-bit)
//! load or store with no writeback, the only forms a trapped access can be
//! emulated from.

use crate::arch::{self, GicFrame};

/// `GICC_IAR` value (INTID) when no interrupt is pending.
pub const SPURIOUS: u32 = 1023;

/// Number of software-generated interrupts (INTIDs 0..16).
pub const SGI_COUNT: u32 = 16;

/// Highest INTID a GICv2 can have + 1 (1020..1023 are special).
pub const INTID_LIMIT: u32 = 1020;

// Distributor registers.
const GICD_CTLR: u64 = 0x000;
const GICD_ISENABLER: u64 = 0x100;
const GICD_ICENABLER: u64 = 0x180;
const GICD_IPRIORITYR: u64 = 0x400;
const GICD_ITARGETSR: u64 = 0x800;
const GICD_SGIR: u64 = 0xf00;

/// `GICD_SGIR.TargetListFilter` = 0b10: to the requesting CPU only.
const SGIR_TO_SELF: u32 = 2 << 24;

// CPU interface registers.
const GICC_CTLR: u64 = 0x00;
const GICC_PMR: u64 = 0x04;
const GICC_IAR: u64 = 0x0c;
const GICC_EOIR: u64 = 0x10;

/// Enables the distributor (`GICD_CTLR` = 1) and this CPU's interface:
/// every priority let through (`GICC_PMR` = 0xff), signalling on
/// (`GICC_CTLR` = 1). Interrupts are still masked at the CPU until
/// [`crate::irq::enable`].
pub fn init() {
    arch::gic_write32(GicFrame::Distributor, GICD_CTLR, 1);
    arch::gic_write32(GicFrame::CpuInterface, GICC_PMR, 0xff);
    arch::gic_write32(GicFrame::CpuInterface, GICC_CTLR, 1);
}

/// Enables `intid` with `priority` (lower is more urgent; the GIC may keep
/// only the top bits, and it must be below the priority mask of 0xff to be
/// signalled). A shared interrupt (INTID >= 32) is routed to this CPU.
pub fn enable(intid: u32, priority: u8) {
    assert!(intid < INTID_LIMIT, "INTID {intid} out of range");
    arch::gic_write8(
        GicFrame::Distributor,
        GICD_IPRIORITYR + u64::from(intid),
        priority,
    );
    if intid >= 32 {
        arch::gic_write8(
            GicFrame::Distributor,
            GICD_ITARGETSR + u64::from(intid),
            this_cpu_mask(),
        );
    }
    let (offset, bit) = bank(intid);
    arch::gic_write32(GicFrame::Distributor, GICD_ISENABLER + offset, bit);
}

/// Disables `intid` at the distributor.
pub fn disable(intid: u32) {
    assert!(intid < INTID_LIMIT, "INTID {intid} out of range");
    let (offset, bit) = bank(intid);
    arch::gic_write32(GicFrame::Distributor, GICD_ICENABLER + offset, bit);
}

/// Acknowledges the highest-priority pending interrupt: the raw `GICC_IAR`
/// value (INTID in bits 9:0, for an SGI the sending CPU in bits 12:10), or
/// `None` if nothing is pending (spurious, 1023). Pass the value to [`eoi`]
/// unchanged; [`intid`] extracts the INTID.
pub fn ack() -> Option<u32> {
    let iar = arch::gic_read32(GicFrame::CpuInterface, GICC_IAR);
    if intid(iar) >= INTID_LIMIT {
        None
    } else {
        Some(iar)
    }
}

/// The INTID of a [`ack`] value.
pub const fn intid(iar: u32) -> u32 {
    iar & 0x3ff
}

/// Ends the interrupt [`ack`] returned (`GICC_EOIR`: priority drop and
/// deactivation). Takes the raw IAR value: for an SGI the source CPU bits
/// must match; for other interrupts it is the INTID.
pub fn eoi(iar: u32) {
    arch::gic_write32(GicFrame::CpuInterface, GICC_EOIR, iar);
}

/// Sends SGI `sgi` (0..16) to this CPU (`GICD_SGIR`, TargetListFilter = 2).
pub fn send_sgi_to_self(sgi: u32) {
    assert!(sgi < SGI_COUNT, "SGI {sgi} out of range");
    arch::gic_write32(GicFrame::Distributor, GICD_SGIR, SGIR_TO_SELF | sgi);
}

/// This CPU's bit in `GICD_ITARGETSR`: `GICD_ITARGETSR0` reads as it on a
/// multiprocessor GIC (byte 0, for INTID 0); a uniprocessor one may read
/// zero there, and then CPU 0 is the only one.
fn this_cpu_mask() -> u8 {
    match arch::gic_read32(GicFrame::Distributor, GICD_ITARGETSR) as u8 {
        0 => 1,
        mask => mask,
    }
}

/// Offset of `intid`'s 32-bit register in a one-bit-per-INTID bank, and
/// its bit there.
const fn bank(intid: u32) -> (u64, u32) {
    ((intid / 32) as u64 * 4, 1 << (intid % 32))
}
