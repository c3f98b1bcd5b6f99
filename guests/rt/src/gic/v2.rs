//! GICv2: the distributor at [`abi::GUEST_GICD_BASE`] (emulated by the
//! hypervisor) and the CPU interface at [`abi::GUEST_GICC_BASE`] (the
//! hardware's virtual CPU interface).

use super::{bank, GicFrame, INTID_LIMIT};
use crate::arch;

// Distributor registers.
const GICD_CTLR: u64 = 0x000;
const GICD_ISENABLER: u64 = 0x100;
const GICD_ICENABLER: u64 = 0x180;
const GICD_IPRIORITYR: u64 = 0x400;
const GICD_ITARGETSR: u64 = 0x800;
const GICD_SGIR: u64 = 0xf00;

/// `GICD_SGIR.TargetListFilter` = 0b10: to the requesting CPU only.
const SGIR_TO_SELF: u32 = 2 << 24;
/// `GICD_SGIR.CPUTargetList` (bits 23:16), with TargetListFilter = 0.
const SGIR_TARGET_LIST_SHIFT: u32 = 16;

// CPU interface registers.
const GICC_CTLR: u64 = 0x00;
const GICC_PMR: u64 = 0x04;
const GICC_IAR: u64 = 0x0c;
const GICC_EOIR: u64 = 0x10;

/// Distributor on (`GICD_CTLR` = 1).
pub(super) fn init_distributor() {
    arch::gic_write32(GicFrame::Distributor, GICD_CTLR, 1);
}

/// This CPU's interface (banked per CPU): every priority let through
/// (`GICC_PMR` = 0xff), signalling on (`GICC_CTLR` = 1).
pub(super) fn init_cpu() {
    arch::gic_write32(GicFrame::CpuInterface, GICC_PMR, 0xff);
    arch::gic_write32(GicFrame::CpuInterface, GICC_CTLR, 1);
}

/// Priority byte, then for an SPI the target byte, then the enable bit.
pub(super) fn enable(intid: u32, priority: u8) {
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

pub(super) fn disable(intid: u32) {
    let (offset, bit) = bank(intid);
    arch::gic_write32(GicFrame::Distributor, GICD_ICENABLER + offset, bit);
}

/// `GICC_IAR`: INTID in bits 9:0, for an SGI the source CPU in 12:10.
pub(super) fn ack() -> Option<u32> {
    let iar = arch::gic_read32(GicFrame::CpuInterface, GICC_IAR);
    if super::intid(iar) >= INTID_LIMIT {
        None
    } else {
        Some(iar)
    }
}

/// `GICC_EOIR` with the raw IAR value.
pub(super) fn eoi(iar: u32) {
    arch::gic_write32(GicFrame::CpuInterface, GICC_EOIR, iar);
}

/// `GICD_SGIR`, TargetListFilter = 2.
pub(super) fn send_sgi_to_self(sgi: u32) {
    arch::gic_write32(GicFrame::Distributor, GICD_SGIR, SGIR_TO_SELF | sgi);
}

/// `GICD_SGIR`, TargetListFilter = 0 (the list), CPUTargetList = the
/// target's bit (CPU interface number = vCPU index). The store is ordered
/// after earlier stores to normal memory (`dsb`), so the target's handler
/// sees them.
pub(super) fn send_sgi(sgi: u32, target: u8) {
    debug_assert!(target < 8);
    arch::store_barrier();
    arch::gic_write32(
        GicFrame::Distributor,
        GICD_SGIR,
        (1u32 << target) << SGIR_TARGET_LIST_SHIFT | sgi,
    );
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
