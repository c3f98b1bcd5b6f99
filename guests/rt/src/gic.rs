//! The guest's GIC, GICv2 or GICv3, found at run time by [`init`]; the same
//! API for both.
//!
//! - GICv2: the distributor at [`abi::GUEST_GICD_BASE`] (emulated by the
//!   hypervisor) and the CPU interface at [`abi::GUEST_GICC_BASE`] (the
//!   hardware's virtual CPU interface).
//! - GICv3: the distributor at [`abi::GUEST_GICD_BASE`] and this vCPU's
//!   redistributor (number `MPIDR_EL1.Aff0`) in the region at
//!   [`abi::GUEST_GICR_BASE`] (both emulated), and the system-register CPU
//!   interface (`ICC_*_EL1` on AArch64).
//!
//! Which one: the CPU says whether it has the GICv3 system-register
//! interface (`ID_AA64PFR0_EL1.GIC` on AArch64, under a hypervisor the
//! hardware's value); if it does and it can be enabled (`ICC_SRE_EL1.SRE`
//! reads back 1 after writing it), the GIC is a GICv3, else a GICv2.
//!
//! Every MMIO access is a single 32-bit (or, for GICv2 priorities and
//! targets, 8-bit) load or store with no writeback, the only forms a trapped
//! access can be emulated from.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::arch;

mod v2;
mod v3;

/// [`ack`] value (INTID) when no interrupt is pending.
pub const SPURIOUS: u32 = 1023;

/// Number of software-generated interrupts (INTIDs 0..16).
pub const SGI_COUNT: u32 = 16;

/// Highest INTID an SGI, PPI or SPI can have + 1 (1020..1023 are special).
pub const INTID_LIMIT: u32 = 1020;

/// The GIC architecture the guest has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// GICv2: memory-mapped CPU interface.
    V2,
    /// GICv3: system-register CPU interface, redistributors.
    V3,
}

/// [`Version`] found by [`version`]: 0 = not looked yet, else 2 or 3.
static VERSION: AtomicU8 = AtomicU8::new(0);

/// The GIC the guest has: looked up once (a CPU ID register read and, if
/// it says GICv3, `ICC_SRE_EL1.SRE` set), then kept.
pub fn version() -> Version {
    match VERSION.load(Ordering::Relaxed) {
        2 => Version::V2,
        3 => Version::V3,
        _ => {
            // SRE must also stick: with it 0 (a hypervisor giving a GICv2
            // on GICv3 hardware, legacy mode) the CPU interface is the
            // memory-mapped GICv2 one.
            let found = if arch::gic_has_sysreg_interface() && arch::icc_enable_sre() {
                Version::V3
            } else {
                Version::V2
            };
            // A plain store: every CPU finds the same.
            VERSION.store(
                match found {
                    Version::V2 => 2,
                    Version::V3 => 3,
                },
                Ordering::Relaxed,
            );
            found
        }
    }
}

/// Finds the GIC ([`version`]) and enables it for this CPU: the distributor,
/// (GICv3) this vCPU's redistributor, and the CPU interface with every
/// priority let through (mask 0xff). Interrupts are still masked at the CPU
/// until [`crate::irq::enable`].
///
/// GICv2: `GICD_CTLR` = 1, `GICC_PMR` = 0xff, `GICC_CTLR` = 1. GICv3:
/// `ICC_SRE_EL1.SRE` = 1, `GICD_CTLR` = EnableGrp1NS | ARE_NS, the
/// redistributor woken (`GICR_WAKER`), `ICC_PMR_EL1` = 0xff,
/// `ICC_BPR1_EL1` = 0, `ICC_IGRPEN1_EL1` = 1.
///
/// Once per VM, on the vCPU that sets the GIC up; every other vCPU calls
/// [`init_cpu`] for its own part.
pub fn init() {
    match version() {
        Version::V2 => v2::init_distributor(),
        Version::V3 => v3::init_distributor(),
    }
    init_cpu();
}

/// Enables this vCPU's part of the GIC only: GICv2: its CPU interface
/// (`GICC_PMR` = 0xff, `GICC_CTLR` = 1); GICv3: `ICC_SRE_EL1.SRE` = 1, its
/// redistributor woken, `ICC_PMR_EL1` = 0xff, `ICC_BPR1_EL1` = 0,
/// `ICC_IGRPEN1_EL1` = 1. For secondary vCPUs ([`crate::smp`]); [`init`]
/// does it for the vCPU that calls it.
pub fn init_cpu() {
    match version() {
        Version::V2 => v2::init_cpu(),
        Version::V3 => v3::init_cpu(),
    }
}

/// Enables `intid` with `priority` (lower is more urgent; the GIC may keep
/// only the top bits, and it must be below the priority mask of 0xff to be
/// signalled). A shared interrupt (INTID >= 32) is routed to this CPU. On a
/// GICv3 it is put in group 1; SGIs and PPIs are set in this vCPU's
/// redistributor.
pub fn enable(intid: u32, priority: u8) {
    assert!(intid < INTID_LIMIT, "INTID {intid} out of range");
    match version() {
        Version::V2 => v2::enable(intid, priority),
        Version::V3 => v3::enable(intid, priority),
    }
}

/// Disables `intid` (at the distributor, or for a GICv3 SGI or PPI at this
/// vCPU's redistributor).
pub fn disable(intid: u32) {
    assert!(intid < INTID_LIMIT, "INTID {intid} out of range");
    match version() {
        Version::V2 => v2::disable(intid),
        Version::V3 => v3::disable(intid),
    }
}

/// Acknowledges the highest-priority pending interrupt: the raw
/// acknowledge value (GICv2 `GICC_IAR`: INTID in bits 9:0, for an SGI the
/// sending CPU in bits 12:10; GICv3 `ICC_IAR1_EL1`: the INTID), or `None`
/// if nothing is pending (spurious, 1023). Pass the value to [`eoi`]
/// unchanged; [`intid`] extracts the INTID.
pub fn ack() -> Option<u32> {
    match version() {
        Version::V2 => v2::ack(),
        Version::V3 => v3::ack(),
    }
}

/// The INTID of a [`ack`] value.
pub const fn intid(iar: u32) -> u32 {
    iar & 0x3ff
}

/// Ends the interrupt [`ack`] returned (priority drop and deactivation:
/// `GICC_EOIR` or `ICC_EOIR1_EL1`). Takes the raw [`ack`] value: for a
/// GICv2 SGI the source CPU bits must match.
pub fn eoi(iar: u32) {
    match version() {
        Version::V2 => v2::eoi(iar),
        Version::V3 => v3::eoi(iar),
    }
}

/// `GICD_TYPER`: a trapped distributor read, the emulated MMIO exit the
/// bench measures.
pub fn distributor_typer() -> u32 {
    arch::gic_read32(GicFrame::Distributor, GICD_TYPER)
}

/// Sends SGI `sgi` (0..16) to this CPU (GICv2: `GICD_SGIR` with
/// TargetListFilter = 2; GICv3: `ICC_SGI1R_EL1` with this CPU's affinity).
pub fn send_sgi_to_self(sgi: u32) {
    assert!(sgi < SGI_COUNT, "SGI {sgi} out of range");
    match version() {
        Version::V2 => v2::send_sgi_to_self(sgi),
        Version::V3 => v3::send_sgi_to_self(sgi),
    }
}

/// Most vCPUs [`send_sgi`] can name (GICv2's CPU target list is 8 bits).
pub const SGI_TARGET_LIMIT: usize = 8;

/// Sends SGI `sgi` (0..16) to vCPU `target_vcpu` of this VM (its index,
/// MPIDR `Aff0`; below [`SGI_TARGET_LIMIT`]). GICv2: `GICD_SGIR` with
/// TargetListFilter = 0 and the target's bit in CPUTargetList; GICv3:
/// `ICC_SGI1R_EL1` with Aff3..Aff1 = 0, `RS` = index / 16 and the
/// `TargetList` bit index % 16. Earlier stores are visible to the target's
/// handler. On a GICv3 the sender must have its CPU interface on
/// ([`init`] or [`init_cpu`]).
pub fn send_sgi(sgi: u32, target_vcpu: usize) {
    assert!(sgi < SGI_COUNT, "SGI {sgi} out of range");
    assert!(
        target_vcpu < SGI_TARGET_LIMIT,
        "SGI target vCPU {target_vcpu} out of range"
    );
    match version() {
        Version::V2 => v2::send_sgi(sgi, target_vcpu as u8),
        Version::V3 => v3::send_sgi(sgi, target_vcpu as u8),
    }
}

/// A GIC MMIO frame: the distributor, the GICv2 CPU interface, or one
/// vCPU's GICv3 redistributor frames (by redistributor number, = `Aff0`).
#[derive(Clone, Copy)]
pub enum GicFrame {
    Distributor,
    CpuInterface,
    /// `RD_base` of redistributor `n` (control, `GICR_WAKER`).
    Redistributor(u32),
    /// `SGI_base` of redistributor `n` (SGIs and PPIs), `RD_base` + 64 KiB.
    RedistributorSgi(u32),
}

/// Size of the distributor frame (GICv3 has `GICD_IROUTER` up to 0x7fd8).
const GICD_FRAME_SIZE: u64 = 0x1_0000;
/// Distributor type register (INTID lines, CPU count).
const GICD_TYPER: u64 = 0x4;
/// Size of the GICv2 CPU interface frame we touch (4 KiB is all the
/// registers used).
const GICC_FRAME_SIZE: u64 = 0x1000;
/// Size of each of a redistributor's two frames (`RD_base`, `SGI_base`).
const GICR_FRAME_SIZE: u64 = 0x1_0000;
/// Stride between redistributors: `RD_base` and `SGI_base` frames.
const GICR_STRIDE: u64 = 2 * GICR_FRAME_SIZE;
/// Redistributors the guest's GICR region can hold, as on QEMU `virt`
/// ([0x080a_0000, 0x0900_0000): 123 of 128 KiB); beyond it is another
/// device.
const GICR_MAX: u32 = 123;

impl GicFrame {
    /// Address of the register at `offset`, checked to be in the frame and
    /// aligned for an access of `width` bytes.
    pub(crate) fn register(self, offset: u64, width: u64) -> u64 {
        let (base, size) = match self {
            GicFrame::Distributor => (abi::GUEST_GICD_BASE, GICD_FRAME_SIZE),
            GicFrame::CpuInterface => (abi::GUEST_GICC_BASE, GICC_FRAME_SIZE),
            GicFrame::Redistributor(n) | GicFrame::RedistributorSgi(n) => {
                assert!(n < GICR_MAX, "no redistributor {n}");
                let rd_base = abi::GUEST_GICR_BASE + u64::from(n) * GICR_STRIDE;
                match self {
                    GicFrame::RedistributorSgi(_) => (rd_base + GICR_FRAME_SIZE, GICR_FRAME_SIZE),
                    _ => (rd_base, GICR_FRAME_SIZE),
                }
            }
        };
        assert!(
            offset < size && offset.is_multiple_of(width),
            "bad GIC register offset {offset:#x}"
        );
        base + offset
    }
}

/// Makes shared interrupt `intid` (32..[`INTID_LIMIT`]) pending at the
/// distributor (`GICD_ISPENDR`), as a device asserting it would.
pub fn set_pending(intid: u32) {
    assert!(
        (32..INTID_LIMIT).contains(&intid),
        "SPI {intid} out of range"
    );
    let (offset, bit) = bank(intid);
    arch::gic_write32(GicFrame::Distributor, GICD_ISPENDR + offset, bit);
}

/// `GICD_ISPENDR0`, the same offset on both GIC versions.
const GICD_ISPENDR: u64 = 0x200;

/// Offset of `intid`'s 32-bit register in a one-bit-per-INTID bank, and
/// its bit there.
const fn bank(intid: u32) -> (u64, u32) {
    ((intid / 32) as u64 * 4, 1 << (intid % 32))
}
