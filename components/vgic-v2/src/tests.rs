//! Host tests of the distributor model and the list-register policy.

use super::*;
use hv::vgic::LrState;

const ISENABLER: u64 = 0x100;
const ICENABLER: u64 = 0x180;
const ISPENDR: u64 = 0x200;
const ICPENDR: u64 = 0x280;
const ISACTIVER: u64 = 0x300;
const ICACTIVER: u64 = 0x380;
const IPRIORITY: u64 = 0x400;
const ITARGETS: u64 = 0x800;
const ICFGR0: u64 = 0xc00;

const TIMER: u32 = 27;
const SPI: u32 = 40;

fn read(gic: &mut VgicV2, vcpu: usize, offset: u64) -> u64 {
    gic.read_register(vcpu, offset, 4)
}

fn write(gic: &mut VgicV2, vcpu: usize, offset: u64, value: u64) -> Effects {
    gic.write_register(vcpu, offset, 4, value)
}

/// The register and bit of `intid` in a 1-bit-per-INTID family.
fn bit(family: u64, intid: u32) -> (u64, u64) {
    (family + u64::from(intid / 32) * 4, 1 << (intid % 32))
}

fn set_bit(gic: &mut VgicV2, vcpu: usize, family: u64, intid: u32) -> Effects {
    let (offset, mask) = bit(family, intid);
    write(gic, vcpu, offset, mask)
}

fn bit_is_set(gic: &mut VgicV2, vcpu: usize, family: u64, intid: u32) -> bool {
    let (offset, mask) = bit(family, intid);
    read(gic, vcpu, offset) & mask != 0
}

fn set_priority(gic: &mut VgicV2, vcpu: usize, intid: u32, priority: u8) {
    gic.write_register(vcpu, IPRIORITY + u64::from(intid), 1, priority.into());
}

/// A VM with the distributor on.
fn enabled(vcpus: usize) -> VgicV2 {
    let mut gic = VgicV2::new(vcpus);
    write(&mut gic, 0, CTLR, 1);
    gic
}

/// A VM with the distributor and `intids` enabled on vCPU 0, SPIs routed
/// to vCPU 0.
fn with_enabled(intids: &[u32]) -> VgicV2 {
    let mut gic = enabled(2);
    for &intid in intids {
        set_bit(&mut gic, 0, ISENABLER, intid);
        gic.write_register(0, ITARGETS + u64::from(intid), 1, 1);
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

// ---- register semantics ----

#[test]
fn typer_reports_64_spis_and_the_vcpu_count() {
    assert_eq!(read(&mut VgicV2::new(1), 0, TYPER), 2);
    assert_eq!(read(&mut VgicV2::new(4), 0, TYPER), 2 | 3 << 5);
    assert_eq!(read(&mut VgicV2::new(8), 0, TYPER), 2 | 7 << 5);
}

#[test]
fn iidr_and_id_registers_identify_a_gic400() {
    let mut gic = VgicV2::new(1);
    assert_eq!(read(&mut gic, 0, IIDR), 0x0200_143b);
    assert_eq!(read(&mut gic, 0, 0xfe8) >> 4, 2, "PIDR2 ArchRev = GICv2");
    let cidr: Vec<u64> = (0..4).map(|i| read(&mut gic, 0, 0xff0 + 4 * i)).collect();
    assert_eq!(cidr, [0x0d, 0xf0, 0x05, 0xb1]);
    assert_eq!(read(&mut gic, 0, 0xfd0), 0x04, "PIDR4");
    assert_eq!(read(&mut gic, 0, 0xfe0), 0x90, "PIDR0");
}

#[test]
fn id_and_type_registers_ignore_writes() {
    let mut gic = VgicV2::new(2);
    write(&mut gic, 0, TYPER, 0xffff);
    write(&mut gic, 0, 0xfe8, 0);
    assert_eq!(read(&mut gic, 0, TYPER), 2 | 1 << 5);
    assert_eq!(read(&mut gic, 0, 0xfe8), 0x2b);
}

#[test]
fn ctlr_keeps_only_the_enable_bit() {
    let mut gic = VgicV2::new(1);
    assert_eq!(read(&mut gic, 0, CTLR), 0, "disabled at reset");
    write(&mut gic, 0, CTLR, 0xffff_ffff);
    assert_eq!(read(&mut gic, 0, CTLR), 1);
    write(&mut gic, 0, CTLR, 0);
    assert_eq!(read(&mut gic, 0, CTLR), 0);
}

#[test]
fn sgis_read_as_always_enabled() {
    let mut gic = VgicV2::new(1);
    assert_eq!(read(&mut gic, 0, ISENABLER), 0xffff);
    write(&mut gic, 0, ICENABLER, 0xffff_ffff);
    assert_eq!(read(&mut gic, 0, ISENABLER), 0xffff);
}

#[test]
fn isenabler_sets_and_icenabler_clears_only_the_written_ones() {
    let mut gic = VgicV2::new(1);
    write(&mut gic, 0, ISENABLER + 4, 0b1010);
    write(&mut gic, 0, ISENABLER + 4, 0b0100);
    assert_eq!(read(&mut gic, 0, ISENABLER + 4), 0b1110);
    write(&mut gic, 0, ICENABLER + 4, 0b0010);
    assert_eq!(
        read(&mut gic, 0, ICENABLER + 4),
        0b1100,
        "reads as ISENABLER"
    );
}

#[test]
fn private_enables_are_banked_and_spi_enables_shared() {
    let mut gic = VgicV2::new(2);
    set_bit(&mut gic, 0, ISENABLER, TIMER);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    assert!(bit_is_set(&mut gic, 0, ISENABLER, TIMER));
    assert!(!bit_is_set(&mut gic, 1, ISENABLER, TIMER));
    assert!(bit_is_set(&mut gic, 1, ISENABLER, SPI));
}

#[test]
fn ispendr_sets_and_icpendr_clears_pending() {
    let mut gic = VgicV2::new(1);
    set_bit(&mut gic, 0, ISPENDR, SPI);
    set_bit(&mut gic, 0, ISPENDR, TIMER);
    assert!(bit_is_set(&mut gic, 0, ISPENDR, SPI));
    assert!(bit_is_set(&mut gic, 0, ICPENDR, TIMER));
    set_bit(&mut gic, 0, ICPENDR, SPI);
    assert!(!bit_is_set(&mut gic, 0, ISPENDR, SPI));
    assert!(bit_is_set(&mut gic, 0, ISPENDR, TIMER));
}

#[test]
fn ispendr_and_icpendr_ignore_sgi_bits() {
    let mut gic = VgicV2::new(1);
    write(&mut gic, 0, ISPENDR, 0xffff);
    assert_eq!(read(&mut gic, 0, ISPENDR), 0);
    gic.raise(0, 3);
    write(&mut gic, 0, ICPENDR, 0xffff);
    assert_eq!(read(&mut gic, 0, ISPENDR), 1 << 3);
}

#[test]
fn isactiver_sets_and_icactiver_clears_active() {
    let mut gic = VgicV2::new(1);
    set_bit(&mut gic, 0, ISACTIVER, SPI);
    assert!(bit_is_set(&mut gic, 0, ICACTIVER, SPI));
    assert!(gic.in_flight(0, SPI));
    set_bit(&mut gic, 0, ICACTIVER, SPI);
    assert!(!bit_is_set(&mut gic, 0, ISACTIVER, SPI));
    assert!(!gic.in_flight(0, SPI));
}

#[test]
fn igroupr_stores_what_is_written() {
    let mut gic = VgicV2::new(2);
    write(&mut gic, 0, IGROUPR + 4, 0xdead_beef);
    assert_eq!(read(&mut gic, 1, IGROUPR + 4), 0xdead_beef);
    write(&mut gic, 0, IGROUPR, 0xffff_ffff);
    assert_eq!(read(&mut gic, 1, IGROUPR), 0, "banked");
}

#[test]
fn priority_bytes_and_words_agree_and_keep_the_top_5_bits() {
    let mut gic = VgicV2::new(1);
    set_priority(&mut gic, 0, SPI, 0xa7);
    assert_eq!(gic.read_register(0, IPRIORITY + u64::from(SPI), 1), 0xa0);
    write(&mut gic, 0, IPRIORITY + 44, 0x1020_3040);
    assert_eq!(gic.read_register(0, IPRIORITY + 44, 1), 0x40);
    assert_eq!(gic.read_register(0, IPRIORITY + 47, 1), 0x10);
    assert_eq!(read(&mut gic, 0, IPRIORITY + 40), 0xa0);
}

#[test]
fn private_priorities_are_banked() {
    let mut gic = VgicV2::new(2);
    set_priority(&mut gic, 1, TIMER, 0x80);
    assert_eq!(gic.read_register(1, IPRIORITY + u64::from(TIMER), 1), 0x80);
    assert_eq!(gic.read_register(0, IPRIORITY + u64::from(TIMER), 1), 0);
}

#[test]
fn itargetsr_reads_the_own_bit_for_private_interrupts_and_ignores_writes() {
    let mut gic = VgicV2::new(4);
    write(&mut gic, 2, ITARGETS, 0x0101_0101);
    assert_eq!(read(&mut gic, 2, ITARGETS), 0x0404_0404);
    assert_eq!(gic.read_register(3, ITARGETS + 31, 1), 0x08);
}

#[test]
fn itargetsr_keeps_spi_targets_masked_to_existing_vcpus() {
    let mut gic = VgicV2::new(2);
    assert_eq!(read(&mut gic, 0, ITARGETS + 32), 0, "no target at reset");
    write(&mut gic, 0, ITARGETS + 32, 0xff02_0301);
    assert_eq!(read(&mut gic, 1, ITARGETS + 32), 0x0302_0301);
}

#[test]
fn icfgr_sgis_are_edge_and_read_only_others_keep_the_config_bit() {
    let mut gic = VgicV2::new(1);
    assert_eq!(read(&mut gic, 0, ICFGR0), 0xaaaa_aaaa);
    write(&mut gic, 0, ICFGR0, 0);
    assert_eq!(read(&mut gic, 0, ICFGR0), 0xaaaa_aaaa);
    write(&mut gic, 0, ICFGR0 + 8, 0xffff_0003);
    assert_eq!(read(&mut gic, 0, ICFGR0 + 8), 0xaaaa_0002);
    assert_eq!(read(&mut gic, 0, ICFGR0 + 4), 0, "PPIs level at reset");
}

#[test]
fn unsupported_widths_and_misaligned_accesses_read_zero_and_ignore_writes() {
    let mut gic = VgicV2::new(1);
    write(&mut gic, 0, CTLR, 1);
    assert_eq!(gic.read_register(0, CTLR, 1), 0);
    assert_eq!(gic.read_register(0, CTLR, 2), 0);
    assert_eq!(gic.read_register(0, TYPER, 8), 0);
    gic.write_register(0, ISENABLER + 4, 1, 0xff);
    gic.write_register(0, ISENABLER + 6, 4, 0xff);
    assert_eq!(read(&mut gic, 0, ISENABLER + 4), 0);
    gic.write_register(0, IPRIORITY, 2, 0xffff);
    assert_eq!(read(&mut gic, 0, IPRIORITY), 0);
}

#[test]
fn registers_past_the_supported_intids_read_zero() {
    let mut gic = VgicV2::new(1);
    write(&mut gic, 0, ISENABLER + 12, 0xffff_ffff);
    assert_eq!(read(&mut gic, 0, ISENABLER + 12), 0);
    gic.write_register(0, IPRIORITY + 96, 1, 0xff);
    assert_eq!(gic.read_register(0, IPRIORITY + 96, 1), 0);
    assert_eq!(read(&mut gic, 0, 0xd00), 0, "reserved");
    assert_eq!(gic.read_register(0, 0x2000, 4), 0, "outside the frame");
}

#[test]
fn sgir_reads_as_zero() {
    let mut gic = enabled(2);
    write(&mut gic, 0, SGIR, 2 << 24 | 5);
    assert_eq!(read(&mut gic, 0, SGIR), 0);
}

// ---- SGIs ----

fn sgi_sources(gic: &mut VgicV2, vcpu: usize, sgi: u64) -> u64 {
    gic.read_register(vcpu, SPENDSGIR.start + sgi, 1)
}

#[test]
fn sgir_target_list_sets_the_senders_bit_on_each_target_and_kicks_them() {
    let mut gic = enabled(4);
    let effects = write(&mut gic, 1, SGIR, 0b1100 << 16 | 7);
    assert_eq!(effects.kick, 0b1100);
    assert_eq!(sgi_sources(&mut gic, 2, 7), 1 << 1);
    assert_eq!(sgi_sources(&mut gic, 3, 7), 1 << 1);
    assert_eq!(sgi_sources(&mut gic, 0, 7), 0);
}

#[test]
fn sgir_all_but_self_skips_the_sender() {
    let mut gic = enabled(3);
    let effects = write(&mut gic, 1, SGIR, 1 << 24 | 2);
    assert_eq!(effects.kick, 0b101);
    assert_eq!(sgi_sources(&mut gic, 0, 2), 1 << 1);
    assert_eq!(sgi_sources(&mut gic, 1, 2), 0);
    assert_eq!(sgi_sources(&mut gic, 2, 2), 1 << 1);
}

#[test]
fn sgir_self_targets_only_the_sender() {
    let mut gic = enabled(3);
    let effects = write(&mut gic, 2, SGIR, 2 << 24 | 0b111 << 16 | 9);
    assert_eq!(effects.kick, 0b100);
    assert_eq!(sgi_sources(&mut gic, 2, 9), 1 << 2);
    assert_eq!(sgi_sources(&mut gic, 0, 9), 0);
}

#[test]
fn sgir_ignores_the_reserved_filter_and_missing_vcpus() {
    let mut gic = enabled(2);
    assert_eq!(write(&mut gic, 0, SGIR, 3 << 24 | 0xff << 16).kick, 0);
    assert_eq!(write(&mut gic, 0, SGIR, 0xfc << 16).kick, 0);
    assert!(!gic.has_pending(0) && !gic.has_pending(1));
}

#[test]
fn sgis_pend_per_source_and_reach_the_list_register_with_it() {
    let mut gic = enabled(3);
    write(&mut gic, 1, SGIR, 1 << 16 | 4);
    write(&mut gic, 2, SGIR, 1 << 16 | 4);
    assert_eq!(sgi_sources(&mut gic, 0, 4), 0b110);
    assert_eq!(read(&mut gic, 0, ISPENDR), 1 << 4);
    let mut lrs = [ListReg::default(); 4];
    assert!(gic.flush(0, &mut lrs).waiting, "the second source waits");
    assert_eq!((lrs[0].intid, lrs[0].source), (4, 1));
    assert_eq!(live(&lrs).len(), 1, "one list register per INTID");
    gic.sync(0, &mut lrs);
    complete_all(&mut lrs);
    gic.sync(0, &mut lrs);
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert_eq!((lrs[0].intid, lrs[0].source), (4, 2));
}

#[test]
fn spendsgir_and_cpendsgir_set_and_clear_sources() {
    let mut gic = enabled(2);
    let effects = gic.write_register(1, SPENDSGIR.start + 3, 1, 0b11);
    assert_eq!(effects.kick, 0b10);
    assert_eq!(read(&mut gic, 1, SPENDSGIR.start), 0b11 << 24);
    gic.write_register(1, CPENDSGIR.start + 3, 1, 0b01);
    assert_eq!(read(&mut gic, 1, CPENDSGIR.start), 0b10 << 24);
    assert_eq!(sgi_sources(&mut gic, 0, 3), 0, "banked");
}

// ---- delivery (the policy itself is tested in vgic-model) ----

#[test]
fn distributor_disabled_delivers_nothing() {
    let mut gic = with_enabled(&[TIMER, SPI]);
    write(&mut gic, 0, CTLR, 0);
    assert_eq!(gic.raise(0, TIMER).kick, 0);
    write(&mut gic, 0, SGIR, 2 << 24);
    let mut lrs = [ListReg::default(); 4];
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty());
    assert!(!gic.has_pending(0));
    assert_eq!(write(&mut gic, 0, CTLR, 1).kick, 0b01, "enabling kicks");
    assert!(gic.has_pending(0));
}

#[test]
fn raise_of_an_spi_goes_to_its_lowest_target_and_kicks_it() {
    let mut gic = enabled(4);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    gic.write_register(0, ITARGETS + u64::from(SPI), 1, 0b1100);
    assert_eq!(gic.raise(0, SPI).kick, 0b0100);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(3, &mut lrs);
    assert!(live(&lrs).is_empty(), "not for vCPU 3");
    gic.flush(2, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)]);
}

#[test]
fn an_spi_without_a_target_waits_until_routed() {
    let mut gic = enabled(2);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    assert_eq!(gic.raise(0, SPI).kick, 0);
    assert!(!gic.has_pending(0) && !gic.has_pending(1));
    let effects = gic.write_register(0, ITARGETS + u64::from(SPI), 1, 0b10);
    assert_eq!(effects.kick, 0b10);
    assert!(gic.has_pending(1));
}

#[test]
fn the_trait_takes_guest_physical_addresses_in_the_distributor_frame() {
    let mut gic = VgicV2::new(1);
    let base = abi::GUEST_GICD_BASE;
    assert!(handles(&gic, base) && handles(&gic, base + 0xffc));
    assert!(!handles(&gic, base + DISTRIBUTOR_SIZE) && !handles(&gic, abi::GUEST_GICC_BASE));
    Vgic::write(&mut gic, 0, base, 4, 1);
    assert_eq!(
        Vgic::read(&mut gic, 0, base, 4),
        1,
        "CTLR through the trait"
    );
}

#[test]
fn the_rest_of_the_64k_frame_reads_as_zero_and_ignores_writes() {
    let mut gic = VgicV2::new(1);
    let base = abi::GUEST_GICD_BASE;
    for offset in [0x1000, 0x8f8c, 0xfffc] {
        assert!(
            handles(&gic, base + offset),
            "{offset:#x} is in QEMU's 64 KiB frame"
        );
        let effects = Vgic::write(&mut gic, 0, base + offset, 4, u64::MAX);
        assert_eq!(effects.kick, 0);
        assert_eq!(Vgic::read(&mut gic, 0, base + offset, 4), 0);
    }
    // Nothing aliased the real registers.
    assert_eq!(Vgic::read(&mut gic, 0, base, 4), 0, "GICD_CTLR untouched");
}

/// Whether `ipa` is in a frame the vGIC puts in the VM's device table.
fn handles(gic: &impl Vgic, ipa: u64) -> bool {
    gic.windows().iter().any(|w| w.contains(ipa))
}

/// What Linux's GIC driver writes at boot (gic_dist_init, gic_cpu_init):
/// every SPI and private interrupt deactivated and disabled through
/// ICACTIVER and ICENABLER, SPI configuration from the device tree
/// (level-high: Int_config 0), then its interrupt enabled. A device's line
/// then delivers as level, and an edge configuration as an edge.
#[test]
fn linux_style_set_up_then_level_and_edge_lines() {
    let mut gic = VgicV2::new(2);
    for word in 0..3 {
        write(&mut gic, 0, ICACTIVER + 4 * word, 0xffff_ffff);
        write(&mut gic, 0, ICENABLER + 4 * word, 0xffff_ffff);
    }
    // ICFGR2 (INTIDs 32..47): SPI 40 level, SPI 41 edge.
    write(&mut gic, 0, ICFGR0 + 8, 2 << (2 * (SPI + 1 - 32)));
    write(&mut gic, 0, CTLR, 1);
    for intid in [SPI, SPI + 1] {
        gic.write_register(0, ITARGETS + u64::from(intid), 1, 1);
        set_bit(&mut gic, 0, ISENABLER, intid);
    }
    assert_eq!(gic.set_level(0, SPI, true).kick, 0b01);
    assert_eq!(gic.set_level(0, SPI + 1, true).kick, 0b01);
    gic.set_level(0, SPI, false);
    gic.set_level(0, SPI + 1, false);
    assert!(!bit_is_set(&mut gic, 0, ISPENDR, SPI), "level: gone");
    assert!(bit_is_set(&mut gic, 0, ISPENDR, SPI + 1), "edge: latched");
    // Level again, and completed with the line high: delivered again.
    gic.set_level(0, SPI, true);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    assert_eq!(
        live(&lrs),
        [(SPI, LrState::Pending), (SPI + 1, LrState::Pending)]
    );
    assert!(lrs[0].eoi_maintenance && !lrs[1].eoi_maintenance);
    complete_all(&mut lrs);
    assert_eq!(gic.sync(0, &mut lrs).kick, 0b01);
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)]);
    // ICACTIVER of an entry the guest took: done, but its line is high.
    lrs[0].state = LrState::Active;
    gic.sync(0, &mut lrs);
    // It is pending again once the clear reaches the list register (at the
    // writer's next entry, before it can read ISPENDR).
    write(&mut gic, 0, ICACTIVER + 4, 1 << (SPI - 32));
    assert!(!bit_is_set(&mut gic, 0, ISACTIVER, SPI));
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)]);
}
