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
    assert!(!gic.flush(0, &mut lrs));
    assert!(live(&lrs).is_empty());
    assert!(!gic.has_pending(0));
    gic.routing.enabled = true;
    assert_eq!(gic.pending_vcpus(), 0b01);
    assert!(gic.has_pending(0));
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
    assert!(!gic.flush(0, &mut lrs));
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
    assert!(gic.flush(0, &mut lrs));
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
    assert!(!gic.flush(0, &mut lrs));
    // SPI sits (active) in slot 0; slot 1 frees up later.
    lrs[0].state = LrState::Active;
    gic.sync(0, &mut lrs);
    for intid in [SPI + 1, SPI + 2, SPI + 3] {
        gic.raise(0, intid, 0);
    }
    assert!(gic.flush(0, &mut lrs), "one of the three does not fit");
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
    assert!(gic.flush(0, &mut lrs), "two did not fit");
    assert_eq!(live(&lrs).len(), 4);
    let first: Vec<u32> = lrs.iter().map(|lr| lr.intid).collect();

    // The guest runs and completes the first two.
    lrs[0].state = LrState::Invalid;
    lrs[1].state = LrState::Invalid;
    gic.sync(0, &mut lrs);
    assert!(!gic.flush(0, &mut lrs), "everything fits now");
    assert_eq!(live(&lrs).len(), 4);

    let mut seen: Vec<u32> = first[..2].to_vec();
    seen.extend(lrs.iter().map(|lr| lr.intid));
    seen.sort();
    assert_eq!(seen, intids, "each exactly once");

    complete_all(&mut lrs);
    gic.sync(0, &mut lrs);
    assert!(!gic.flush(0, &mut lrs));
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
    assert!(!gic.flush(0, &mut lrs));
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
    assert!(!gic.flush(0, &mut lrs));
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
    assert!(gic.flush(1, &mut lrs1), "waits for vCPU 0 to finish");
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
    assert!(!gic.flush(1, &mut lrs1), "nothing waits on vCPU 0");
    assert_eq!(live(&lrs1), [(SPI + 1, LrState::Pending)]);
    // Raised again, SPI goes to vCPU 1 at once.
    assert_eq!(gic.raise(0, SPI, 0), 1 << 1);
    assert!(!gic.flush(1, &mut lrs1));
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
    assert!(!gic.flush(5, &mut [ListReg::default(); 4]));
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
    assert!(!gic.in_flight(0, SPI) && !gic.in_flight(0, SPI + 1));
    gic.flush(0, &mut lrs);
    assert!(live(&lrs).is_empty());
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
