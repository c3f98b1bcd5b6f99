//! Virtual GICv3 for one VM: the distributor and the per-vCPU
//! redistributors the guest sees (emulated from trapped accesses, GICv3
//! architecture spec IHI 0069), ICC_SGI1R_EL1 writes, the policy that moves
//! pending virtual interrupts into a vCPU's list registers, and ([`lr`])
//! the ICH_LR<n>_EL2 encoding. The system registers themselves are
//! `arch-aarch64::ich`'s.
//!
//! The guest sees the frames of QEMU `virt` with `gic-version=3`: the
//! 64 KiB distributor at `abi::GUEST_GICD_BASE`, and at
//! `abi::GUEST_GICR_BASE + n * 0x20000` vCPU n's redistributor (RD_base,
//! then SGI_base at +0x10000). A redistributor frame holds the state of the
//! vCPU it belongs to, whichever vCPU accesses it.
//!
//! The model supports 96 INTIDs: SGIs 0..16 and PPIs 16..32 banked per
//! vCPU, SPIs 32..96 shared; no LPIs, no ITS; up to 8 vCPUs, vCPU n having
//! affinity 0.0.0.n.
//!
//! Choices the spec leaves to us, or that we simplify:
//! - One security state (GICD_CTLR.DS reads 1) with affinity routing always
//!   on (ARE reads 1): GICD_CTLR is EnableGrp0 (bit 0), EnableGrp1 (bit 1),
//!   and the SGI/PPI words of the distributor's registers, ITARGETSR and
//!   GICD_SGIR are RAZ/WI.
//! - Every interrupt resets to group 1 (as KVM's GICv3 does) and an
//!   interrupt is forwarded when its group is enabled; list registers
//!   always carry group 1 (there are no virtual FIQs), so a group 0
//!   interrupt the guest enables with EnableGrp0 still arrives as group 1.
//! - SGIs reset enabled (as KVM's) and can be disabled through
//!   GICR_ICENABLER0; they are not per source, so one pending bit each, set
//!   and cleared like any other interrupt's.
//! - Level and edge, enable and active state as `vgic_model`'s crate doc
//!   says: ICFGR resets to level-sensitive for SPIs and PPIs, and decides
//!   what a device's line ([`Vgic::set_level`]) does.
//! - GICD_IROUTER<n>: Aff0 selects the vCPU (Aff1 and Aff2 must be 0,
//!   Aff3 is not implemented: GICD_TYPER.A3V = 0); an SPI routed to no
//!   existing vCPU stays pending until the guest routes it. With
//!   Interrupt_Routing_Mode (bit 31, "any PE") the SPI goes to vCPU 0.
//!   IROUTER resets to 0, i.e. to vCPU 0.
//! - GICR_WAKER.ProcessorSleep is stored (ChildrenAsleep follows it at
//!   once) but does not stop delivery.
//! - An INTID is in at most one of a vCPU's list registers at a time (two
//!   live list registers with one virtual INTID are UNPREDICTABLE); an SPI
//!   held by one vCPU is not given to another meanwhile.
//! - The distributor's active bit (ISACTIVER on an interrupt that is not in
//!   a list register) is stored and reported, and holds the interrupt
//!   back, but does not enter list registers.
//! - Clearing pending or active state (ICPENDR, ICACTIVER) of an interrupt
//!   that sits in a list register edits the copy the model keeps and
//!   reaches the hardware at that vCPU's next `flush`. If that vCPU is
//!   running at the time, its `sync` supersedes the edit, unless the
//!   entry was withdrawn while still pending there.
//! - Widths: 4-byte accesses to 32-bit registers; 8-byte accesses, or a
//!   4-byte access to either half, to the 64-bit ones (GICD_IROUTER<n>,
//!   GICR_TYPER); byte accesses to IPRIORITYR. Other widths and misaligned
//!   accesses read as zero and ignore writes.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ich;
pub mod lr;

use alloc::vec::Vec;
use core::ops::Range;
use hv::device::Window;
use hv::vgic::{Effects, Flushed, ListReg, Vgic};
use vgic_model::{set_bits, Irq, Model, Routing, BIT_FAMILIES_END, IGROUPR, INTIDS, PRIVATE, SGIS};

/// ICH_LR<n>_EL2: at most 16 list registers.
pub const MAX_LRS: usize = 16;

/// The distributor frame at `abi::GUEST_GICD_BASE`.
pub const DISTRIBUTOR_SIZE: u64 = abi::GUEST_GICD_SIZE;
/// One vCPU's redistributor at `abi::GUEST_GICR_BASE + n * this`: RD_base
/// then SGI_base.
pub const REDISTRIBUTOR_STRIDE: u64 = abi::GUEST_GICR_STRIDE;
/// SGI_base within a redistributor.
const SGI_BASE: u64 = 0x1_0000;

// Distributor register offsets (IHI 0069 table 12-25).
const GICD_CTLR: u64 = 0x000;
const GICD_TYPER: u64 = 0x004;
const GICD_IIDR: u64 = 0x008;
const IROUTER: Range<u64> = 0x6000..0x8000;
// The interrupt families (IGROUPR..BIT_FAMILIES_END and these), at the
// same offsets in the distributor and in SGI_base (where only their first
// word, INTIDs 0..32, exists).
const IPRIORITYR: Range<u64> = 0x400..0x800;
const ICFGR: Range<u64> = 0xc00..0xd00;
// Redistributor RD_base offsets (IHI 0069 table 12-27).
const GICR_CTLR: u64 = 0x000;
const GICR_IIDR: u64 = 0x004;
const GICR_TYPER: u64 = 0x008;
const GICR_WAKER: u64 = 0x014;
// Both frames' ID registers, PIDR4..7, PIDR0..3, CIDR0..3.
const ID_REGS: Range<u64> = 0xffd0..0x1_0000;

const CTLR_ENABLES: u32 = 0b11;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;
const TYPER_LAST: u64 = 1 << 4;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// IROUTER: Interrupt_Routing_Mode (any PE).
const ROUTE_ANY: u64 = 1 << 31;
/// IROUTER's implemented fields: IRM, Aff2, Aff1, Aff0 (no Aff3).
const ROUTE_MASK: u64 = ROUTE_ANY | 0xff_ffff;

/// Implementer Arm (0x43B), product 0, r0p0.
const IIDR: u32 = 0x0000_043b;
/// As QEMU's GICv3 reports them; PIDR2[7:4] = 3 is the architecture
/// revision (GICv3) that guests check.
const GICD_ID_VALUES: [u32; 12] = [
    0x44, 0x00, 0x00, 0x00, 0x92, 0xb4, 0x3b, 0x00, 0x0d, 0xf0, 0x05, 0xb1,
];
const GICR_ID_VALUES: [u32; 12] = [
    0x44, 0x00, 0x00, 0x00, 0x93, 0xb4, 0x3b, 0x00, 0x0d, 0xf0, 0x05, 0xb1,
];

/// GICv3 routing: GICD_CTLR EnableGrp0 (bit 0) and EnableGrp1 (bit 1),
/// SPIs to the vCPU their IROUTER ([`Irq::route`]) names, SGIs with one
/// pending bit and an enable.
struct V3 {
    enables: u32,
}

impl Routing for V3 {
    const SGIS_PER_SOURCE: bool = false;
    const MAX_LRS: usize = MAX_LRS;

    fn reset(intid: u32) -> Irq {
        Irq {
            enabled: intid < SGIS,
            group1: true,
            ..Irq::default()
        }
    }

    fn target(&self, irq: &Irq, vcpus: usize) -> Option<usize> {
        if irq.route & ROUTE_ANY != 0 {
            return Some(0);
        }
        // Aff2.Aff1 must be 0.0; Aff0 is the vCPU.
        let aff0 = (irq.route & 0xff) as usize;
        (irq.route & 0xff_ff00 == 0 && aff0 < vcpus).then_some(aff0)
    }

    fn forwards_group(&self, group1: bool) -> bool {
        self.enables & (1 << u32::from(group1)) != 0
    }
}

/// The register frame an access falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    Distributor,
    /// RD_base of vCPU n's redistributor.
    Redistributor(usize),
    /// SGI_base of vCPU n's redistributor.
    Sgi(usize),
}

/// This vGIC as the component table names it (`vgic_v3::Component`).
pub type Component = VgicV3;

/// The virtual GICv3 of one VM.
pub struct VgicV3 {
    model: Model<V3>,
    /// GICR_WAKER.ProcessorSleep of each vCPU's redistributor.
    asleep: Vec<bool>,
}

impl VgicV3 {
    /// One 4-byte distributor register.
    fn distributor_word(&mut self, offset: u64, write: Option<u32>) -> (u32, u64) {
        match offset {
            GICD_CTLR => match write {
                None => (self.model.routing.enables | CTLR_ARE | CTLR_DS, 0),
                Some(v) => {
                    let newly = v & CTLR_ENABLES & !self.model.routing.enables;
                    self.model.routing.enables = v & CTLR_ENABLES;
                    let kick = if newly != 0 {
                        self.model.pending_vcpus()
                    } else {
                        0
                    };
                    (0, kick)
                }
            },
            GICD_TYPER => {
                let it_lines = INTIDS / 32 - 1;
                let cpu_number = (self.model.vcpus() as u32 - 1) << 5;
                let id_bits = 9 << 19; // 10-bit INTIDs
                (it_lines | cpu_number | id_bits, 0)
            }
            GICD_IIDR => (IIDR, 0),
            // The SGI/PPI word of each family is the redistributors' under
            // affinity routing: RAZ/WI here. SPIs are the same from any
            // vCPU, so vCPU 0 stands for the accessor.
            IGROUPR..BIT_FAMILIES_END if offset % 0x80 >= 4 => {
                self.model.bits_register(0, offset, write)
            }
            o if IPRIORITYR.contains(&o) && o >= IPRIORITYR.start + u64::from(PRIVATE) => {
                let first = (o - IPRIORITYR.start) as u32;
                (self.model.priority_word(0, first, write), 0)
            }
            o if ICFGR.contains(&o) && o >= ICFGR.start + 8 => {
                let first = ((o - ICFGR.start) / 4 * 16) as u32;
                self.model.config_register(0, first, write)
            }
            o if ID_REGS.contains(&o) => (GICD_ID_VALUES[((o - ID_REGS.start) / 4) as usize], 0),
            _ => (0, 0),
        }
    }

    /// One 4-byte register of vCPU `cpu`'s RD_base.
    fn redistributor_word(&mut self, cpu: usize, offset: u64, write: Option<u32>) -> u32 {
        match offset {
            // No LPIs: GICR_CTLR is RAZ/WI (RWP and UWP read 0).
            GICR_CTLR => 0,
            GICR_IIDR => IIDR,
            GICR_WAKER => match write {
                None if self.asleep[cpu] => WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP,
                None => 0,
                Some(v) => {
                    self.asleep[cpu] = v & WAKER_PROCESSOR_SLEEP != 0;
                    0
                }
            },
            o if ID_REGS.contains(&o) => GICR_ID_VALUES[((o - ID_REGS.start) / 4) as usize],
            _ => 0,
        }
    }

    /// One 4-byte register of vCPU `cpu`'s SGI_base: the first word of
    /// each family, for that vCPU's SGIs and PPIs.
    fn sgi_word(&mut self, cpu: usize, offset: u64, write: Option<u32>) -> (u32, u64) {
        match offset {
            IGROUPR..BIT_FAMILIES_END if offset.is_multiple_of(0x80) => {
                self.model.bits_register(cpu, offset, write)
            }
            o if IPRIORITYR.contains(&o) && o < IPRIORITYR.start + u64::from(PRIVATE) => {
                let first = (o - IPRIORITYR.start) as u32;
                (self.model.priority_word(cpu, first, write), 0)
            }
            o if o == ICFGR.start || o == ICFGR.start + 4 => {
                let first = ((o - ICFGR.start) / 4 * 16) as u32;
                self.model.config_register(cpu, first, write)
            }
            _ => (0, 0),
        }
    }

    /// The 64-bit register at `offset` (8-aligned) in `frame`, if there is
    /// one there.
    fn is_register64(frame: Frame, offset: u64) -> bool {
        match frame {
            Frame::Distributor => IROUTER.contains(&offset),
            Frame::Redistributor(_) => offset == GICR_TYPER,
            Frame::Sgi(_) => false,
        }
    }

    /// GICD_IROUTER<n> and GICR_TYPER.
    fn register64(&mut self, frame: Frame, offset: u64, write: Option<u64>) -> (u64, u64) {
        match frame {
            Frame::Distributor => {
                let intid = ((offset - IROUTER.start) / 8) as u32;
                if intid < PRIVATE {
                    return (0, 0);
                }
                let Some(irq) = self.model.irq_mut(0, intid) else {
                    return (0, 0);
                };
                match write {
                    None => (irq.route, 0),
                    Some(v) => {
                        irq.route = v & ROUTE_MASK;
                        (0, self.model.kick_for(0, intid))
                    }
                }
            }
            Frame::Redistributor(cpu) => {
                let last = if cpu + 1 == self.model.vcpus() {
                    TYPER_LAST
                } else {
                    0
                };
                let cpu = cpu as u64;
                (cpu << 32 | cpu << 8 | last, 0)
            }
            Frame::Sgi(_) => (0, 0),
        }
    }

    /// Dispatches an access of `width` bytes at `offset` in `frame`; see
    /// the crate doc for which widths are accepted. Returns the value read
    /// and the vCPUs to kick.
    fn access(&mut self, frame: Frame, offset: u64, width: u8, write: Option<u64>) -> (u64, u64) {
        let base64 = offset & !7;
        if Self::is_register64(frame, base64) {
            let shift = (offset - base64) * 8;
            let mask = match (width, shift) {
                (8, 0) => u64::MAX,
                (4, 0 | 32) => 0xffff_ffff << shift,
                _ => return (0, 0),
            };
            let (old, _) = self.register64(frame, base64, None);
            return match write {
                None => ((old & mask) >> shift, 0),
                Some(v) => self.register64(frame, base64, Some(old & !mask | (v << shift) & mask)),
            };
        }
        let word = |gic: &mut Self, offset, write: Option<u64>| {
            let write = write.map(|v| v as u32);
            let (read, kick) = match frame {
                Frame::Distributor => gic.distributor_word(offset, write),
                Frame::Redistributor(cpu) => (gic.redistributor_word(cpu, offset, write), 0),
                Frame::Sgi(cpu) => gic.sgi_word(cpu, offset, write),
            };
            (u64::from(read), kick)
        };
        match width {
            4 if offset.is_multiple_of(4) => word(self, offset, write),
            1 if IPRIORITYR.contains(&offset) => {
                // The byte within its word, through the word's own checks.
                let shift = (offset % 4) * 8;
                let aligned = offset & !3;
                let (read, _) = word(self, aligned, None);
                let merged = write.map(|v| read & !(0xff << shift) | (v & 0xff) << shift);
                let (_, kick) = match merged {
                    Some(m) => word(self, aligned, Some(m)),
                    None => (0, 0),
                };
                ((read >> shift) & 0xff, kick)
            }
            _ => (0, 0),
        }
    }

    /// The frame `ipa` falls in and the offset within it.
    pub fn locate(&self, ipa: u64) -> Option<(Frame, u64)> {
        let gicd = ipa.wrapping_sub(abi::GUEST_GICD_BASE);
        if gicd < DISTRIBUTOR_SIZE {
            return Some((Frame::Distributor, gicd));
        }
        let gicr = ipa.wrapping_sub(abi::GUEST_GICR_BASE);
        let cpu = usize::try_from(gicr / REDISTRIBUTOR_STRIDE).ok()?;
        if cpu >= self.model.vcpus() {
            return None;
        }
        let offset = gicr % REDISTRIBUTOR_STRIDE;
        Some(if offset < SGI_BASE {
            (Frame::Redistributor(cpu), offset)
        } else {
            (Frame::Sgi(cpu), offset - SGI_BASE)
        })
    }

    /// A register read at `offset` in `frame`.
    pub fn read_register(&mut self, frame: Frame, offset: u64, width: u8) -> u64 {
        if !self.frame_exists(frame) {
            return 0;
        }
        self.access(frame, offset, width, None).0
    }

    /// A register write at `offset` in `frame`.
    pub fn write_register(&mut self, frame: Frame, offset: u64, width: u8, value: u64) -> Effects {
        if !self.frame_exists(frame) {
            return Effects::default();
        }
        Effects {
            kick: self.access(frame, offset, width, Some(value)).1,
        }
    }

    fn frame_exists(&self, frame: Frame) -> bool {
        match frame {
            Frame::Distributor => true,
            Frame::Redistributor(cpu) | Frame::Sgi(cpu) => cpu < self.model.vcpus(),
        }
    }
}

impl Vgic for VgicV3 {
    type Interface = ich::Interface;

    /// # Panics
    /// If `vcpus` is 0 or more than 8; the configuration is validated
    /// against that at build time.
    fn new(vcpus: usize) -> Self {
        assert!(
            (1..=vgic_model::MAX_VCPUS).contains(&vcpus),
            "the virtual GICv3 supports 1 to 8 vCPUs"
        );
        VgicV3 {
            model: Model::new(vcpus, V3 { enables: 0 }),
            asleep: alloc::vec![true; vcpus],
        }
    }

    fn windows(&self) -> alloc::vec::Vec<Window> {
        let redistributors = self.model.vcpus() as u64 * REDISTRIBUTOR_STRIDE;
        alloc::vec![
            Window::new(abi::GUEST_GICD_BASE, DISTRIBUTOR_SIZE),
            Window::new(abi::GUEST_GICR_BASE, redistributors),
        ]
    }

    /// Redistributor accesses work on the state of the frame's vCPU, not
    /// `vcpu`'s.
    fn read(&mut self, _vcpu: usize, ipa: u64, width: u8) -> u64 {
        match self.locate(ipa) {
            Some((frame, offset)) => self.read_register(frame, offset, width),
            None => 0,
        }
    }

    fn write(&mut self, _vcpu: usize, ipa: u64, width: u8, value: u64) -> Effects {
        match self.locate(ipa) {
            Some((frame, offset)) => self.write_register(frame, offset, width, value),
            None => Effects::default(),
        }
    }

    /// ICC_SGI1R_EL1: SGI INTID [27:24] to the vCPUs of TargetList [15:0]
    /// (Aff0 = RS [47:44] * 16 + bit) in cluster Aff3.Aff2.Aff1 = 0.0.0,
    /// or with IRM [40] to every vCPU but the sender.
    fn write_sgi1r(&mut self, vcpu: usize, value: u64) -> Effects {
        if vcpu >= self.model.vcpus() {
            return Effects::default();
        }
        let intid = ((value >> 24) & 0xf) as u32;
        let cluster = value & (0xff << 16 | 0xff << 32 | 0xff << 48);
        let range_selector = (value >> 44) & 0xf;
        let targets = if value & (1 << 40) != 0 {
            !(1 << vcpu)
        } else if cluster == 0 && range_selector == 0 {
            value & 0xffff
        } else {
            0
        } & self.model.vcpu_mask();
        let mut kick = 0;
        for target in set_bits(targets).map(|t| t as usize) {
            kick |= self.model.raise(target, intid, 0);
        }
        Effects { kick }
    }

    fn raise(&mut self, vcpu: usize, intid: u32) -> Effects {
        Effects {
            kick: self.model.raise(vcpu, intid, 0),
        }
    }

    fn flush(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> Flushed {
        self.model.flush(vcpu, lrs)
    }

    fn sync(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> Effects {
        Effects {
            kick: self.model.sync(vcpu, lrs),
        }
    }

    fn set_level(&mut self, vcpu: usize, intid: u32, level: bool) -> Effects {
        Effects {
            kick: self.model.set_level(vcpu, intid, level),
        }
    }

    fn release_lrs(&mut self, vcpu: usize) -> Effects {
        Effects {
            kick: self.model.release_lrs(vcpu),
        }
    }

    fn has_pending(&self, vcpu: usize) -> bool {
        self.model.has_pending(vcpu)
    }

    fn in_flight(&self, vcpu: usize, intid: u32) -> bool {
        self.model.in_flight(vcpu, intid)
    }
}

#[cfg(test)]
mod tests;
