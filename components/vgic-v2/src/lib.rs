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
//! - Every interrupt is treated as edge-triggered: once handed to a list
//!   register it is no longer pending in the distributor, and a level
//!   source must assert it again (the core re-raises the timer). ICFGR is
//!   stored for the guest but does not change delivery.
//! - An SPI goes to the lowest-numbered vCPU in its ITARGETSR byte; with no
//!   target it stays pending until the guest routes it.
//! - An INTID is in at most one of a vCPU's list registers at a time (two
//!   live list registers with one virtual INTID are UNPREDICTABLE), so an
//!   SGI from a second source waits until the first leaves its list
//!   register; an SPI held by one vCPU is not given to another meanwhile.
//! - The distributor's active bit (ISACTIVER on an interrupt that is not in
//!   a list register) is stored and reported but does not enter list
//!   registers.
//! - Clearing pending or active state (ICPENDR, ICACTIVER, CPENDSGIR) of an
//!   interrupt that sits in a list register edits the copy the model keeps
//!   and reaches the hardware at that vCPU's next `flush`. If that vCPU is
//!   running at the time, its `sync` supersedes the edit.
//! - 4-byte accesses work everywhere, byte accesses in IPRIORITYR,
//!   ITARGETSR, CPENDSGIR and SPENDSGIR. Other widths and misaligned
//!   accesses read as zero and ignore writes.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod hw;

use alloc::vec::Vec;
use core::ops::Range;
use hv::vgic::{Effects, ListReg, LrState, Vgic};

/// SGIs are INTIDs 0..16.
const SGIS: u32 = 16;
/// Private (banked) interrupts are INTIDs 0..32.
const PRIVATE: u32 = 32;
/// SPIs supported: INTIDs 32..96.
const SPIS: usize = 64;
const INTIDS: u32 = PRIVATE + SPIS as u32;
/// GICv2 has 3-bit CPU numbers and 8-bit target lists.
const MAX_VCPUS: usize = 8;
/// GICH_VTR.ListRegs is 6 bits: at most 64 list registers.
pub const MAX_LRS: usize = 64;
/// The priority bits a GIC-400 and the list registers keep.
const PRIORITY_MASK: u8 = 0xf8;

// Distributor register offsets (IHI 0048B table 4-1).
const CTLR: u64 = 0x000;
const TYPER: u64 = 0x004;
const IIDR: u64 = 0x008;
const IGROUPR: u64 = 0x080;
const BIT_FAMILIES_END: u64 = 0x400;
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

/// What a 1-bit-per-INTID register family holds.
#[derive(Clone, Copy)]
enum Field {
    Group,
    Enable,
    Pending,
    Active,
}

/// What writing a one (or, for `Assign`, any value) to such a bit does.
#[derive(Clone, Copy)]
enum BitWrite {
    Assign,
    Set,
    Clear,
}

/// The families from IGROUPR to ICACTIVER, 0x80 bytes each, in address
/// order.
fn bit_family(offset: u64) -> (Field, BitWrite) {
    match (offset - IGROUPR) / 0x80 {
        0 => (Field::Group, BitWrite::Assign),
        1 => (Field::Enable, BitWrite::Set),
        2 => (Field::Enable, BitWrite::Clear),
        3 => (Field::Pending, BitWrite::Set),
        4 => (Field::Pending, BitWrite::Clear),
        5 => (Field::Active, BitWrite::Set),
        _ => (Field::Active, BitWrite::Clear),
    }
}

/// Distributor state of one interrupt (for SGIs, pending is per source in
/// [`Cpu::sgi_sources`] instead of `pending`).
#[derive(Clone, Copy, Default)]
struct Irq {
    enabled: bool,
    /// Pending in the distributor, i.e. not (yet) in a list register.
    pending: bool,
    active: bool,
    group1: bool,
    priority: u8,
    /// ICFGR Int_config bit: stored only, see the crate doc.
    edge: bool,
    /// ITARGETSR byte (SPIs only).
    targets: u8,
}

/// One vCPU's banked state.
struct Cpu {
    private: [Irq; PRIVATE as usize],
    /// Bit s of entry n: SGI n from vCPU s is pending, not in a list register.
    sgi_sources: [u8; SGIS as usize],
    /// The list registers as last flushed or synced.
    lrs: heapless::Vec<ListReg, MAX_LRS>,
}

/// The virtual GICv2 of one VM.
pub struct VgicV2 {
    enabled: bool,
    cpus: Vec<Cpu>,
    spis: [Irq; SPIS],
}

fn pending_active(state: LrState) -> (bool, bool) {
    match state {
        LrState::Invalid => (false, false),
        LrState::Pending => (true, false),
        LrState::Active => (false, true),
        LrState::PendingActive => (true, true),
    }
}

fn lr_state(pending: bool, active: bool) -> LrState {
    match (pending, active) {
        (false, false) => LrState::Invalid,
        (true, false) => LrState::Pending,
        (false, true) => LrState::Active,
        (true, true) => LrState::PendingActive,
    }
}

/// Indices of the set bits of `bits`, lowest first.
fn set_bits(bits: u32) -> impl Iterator<Item = u32> {
    (0..32).filter(move |i| bits & (1 << i) != 0)
}

impl VgicV2 {
    fn irq(&self, vcpu: usize, intid: u32) -> Option<&Irq> {
        match intid {
            0..PRIVATE => Some(&self.cpus[vcpu].private[intid as usize]),
            PRIVATE..INTIDS => Some(&self.spis[(intid - PRIVATE) as usize]),
            _ => None,
        }
    }

    fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Irq> {
        match intid {
            0..PRIVATE => Some(&mut self.cpus[vcpu].private[intid as usize]),
            PRIVATE..INTIDS => Some(&mut self.spis[(intid - PRIVATE) as usize]),
            _ => None,
        }
    }

    /// Mask of the vCPUs that exist, as ITARGETSR and SGI source bits.
    fn vcpu_mask(&self) -> u8 {
        ((1u16 << self.cpus.len()) - 1) as u8
    }

    /// The vCPUs whose list registers may hold `intid` as `vcpu` sees it.
    fn holders(&self, vcpu: usize, intid: u32) -> Range<usize> {
        if intid < PRIVATE {
            vcpu..vcpu + 1
        } else {
            0..self.cpus.len()
        }
    }

    /// The live list-register entries for `intid` as `vcpu` sees it.
    fn in_lrs(&self, vcpu: usize, intid: u32) -> impl Iterator<Item = &ListReg> {
        self.cpus[self.holders(vcpu, intid)]
            .iter()
            .flat_map(|cpu| cpu.lrs.iter())
            .filter(move |lr| lr.intid == intid && !lr.is_free())
    }

    /// The vCPU a pending `intid` raised for `vcpu` goes to.
    fn target(&self, vcpu: usize, intid: u32) -> Option<usize> {
        if intid < PRIVATE {
            return Some(vcpu);
        }
        let targets = self.irq(vcpu, intid)?.targets & self.vcpu_mask();
        (targets != 0).then(|| targets.trailing_zeros() as usize)
    }

    /// Who has `intid` pending in the distributor (not in a list
    /// register): for an SGI one bit per sending vCPU, for others bit 0.
    fn pending_sources(&self, vcpu: usize, intid: u32) -> u8 {
        match self.irq(vcpu, intid) {
            Some(_) if intid < SGIS => self.cpus[vcpu].sgi_sources[intid as usize],
            Some(irq) => irq.pending.into(),
            None => 0,
        }
    }

    fn set_model_pending(&mut self, vcpu: usize, intid: u32, source: u8, pending: bool) {
        if intid < SGIS {
            let sources = &mut self.cpus[vcpu].sgi_sources[intid as usize];
            if pending {
                *sources |= 1 << source;
            } else {
                *sources &= !(1 << source);
            }
        } else if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.pending = pending;
        }
    }

    /// The distributor forwards `intid` at all: it and the interrupt are
    /// enabled (SGIs always are).
    fn forwards(&self, vcpu: usize, intid: u32) -> bool {
        self.enabled && (intid < SGIS || self.irq(vcpu, intid).is_some_and(|irq| irq.enabled))
    }

    /// Every (INTID, SGI source) pending in the distributor that `vcpu`
    /// would take: forwarded and routed to it.
    fn waiting(&self, vcpu: usize) -> impl Iterator<Item = (u32, u8)> + '_ {
        (0..INTIDS)
            .filter(move |&intid| {
                self.forwards(vcpu, intid) && self.target(vcpu, intid) == Some(vcpu)
            })
            .flat_map(move |intid| {
                set_bits(self.pending_sources(vcpu, intid).into()).map(move |s| (intid, s as u8))
            })
    }

    /// The waiting interrupts that may go into a list register now: the
    /// INTID is in none (see the crate doc).
    fn deliverable(&self, vcpu: usize) -> impl Iterator<Item = (u32, u8)> + '_ {
        self.waiting(vcpu)
            .filter(move |&(intid, _)| self.in_lrs(vcpu, intid).next().is_none())
    }

    /// The vCPU to kick after `intid` (as `vcpu` sees it) became pending,
    /// enabled or routed: its target, if the distributor forwards it.
    fn kick_for(&self, vcpu: usize, intid: u32) -> u64 {
        match self.target(vcpu, intid) {
            Some(t) if self.forwards(t, intid) && self.pending_sources(t, intid) != 0 => 1 << t,
            _ => 0,
        }
    }

    /// Changes the pending and/or active state of `intid` (from `source`
    /// only, for an SGI, if given) in the list registers holding it; the
    /// change reaches the hardware at the holder's next flush.
    fn edit_lrs(
        &mut self,
        vcpu: usize,
        intid: u32,
        source: Option<u8>,
        pending: Option<bool>,
        active: Option<bool>,
    ) {
        for holder in self.holders(vcpu, intid) {
            for lr in self.cpus[holder].lrs.iter_mut() {
                if lr.intid != intid || lr.is_free() || source.is_some_and(|s| s != lr.source) {
                    continue;
                }
                let (p, a) = pending_active(lr.state);
                lr.state = lr_state(pending.unwrap_or(p), active.unwrap_or(a));
            }
        }
    }

    fn read_bit(&self, vcpu: usize, field: Field, intid: u32) -> bool {
        let Some(irq) = self.irq(vcpu, intid) else {
            return false;
        };
        let mut lrs = self.in_lrs(vcpu, intid).map(|lr| pending_active(lr.state));
        match field {
            Field::Group => irq.group1,
            Field::Enable => intid < SGIS || irq.enabled,
            Field::Pending => self.pending_sources(vcpu, intid) != 0 || lrs.any(|(p, _)| p),
            Field::Active => irq.active || lrs.any(|(_, a)| a),
        }
    }

    /// Sets (`on`) or clears one bit of a 1-bit-per-INTID family; returns
    /// the vCPUs to kick.
    fn write_bit(&mut self, vcpu: usize, field: Field, intid: u32, on: bool) -> u64 {
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return 0;
        };
        match field {
            Field::Group => irq.group1 = on,
            // SGIs are always enabled; their pending state is per source,
            // set and cleared through SPENDSGIR/CPENDSGIR.
            Field::Enable | Field::Pending if intid < SGIS => return 0,
            Field::Enable => irq.enabled = on,
            Field::Pending => {
                irq.pending = on;
                if !on {
                    self.edit_lrs(vcpu, intid, None, Some(false), None);
                }
            }
            Field::Active => {
                // Active state lives where the interrupt is: in the
                // distributor, or in the list register holding it.
                let in_lrs = self.in_lrs(vcpu, intid).next().is_some();
                if let Some(irq) = self.irq_mut(vcpu, intid) {
                    irq.active = on && !in_lrs;
                }
                self.edit_lrs(vcpu, intid, None, None, Some(on));
            }
        }
        if on {
            self.kick_for(vcpu, intid)
        } else {
            0
        }
    }

    /// IGROUPR..ICACTIVER: one bit per INTID, 32 INTIDs per register.
    fn bits_register(&mut self, vcpu: usize, offset: u64, write: Option<u32>) -> (u32, u64) {
        let (field, op) = bit_family(offset);
        let first = ((offset % 0x80) / 4 * 32) as u32;
        let Some(value) = write else {
            let read = (0..32)
                .filter(|&i| self.read_bit(vcpu, field, first + i))
                .fold(0, |acc, i| acc | 1 << i);
            return (read, 0);
        };
        let mut kick = 0;
        for i in 0..32 {
            let bit = value & (1 << i) != 0;
            kick |= match op {
                BitWrite::Assign => self.write_bit(vcpu, field, first + i, bit),
                BitWrite::Set if bit => self.write_bit(vcpu, field, first + i, true),
                BitWrite::Clear if bit => self.write_bit(vcpu, field, first + i, false),
                _ => 0,
            };
        }
        (0, kick)
    }

    /// The byte-per-INTID (or per-SGI) registers: IPRIORITYR, ITARGETSR,
    /// CPENDSGIR, SPENDSGIR.
    fn byte_register(&mut self, vcpu: usize, offset: u64, write: Option<u8>) -> (u8, u64) {
        let mask = self.vcpu_mask();
        if IPRIORITYR.contains(&offset) || ITARGETSR.contains(&offset) {
            let priority = IPRIORITYR.contains(&offset);
            let intid = (offset % 0x400) as u32;
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                return (0, 0);
            };
            return match (priority, write) {
                (true, None) => (irq.priority, 0),
                (true, Some(v)) => {
                    irq.priority = v & PRIORITY_MASK;
                    (0, 0)
                }
                // Private interrupts target the vCPU that asks.
                (false, None) if intid < PRIVATE => (1 << vcpu, 0),
                (false, None) => (irq.targets, 0),
                (false, Some(_)) if intid < PRIVATE => (0, 0),
                (false, Some(v)) => {
                    irq.targets = v & mask;
                    (0, self.kick_for(vcpu, intid))
                }
            };
        }
        // CPENDSGIR/SPENDSGIR: one byte per SGI of the accessing vCPU, one
        // bit per source vCPU.
        let intid = (offset % 0x10) as u32;
        match write {
            None => {
                let in_lrs = self
                    .in_lrs(vcpu, intid)
                    .filter(|lr| pending_active(lr.state).0)
                    .fold(0u8, |acc, lr| acc | 1 << lr.source);
                (self.pending_sources(vcpu, intid) | in_lrs, 0)
            }
            Some(v) => {
                let set = SPENDSGIR.contains(&offset);
                for source in set_bits((v & mask).into()).map(|s| s as u8) {
                    self.set_model_pending(vcpu, intid, source, set);
                    if !set {
                        self.edit_lrs(vcpu, intid, Some(source), Some(false), None);
                    }
                }
                (0, if set { self.kick_for(vcpu, intid) } else { 0 })
            }
        }
    }

    /// ICFGR: two bits per INTID, of which only Int_config (the upper) is
    /// kept; SGIs read as edge-triggered and ignore writes.
    fn config_register(&mut self, vcpu: usize, offset: u64, write: Option<u32>) -> u32 {
        let first = ((offset - ICFGR.start) / 4 * 16) as u32;
        let mut read = 0;
        for i in 0..16 {
            let intid = first + i;
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                break;
            };
            match write {
                Some(_) if intid < SGIS => {}
                Some(v) => irq.edge = v & (2 << (2 * i)) != 0,
                None if intid < SGIS || irq.edge => read |= 2 << (2 * i),
                None => {}
            }
        }
        read
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
            self.set_model_pending(target as usize, intid, vcpu as u8, true);
            kick |= self.kick_for(target as usize, intid);
        }
        kick
    }

    /// One 4-byte register access; `write` is `None` for a read.
    fn word(&mut self, vcpu: usize, offset: u64, write: Option<u32>) -> (u32, u64) {
        match offset {
            CTLR => match write {
                None => (self.enabled.into(), 0),
                Some(v) => {
                    let was = self.enabled;
                    self.enabled = v & 1 != 0;
                    let kick = (0..self.cpus.len())
                        .filter(|&c| !was && self.has_pending(c))
                        .fold(0, |acc, c| acc | 1 << c);
                    (0, kick)
                }
            },
            TYPER => {
                let it_lines = INTIDS / 32 - 1;
                let cpu_number = (self.cpus.len() as u32 - 1) << 5;
                (it_lines | cpu_number, 0)
            }
            IIDR => (IIDR_GIC400, 0),
            IGROUPR..BIT_FAMILIES_END => self.bits_register(vcpu, offset, write),
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
            o if ICFGR.contains(&o) => (self.config_register(vcpu, o, write), 0),
            SGIR => (0, write.map_or(0, |v| self.send_sgi(vcpu, v))),
            o if ID_REGS.contains(&o) => (ID_VALUES[((o - ID_REGS.start) / 4) as usize], 0),
            _ => (0, 0),
        }
    }

    /// Dispatches an access of `width` bytes; see the crate doc for which
    /// widths are accepted.
    fn access(&mut self, vcpu: usize, offset: u64, width: u8, write: Option<u64>) -> (u64, u64) {
        if vcpu >= self.cpus.len() {
            return (0, 0);
        }
        let byte_register = [IPRIORITYR, ITARGETSR, CPENDSGIR, SPENDSGIR]
            .iter()
            .any(|r| r.contains(&offset));
        match width {
            4 if offset.is_multiple_of(4) => {
                let (r, k) = self.word(vcpu, offset, write.map(|v| v as u32));
                (r.into(), k)
            }
            1 if byte_register => {
                let (r, k) = self.byte_register(vcpu, offset, write.map(|v| v as u8));
                (r.into(), k)
            }
            _ => (0, 0),
        }
    }
}

/// The distributor frame the guest sees at `abi::GUEST_GICD_BASE`.
pub const DISTRIBUTOR_SIZE: u64 = 0x1000;

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
    fn handles(&self, ipa: u64) -> bool {
        (abi::GUEST_GICD_BASE..abi::GUEST_GICD_BASE + DISTRIBUTOR_SIZE).contains(&ipa)
    }

    /// # Panics
    /// If `vcpus` is 0 or more than 8 (GICv2's limit); the configuration
    /// is validated against that at build time.
    fn new(vcpus: usize) -> Self {
        assert!(
            (1..=MAX_VCPUS).contains(&vcpus),
            "GICv2 supports 1 to 8 vCPUs"
        );
        let cpus = (0..vcpus)
            .map(|_| Cpu {
                private: [Irq::default(); PRIVATE as usize],
                sgi_sources: [0; SGIS as usize],
                lrs: heapless::Vec::new(),
            })
            .collect();
        VgicV2 {
            enabled: false,
            cpus,
            spis: [Irq::default(); SPIS],
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
        if vcpu >= self.cpus.len() || intid >= INTIDS {
            return Effects::default();
        }
        self.set_model_pending(vcpu, intid, vcpu as u8, true);
        Effects {
            kick: self.kick_for(vcpu, intid),
        }
    }

    fn flush(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> bool {
        if vcpu >= self.cpus.len() {
            return false;
        }
        // Distributor writes made since the last sync (see `edit_lrs`).
        for (lr, shadow) in lrs.iter_mut().zip(&self.cpus[vcpu].lrs) {
            if !lr.is_free() && (lr.intid, lr.source) == (shadow.intid, shadow.source) {
                lr.state = shadow.state;
            }
        }
        // Raised again while in a list register: merge into that entry.
        for lr in lrs.iter_mut().filter(|lr| !lr.is_free()) {
            let sources = self.pending_sources(vcpu, lr.intid);
            if self.forwards(vcpu, lr.intid) && sources & (1 << lr.source) != 0 {
                self.set_model_pending(vcpu, lr.intid, lr.source, false);
                let (_, active) = pending_active(lr.state);
                lr.state = lr_state(true, active);
            }
        }
        self.cpus[vcpu].lrs.clear();
        self.cpus[vcpu]
            .lrs
            .extend(lrs.iter().take(MAX_LRS).copied());
        // Fill free list registers, most urgent first (lowest priority
        // value, then lowest INTID and source, as the GIC arbitrates).
        for slot in 0..lrs.len().min(MAX_LRS) {
            if !lrs[slot].is_free() {
                continue;
            }
            let best = self.deliverable(vcpu).min_by_key(|&(intid, source)| {
                let priority = self.irq(vcpu, intid).map_or(0, |irq| irq.priority);
                (priority, intid, source)
            });
            let Some((intid, source)) = best else {
                break;
            };
            self.set_model_pending(vcpu, intid, source, false);
            lrs[slot] = ListReg {
                intid,
                priority: self.irq(vcpu, intid).map_or(0, |irq| irq.priority),
                state: LrState::Pending,
                source: if intid < SGIS { source } else { 0 },
                eoi_maintenance: false,
            };
            self.cpus[vcpu].lrs[slot] = lrs[slot];
        }
        // What is left needs free list registers, or (an SGI from another
        // source, an SPI another vCPU holds) one to be completed.
        self.waiting(vcpu).next().is_some()
    }

    fn sync(&mut self, vcpu: usize, lrs: &mut [ListReg]) {
        // A completed (now Invalid) entry needs nothing more: its pending
        // state left the distributor when it was handed out, and a raise
        // since then is pending in the distributor again.
        if let Some(cpu) = self.cpus.get_mut(vcpu) {
            cpu.lrs.clear();
            cpu.lrs.extend(lrs.iter().take(MAX_LRS).copied());
        }
    }

    fn has_pending(&self, vcpu: usize) -> bool {
        vcpu < self.cpus.len()
            && (self.waiting(vcpu).next().is_some()
                || self.cpus[vcpu]
                    .lrs
                    .iter()
                    .any(|lr| lr.state == LrState::Pending))
    }

    fn in_flight(&self, vcpu: usize, intid: u32) -> bool {
        if vcpu >= self.cpus.len() {
            return false;
        }
        let Some(irq) = self.irq(vcpu, intid) else {
            return false;
        };
        self.pending_sources(vcpu, intid) != 0
            || irq.active
            || self.cpus[vcpu]
                .lrs
                .iter()
                .any(|lr| lr.intid == intid && !lr.is_free())
    }
}

#[cfg(test)]
mod tests;
