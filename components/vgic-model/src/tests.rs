//! Host tests of the list-register policy and the interrupt state both
//! GIC versions share, through a minimal [`Routing`]: one distributor
//! enable, SPIs to the vCPU [`Irq::route`] names.

use super::*;

const ISENABLER: u64 = 0x100;
const ICPENDR: u64 = 0x280;
const ISPENDR: u64 = 0x200;
const ISACTIVER: u64 = 0x300;
const ICACTIVER: u64 = 0x380;

const TIMER: u32 = 27;
const SPI: u32 = 40;

struct Test {
    enabled: bool,
}

impl Routing for Test {
    const SGIS_PER_SOURCE: bool = false;
    const MAX_LRS: usize = 16;

    fn reset(_intid: u32) -> Irq {
        Irq::default()
    }

    fn target(&self, irq: &Irq, vcpus: usize) -> Option<usize> {
        let vcpu = irq.route as usize;
        (vcpu < vcpus).then_some(vcpu)
    }

    fn forwards_group(&self, _group1: bool) -> bool {
        self.enabled
    }
}

type Gic = Model<Test>;

/// Sets `intid`'s bit in a 1-bit-per-INTID family as `vcpu`; returns the
/// vCPUs to kick.
fn set_bit(gic: &mut Gic, vcpu: usize, family: u64, intid: u32) -> u64 {
    let offset = family + u64::from(intid / 32) * 4;
    gic.bits_register(vcpu, offset, Some(1 << (intid % 32))).1
}

fn read(gic: &mut Gic, vcpu: usize, family: u64, intid: u32) -> u32 {
    gic.bits_register(vcpu, family + u64::from(intid / 32) * 4, None)
        .0
}

fn set_priority(gic: &mut Gic, vcpu: usize, intid: u32, priority: u8) {
    gic.priority_byte(vcpu, intid, Some(priority));
}

fn route(gic: &mut Gic, intid: u32, vcpu: u64) {
    gic.irq_mut(0, intid).unwrap().route = vcpu;
}

/// A VM with the distributor on, SPIs routed to vCPU 0 (the reset route).
fn enabled(vcpus: usize) -> Gic {
    Model::new(vcpus, Test { enabled: true })
}

/// A 2-vCPU VM with the distributor and `intids` enabled for vCPU 0.
fn with_enabled(intids: &[u32]) -> Gic {
    let mut gic = enabled(2);
    for &intid in intids {
        set_bit(&mut gic, 0, ISENABLER, intid);
    }
    gic
}

fn live(lrs: &[ListReg]) -> Vec<(u32, LrState)> {
    lrs.iter()
        .filter(|lr| !lr.is_free())
        .map(|lr| (lr.intid, lr.state))
        .collect()
}

/// The guest acknowledges and completes (EOIs) every list register.
fn complete_all(lrs: &mut [ListReg]) {
    lrs.iter_mut().for_each(|lr| lr.state = LrState::Invalid);
}

#[test]
fn distributor_disabled_delivers_nothing_and_enabling_kicks_through_pending_vcpus() {
    let mut gic = with_enabled(&[TIMER, SPI]);
    gic.routing.enabled = false;
    assert_eq!(gic.raise(0, TIMER, 0), 0);
    let mut lrs = [ListReg::default(); 4];
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty());
    assert!(!gic.has_pending(0));
    gic.routing.enabled = true;
    assert_eq!(gic.pending_vcpus(), 0b01);
    assert!(gic.has_pending(0));
}

#[test]
fn raising_what_is_already_pending_kicks_no_one_until_it_is_taken() {
    let mut gic = with_enabled(&[SPI]);
    assert_eq!(gic.raise(0, SPI, 0), 0b01);
    for _ in 0..1000 {
        assert_eq!(gic.raise(0, SPI, 0), 0, "a doorbell flood kicks once");
    }
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)]);
    // Taken (in a list register): raised again, it is pending once more.
    assert_eq!(gic.raise(0, SPI, 0), 0b01);
    lrs[0].state = LrState::Active;
    gic.sync(0, &mut lrs);
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::PendingActive)]);
}

#[test]
fn an_spi_routed_to_no_vcpu_waits_until_routed() {
    let mut gic = enabled(2);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    route(&mut gic, SPI, 5);
    assert_eq!(gic.raise(0, SPI, 0), 0);
    assert!(!gic.has_pending(0) && !gic.has_pending(1));
    route(&mut gic, SPI, 1);
    assert_eq!(gic.kick_for(0, SPI), 0b10);
    assert!(gic.has_pending(1));
}

#[test]
fn pending_and_active_registers_reflect_the_list_registers() {
    let mut gic = with_enabled(&[SPI, SPI + 1, TIMER]);
    gic.raise(0, SPI, 0);
    gic.raise(0, SPI + 1, 0);
    gic.raise(0, TIMER, 0);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    lrs.iter_mut()
        .filter(|lr| !lr.is_free() && lr.intid != SPI)
        .for_each(|lr| lr.state = LrState::Active);
    gic.sync(0, &mut lrs);
    assert_eq!(
        read(&mut gic, 1, ISPENDR, SPI),
        1 << 8,
        "SPIs from any vCPU"
    );
    assert_eq!(read(&mut gic, 1, ISACTIVER, SPI), 1 << 9);
    assert_eq!(read(&mut gic, 0, ISACTIVER, TIMER), 1 << TIMER);
    assert_eq!(read(&mut gic, 1, ISACTIVER, TIMER), 0, "banked");
}

#[test]
fn disabled_interrupts_are_not_delivered() {
    let mut gic = enabled(1);
    assert_eq!(gic.raise(0, SPI, 0), 0);
    assert_eq!(gic.raise(0, TIMER, 0), 0);
    let mut lrs = [ListReg::default(); 4];
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty());
    assert!(!gic.has_pending(0));
    assert!(gic.in_flight(0, SPI), "still pending in the distributor");
}

#[test]
fn enabling_a_pending_interrupt_kicks_its_vcpu() {
    let mut gic = enabled(2);
    gic.raise(1, TIMER, 0);
    assert_eq!(set_bit(&mut gic, 1, ISENABLER, TIMER), 0b10);
}

#[test]
fn flush_fills_list_registers_by_priority_then_intid() {
    let mut gic = with_enabled(&[TIMER, SPI, SPI + 1, SPI + 2]);
    set_priority(&mut gic, 0, TIMER, 0xa0);
    set_priority(&mut gic, 0, SPI, 0x20);
    set_priority(&mut gic, 0, SPI + 1, 0xa0);
    set_priority(&mut gic, 0, SPI + 2, 0x10);
    for intid in [TIMER, SPI, SPI + 1, SPI + 2] {
        gic.raise(0, intid, 0);
    }
    let mut lrs = [ListReg::default(); 3];
    assert!(gic.flush(0, &mut lrs).waiting);
    let order: Vec<u32> = lrs.iter().map(|lr| lr.intid).collect();
    assert_eq!(order, [SPI + 2, SPI, TIMER]);
    assert_eq!(lrs[0].priority, 0x10);
    assert_eq!(lrs[0].state, LrState::Pending);
}

#[test]
fn free_slots_between_live_ones_take_the_most_urgent_in_slot_order() {
    let intids = [SPI, SPI + 1, SPI + 2, SPI + 3];
    let mut gic = with_enabled(&intids);
    set_priority(&mut gic, 0, SPI + 1, 0xa0);
    set_priority(&mut gic, 0, SPI + 2, 0xa0);
    set_priority(&mut gic, 0, SPI + 3, 0x10);
    gic.raise(0, SPI, 0);
    let mut lrs = [ListReg::default(); 3];
    assert!(!gic.flush(0, &mut lrs).waiting);
    // SPI sits (active) in slot 0; slot 1 frees up later.
    lrs[0].state = LrState::Active;
    gic.sync(0, &mut lrs);
    for intid in [SPI + 1, SPI + 2, SPI + 3] {
        gic.raise(0, intid, 0);
    }
    assert!(
        gic.flush(0, &mut lrs).waiting,
        "one of the three does not fit"
    );
    let order: Vec<u32> = lrs.iter().map(|lr| lr.intid).collect();
    assert_eq!(
        order,
        [SPI, SPI + 3, SPI + 1],
        "priority 0x10 first, then the lower INTID"
    );
    assert_eq!(lrs[0].state, LrState::Active, "the live entry stays");
}

#[test]
fn lr_overflow_6_into_4_loses_nothing_and_delivers_nothing_twice() {
    let intids = [SPI, SPI + 1, SPI + 2, SPI + 3, SPI + 4, SPI + 5];
    let mut gic = with_enabled(&intids);
    for intid in intids {
        gic.raise(0, intid, 0);
    }
    let mut lrs = [ListReg::default(); 4];
    assert!(gic.flush(0, &mut lrs).waiting, "two did not fit");
    assert_eq!(live(&lrs).len(), 4);
    let first: Vec<u32> = lrs.iter().map(|lr| lr.intid).collect();

    // The guest runs and completes the first two.
    lrs[0].state = LrState::Invalid;
    lrs[1].state = LrState::Invalid;
    gic.sync(0, &mut lrs);
    assert!(!gic.flush(0, &mut lrs).waiting, "everything fits now");
    assert_eq!(live(&lrs).len(), 4);

    let mut seen: Vec<u32> = first[..2].to_vec();
    seen.extend(lrs.iter().map(|lr| lr.intid));
    seen.sort();
    assert_eq!(seen, intids, "each exactly once");

    complete_all(&mut lrs);
    gic.sync(0, &mut lrs);
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty(), "nothing comes back");
    assert!(!gic.has_pending(0));
}

#[test]
fn pending_again_while_active_becomes_pending_active_in_the_same_lr() {
    let mut gic = with_enabled(&[TIMER]);
    gic.raise(0, TIMER, 0);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    lrs[0].state = LrState::Active; // the guest acknowledged it
    gic.sync(0, &mut lrs);
    gic.raise(0, TIMER, 0);
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert_eq!(live(&lrs), [(TIMER, LrState::PendingActive)]);
}

#[test]
fn raised_again_while_still_pending_collapses_into_one() {
    let mut gic = with_enabled(&[TIMER]);
    gic.raise(0, TIMER, 0);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    gic.sync(0, &mut lrs);
    gic.raise(0, TIMER, 0);
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert_eq!(live(&lrs), [(TIMER, LrState::Pending)]);
}

#[test]
fn raised_again_after_completion_is_delivered_again() {
    let mut gic = with_enabled(&[TIMER]);
    gic.raise(0, TIMER, 0);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    gic.raise(0, TIMER, 0);
    complete_all(&mut lrs);
    gic.sync(0, &mut lrs);
    assert!(gic.in_flight(0, TIMER));
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(TIMER, LrState::Pending)]);
}

#[test]
fn an_spi_one_vcpu_holds_is_not_given_to_another() {
    let mut gic = enabled(2);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    gic.raise(0, SPI, 0);
    let mut lrs0 = [ListReg::default(); 4];
    gic.flush(0, &mut lrs0);
    lrs0[0].state = LrState::Active;
    gic.sync(0, &mut lrs0);
    route(&mut gic, SPI, 1);
    gic.raise(0, SPI, 0);
    let mut lrs1 = [ListReg::default(); 4];
    assert!(
        gic.flush(1, &mut lrs1).waiting,
        "waits for vCPU 0 to finish"
    );
    assert!(live(&lrs1).is_empty());
    complete_all(&mut lrs0);
    gic.sync(0, &mut lrs0);
    gic.flush(1, &mut lrs1);
    assert_eq!(live(&lrs1), [(SPI, LrState::Pending)]);
}

#[test]
fn an_spi_held_by_a_vcpu_that_turns_off_goes_to_its_new_target() {
    let mut gic = enabled(2);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    set_bit(&mut gic, 0, ISENABLER, SPI + 1);
    gic.raise(0, SPI, 0);
    gic.raise(0, SPI + 1, 0);
    let mut lrs0 = [ListReg::default(); 4];
    gic.flush(0, &mut lrs0);
    lrs0[0].state = LrState::Active;
    gic.sync(0, &mut lrs0);
    // vCPU 0 calls CPU_OFF with SPI active and SPI + 1 pending in its list
    // registers; the guest routes both to vCPU 1, which had nothing.
    // SPI + 1 is pending for vCPU 0 again (the core wakes no vCPU that is off).
    assert_eq!(gic.release_lrs(0), 1 << 0);
    route(&mut gic, SPI, 1);
    route(&mut gic, SPI + 1, 1);
    assert!(!gic.in_flight(0, SPI), "the active state ended with vCPU 0");
    let mut lrs1 = [ListReg::default(); 4];
    assert!(!gic.flush(1, &mut lrs1).waiting, "nothing waits on vCPU 0");
    assert_eq!(live(&lrs1), [(SPI + 1, LrState::Pending)]);
    // Raised again, SPI goes to vCPU 1 at once.
    assert_eq!(gic.raise(0, SPI, 0), 1 << 1);
    assert!(!gic.flush(1, &mut lrs1).waiting);
    assert_eq!(
        live(&lrs1),
        [(SPI + 1, LrState::Pending), (SPI, LrState::Pending)]
    );
    assert_eq!(gic.release_lrs(7), 0, "no such vCPU");
}

#[test]
fn raise_of_a_private_interrupt_is_for_that_vcpu_only() {
    let mut gic = enabled(2);
    set_bit(&mut gic, 1, ISENABLER, TIMER);
    assert_eq!(gic.raise(1, TIMER, 0), 0b10);
    assert!(gic.has_pending(1));
    assert!(!gic.has_pending(0));
    assert!(!gic.in_flight(0, TIMER));
}

#[test]
fn raise_ignores_unsupported_intids_and_vcpus() {
    let mut gic = enabled(1);
    assert_eq!(gic.raise(0, 96, 0), 0);
    assert_eq!(gic.raise(5, TIMER, 0), 0);
    assert!(!gic.flush(5, &mut [ListReg::default(); 4]).waiting);
    assert!(!gic.has_pending(5) && !gic.in_flight(5, TIMER));
}

#[test]
fn has_pending_counts_pending_list_registers_but_not_active_ones() {
    let mut gic = with_enabled(&[TIMER]);
    assert!(!gic.has_pending(0));
    gic.raise(0, TIMER, 0);
    assert!(gic.has_pending(0));
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    gic.sync(0, &mut lrs);
    assert!(gic.has_pending(0), "pending in a list register");
    lrs[0].state = LrState::Active;
    gic.sync(0, &mut lrs);
    assert!(!gic.has_pending(0));
}

#[test]
fn in_flight_follows_an_interrupt_through_the_list_registers() {
    let mut gic = with_enabled(&[TIMER]);
    assert!(!gic.in_flight(0, TIMER));
    gic.raise(0, TIMER, 0);
    assert!(gic.in_flight(0, TIMER));
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    assert!(gic.in_flight(0, TIMER), "in a list register");
    lrs[0].state = LrState::Active;
    gic.sync(0, &mut lrs);
    assert!(gic.in_flight(0, TIMER));
    complete_all(&mut lrs);
    gic.sync(0, &mut lrs);
    assert!(!gic.in_flight(0, TIMER));
}

#[test]
fn clearing_state_of_an_interrupt_in_a_list_register_reaches_it_at_the_next_flush() {
    let mut gic = with_enabled(&[SPI, SPI + 1]);
    gic.raise(0, SPI, 0);
    gic.raise(0, SPI + 1, 0);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    lrs[1].state = LrState::Active;
    gic.sync(0, &mut lrs);
    set_bit(&mut gic, 0, ICPENDR, SPI);
    set_bit(&mut gic, 0, ICACTIVER, SPI + 1);
    assert!(!pending(&mut gic, 0, SPI) && !active(&mut gic, 0, SPI + 1));
    // Until then the hardware may hold them (the vCPU may be running).
    assert!(gic.in_flight(0, SPI) && gic.in_flight(0, SPI + 1));
    gic.flush(0, &mut lrs);
    assert!(live(&lrs).is_empty());
    assert!(!gic.in_flight(0, SPI) && !gic.in_flight(0, SPI + 1));
}

#[test]
fn isactiver_on_an_interrupt_in_a_list_register_marks_that_entry() {
    let mut gic = with_enabled(&[SPI]);
    gic.raise(0, SPI, 0);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    gic.sync(0, &mut lrs);
    set_bit(&mut gic, 0, ISACTIVER, SPI);
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::PendingActive)]);
    complete_all(&mut lrs);
    gic.sync(0, &mut lrs);
    assert!(!gic.in_flight(0, SPI), "no stale distributor active bit");
}

const ICENABLER: u64 = 0x180;

/// `vcpu`'s list registers, fresh, filled by a flush.
fn flushed(gic: &mut Gic, vcpu: usize) -> [ListReg; 4] {
    let mut lrs = [ListReg::default(); 4];
    gic.flush(vcpu, &mut lrs);
    lrs
}

/// The guest on `vcpu` takes (acknowledges) list register `slot`, then
/// exits; returns the vCPUs `sync` kicks.
fn take(gic: &mut Gic, vcpu: usize, lrs: &mut [ListReg], slot: usize) -> u64 {
    lrs[slot].state = LrState::Active;
    gic.sync(vcpu, lrs)
}

/// ICFGR's Int_config bit for `intid` set (edge) or clear (level).
fn configure(gic: &mut Gic, intid: u32, edge: bool) {
    let first = intid / 16 * 16;
    let (mut value, _) = gic.config_register(0, first, None);
    let bit = 2 << (2 * (intid - first));
    value = if edge { value | bit } else { value & !bit };
    gic.config_register(0, first, Some(value));
}

fn pending(gic: &mut Gic, vcpu: usize, intid: u32) -> bool {
    read(gic, vcpu, ISPENDR, intid) & (1 << (intid % 32)) != 0
}

fn active(gic: &mut Gic, vcpu: usize, intid: u32) -> bool {
    read(gic, vcpu, ISACTIVER, intid) & (1 << (intid % 32)) != 0
}

#[test]
fn a_level_interrupt_is_pending_while_its_line_is_high() {
    let mut gic = with_enabled(&[SPI]);
    assert_eq!(gic.set_level(0, SPI, true), 0b01, "its target is kicked");
    assert!(pending(&mut gic, 0, SPI) && gic.has_pending(0));
    assert_eq!(gic.set_level(0, SPI, true), 0, "still high: nothing new");
    assert_eq!(gic.set_level(0, SPI, false), 0);
    assert!(!pending(&mut gic, 0, SPI) && !gic.in_flight(0, SPI));
    let mut lrs = [ListReg::default(); 4];
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty(), "gone before it was delivered");
}

#[test]
fn a_level_interrupt_asks_for_eoi_maintenance_and_an_edge_one_does_not() {
    let mut gic = with_enabled(&[SPI, SPI + 1]);
    gic.set_level(0, SPI, true);
    gic.raise(0, SPI + 1, 0);
    let lrs = flushed(&mut gic, 0);
    let eoi: Vec<(u32, bool)> = lrs[..2]
        .iter()
        .map(|lr| (lr.intid, lr.eoi_maintenance))
        .collect();
    assert_eq!(eoi, [(SPI, true), (SPI + 1, false)]);
}

#[test]
fn a_line_that_drops_before_the_guest_takes_the_interrupt_takes_it_back() {
    let mut gic = with_enabled(&[SPI]);
    gic.set_level(0, SPI, true);
    let mut lrs = flushed(&mut gic, 0);
    gic.sync(0, &mut lrs);
    gic.set_level(0, SPI, false);
    gic.flush(0, &mut lrs);
    assert!(live(&lrs).is_empty(), "withdrawn from the list register");
    assert!(!gic.in_flight(0, SPI));
}

#[test]
fn a_line_that_drops_while_the_vcpu_runs_withdraws_at_sync_unless_taken() {
    let mut gic = with_enabled(&[SPI, SPI + 1]);
    gic.set_level(0, SPI, true);
    gic.set_level(0, SPI + 1, true);
    let mut lrs = flushed(&mut gic, 0);
    // Both drop while the guest runs; meanwhile it takes SPI + 1.
    gic.set_level(0, SPI, false);
    gic.set_level(0, SPI + 1, false);
    assert_eq!(take(&mut gic, 0, &mut lrs, 1), 0);
    assert_eq!(live(&lrs), [(SPI + 1, LrState::Active)]);
    complete_all(&mut lrs);
    gic.sync(0, &mut lrs);
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty(), "low at completion: done");
}

#[test]
fn a_level_interrupt_completed_with_its_line_high_is_delivered_again() {
    let mut gic = with_enabled(&[SPI]);
    gic.set_level(0, SPI, true);
    let mut lrs = flushed(&mut gic, 0);
    assert_eq!(take(&mut gic, 0, &mut lrs, 0), 0);
    assert!(
        !pending(&mut gic, 0, SPI),
        "taken; the line is heard at EOI"
    );
    complete_all(&mut lrs);
    assert_eq!(gic.sync(0, &mut lrs), 0b01, "pending again: kick");
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)]);
    // Lowered while active this time: it ends with its completion.
    take(&mut gic, 0, &mut lrs, 0);
    gic.set_level(0, SPI, false);
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Active)], "active stays");
    complete_all(&mut lrs);
    assert_eq!(gic.sync(0, &mut lrs), 0);
    assert!(!gic.in_flight(0, SPI));
}

#[test]
fn a_level_spi_completed_with_its_line_high_kicks_its_new_target() {
    let mut gic = with_enabled(&[SPI]);
    gic.set_level(0, SPI, true);
    let mut lrs0 = flushed(&mut gic, 0);
    take(&mut gic, 0, &mut lrs0, 0);
    route(&mut gic, SPI, 1);
    complete_all(&mut lrs0);
    assert_eq!(gic.sync(0, &mut lrs0), 0b10);
    let lrs1 = flushed(&mut gic, 1);
    assert_eq!(live(&lrs1), [(SPI, LrState::Pending)]);
}

#[test]
fn icpendr_clears_only_the_latch_of_a_level_interrupt() {
    let mut gic = with_enabled(&[SPI]);
    gic.set_level(0, SPI, true);
    set_bit(&mut gic, 0, ICPENDR, SPI);
    assert!(pending(&mut gic, 0, SPI), "the line keeps it pending");
    gic.set_level(0, SPI, false);
    assert!(!pending(&mut gic, 0, SPI));
    // The latch (ISPENDR) keeps it pending with the line low.
    set_bit(&mut gic, 0, ISPENDR, SPI);
    gic.set_level(0, SPI, true);
    gic.set_level(0, SPI, false);
    assert!(pending(&mut gic, 0, SPI), "latched");
    set_bit(&mut gic, 0, ICPENDR, SPI);
    assert!(!pending(&mut gic, 0, SPI));
}

#[test]
fn an_edge_configured_line_latches_on_its_rising_edge() {
    let mut gic = with_enabled(&[SPI]);
    configure(&mut gic, SPI, true);
    assert_eq!(gic.set_level(0, SPI, true), 0b01);
    gic.set_level(0, SPI, false);
    assert!(pending(&mut gic, 0, SPI), "an edge stays latched");
    let mut lrs = flushed(&mut gic, 0);
    assert!(!lrs[0].eoi_maintenance);
    complete_all(&mut lrs);
    gic.set_level(0, SPI, true);
    assert_eq!(gic.sync(0, &mut lrs), 0, "no line following");
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)], "the second edge");
    complete_all(&mut lrs);
    gic.sync(0, &mut lrs);
    assert_eq!(gic.set_level(0, SPI, true), 0, "high already: no edge");
    assert!(!gic.in_flight(0, SPI));
}

#[test]
fn configuring_level_with_the_line_high_makes_it_pending() {
    let mut gic = with_enabled(&[SPI]);
    configure(&mut gic, SPI, true);
    gic.set_level(0, SPI, true);
    set_bit(&mut gic, 0, ICPENDR, SPI);
    assert!(!pending(&mut gic, 0, SPI));
    configure(&mut gic, SPI, false);
    assert!(pending(&mut gic, 0, SPI));
    assert_eq!(
        gic.config_register(0, 32, None).0 >> (2 * (SPI - 32)) & 3,
        0
    );
}

#[test]
fn set_level_ignores_sgis_and_unsupported_intids_and_vcpus() {
    let mut gic = with_enabled(&[1, SPI]);
    assert_eq!(gic.set_level(0, 1, true), 0);
    assert!(!gic.in_flight(0, 1), "SGIs have no line");
    assert_eq!(gic.set_level(0, INTIDS, true), 0);
    assert_eq!(gic.set_level(0, u32::MAX, true), 0);
    assert_eq!(gic.set_level(2, SPI, true), 0);
    assert!(!gic.in_flight(0, SPI));
}

#[test]
fn a_level_ppi_is_per_vcpu() {
    let mut gic = enabled(2);
    set_bit(&mut gic, 1, ISENABLER, TIMER);
    assert_eq!(gic.set_level(1, TIMER, true), 0b10);
    assert!(!gic.in_flight(0, TIMER) && gic.in_flight(1, TIMER));
}

#[test]
fn a_level_interrupt_released_by_a_vcpu_that_turns_off_follows_its_line() {
    let mut gic = with_enabled(&[SPI, SPI + 1]);
    gic.set_level(0, SPI, true);
    gic.set_level(0, SPI + 1, true);
    let mut lrs = flushed(&mut gic, 0);
    take(&mut gic, 0, &mut lrs, 1);
    gic.set_level(0, SPI + 1, false);
    route(&mut gic, SPI, 1);
    route(&mut gic, SPI + 1, 1);
    assert_eq!(gic.release_lrs(0), 0b10);
    assert!(gic.in_flight(1, SPI), "its line is high");
    assert!(!gic.in_flight(1, SPI + 1), "its line dropped");
}

#[test]
fn an_interrupt_disabled_while_active_stays_active_and_is_not_given_again() {
    let mut gic = with_enabled(&[SPI]);
    gic.raise(0, SPI, 0);
    let mut lrs = flushed(&mut gic, 0);
    take(&mut gic, 0, &mut lrs, 0);
    set_bit(&mut gic, 0, ICENABLER, SPI);
    gic.raise(0, SPI, 0);
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert_eq!(live(&lrs), [(SPI, LrState::Active)], "not pending-active");
    assert!(active(&mut gic, 0, SPI) && pending(&mut gic, 0, SPI));
    complete_all(&mut lrs);
    gic.sync(0, &mut lrs);
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty(), "disabled: not given again");
    assert!(!active(&mut gic, 0, SPI) && pending(&mut gic, 0, SPI));
    assert_eq!(set_bit(&mut gic, 0, ISENABLER, SPI), 0b01);
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)]);
}

#[test]
fn an_interrupt_disabled_while_pending_in_a_list_register_is_taken_back() {
    let mut gic = with_enabled(&[SPI, SPI + 1]);
    gic.raise(0, SPI, 0);
    gic.set_level(0, SPI + 1, true);
    let mut lrs = flushed(&mut gic, 0);
    gic.sync(0, &mut lrs);
    set_bit(&mut gic, 0, ICENABLER, SPI);
    set_bit(&mut gic, 0, ICENABLER, SPI + 1);
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty(), "not delivered while disabled");
    assert!(pending(&mut gic, 0, SPI) && pending(&mut gic, 0, SPI + 1));
    assert!(!gic.has_pending(0));
    assert_eq!(set_bit(&mut gic, 0, ISENABLER, SPI), 0b01);
    assert_eq!(set_bit(&mut gic, 0, ISENABLER, SPI + 1), 0b01);
    gic.flush(0, &mut lrs);
    assert_eq!(
        live(&lrs),
        [(SPI, LrState::Pending), (SPI + 1, LrState::Pending)]
    );
}

#[test]
fn a_withdrawn_spi_is_not_given_to_another_vcpu_before_its_holder_lets_go() {
    let mut gic = with_enabled(&[SPI]);
    gic.raise(0, SPI, 0);
    let mut lrs0 = flushed(&mut gic, 0);
    // vCPU 0 runs with SPI pending in its list register; vCPU 1 disables,
    // reroutes and enables it again.
    set_bit(&mut gic, 1, ICENABLER, SPI);
    route(&mut gic, SPI, 1);
    set_bit(&mut gic, 1, ISENABLER, SPI);
    let lrs1 = flushed(&mut gic, 1);
    assert!(live(&lrs1).is_empty(), "vCPU 0 may still take it");
    // vCPU 0 took it meanwhile: it keeps it.
    take(&mut gic, 0, &mut lrs0, 0);
    assert_eq!(live(&lrs0), [(SPI, LrState::Active)]);
    assert!(!pending(&mut gic, 0, SPI), "delivered once");
}

#[test]
fn disabling_while_the_vcpu_runs_withdraws_at_sync_what_it_did_not_take() {
    let mut gic = with_enabled(&[SPI]);
    gic.raise(0, SPI, 0);
    let mut lrs = flushed(&mut gic, 0);
    set_bit(&mut gic, 1, ICENABLER, SPI);
    gic.sync(0, &mut lrs);
    assert!(live(&lrs).is_empty());
    assert!(pending(&mut gic, 0, SPI) && !gic.has_pending(0));
}

#[test]
fn an_interrupt_active_in_the_distributor_waits_for_icactiver() {
    let mut gic = with_enabled(&[SPI]);
    set_bit(&mut gic, 0, ISACTIVER, SPI);
    assert_eq!(gic.raise(0, SPI, 0), 0);
    let mut lrs = [ListReg::default(); 4];
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty(), "active: not taken again");
    assert!(!gic.has_pending(0));
    assert_eq!(set_bit(&mut gic, 0, ICACTIVER, SPI), 0b01);
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)]);
}

#[test]
fn icactiver_of_a_level_interrupt_with_its_line_high_makes_it_pending_again() {
    let mut gic = with_enabled(&[SPI]);
    gic.set_level(0, SPI, true);
    let mut lrs = flushed(&mut gic, 0);
    take(&mut gic, 0, &mut lrs, 0);
    // As Linux's gic_dist_init does, every word.
    for word in 0..3 {
        gic.bits_register(0, ICACTIVER + 4 * word, Some(u32::MAX));
    }
    assert!(!active(&mut gic, 0, SPI));
    // Pending again once the clear reaches the list register: at once.
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)]);
}

/// ICACTIVER from another vCPU empties the list register of the vCPU that
/// holds a level SPI, but that vCPU's hardware still holds it (active)
/// until its next flush: the SPI, routed elsewhere meanwhile with its line
/// high, is not given to a second vCPU before then (found by
/// `fuzz_vgic_v3` with 6000 cases).
#[test]
fn an_spi_whose_active_state_is_cleared_stays_with_its_holder_until_it_flushes() {
    let mut gic = with_enabled(&[SPI]);
    gic.set_level(0, SPI, true);
    let mut lrs0 = flushed(&mut gic, 0);
    take(&mut gic, 0, &mut lrs0, 0);
    route(&mut gic, SPI, 1);
    set_bit(&mut gic, 1, ICACTIVER, SPI);
    assert!(!active(&mut gic, 1, SPI), "reads back cleared");
    assert!(gic.in_flight(0, SPI), "vCPU 0's hardware may still hold it");
    let mut lrs1 = flushed(&mut gic, 1);
    assert!(live(&lrs1).is_empty(), "not given twice");
    let flushed0 = gic.flush(0, &mut lrs0);
    assert!(
        live(&lrs0).is_empty(),
        "the clear reaches vCPU 0's hardware"
    );
    assert_eq!(flushed0.effects.kick, 0b10, "its line is high: to vCPU 1");
    gic.flush(1, &mut lrs1);
    assert_eq!(live(&lrs1), [(SPI, LrState::Pending)]);
}

/// The same for ICPENDR on an edge SPI the holder has not taken, while
/// the holder runs: raised again and routed elsewhere, it waits for the
/// holder's sync, where the clear stands.
#[test]
fn an_spi_whose_pending_state_is_cleared_stays_with_its_running_holder_until_it_syncs() {
    let mut gic = with_enabled(&[SPI]);
    gic.raise(0, SPI, 0);
    let mut lrs0 = flushed(&mut gic, 0);
    route(&mut gic, SPI, 1);
    set_bit(&mut gic, 1, ICPENDR, SPI);
    gic.raise(1, SPI, 0);
    let mut lrs1 = flushed(&mut gic, 1);
    assert!(live(&lrs1).is_empty(), "not given twice");
    assert_eq!(gic.sync(0, &mut lrs0), 0b10, "raised meanwhile: to vCPU 1");
    assert!(live(&lrs0).is_empty(), "the clear stands");
    gic.flush(1, &mut lrs1);
    assert_eq!(live(&lrs1), [(SPI, LrState::Pending)]);
}

#[test]
fn spi_state_is_made_on_first_change_and_reads_as_reset_until_then() {
    let mut gic = enabled(1);
    assert!(gic.spis.is_none(), "a new model keeps no SPI state");
    assert_eq!(gic.irq(0, SPI), Some(&Irq::default()));
    assert!(gic.irq(0, 96).is_none(), "past the last SPI");
    assert!(gic.spis.is_none(), "reading made none");
    set_priority(&mut gic, 0, SPI, 0xa0);
    assert!(gic.spis.is_some());
    assert_eq!(gic.priority_byte(0, SPI, None), 0xa0);
    assert_eq!(gic.priority_byte(0, SPI + 1, None), 0, "the others reset");
    assert_eq!(read(&mut gic, 0, ISENABLER, SPI), 0);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    assert_eq!(read(&mut gic, 0, ISENABLER, SPI), 1 << (SPI % 32));
}

/// Random raises, line changes, distributor writes, guest acknowledges and
/// completions, syncs and flushes on two vCPUs, applied to two models: one
/// flushes as the hypervisor does, skipping the take-back when nothing is
/// in the list registers, the other always takes back. Every answer and
/// every list register stays the same.
#[test]
fn flushing_empty_list_registers_without_taking_back_changes_nothing() {
    const VCPUS: usize = 2;
    const LRS: usize = 4;
    let intids = [3, TIMER, SPI, SPI + 1, SPI + 2];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..200 {
        let mut gics = [enabled(VCPUS), enabled(VCPUS)];
        let mut lrs = [[[ListReg::default(); LRS]; VCPUS]; 2];
        for gic in &mut gics {
            for &intid in &intids {
                set_bit(gic, 0, ISENABLER, intid);
                set_bit(gic, 1, ISENABLER, intid);
            }
        }
        for step in 0..300 {
            let vcpu = next(VCPUS as u64) as usize;
            let intid = intids[next(intids.len() as u64) as usize];
            let op = next(9);
            let slot = next(LRS as u64) as usize;
            let answers: Vec<String> = (0..2)
                .map(|m| {
                    let (gic, lrs) = (&mut gics[m], &mut lrs[m][vcpu]);
                    match op {
                        0 => format!("{}", gic.raise(vcpu, intid, 0)),
                        1 => format!("{}", gic.set_level(vcpu, intid, step % 2 == 0)),
                        2 => format!("{}", set_bit(gic, vcpu, ICPENDR, intid)),
                        3 => format!("{}", set_bit(gic, vcpu, ICACTIVER, intid)),
                        4 => format!("{}", set_bit(gic, vcpu, ISENABLER + 0x80, intid)),
                        5 => {
                            // The guest acknowledges or completes an entry.
                            let lr = &mut lrs[slot];
                            lr.state = match lr.state {
                                LrState::Pending => LrState::Active,
                                LrState::PendingActive => LrState::Pending,
                                _ => LrState::Invalid,
                            };
                            String::new()
                        }
                        6 => {
                            let kick = gic.sync(vcpu, lrs);
                            for lr in lrs.iter_mut().filter(|lr| lr.is_free()) {
                                *lr = ListReg::default();
                            }
                            format!("{kick}")
                        }
                        7 => format!("{}", set_bit(gic, vcpu, ISENABLER, intid)),
                        _ => {
                            let flushed = gic.flush_with(vcpu, lrs, m == 0);
                            format!("{:?} {:?}", flushed.waiting, flushed.effects)
                        }
                    }
                })
                .collect();
            assert_eq!(
                answers[0], answers[1],
                "round {round} step {step}: op {op} on vCPU {vcpu}, INTID {intid}"
            );
            assert_eq!(lrs[0], lrs[1], "round {round} step {step}: op {op}");
        }
    }
}
