//! Virtual GICv2 for one VM: the distributor the guest sees (emulated from
//! trapped accesses, GICv2 architecture spec IHI 0048B §4.3, identifying as
//! a GIC-400), the policy that moves pending virtual interrupts into a
//! vCPU's list registers, and ([`hw`]) the driver for the GICH virtual
//! interface control block that holds those list registers.
//!
//! The model supports 96 INTIDs: SGIs 0..16 and PPIs 16..32 banked per
//! vCPU, SPIs 32..96 shared; up to 8 vCPUs (the GICv2 limit).
//!
//! Choices the spec leaves to us, or that we simplify:
//! - Level and edge, enable and active state as `vgic_model`'s crate doc
//!   says: ICFGR resets to level-sensitive for SPIs and PPIs, and decides
//!   what a device's line ([`Vgic::set_level`]) does.
//! - An SPI goes to the lowest-numbered vCPU in its ITARGETSR byte; with no
//!   target it stays pending until the guest routes it.
//! - An INTID is in at most one of a vCPU's list registers at a time (two
//!   live list registers with one virtual INTID are UNPREDICTABLE), so an
//!   SGI from a second source waits until the first leaves its list
//!   register; an SPI held by one vCPU is not given to another meanwhile.
//! - The distributor's active bit (ISACTIVER on an interrupt that is not in
//!   a list register) is stored and reported, and holds the interrupt
//!   back, but does not enter list registers.
//! - Clearing pending or active state (ICPENDR, ICACTIVER, CPENDSGIR) of an
//!   interrupt that sits in a list register edits the copy the model keeps
//!   and reaches the hardware at that vCPU's next `flush`. If that vCPU is
//!   running at the time, its `sync` supersedes the edit, unless the
//!   entry was withdrawn while still pending there.
//! - 4-byte accesses work everywhere, byte accesses in IPRIORITYR,
//!   ITARGETSR, CPENDSGIR and SPENDSGIR. Other widths and misaligned
//!   accesses read as zero and ignore writes.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod hw;

use core::ops::Range;
use hv::device::Window;
use hv::vgic::{Effects, Flushed, ListReg, Vgic};
use vgic_model::{
    pending_active, set_bits, Irq, Model, Routing, BIT_FAMILIES_END, IGROUPR, INTIDS, PRIVATE,
};

/// GICH_VTR.ListRegs is 6 bits: at most 64 list registers.
pub const MAX_LRS: usize = 64;

// Distributor register offsets (IHI 0048B table 4-1).
const CTLR: u64 = 0x000;
const TYPER: u64 = 0x004;
const IIDR: u64 = 0x008;
const IPRIORITYR: Range<u64> = 0x400..0x800;
const ITARGETSR: Range<u64> = 0x800..0xc00;
const ICFGR: Range<u64> = 0xc00..0xd00;
const SGIR: u64 = 0xf00;
const CPENDSGIR: Range<u64> = 0xf10..0xf20;
const SPENDSGIR: Range<u64> = 0xf20..0xf30;
const ID_REGS: Range<u64> = 0xfd0..0x1000;

/// GIC-400: implementer Arm (0x43B), product 0x02, r0p0.
const IIDR_GIC400: u32 = 0x0200_143b;
/// PIDR4..7, PIDR0..3, CIDR0..3 as a GIC-400 reports them; PIDR2[7:4] = 2
/// is the architecture revision (GICv2) that guests check.
const ID_VALUES: [u32; 12] = [
    0x04, 0x00, 0x00, 0x00, 0x90, 0xb4, 0x2b, 0x00, 0x0d, 0xf0, 0x05, 0xb1,
];

/// GICv2 routing: one distributor enable (GICD_CTLR bit 0), SPIs to the
/// lowest vCPU of their ITARGETSR byte ([`Irq::route`]), SGIs per source
/// and always enabled.
struct V2 {
    enabled: bool,
}

impl Routing for V2 {
    const SGIS_PER_SOURCE: bool = true;
    const MAX_LRS: usize = MAX_LRS;

    fn reset(_intid: u32) -> Irq {
        Irq::default()
    }

    fn target(&self, irq: &Irq, vcpus: usize) -> Option<usize> {
        let targets = irq.route & ((1 << vcpus) - 1);
        (targets != 0).then(|| targets.trailing_zeros() as usize)
    }

    fn forwards_group(&self, _group1: bool) -> bool {
        self.enabled
    }
}

/// This vGIC as the component table names it (`vgic_v2::Component`).
pub type Component = VgicV2;

/// The virtual GICv2 of one VM.
pub struct VgicV2 {
    model: Model<V2>,
}

impl VgicV2 {
    /// Mask of the vCPUs that exist, as ITARGETSR and SGI source bits.
    fn vcpu_mask(&self) -> u8 {
        self.model.vcpu_mask() as u8
    }

    /// The byte-per-INTID (or per-SGI) registers: IPRIORITYR, ITARGETSR,
    /// CPENDSGIR, SPENDSGIR.
    fn byte_register(&mut self, vcpu: usize, offset: u64, write: Option<u8>) -> (u8, u64) {
        let mask = self.vcpu_mask();
        if IPRIORITYR.contains(&offset) {
            let intid = (offset % 0x400) as u32;
            return (self.model.priority_byte(vcpu, intid, write), 0);
        }
        if ITARGETSR.contains(&offset) {
            let intid = (offset % 0x400) as u32;
            let Some(irq) = self.model.irq_mut(vcpu, intid) else {
                return (0, 0);
            };
            return match write {
                // Private interrupts target the vCPU that asks.
                None if intid < PRIVATE => (1 << vcpu, 0),
                None => (irq.route as u8, 0),
                Some(_) if intid < PRIVATE => (0, 0),
                Some(v) => {
                    irq.route = (v & mask).into();
                    (0, self.model.kick_for(vcpu, intid))
                }
            };
        }
        // CPENDSGIR/SPENDSGIR: one byte per SGI of the accessing vCPU, one
        // bit per source vCPU.
        let intid = (offset % 0x10) as u32;
        match write {
            None => {
                let in_lrs = self
                    .model
                    .in_lrs(vcpu, intid)
                    .filter(|lr| pending_active(lr.state).0)
                    .fold(0u8, |acc, lr| acc | 1 << lr.source);
                (self.model.pending_sources(vcpu, intid) | in_lrs, 0)
            }
            Some(v) => {
                let set = SPENDSGIR.contains(&offset);
                for source in set_bits((v & mask).into()).map(|s| s as u8) {
                    self.model.set_pending(vcpu, intid, source, set);
                    if !set {
                        self.model
                            .edit_lrs(vcpu, intid, Some(source), Some(false), None);
                    }
                }
                (
                    0,
                    if set {
                        self.model.kick_for(vcpu, intid)
                    } else {
                        0
                    },
                )
            }
        }
    }

    /// GICD_SGIR: sends SGI [3:0] to the vCPUs its TargetListFilter [25:24]
    /// and CPUTargetList [23:16] name.
    fn send_sgi(&mut self, vcpu: usize, value: u32) -> u64 {
        let intid = value & 0xf;
        let targets = match (value >> 24) & 0b11 {
            0 => (value >> 16) as u8,
            1 => !(1 << vcpu),
            2 => 1 << vcpu,
            _ => return 0, // reserved
        } & self.vcpu_mask();
        let mut kick = 0;
        for target in set_bits(targets.into()) {
            self.model
                .set_pending(target as usize, intid, vcpu as u8, true);
            kick |= self.model.kick_for(target as usize, intid);
        }
        kick
    }

    /// One 4-byte register access; `write` is `None` for a read.
    fn word(&mut self, vcpu: usize, offset: u64, write: Option<u32>) -> (u32, u64) {
        match offset {
            CTLR => match write {
                None => (self.model.routing.enabled.into(), 0),
                Some(v) => {
                    let was = self.model.routing.enabled;
                    self.model.routing.enabled = v & 1 != 0;
                    let kick = if was { 0 } else { self.model.pending_vcpus() };
                    (0, kick)
                }
            },
            TYPER => {
                let it_lines = INTIDS / 32 - 1;
                let cpu_number = (self.model.vcpus() as u32 - 1) << 5;
                (it_lines | cpu_number, 0)
            }
            IIDR => (IIDR_GIC400, 0),
            IGROUPR..BIT_FAMILIES_END => self.model.bits_register(vcpu, offset, write),
            o if IPRIORITYR.contains(&o)
                || ITARGETSR.contains(&o)
                || CPENDSGIR.contains(&o)
                || SPENDSGIR.contains(&o) =>
            {
                // Four byte registers, lowest address in the low byte.
                let (mut read, mut kick) = (0, 0);
                for i in 0..4 {
                    let byte = write.map(|v| (v >> (8 * i)) as u8);
                    let (r, k) = self.byte_register(vcpu, o + i, byte);
                    read |= u32::from(r) << (8 * i);
                    kick |= k;
                }
                (read, kick)
            }
            o if ICFGR.contains(&o) => {
                let first = ((o - ICFGR.start) / 4 * 16) as u32;
                self.model.config_register(vcpu, first, write)
            }
            SGIR => (0, write.map_or(0, |v| self.send_sgi(vcpu, v))),
            o if ID_REGS.contains(&o) => (ID_VALUES[((o - ID_REGS.start) / 4) as usize], 0),
            _ => (0, 0),
        }
    }

    /// Dispatches an access of `width` bytes; see the crate doc for which
    /// widths are accepted.
    fn access(&mut self, vcpu: usize, offset: u64, width: u8, write: Option<u64>) -> (u64, u64) {
        if vcpu >= self.model.vcpus() || offset >= REGISTERS_END {
            return (0, 0);
        }
        // Only for byte accesses: word accesses, the common case, skip it.
        let byte_register = || {
            [IPRIORITYR, ITARGETSR, CPENDSGIR, SPENDSGIR]
                .iter()
                .any(|r| r.contains(&offset))
        };
        match width {
            4 if offset.is_multiple_of(4) => {
                let (r, k) = self.word(vcpu, offset, write.map(|v| v as u32));
                (r.into(), k)
            }
            1 if byte_register() => {
                let (r, k) = self.byte_register(vcpu, offset, write.map(|v| v as u8));
                (r.into(), k)
            }
            _ => (0, 0),
        }
    }
}

/// The distributor frame the guest sees at `abi::GUEST_GICD_BASE`: 64 KiB,
/// as QEMU `virt`'s device tree gives it. A GIC-400's registers end at
/// [`REGISTERS_END`]; the rest of the frame reads as zero and ignores
/// writes, so a guest that believes its device tree is not stopped.
pub const DISTRIBUTOR_SIZE: u64 = abi::GUEST_GICD_SIZE;
/// Where a GIC-400 distributor's registers end.
pub const REGISTERS_END: u64 = 0x1000;

impl VgicV2 {
    /// A distributor register read at `offset` in the frame.
    pub fn read_register(&mut self, vcpu: usize, offset: u64, width: u8) -> u64 {
        self.access(vcpu, offset, width, None).0
    }

    /// A distributor register write at `offset` in the frame.
    pub fn write_register(&mut self, vcpu: usize, offset: u64, width: u8, value: u64) -> Effects {
        Effects {
            kick: self.access(vcpu, offset, width, Some(value)).1,
        }
    }
}

impl Vgic for VgicV2 {
    type Interface = hw::Interface<'static>;

    fn windows(&self) -> alloc::vec::Vec<Window> {
        alloc::vec![Window::new(abi::GUEST_GICD_BASE, DISTRIBUTOR_SIZE)]
    }

    /// # Panics
    /// If `vcpus` is 0 or more than 8 (GICv2's limit); the configuration
    /// is validated against that at build time.
    fn new(vcpus: usize) -> Self {
        assert!(
            (1..=vgic_model::MAX_VCPUS).contains(&vcpus),
            "GICv2 supports 1 to 8 vCPUs"
        );
        VgicV2 {
            model: Model::new(vcpus, V2 { enabled: false }),
        }
    }

    fn read(&mut self, vcpu: usize, ipa: u64, width: u8) -> u64 {
        self.read_register(vcpu, ipa.wrapping_sub(abi::GUEST_GICD_BASE), width)
    }

    fn write(&mut self, vcpu: usize, ipa: u64, width: u8, value: u64) -> Effects {
        self.write_register(vcpu, ipa.wrapping_sub(abi::GUEST_GICD_BASE), width, value)
    }

    /// An SGI raised this way comes from `vcpu` itself.
    fn raise(&mut self, vcpu: usize, intid: u32) -> Effects {
        Effects {
            kick: self.model.raise(vcpu, intid, vcpu as u8),
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
