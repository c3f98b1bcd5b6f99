//! The part of a virtual GIC that GICv2 and GICv3 share: the state of each
//! interrupt, the 1-bit-per-INTID register families, the priority and
//! configuration registers, and the policy that moves pending virtual
//! interrupts into a vCPU's list registers ([`Model`]). What differs, a
//! [`Routing`] decides: where an SPI goes, whether the distributor forwards
//! an interrupt, and whether SGIs pend per source. The `vgic-*` crates
//! decode their register frames onto this.
//!
//! The model supports 96 INTIDs: SGIs 0..16 and PPIs 16..32 banked per
//! vCPU, SPIs 32..96 shared; up to 8 vCPUs.
//!
//! Level and edge (IHI 0048B §3.2.4, IHI 0069 §4.1.2): a device that
//! drives an interrupt's line ([`Model::set_level`]) makes it a level
//! source. ICFGR decides what the line means, and resets to level for SPIs
//! and PPIs (as a GIC-400's SPIs, and Linux writes it from the device
//! tree's flags anyway):
//! - level-sensitive: pending while the line is high, besides the latch a
//!   raise or ISPENDR sets (ICPENDR clears only the latch). A line that
//!   drops takes back the interrupt the guest has not taken yet, also from
//!   a list register where it is pending only. Its list register asks for
//!   EOI maintenance, so the model hears of its completion (`sync`) and
//!   makes it pending again if the line is still high.
//! - edge-triggered: a rising line latches pending, as a raise does.
//!
//! Interrupts nothing drives with a line (raised as edges, or the virtual
//! timer, which the core masks while in flight) are delivered as before:
//! once handed to a list register they are no longer pending in the
//! distributor, whatever ICFGR says, and need no maintenance.
//!
//! Enable and active state (IHI 0048B §3.2.1, IHI 0069 §4.1.1):
//! - An interrupt made pending while disabled stays pending and is
//!   delivered once enabled. Disabling one that waits in a list register,
//!   not yet taken, takes it back to the distributor; one already active
//!   stays active until the guest deactivates it, and is not given again
//!   while disabled.
//! - An interrupt active in the distributor (ISACTIVER) is not delivered
//!   again until ICACTIVER clears it.
//!
//! Choices the specs leave to us, or that we simplify:
//! - An INTID is in at most one of a vCPU's list registers at a time (two
//!   live list registers with one virtual INTID are UNPREDICTABLE), so a
//!   GICv2 SGI from a second source waits until the first leaves its list
//!   register; an SPI held by one vCPU is not given to another meanwhile.
//! - The distributor's active bit (ISACTIVER on an interrupt that is not in
//!   a list register) is stored and reported, and holds the interrupt
//!   back, but does not enter list registers.
//! - Clearing pending or active state of an interrupt that sits in a list
//!   register edits the copy the model keeps and reaches the hardware at
//!   that vCPU's next `flush`. If that vCPU is running at the time, its
//!   `sync` supersedes the edit, unless the entry is still pending there
//!   (the guest has not taken it) and the edit cleared it: that stands.
//!   An entry such an edit empties still counts as held until then (the
//!   hardware may hold it while the vCPU runs), so no other vCPU is given
//!   the interrupt meanwhile; the flush or sync that clears it says whom
//!   to kick for it.
//!   Disabling an interrupt and dropping its line instead leave the entry
//!   in place until that flush or sync (so no other vCPU is given the
//!   interrupt meanwhile), which withdraws it if the guest has not taken
//!   it.
//! - A level interrupt's pending state in a list register counts as its
//!   line's: a latch (ISPENDR) handed over with it ends when the line
//!   drops or the interrupt is disabled before the guest takes it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::ops::Range;
use hv::vgic::{Effects, Flushed, ListReg, LrState};

/// SGIs are INTIDs 0..16.
pub const SGIS: u32 = 16;
/// Private (banked) interrupts are INTIDs 0..32.
pub const PRIVATE: u32 = 32;
/// SPIs supported: INTIDs 32..96.
pub const SPIS: usize = 64;
pub const INTIDS: u32 = PRIVATE + SPIS as u32;
/// Both GIC versions' models keep to 8 vCPUs.
pub const MAX_VCPUS: usize = 8;
/// The most list registers any GIC version has (GICv2's GICH_VTR.ListRegs
/// is 6 bits).
const LR_CAPACITY: usize = 64;
/// The priority bits kept (5, as a GIC-400 and QEMU's list registers keep).
pub const PRIORITY_MASK: u8 = 0xf8;
/// Offset of IGROUPR, the first 1-bit-per-INTID family; the families run
/// to 0x400, 0x80 bytes each.
pub const IGROUPR: u64 = 0x080;
pub const BIT_FAMILIES_END: u64 = 0x400;

/// Distributor (or redistributor) state of one interrupt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irq {
    pub enabled: bool,
    /// Pending in the distributor, i.e. not (yet) in a list register (for
    /// per-source SGIs the pending state is in the model instead).
    pub pending: bool,
    pub active: bool,
    pub group1: bool,
    pub priority: u8,
    /// ICFGR Int_config bit: edge-triggered rather than level-sensitive
    /// (see the crate doc).
    pub edge: bool,
    /// The input line of a level source ([`Model::set_level`]); `None`
    /// while nothing drives it.
    pub line: Option<bool>,
    /// Pending in the distributor because the line is high (apart from
    /// `pending`, the latch); never while in a list register.
    pub line_pending: bool,
    /// Where an SPI goes, as the [`Routing`] reads it (GICv2 ITARGETSR
    /// byte, GICv3 IROUTER).
    pub route: u64,
}

impl Irq {
    /// Its pending state follows a line: level-sensitive, and driven.
    pub fn follows_line(&self) -> bool {
        !self.edge && self.line.is_some()
    }
}

/// What one GIC version decides differently.
pub trait Routing {
    /// SGIs pend once per sending vCPU and are always enabled, their enable
    /// and pending bits fixed (GICv2); otherwise an SGI has one pending bit
    /// and an enable like any other interrupt (GICv3).
    const SGIS_PER_SOURCE: bool;
    /// The most list registers this version has.
    const MAX_LRS: usize;

    /// The reset state of `intid`.
    fn reset(intid: u32) -> Irq;

    /// The vCPU (of `vcpus`) an SPI whose state is `irq` goes to, if any.
    fn target(&self, irq: &Irq, vcpus: usize) -> Option<usize>;

    /// The distributor forwards enabled interrupts of this group.
    fn forwards_group(&self, group1: bool) -> bool;
}

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

/// One vCPU's banked state.
struct Cpu {
    private: [Irq; PRIVATE as usize],
    /// Bit s of entry n: SGI n from vCPU s is pending, not in a list
    /// register (per-source SGIs only).
    sgi_sources: [u8; SGIS as usize],
    /// Bit n: private INTID n is pending in the distributor (from any
    /// source): what `waiting` scans instead of every INTID.
    private_pending: u64,
    /// The list registers as last flushed or synced.
    lrs: heapless::Vec<ListReg, LR_CAPACITY>,
    /// Bit n: list register n's entry, if the guest has not taken it by
    /// the next flush or sync, goes back to the distributor (its
    /// interrupt was disabled) or ends (its line dropped). Until then it
    /// stays where it is, so no other vCPU is given it meanwhile.
    withdraw: u64,
    unpend: u64,
    /// Bit n: a distributor write (ICPENDR, ICACTIVER) emptied list
    /// register n's shadow while the hardware may still hold its entry
    /// (the vCPU may be running). Its INTID counts as held until this
    /// vCPU's next flush or sync, so no other vCPU is given it meanwhile.
    emptied: u64,
}

/// The interrupt state of one VM and its list-register policy.
pub struct Model<R> {
    pub routing: R,
    cpus: Vec<Cpu>,
    /// The SPIs' state, made when one first changes: until then each is as
    /// it resets (`spi_reset`), so a VM that touches none (most of
    /// thousands of small ones) keeps 16 bytes for them, not a KiB.
    spis: Option<alloc::boxed::Box<[Irq; SPIS]>>,
    /// Every SPI's reset state (the same for all, in both GIC versions).
    spi_reset: Irq,
    /// Bit n: SPI `PRIVATE + n` is pending in the distributor.
    spi_pending: u64,
}

const _: () = assert!(
    SPIS <= 64 && PRIVATE <= 64,
    "the pending summaries are one word"
);

fn assign_bit(word: &mut u64, bit: u32, on: bool) {
    if on {
        *word |= 1 << bit;
    } else {
        *word &= !(1 << bit);
    }
}

pub fn pending_active(state: LrState) -> (bool, bool) {
    match state {
        LrState::Invalid => (false, false),
        LrState::Pending => (true, false),
        LrState::Active => (false, true),
        LrState::PendingActive => (true, true),
    }
}

pub fn lr_state(pending: bool, active: bool) -> LrState {
    match (pending, active) {
        (false, false) => LrState::Invalid,
        (true, false) => LrState::Pending,
        (false, true) => LrState::Active,
        (true, true) => LrState::PendingActive,
    }
}

/// Indices of the set bits of `bits`, lowest first.
pub fn set_bits(mut bits: u64) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        let bit = bits.trailing_zeros();
        bits &= bits.wrapping_sub(1);
        (bit < 64).then_some(bit)
    })
}

impl<R: Routing> Model<R> {
    /// # Panics
    /// If `vcpus` is 0 or more than [`MAX_VCPUS`].
    pub fn new(vcpus: usize, routing: R) -> Self {
        assert!(
            (1..=MAX_VCPUS).contains(&vcpus),
            "the virtual GIC supports 1 to 8 vCPUs"
        );
        let cpus = (0..vcpus)
            .map(|_| Cpu {
                private: core::array::from_fn(|i| R::reset(i as u32)),
                sgi_sources: [0; SGIS as usize],
                private_pending: 0,
                lrs: heapless::Vec::new(),
                withdraw: 0,
                unpend: 0,
                emptied: 0,
            })
            .collect();
        Model {
            routing,
            cpus,
            spis: None,
            spi_reset: R::reset(PRIVATE),
            spi_pending: 0,
        }
    }

    pub fn vcpus(&self) -> usize {
        self.cpus.len()
    }

    /// Mask of the vCPUs that exist.
    pub fn vcpu_mask(&self) -> u64 {
        (1 << self.cpus.len()) - 1
    }

    pub fn irq(&self, vcpu: usize, intid: u32) -> Option<&Irq> {
        match intid {
            0..PRIVATE => Some(&self.cpus[vcpu].private[intid as usize]),
            PRIVATE..INTIDS => Some(match &self.spis {
                Some(spis) => &spis[(intid - PRIVATE) as usize],
                None => &self.spi_reset,
            }),
            _ => None,
        }
    }

    pub fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Irq> {
        match intid {
            0..PRIVATE => Some(&mut self.cpus[vcpu].private[intid as usize]),
            PRIVATE..INTIDS => {
                let reset = self.spi_reset;
                let spis = self
                    .spis
                    .get_or_insert_with(|| alloc::boxed::Box::new([reset; SPIS]));
                Some(&mut spis[(intid - PRIVATE) as usize])
            }
            _ => None,
        }
    }

    /// `intid` is a per-source SGI.
    fn per_source(intid: u32) -> bool {
        R::SGIS_PER_SOURCE && intid < SGIS
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
    pub fn in_lrs(&self, vcpu: usize, intid: u32) -> impl Iterator<Item = &ListReg> {
        self.cpus[self.holders(vcpu, intid)]
            .iter()
            .flat_map(|cpu| cpu.lrs.iter())
            .filter(move |lr| lr.intid == intid && !lr.is_free())
    }

    /// Whether some vCPU's list register holds `intid` (as `vcpu` sees
    /// it), or may still hold it in hardware after an edit emptied it.
    fn held(&self, vcpu: usize, intid: u32) -> bool {
        self.in_lrs(vcpu, intid).next().is_some()
            || self.cpus[self.holders(vcpu, intid)].iter().any(|cpu| {
                set_bits(cpu.emptied).any(|slot| {
                    cpu.lrs
                        .get(slot as usize)
                        .is_some_and(|lr| lr.intid == intid)
                })
            })
    }

    /// The vCPU a pending `intid` raised for `vcpu` goes to.
    fn target(&self, vcpu: usize, intid: u32) -> Option<usize> {
        if intid < PRIVATE {
            return Some(vcpu);
        }
        self.routing.target(self.irq(vcpu, intid)?, self.cpus.len())
    }

    /// Who has `intid` pending in the distributor (not in a list
    /// register): for a per-source SGI one bit per sending vCPU, for others
    /// bit 0.
    pub fn pending_sources(&self, vcpu: usize, intid: u32) -> u8 {
        match self.irq(vcpu, intid) {
            Some(_) if Self::per_source(intid) => self.cpus[vcpu].sgi_sources[intid as usize],
            Some(irq) => (irq.pending || irq.line_pending).into(),
            None => 0,
        }
    }

    /// Sets or clears `intid`'s pending state in the distributor (from
    /// `source`, for a per-source SGI). Clearing hands it over, so the
    /// line's part goes too.
    pub fn set_pending(&mut self, vcpu: usize, intid: u32, source: u8, pending: bool) {
        if Self::per_source(intid) {
            let sources = &mut self.cpus[vcpu].sgi_sources[intid as usize];
            if pending {
                *sources |= 1 << source;
            } else {
                *sources &= !(1 << source);
            }
        } else if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.pending = pending;
            irq.line_pending &= pending;
        }
        self.note_pending(vcpu, intid);
    }

    /// Brings the line's part of `intid`'s pending state in line with the
    /// line, after the line changed or an entry left a list register;
    /// returns the vCPUs to kick.
    fn follow_line(&mut self, vcpu: usize, intid: u32) -> u64 {
        // Most interrupts have no line: no scan of the list registers.
        if !self
            .irq(vcpu, intid)
            .is_some_and(|irq| irq.follows_line() || irq.line_pending)
        {
            return 0;
        }
        let held = self.held(vcpu, intid);
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return 0;
        };
        let on = irq.follows_line() && irq.line == Some(true) && !held;
        if irq.line_pending == on {
            return 0;
        }
        irq.line_pending = on;
        self.note_pending(vcpu, intid);
        self.kick_for(vcpu, intid)
    }

    /// Brings the pending summary of `intid` (as `vcpu` sees it) in line
    /// with its state; every change of a pending state ends here.
    fn note_pending(&mut self, vcpu: usize, intid: u32) {
        let on = self.pending_sources(vcpu, intid) != 0;
        match intid {
            0..PRIVATE => assign_bit(&mut self.cpus[vcpu].private_pending, intid, on),
            PRIVATE..INTIDS => assign_bit(&mut self.spi_pending, intid - PRIVATE, on),
            _ => {}
        }
    }

    /// Whether `intid` is enabled (per-source SGIs always are).
    fn enabled(intid: u32, irq: &Irq) -> bool {
        Self::per_source(intid) || irq.enabled
    }

    /// The distributor forwards `intid` at all: it and the distributor
    /// (for its group) are enabled, and it is not active there (an active
    /// interrupt is not taken again before it is deactivated).
    fn forwards(&self, vcpu: usize, intid: u32) -> bool {
        self.irq(vcpu, intid).is_some_and(|irq| {
            Self::enabled(intid, irq) && !irq.active && self.routing.forwards_group(irq.group1)
        })
    }

    /// Every (INTID, SGI source) pending in the distributor that `vcpu`
    /// would take: forwarded and routed to it.
    fn waiting(&self, vcpu: usize) -> impl Iterator<Item = (u32, u8)> + '_ {
        // Only what the summaries say is pending: this runs on every guest
        // entry, under the hypervisor's lock, and a scan of every INTID was
        // most of a neighbour's wait for it.
        debug_assert_eq!(
            (self.cpus[vcpu].private_pending, self.spi_pending),
            self.pending_by_scan(vcpu),
            "pending summary of vCPU {vcpu} out of date"
        );
        let private = set_bits(self.cpus[vcpu].private_pending);
        let spis = set_bits(self.spi_pending).map(|n| n + PRIVATE);
        private
            .chain(spis)
            .map(move |intid| (intid, self.pending_sources(vcpu, intid)))
            .filter(move |&(intid, sources)| {
                sources != 0 && self.forwards(vcpu, intid) && self.target(vcpu, intid) == Some(vcpu)
            })
            .flat_map(|(intid, sources)| set_bits(sources.into()).map(move |s| (intid, s as u8)))
    }

    /// The pending summaries as a scan of every INTID finds them: what
    /// debug builds (the host tests) check the kept ones against.
    fn pending_by_scan(&self, vcpu: usize) -> (u64, u64) {
        let word = |intids: Range<u32>| {
            let first = intids.start;
            intids
                .filter(|&intid| self.pending_sources(vcpu, intid) != 0)
                .fold(0, |word, intid| word | 1 << (intid - first))
        };
        (word(0..PRIVATE), word(PRIVATE..INTIDS))
    }

    /// The vCPU to kick after `intid` (as `vcpu` sees it) became pending,
    /// enabled or routed: its target, if the distributor forwards it.
    pub fn kick_for(&self, vcpu: usize, intid: u32) -> u64 {
        match self.target(vcpu, intid) {
            Some(t) if self.forwards(t, intid) && self.pending_sources(t, intid) != 0 => 1 << t,
            _ => 0,
        }
    }

    /// The vCPUs with an interrupt pending that they would take, to kick
    /// when the distributor's forwarding was turned on.
    pub fn pending_vcpus(&self) -> u64 {
        (0..self.cpus.len())
            .filter(|&c| self.has_pending(c))
            .fold(0, |acc, c| acc | 1 << c)
    }

    /// Changes the pending and/or active state of `intid` (from `source`
    /// only, for a per-source SGI, if given) in the list registers holding
    /// it; the change reaches the hardware at the holder's next flush.
    pub fn edit_lrs(
        &mut self,
        vcpu: usize,
        intid: u32,
        source: Option<u8>,
        pending: Option<bool>,
        active: Option<bool>,
    ) {
        for holder in self.holders(vcpu, intid) {
            let cpu = &mut self.cpus[holder];
            for (slot, lr) in cpu.lrs.iter_mut().enumerate() {
                if lr.intid != intid || lr.is_free() || source.is_some_and(|s| s != lr.source) {
                    continue;
                }
                let (p, a) = pending_active(lr.state);
                lr.state = lr_state(pending.unwrap_or(p), active.unwrap_or(a));
                if lr.is_free() {
                    cpu.emptied |= 1 << slot;
                }
            }
        }
    }

    /// Marks the list registers holding `intid` to be withdrawn (or, for
    /// `unpend`, ended) at their holder's next flush or sync; see
    /// [`Cpu::withdraw`].
    fn mark_lrs(&mut self, vcpu: usize, intid: u32, unpend: bool) {
        for holder in self.holders(vcpu, intid) {
            let cpu = &mut self.cpus[holder];
            for (slot, lr) in cpu.lrs.iter().enumerate() {
                if lr.intid == intid && !lr.is_free() {
                    let mask = if unpend {
                        &mut cpu.unpend
                    } else {
                        &mut cpu.withdraw
                    };
                    *mask |= 1 << slot;
                }
            }
        }
    }

    /// Carries out the marks of `vcpu`'s list registers on `lrs` (as the
    /// hardware holds them): an entry the guest has not taken loses its
    /// pending state, unless what asked for that no longer holds (enabled
    /// again, line high again). Returns the slots whose pending state goes
    /// back to the distributor ([`Self::restore`]) once the shadows are
    /// updated.
    fn resolve_marks(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> u64 {
        let cpu = &mut self.cpus[vcpu];
        let (withdraw, unpend) = (cpu.withdraw, cpu.unpend);
        if withdraw | unpend == 0 {
            return 0; // every entry and exit: keep it cheap
        }
        (cpu.withdraw, cpu.unpend) = (0, 0);
        let mut back = 0;
        for slot in set_bits(withdraw | unpend).map(|s| s as usize) {
            let (Some(&lr), Some(shadow)) = (lrs.get(slot), self.cpus[vcpu].lrs.get(slot)) else {
                continue;
            };
            let (pending, active) = pending_active(lr.state);
            if lr.is_free() || lr.intid != shadow.intid || !pending {
                continue;
            }
            let irq = self.irq(vcpu, lr.intid).copied().unwrap_or_default();
            if withdraw & (1 << slot) != 0 && !self.forwards(vcpu, lr.intid) {
                lrs[slot].state = lr_state(false, active);
                back |= 1 << slot;
            } else if unpend & (1 << slot) != 0 && !active && irq.line == Some(false) {
                lrs[slot].state = LrState::Invalid;
            }
        }
        back
    }

    /// The pending state of the entries in the `withdrawn` slots of `lrs`
    /// back in the distributor (a level interrupt's as its line says);
    /// returns the vCPUs to kick.
    fn restore(&mut self, vcpu: usize, lrs: &[ListReg], withdrawn: u64) -> u64 {
        let mut kick = 0;
        for lr in set_bits(withdrawn).filter_map(|slot| lrs.get(slot as usize)) {
            if self.irq(vcpu, lr.intid).is_some_and(Irq::follows_line) {
                kick |= self.follow_line(vcpu, lr.intid);
            } else {
                self.set_pending(vcpu, lr.intid, lr.source, true);
                kick |= self.kick_for(vcpu, lr.intid);
            }
        }
        kick
    }

    fn read_bit(&self, vcpu: usize, field: Field, intid: u32) -> bool {
        let Some(irq) = self.irq(vcpu, intid) else {
            return false;
        };
        let mut lrs = self.in_lrs(vcpu, intid).map(|lr| pending_active(lr.state));
        match field {
            Field::Group => irq.group1,
            Field::Enable => Self::enabled(intid, irq),
            Field::Pending => self.pending_sources(vcpu, intid) != 0 || lrs.any(|(p, _)| p),
            Field::Active => irq.active || lrs.any(|(_, a)| a),
        }
    }

    /// Sets (`on`) or clears one bit of a 1-bit-per-INTID family; returns
    /// the vCPUs to kick.
    fn write_bit(&mut self, vcpu: usize, field: Field, intid: u32, on: bool) -> u64 {
        // Active state lives where the interrupt is: in the distributor,
        // or in the list register holding it.
        let in_lrs = self.in_lrs(vcpu, intid).next().is_some();
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return 0;
        };
        let line_high = irq.follows_line() && irq.line == Some(true);
        match field {
            Field::Group => irq.group1 = on,
            // Per-source SGIs are always enabled; their pending state is
            // set and cleared per source (GICv2 SPENDSGIR/CPENDSGIR).
            Field::Enable | Field::Pending if Self::per_source(intid) => return 0,
            Field::Enable => {
                irq.enabled = on;
                if !on {
                    self.withdraw(vcpu, intid);
                }
            }
            Field::Pending => {
                irq.pending = on;
                self.note_pending(vcpu, intid);
                // A high line keeps a level interrupt pending.
                if !on && !line_high {
                    self.edit_lrs(vcpu, intid, None, Some(false), None);
                }
            }
            Field::Active => {
                irq.active = on && !in_lrs;
                self.edit_lrs(vcpu, intid, None, None, Some(on));
                if !on {
                    self.follow_line(vcpu, intid);
                }
            }
        }
        self.kick_for(vcpu, intid)
    }

    /// `intid` was disabled: what waits for it in list registers, not yet
    /// taken, goes back to the distributor (at the holder's next flush or
    /// sync), so the guest does not take it while it is disabled; what is
    /// active stays.
    fn withdraw(&mut self, vcpu: usize, intid: u32) {
        self.mark_lrs(vcpu, intid, false);
    }

    /// IGROUPR..ICACTIVER (`offset` in [`IGROUPR`]..[`BIT_FAMILIES_END`]):
    /// one bit per INTID, 32 INTIDs per register, as `vcpu` sees them.
    /// Returns the value read and the vCPUs to kick.
    pub fn bits_register(&mut self, vcpu: usize, offset: u64, write: Option<u32>) -> (u32, u64) {
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

    /// IPRIORITYR: one byte per INTID.
    pub fn priority_byte(&mut self, vcpu: usize, intid: u32, write: Option<u8>) -> u8 {
        match (self.irq_mut(vcpu, intid), write) {
            (Some(irq), None) => irq.priority,
            (Some(irq), Some(v)) => {
                irq.priority = v & PRIORITY_MASK;
                0
            }
            (None, _) => 0,
        }
    }

    /// Four IPRIORITYR bytes, lowest INTID in the low byte.
    pub fn priority_word(&mut self, vcpu: usize, first: u32, write: Option<u32>) -> u32 {
        (0..4).fold(0, |read, i| {
            let byte = write.map(|v| (v >> (8 * i)) as u8);
            read | u32::from(self.priority_byte(vcpu, first + i, byte)) << (8 * i)
        })
    }

    /// ICFGR: two bits per INTID from `first`, of which only Int_config
    /// (the upper) is kept; SGIs read as edge-triggered and ignore writes.
    /// Returns the value read and the vCPUs to kick.
    pub fn config_register(&mut self, vcpu: usize, first: u32, write: Option<u32>) -> (u32, u64) {
        let (mut read, mut kick) = (0, 0);
        for i in 0..16 {
            let intid = first + i;
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                break;
            };
            match write {
                Some(_) if intid < SGIS => {}
                Some(v) => {
                    irq.edge = v & (2 << (2 * i)) != 0;
                    // Made level-sensitive with its line high: pending now.
                    kick |= self.follow_line(vcpu, intid);
                }
                None if intid < SGIS || irq.edge => read |= 2 << (2 * i),
                None => {}
            }
        }
        (read, kick)
    }

    /// A device drives the line of `intid` (a PPI of `vcpu`, or an SPI)
    /// to `level`: see the crate doc for what that does as ICFGR says.
    /// SGIs have no line. Returns the vCPUs to kick.
    pub fn set_level(&mut self, vcpu: usize, intid: u32, level: bool) -> u64 {
        if vcpu >= self.cpus.len() || !(SGIS..INTIDS).contains(&intid) {
            return 0;
        }
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return 0;
        };
        let rising = level && irq.line != Some(true);
        irq.line = Some(level);
        if irq.edge {
            return if rising {
                self.raise(vcpu, intid, 0)
            } else {
                0
            };
        }
        if !level {
            // Not taken yet: gone. Taken (active): completion is heard.
            self.mark_lrs(vcpu, intid, true);
        }
        self.follow_line(vcpu, intid)
    }

    /// A device (or the virtual timer, or for an SGI `source`) makes
    /// `intid` pending: for a private interrupt on `vcpu`, for a shared one
    /// wherever the guest routed it. Returns the vCPUs to kick.
    pub fn raise(&mut self, vcpu: usize, intid: u32, source: u8) -> u64 {
        if vcpu >= self.cpus.len() || intid >= INTIDS {
            return 0;
        }
        let bit = if Self::per_source(intid) {
            1 << source
        } else {
            1
        };
        if self.pending_sources(vcpu, intid) & bit != 0 {
            // Already pending: its target was kicked when it became so.
            // A flood of raises (a guest ringing a doorbell) costs nothing.
            return 0;
        }
        self.set_pending(vcpu, intid, source, true);
        self.kick_for(vcpu, intid)
    }

    /// See [`hv::vgic::Vgic::flush`].
    pub fn flush(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> Flushed {
        self.flush_with(vcpu, lrs, true)
    }

    /// [`Self::flush`]; without `shortcut` it takes back even from empty
    /// list registers, which the tests hold the shortcut to.
    #[inline(always)]
    fn flush_with(&mut self, vcpu: usize, lrs: &mut [ListReg], shortcut: bool) -> Flushed {
        if vcpu >= self.cpus.len() {
            return Flushed::default();
        }
        let max = R::MAX_LRS.min(LR_CAPACITY);
        let cpu = &self.cpus[vcpu];
        // Nothing in the list registers or their shadow, nothing marked:
        // the usual entry with an interrupt to deliver (a vCPU woken for
        // it). Nothing to take back; the shadow is already what the list
        // registers are (at the length the rest expects).
        let empty = cpu.emptied | cpu.withdraw | cpu.unpend == 0
            && cpu.lrs.len() == lrs.len().min(max)
            && cpu.lrs.iter().all(ListReg::is_free)
            && lrs.iter().all(ListReg::is_free);
        let kick = if empty && shortcut {
            0
        } else {
            self.take_back(vcpu, lrs, max)
        };
        let usable = lrs.len().min(max);
        let slots = &mut lrs[..usable];
        let free = slots.iter().filter(|lr| lr.is_free()).count();
        if free == 0 {
            // Nothing can be placed: all that matters is whether anything
            // waits. A guest that keeps its list registers full and every
            // INTID pending would otherwise have each entry scan them all.
            return Flushed {
                waiting: self.waiting(vcpu).next().is_some(),
                effects: Effects { kick },
            };
        }
        // One pass over the distributor (this runs on every guest entry with
        // an interrupt to deliver): the `free` most urgent deliverable
        // interrupts, lowest priority value, then INTID, then source first, as
        // the GIC arbitrates. An INTID goes into one list register at a time,
        // so each INTID offers only its first source.
        let mut best: heapless::Vec<(u8, u32, u8), LR_CAPACITY> = heapless::Vec::new();
        let mut waiting = 0;
        let mut last_intid = None;
        for (intid, source) in self.waiting(vcpu) {
            waiting += 1;
            if last_intid == Some(intid) || self.held(vcpu, intid) {
                continue;
            }
            last_intid = Some(intid);
            let key = (
                self.irq(vcpu, intid).map_or(0, |irq| irq.priority),
                intid,
                source,
            );
            let at = best.partition_point(|other| *other < key);
            if at < free {
                if best.len() == free {
                    best.pop();
                }
                // Cannot fail: there is room for `free` <= LR_CAPACITY.
                let _ = best.insert(at, key);
            }
        }
        let free_slots = slots.iter_mut().enumerate().filter(|(_, lr)| lr.is_free());
        for ((slot, lr), &(priority, intid, source)) in free_slots.zip(&best) {
            self.set_pending(vcpu, intid, source, false);
            *lr = ListReg {
                intid,
                priority,
                state: LrState::Pending,
                source: if Self::per_source(intid) { source } else { 0 },
                // To hear when a level interrupt completes (`sync`).
                eoi_maintenance: self.irq(vcpu, intid).is_some_and(Irq::follows_line),
            };
            self.cpus[vcpu].lrs[slot] = *lr;
        }
        // What is left needs free list registers, or (an SGI from another
        // source, an SPI another vCPU holds) one to be completed.
        Flushed {
            waiting: waiting > best.len(),
            effects: Effects { kick },
        }
    }

    /// What happened in `vcpu`'s list registers since they were last
    /// flushed or synced, taken back before new entries are placed:
    /// distributor writes applied, marked entries withdrawn or ended, raises
    /// merged into their entries, the shadow made current. Returns the vCPUs
    /// to kick.
    fn take_back(&mut self, vcpu: usize, lrs: &mut [ListReg], max: usize) -> u64 {
        let emptied = self.take_emptied(vcpu);
        // Distributor writes made since the last sync (see `edit_lrs`).
        for (lr, shadow) in lrs.iter_mut().zip(&self.cpus[vcpu].lrs) {
            let same_source = !R::SGIS_PER_SOURCE || lr.source == shadow.source;
            if !lr.is_free() && lr.intid == shadow.intid && same_source {
                lr.state = shadow.state;
            }
        }
        let withdrawn = self.resolve_marks(vcpu, lrs);
        // Raised again while in a list register: merge into that entry.
        for lr in lrs.iter_mut().filter(|lr| !lr.is_free()) {
            let source = if R::SGIS_PER_SOURCE { lr.source } else { 0 };
            let sources = self.pending_sources(vcpu, lr.intid);
            if self.forwards(vcpu, lr.intid) && sources & (1 << source) != 0 {
                self.set_pending(vcpu, lr.intid, source, false);
                let (_, active) = pending_active(lr.state);
                lr.state = lr_state(true, active);
            }
        }
        let shadow = &mut self.cpus[vcpu].lrs;
        shadow.clear();
        // A slice copy, not an iterator: this runs on every guest entry with
        // something to deliver.
        let kept = shadow.extend_from_slice(&lrs[..lrs.len().min(max)]);
        debug_assert!(kept.is_ok(), "max is at most the shadow's capacity");
        // Disabled: nothing to kick for.
        self.restore(vcpu, lrs, withdrawn);
        // The edits above emptied those entries in the hardware too.
        self.release_emptied(vcpu, &emptied)
    }

    /// The INTIDs of `vcpu`'s emptied entries (see [`Cpu::emptied`]), no
    /// longer marked.
    fn take_emptied(&mut self, vcpu: usize) -> heapless::Vec<u32, LR_CAPACITY> {
        let cpu = &mut self.cpus[vcpu];
        let emptied = core::mem::take(&mut cpu.emptied);
        if emptied == 0 {
            return heapless::Vec::new(); // every entry and exit: keep it cheap
        }
        set_bits(emptied)
            .filter_map(|slot| cpu.lrs.get(slot as usize).map(|lr| lr.intid))
            .collect()
    }

    /// Emptied entries that the hardware no longer holds either: their
    /// INTIDs may go to another vCPU now (a level interrupt's line may be
    /// high, an edge may have been raised meanwhile). Returns the vCPUs to
    /// kick.
    fn release_emptied(&mut self, vcpu: usize, intids: &[u32]) -> u64 {
        let mut kick = 0;
        for &intid in intids {
            if !self.held(vcpu, intid) {
                kick |= self.follow_line(vcpu, intid) | self.kick_for(vcpu, intid);
            }
        }
        kick
    }

    /// See [`hv::vgic::Vgic::sync`]; returns the vCPUs to kick.
    pub fn sync(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> u64 {
        if vcpu >= self.cpus.len() {
            return 0;
        }
        let emptied = self.take_emptied(vcpu);
        let withdrawn = self.resolve_marks(vcpu, lrs);
        let cpu = &mut self.cpus[vcpu];
        let max = R::MAX_LRS.min(LR_CAPACITY);
        // Entries that left (completed): INTIDs whose line may be high.
        let mut left: heapless::Vec<u32, LR_CAPACITY> = heapless::Vec::new();
        for (lr, shadow) in lrs.iter_mut().zip(cpu.lrs.iter()) {
            if shadow.is_free() && lr.state == LrState::Pending {
                // Withdrawn here while the vCPU ran (the hardware cannot
                // fill a list register), and not taken: that stands, and
                // reaches the hardware at the next flush.
                lr.state = LrState::Invalid;
            } else if !shadow.is_free() && (lr.is_free() || lr.intid != shadow.intid) {
                // Cannot fail: one per list register.
                let _ = left.push(shadow.intid);
            }
        }
        cpu.lrs.clear();
        cpu.lrs.extend(lrs.iter().take(max).copied());
        // A completed entry otherwise needs nothing more: its pending
        // state left the distributor when it was handed out, and a raise
        // since then is pending in the distributor again.
        let kick = self.restore(vcpu, lrs, withdrawn) | self.release_emptied(vcpu, &emptied);
        left.iter()
            .fold(kick, |kick, &intid| kick | self.follow_line(vcpu, intid))
    }

    /// See [`hv::vgic::Vgic::release_lrs`].
    pub fn release_lrs(&mut self, vcpu: usize) -> u64 {
        if vcpu >= self.cpus.len() {
            return 0;
        }
        let emptied = self.take_emptied(vcpu);
        let cpu = &mut self.cpus[vcpu];
        let held = core::mem::take(&mut cpu.lrs);
        (cpu.withdraw, cpu.unpend) = (0, 0);
        let mut kick = self.release_emptied(vcpu, &emptied);
        for lr in held.iter().filter(|lr| !lr.is_free()) {
            // Pending goes back to the distributor, to be routed afresh (a
            // level interrupt's as its line says); the active state ends
            // with the CPU interface that held it.
            if self.irq(vcpu, lr.intid).is_some_and(Irq::follows_line) {
                kick |= self.follow_line(vcpu, lr.intid);
            } else if pending_active(lr.state).0 {
                self.set_pending(vcpu, lr.intid, lr.source, true);
                kick |= self.kick_for(vcpu, lr.intid);
            }
        }
        kick
    }

    /// See [`hv::vgic::Vgic::has_pending`].
    pub fn has_pending(&self, vcpu: usize) -> bool {
        vcpu < self.cpus.len()
            && (self.waiting(vcpu).next().is_some()
                || self.cpus[vcpu]
                    .lrs
                    .iter()
                    .any(|lr| lr.state == LrState::Pending))
    }

    /// See [`hv::vgic::Vgic::in_flight`].
    pub fn in_flight(&self, vcpu: usize, intid: u32) -> bool {
        if vcpu >= self.cpus.len() {
            return false;
        }
        let Some(irq) = self.irq(vcpu, intid) else {
            return false;
        };
        let cpu = &self.cpus[vcpu];
        self.pending_sources(vcpu, intid) != 0
            || irq.active
            || cpu.lrs.iter().enumerate().any(|(slot, lr)| {
                lr.intid == intid && (!lr.is_free() || cpu.emptied & (1 << slot) != 0)
            })
    }
}

#[cfg(test)]
mod tests;
