//! Host tests of the distributor and redistributor model, ICC_SGI1R_EL1
//! and the list-register policy.

use super::*;
use hv::vgic::LrState;

const D: Frame = Frame::Distributor;
const ISENABLER: u64 = 0x100;
const ICENABLER: u64 = 0x180;
const ISPENDR: u64 = 0x200;
const ICPENDR: u64 = 0x280;
const ISACTIVER: u64 = 0x300;
const ICACTIVER: u64 = 0x380;
const IPRIORITY: u64 = 0x400;
const ITARGETS: u64 = 0x800;
const ICFGR0: u64 = 0xc00;
const SGIR: u64 = 0xf00;
const PIDR2: u64 = 0xffe8;

const TIMER: u32 = 27;
const SPI: u32 = 40;

fn read(gic: &mut VgicV3, frame: Frame, offset: u64) -> u64 {
    gic.read_register(frame, offset, 4)
}

fn write(gic: &mut VgicV3, frame: Frame, offset: u64, value: u64) -> Effects {
    gic.write_register(frame, offset, 4, value)
}

/// Where `intid`'s bit of a 1-bit-per-INTID family is, as `vcpu` would
/// address it: SGI_base of its own redistributor, or the distributor.
fn bit(family: u64, vcpu: usize, intid: u32) -> (Frame, u64, u64) {
    let frame = if intid < PRIVATE { Frame::Sgi(vcpu) } else { D };
    (frame, family + u64::from(intid / 32) * 4, 1 << (intid % 32))
}

fn set_bit(gic: &mut VgicV3, vcpu: usize, family: u64, intid: u32) -> Effects {
    let (frame, offset, mask) = bit(family, vcpu, intid);
    write(gic, frame, offset, mask)
}

fn bit_is_set(gic: &mut VgicV3, vcpu: usize, family: u64, intid: u32) -> bool {
    let (frame, offset, mask) = bit(family, vcpu, intid);
    read(gic, frame, offset) & mask != 0
}

fn priority_frame(vcpu: usize, intid: u32) -> Frame {
    bit(0, vcpu, intid).0
}

fn set_priority(gic: &mut VgicV3, vcpu: usize, intid: u32, priority: u8) {
    let frame = priority_frame(vcpu, intid);
    gic.write_register(frame, IPRIORITY + u64::from(intid), 1, priority.into());
}

fn route(gic: &mut VgicV3, intid: u32, value: u64) -> Effects {
    gic.write_register(D, IROUTER.start + 8 * u64::from(intid), 8, value)
}

fn sgi1r(targets: u64, intid: u64) -> u64 {
    intid << 24 | targets
}

/// A VM with the distributor on (both groups).
fn enabled(vcpus: usize) -> VgicV3 {
    let mut gic = VgicV3::new(vcpus);
    write(&mut gic, D, GICD_CTLR, 0b11);
    gic
}

/// A 2-vCPU VM with the distributor and `intids` enabled for vCPU 0, SPIs
/// routed to vCPU 0 (the reset route).
fn with_enabled(intids: &[u32]) -> VgicV3 {
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

// ---- distributor registers ----

#[test]
fn gicd_ctlr_keeps_the_group_enables_with_are_and_ds_reading_one() {
    let mut gic = VgicV3::new(1);
    assert_eq!(read(&mut gic, D, GICD_CTLR), 0x50, "ARE and DS, disabled");
    write(&mut gic, D, GICD_CTLR, 0xffff_ffff);
    assert_eq!(read(&mut gic, D, GICD_CTLR), 0x53, "RWP reads 0");
    write(&mut gic, D, GICD_CTLR, 0b10);
    assert_eq!(read(&mut gic, D, GICD_CTLR), 0x52);
    write(&mut gic, D, GICD_CTLR, 0);
    assert_eq!(read(&mut gic, D, GICD_CTLR), 0x50, "ARE cannot be cleared");
}

#[test]
fn gicd_typer_reports_64_spis_10_bit_intids_and_no_lpis() {
    let typer = read(&mut VgicV3::new(1), D, GICD_TYPER);
    assert_eq!(typer & 0x1f, 2, "ITLinesNumber");
    assert_eq!(typer >> 19 & 0x1f, 9, "IDbits");
    assert_eq!(typer & (1 << 17), 0, "LPIS");
    assert_eq!(typer & (1 << 10), 0, "SecurityExtn");
    assert_eq!(read(&mut VgicV3::new(4), D, GICD_TYPER) >> 5 & 7, 3);
}

#[test]
fn gicd_iidr_and_pidr2_identify_a_gicv3() {
    let mut gic = VgicV3::new(1);
    assert_eq!(read(&mut gic, D, GICD_IIDR), 0x43b);
    assert_eq!(read(&mut gic, D, PIDR2), 0x3b);
    assert_eq!(read(&mut gic, D, PIDR2) >> 4, 3, "ArchRev = GICv3");
    let cidr: Vec<u64> = (0..4).map(|i| read(&mut gic, D, 0xfff0 + 4 * i)).collect();
    assert_eq!(cidr, [0x0d, 0xf0, 0x05, 0xb1]);
}

#[test]
fn gicd_id_and_type_registers_ignore_writes() {
    let mut gic = VgicV3::new(2);
    write(&mut gic, D, GICD_TYPER, 0xffff);
    write(&mut gic, D, PIDR2, 0);
    write(&mut gic, D, GICD_IIDR, 0);
    assert_eq!(read(&mut gic, D, GICD_TYPER), 2 | 1 << 5 | 9 << 19);
    assert_eq!(read(&mut gic, D, PIDR2), 0x3b);
    assert_eq!(read(&mut gic, D, GICD_IIDR), 0x43b);
}

#[test]
fn gicd_sgi_and_ppi_words_are_raz_wi_under_affinity_routing() {
    let mut gic = VgicV3::new(1);
    for family in [IGROUPR, ISENABLER, ISPENDR, ISACTIVER] {
        write(&mut gic, D, family, 0xffff_ffff);
        assert_eq!(read(&mut gic, D, family), 0, "family {family:#x}");
    }
    write(&mut gic, D, IPRIORITY + 24, 0xffff_ffff);
    assert_eq!(read(&mut gic, D, IPRIORITY + 24), 0);
    assert_eq!(read(&mut gic, D, ICFGR0), 0);
    assert_eq!(read(&mut gic, D, ICFGR0 + 4), 0);
    // The redistributor's own state is untouched.
    assert_eq!(read(&mut gic, Frame::Sgi(0), ISPENDR), 0);
    assert_eq!(read(&mut gic, Frame::Sgi(0), IGROUPR), 0xffff_ffff);
}

#[test]
fn gicd_itargetsr_and_sgir_are_raz_wi() {
    let mut gic = enabled(2);
    write(&mut gic, D, ITARGETS + 32, 0x0202_0202);
    assert_eq!(read(&mut gic, D, ITARGETS + 32), 0);
    assert_eq!(write(&mut gic, D, SGIR, 2 << 24 | 5).kick, 0);
    assert_eq!(read(&mut gic, D, SGIR), 0);
    assert!(!gic.has_pending(0));
}

#[test]
fn igroupr_resets_to_group_1_and_stores_what_is_written() {
    let mut gic = VgicV3::new(2);
    assert_eq!(read(&mut gic, D, IGROUPR + 4), 0xffff_ffff);
    write(&mut gic, D, IGROUPR + 4, 0xdead_beef);
    assert_eq!(read(&mut gic, D, IGROUPR + 4), 0xdead_beef);
}

#[test]
fn isenabler_sets_and_icenabler_clears_only_the_written_spis() {
    let mut gic = VgicV3::new(1);
    write(&mut gic, D, ISENABLER + 4, 0b1010);
    write(&mut gic, D, ISENABLER + 4, 0b0100);
    assert_eq!(read(&mut gic, D, ISENABLER + 4), 0b1110);
    write(&mut gic, D, ICENABLER + 4, 0b0010);
    assert_eq!(
        read(&mut gic, D, ICENABLER + 4),
        0b1100,
        "reads as ISENABLER"
    );
}

#[test]
fn ispendr_sets_and_icpendr_clears_pending() {
    let mut gic = VgicV3::new(1);
    set_bit(&mut gic, 0, ISPENDR, SPI);
    set_bit(&mut gic, 0, ISPENDR, SPI + 1);
    assert!(bit_is_set(&mut gic, 0, ICPENDR, SPI));
    set_bit(&mut gic, 0, ICPENDR, SPI);
    assert!(!bit_is_set(&mut gic, 0, ISPENDR, SPI));
    assert!(bit_is_set(&mut gic, 0, ISPENDR, SPI + 1));
}

#[test]
fn isactiver_sets_and_icactiver_clears_active() {
    let mut gic = VgicV3::new(1);
    set_bit(&mut gic, 0, ISACTIVER, SPI);
    assert!(bit_is_set(&mut gic, 0, ICACTIVER, SPI));
    assert!(gic.in_flight(0, SPI));
    set_bit(&mut gic, 0, ICACTIVER, SPI);
    assert!(!bit_is_set(&mut gic, 0, ISACTIVER, SPI));
    assert!(!gic.in_flight(0, SPI));
}

#[test]
fn spi_priority_bytes_and_words_agree_and_keep_the_top_5_bits() {
    let mut gic = VgicV3::new(1);
    set_priority(&mut gic, 0, SPI, 0xa7);
    assert_eq!(gic.read_register(D, IPRIORITY + u64::from(SPI), 1), 0xa0);
    write(&mut gic, D, IPRIORITY + 44, 0x1020_3040);
    assert_eq!(gic.read_register(D, IPRIORITY + 44, 1), 0x40);
    assert_eq!(gic.read_register(D, IPRIORITY + 47, 1), 0x10);
    assert_eq!(read(&mut gic, D, IPRIORITY + 40), 0xa0);
}

#[test]
fn gicd_icfgr_keeps_the_config_bit_of_spis() {
    let mut gic = VgicV3::new(1);
    write(&mut gic, D, ICFGR0 + 8, 0xffff_0003);
    assert_eq!(read(&mut gic, D, ICFGR0 + 8), 0xaaaa_0002);
    assert_eq!(read(&mut gic, D, ICFGR0 + 12), 0, "level at reset");
}

#[test]
fn registers_past_the_supported_intids_read_zero() {
    let mut gic = VgicV3::new(1);
    write(&mut gic, D, ISENABLER + 12, 0xffff_ffff);
    assert_eq!(read(&mut gic, D, ISENABLER + 12), 0);
    gic.write_register(D, IPRIORITY + 96, 1, 0xff);
    assert_eq!(gic.read_register(D, IPRIORITY + 96, 1), 0);
    assert_eq!(route(&mut gic, 96, 0).kick, 0);
    assert_eq!(gic.read_register(D, IROUTER.start + 8 * 96, 8), 0);
    assert_eq!(read(&mut gic, D, 0xd00), 0, "IGRPMODR");
    assert_eq!(read(&mut gic, D, 0x1_0000), 0, "outside the frame");
}

// ---- IROUTER ----

#[test]
fn irouter_resets_to_vcpu_0_and_keeps_irm_and_affinity() {
    let mut gic = VgicV3::new(2);
    let at = IROUTER.start + 8 * u64::from(SPI);
    assert_eq!(gic.read_register(D, at, 8), 0);
    route(&mut gic, SPI, 0xffff_ffff_ffff_ffff);
    assert_eq!(gic.read_register(D, at, 8), 0x80ff_ffff, "no Aff3, no RES0");
    route(&mut gic, SPI, 1);
    assert_eq!(gic.read_register(D, at, 8), 1);
}

#[test]
fn irouter_halves_are_4_byte_accessible() {
    let mut gic = VgicV3::new(4);
    let at = IROUTER.start + 8 * u64::from(SPI);
    gic.write_register(D, at, 4, 3);
    gic.write_register(D, at + 4, 4, 0xff);
    assert_eq!(gic.read_register(D, at, 8), 3, "Aff3 not kept");
    assert_eq!(gic.read_register(D, at, 4), 3);
    assert_eq!(gic.read_register(D, at + 4, 4), 0);
    gic.write_register(D, at, 2, 0);
    gic.write_register(D, at + 2, 4, 0);
    assert_eq!(gic.read_register(D, at + 2, 4), 0, "misaligned");
    assert_eq!(gic.read_register(D, at, 8), 3, "odd widths ignored");
}

#[test]
fn irouter_of_private_intids_is_raz_wi() {
    let mut gic = VgicV3::new(2);
    route(&mut gic, TIMER, 1);
    assert_eq!(
        gic.read_register(D, IROUTER.start + 8 * u64::from(TIMER), 8),
        0
    );
}

#[test]
fn an_spi_goes_to_the_vcpu_its_irouter_names_and_kicks_it() {
    let mut gic = enabled(4);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    route(&mut gic, SPI, 2);
    assert_eq!(gic.raise(0, SPI).kick, 0b0100);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    assert!(live(&lrs).is_empty(), "not for vCPU 0");
    gic.flush(2, &mut lrs);
    assert_eq!(live(&lrs), [(SPI, LrState::Pending)]);
}

#[test]
fn irm_any_delivers_to_vcpu_0() {
    let mut gic = enabled(4);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    route(&mut gic, SPI, ROUTE_ANY | 3);
    assert_eq!(gic.raise(2, SPI).kick, 0b0001);
    assert!(gic.has_pending(0) && !gic.has_pending(3));
}

#[test]
fn an_spi_routed_to_no_vcpu_waits_until_routed() {
    let mut gic = enabled(2);
    set_bit(&mut gic, 0, ISENABLER, SPI);
    route(&mut gic, SPI, 5);
    assert_eq!(gic.raise(0, SPI).kick, 0);
    route(&mut gic, SPI, 1 << 8); // Aff1 = 1: another cluster
    assert!(!gic.has_pending(0) && !gic.has_pending(1));
    assert_eq!(route(&mut gic, SPI, 1).kick, 0b10, "routing kicks");
    assert!(gic.has_pending(1));
}

// ---- redistributors ----

#[test]
fn gicr_typer_names_the_frames_vcpu_and_marks_the_last() {
    let mut gic = VgicV3::new(3);
    for cpu in 0..3u64 {
        let typer = gic.read_register(Frame::Redistributor(cpu as usize), GICR_TYPER, 8);
        assert_eq!(typer >> 32, cpu, "Affinity: Aff0 = vCPU");
        assert_eq!(typer >> 8 & 0xffff, cpu, "Processor_Number");
        assert_eq!(typer & TYPER_LAST != 0, cpu == 2, "Last");
        assert_eq!(typer & 1, 0, "no LPIs");
    }
}

#[test]
fn gicr_typer_halves_are_4_byte_accessible_and_read_only() {
    let mut gic = VgicV3::new(2);
    let rd = Frame::Redistributor(1);
    gic.write_register(rd, GICR_TYPER, 8, 0);
    assert_eq!(gic.read_register(rd, GICR_TYPER, 4), 1 << 8 | TYPER_LAST);
    assert_eq!(gic.read_register(rd, GICR_TYPER + 4, 4), 1);
    assert_eq!(gic.read_register(rd, GICR_TYPER, 2), 0);
}

#[test]
fn gicr_waker_processor_sleep_is_writable_and_children_asleep_follows() {
    let mut gic = VgicV3::new(2);
    let rd = Frame::Redistributor(1);
    assert_eq!(read(&mut gic, rd, GICR_WAKER), 0b110, "asleep at reset");
    write(&mut gic, rd, GICR_WAKER, 0);
    assert_eq!(read(&mut gic, rd, GICR_WAKER), 0);
    assert_eq!(read(&mut gic, Frame::Redistributor(0), GICR_WAKER), 0b110);
    write(&mut gic, rd, GICR_WAKER, 0xffff_ffff);
    assert_eq!(read(&mut gic, rd, GICR_WAKER), 0b110, "only ProcessorSleep");
}

#[test]
fn gicr_ctlr_iidr_and_pidr2() {
    let mut gic = VgicV3::new(1);
    let rd = Frame::Redistributor(0);
    write(&mut gic, rd, GICR_CTLR, 0xffff_ffff);
    assert_eq!(read(&mut gic, rd, GICR_CTLR), 0, "no LPIs, RWP 0");
    assert_eq!(read(&mut gic, rd, GICR_IIDR), 0x43b);
    assert_eq!(read(&mut gic, rd, PIDR2), 0x3b);
    assert_eq!(read(&mut gic, rd, 0xffe0), 0x93, "PIDR0");
}

#[test]
fn sgis_reset_enabled_and_can_be_disabled() {
    let mut gic = VgicV3::new(1);
    let sgi = Frame::Sgi(0);
    assert_eq!(read(&mut gic, sgi, ISENABLER), 0xffff);
    write(&mut gic, sgi, ICENABLER, 0xffff_0003);
    assert_eq!(read(&mut gic, sgi, ISENABLER), 0xfffc);
    write(&mut gic, sgi, ISENABLER, 1 << TIMER);
    assert_eq!(read(&mut gic, sgi, ICENABLER), 0xfffc | 1 << TIMER);
}

#[test]
fn sgi_frame_state_is_banked_per_redistributor() {
    let mut gic = VgicV3::new(2);
    set_bit(&mut gic, 1, ISENABLER, TIMER);
    set_bit(&mut gic, 1, ISPENDR, 3);
    assert!(bit_is_set(&mut gic, 1, ISENABLER, TIMER));
    assert!(!bit_is_set(&mut gic, 0, ISENABLER, TIMER));
    assert!(bit_is_set(&mut gic, 1, ISPENDR, 3));
    assert!(!bit_is_set(&mut gic, 0, ISPENDR, 3));
    write(&mut gic, Frame::Sgi(0), IGROUPR, 0);
    assert_eq!(read(&mut gic, Frame::Sgi(1), IGROUPR), 0xffff_ffff);
}

#[test]
fn sgi_frame_pending_and_active_words_work_for_sgis_and_ppis() {
    let mut gic = VgicV3::new(1);
    let sgi = Frame::Sgi(0);
    write(&mut gic, sgi, ISPENDR, 1 << 5 | 1 << TIMER);
    assert_eq!(read(&mut gic, sgi, ICPENDR), 1 << 5 | 1 << TIMER);
    write(&mut gic, sgi, ICPENDR, 1 << 5);
    assert_eq!(read(&mut gic, sgi, ISPENDR), 1 << TIMER);
    write(&mut gic, sgi, ISACTIVER, 1 << 1);
    assert_eq!(read(&mut gic, sgi, ICACTIVER), 1 << 1);
    write(&mut gic, sgi, ICACTIVER, 1 << 1);
    assert_eq!(read(&mut gic, sgi, ISACTIVER), 0);
}

#[test]
fn sgi_frame_has_only_the_first_word_of_each_family() {
    let mut gic = VgicV3::new(1);
    let sgi = Frame::Sgi(0);
    write(&mut gic, sgi, ISENABLER + 4, 0xffff_ffff);
    assert_eq!(read(&mut gic, sgi, ISENABLER + 4), 0);
    assert_eq!(read(&mut gic, D, ISENABLER + 4), 0, "not the SPIs");
    write(&mut gic, sgi, IPRIORITY + 32, 0xffff_ffff);
    assert_eq!(read(&mut gic, sgi, IPRIORITY + 32), 0);
    assert_eq!(read(&mut gic, sgi, ICFGR0 + 8), 0);
}

#[test]
fn gicr_ipriorityr_is_byte_and_word_accessible() {
    let mut gic = VgicV3::new(2);
    let sgi = Frame::Sgi(1);
    gic.write_register(sgi, IPRIORITY + u64::from(TIMER), 1, 0x87);
    assert_eq!(
        gic.read_register(sgi, IPRIORITY + u64::from(TIMER), 1),
        0x80
    );
    assert_eq!(read(&mut gic, sgi, IPRIORITY + 24), 0x8000_0000);
    write(&mut gic, sgi, IPRIORITY, 0x1020_3040);
    assert_eq!(gic.read_register(sgi, IPRIORITY + 3, 1), 0x10);
    assert_eq!(read(&mut gic, Frame::Sgi(0), IPRIORITY + 24), 0, "banked");
}

#[test]
fn gicr_icfgr_sgis_are_edge_and_read_only_ppis_keep_the_config_bit() {
    let mut gic = VgicV3::new(1);
    let sgi = Frame::Sgi(0);
    assert_eq!(read(&mut gic, sgi, ICFGR0), 0xaaaa_aaaa);
    write(&mut gic, sgi, ICFGR0, 0);
    assert_eq!(read(&mut gic, sgi, ICFGR0), 0xaaaa_aaaa);
    assert_eq!(read(&mut gic, sgi, ICFGR0 + 4), 0, "PPIs level at reset");
    write(&mut gic, sgi, ICFGR0 + 4, 0x0080_0003);
    assert_eq!(read(&mut gic, sgi, ICFGR0 + 4), 0x0080_0002);
}

#[test]
fn a_redistributor_access_works_on_the_frames_vcpu_not_the_accessors() {
    let mut gic = enabled(2);
    let sgi1 = abi::GUEST_GICR_BASE + REDISTRIBUTOR_STRIDE + SGI_BASE;
    // vCPU 0 enables and pends vCPU 1's timer through vCPU 1's frame.
    Vgic::write(&mut gic, 0, sgi1 + ISENABLER, 4, 1 << TIMER);
    let effects = Vgic::write(&mut gic, 0, sgi1 + ISPENDR, 4, 1 << TIMER);
    assert_eq!(effects.kick, 0b10);
    assert!(gic.has_pending(1) && !gic.has_pending(0));
    assert_eq!(Vgic::read(&mut gic, 1, sgi1 + ISPENDR, 4), 1 << TIMER);
    let typer = abi::GUEST_GICR_BASE + REDISTRIBUTOR_STRIDE + GICR_TYPER;
    assert_eq!(Vgic::read(&mut gic, 0, typer, 8) >> 32, 1);
}

#[test]
fn unsupported_widths_and_misaligned_accesses_read_zero_and_ignore_writes() {
    let mut gic = VgicV3::new(1);
    write(&mut gic, D, GICD_CTLR, 1);
    assert_eq!(gic.read_register(D, GICD_CTLR, 1), 0);
    assert_eq!(gic.read_register(D, GICD_CTLR, 2), 0);
    assert_eq!(gic.read_register(D, GICD_CTLR, 8), 0);
    gic.write_register(D, ISENABLER + 4, 1, 0xff);
    gic.write_register(D, ISENABLER + 6, 4, 0xff);
    gic.write_register(D, ISENABLER + 4, 8, 0xff);
    assert_eq!(read(&mut gic, D, ISENABLER + 4), 0);
    gic.write_register(D, IPRIORITY + 32, 2, 0xffff);
    assert_eq!(read(&mut gic, D, IPRIORITY + 32), 0);
    let rd = Frame::Redistributor(0);
    assert_eq!(gic.read_register(rd, GICR_WAKER, 8), 0);
    assert_eq!(gic.read_register(rd, GICR_WAKER, 1), 0);
}

#[test]
fn frames_of_missing_vcpus_read_zero() {
    let mut gic = VgicV3::new(1);
    assert_eq!(read(&mut gic, Frame::Redistributor(1), GICR_IIDR), 0);
    assert_eq!(write(&mut gic, Frame::Sgi(1), ISPENDR, 1).kick, 0);
}

#[test]
fn its_windows_are_the_distributor_and_existing_redistributor_frames() {
    let gic = VgicV3::new(2);
    let (gicd, gicr) = (abi::GUEST_GICD_BASE, abi::GUEST_GICR_BASE);
    assert!(handles(&gic, gicd) && handles(&gic, gicd + 0xfffc));
    assert!(!handles(&gic, gicd + DISTRIBUTOR_SIZE) && !handles(&gic, gicd - 4));
    assert!(handles(&gic, gicr) && handles(&gic, gicr + 0x1_fffc));
    assert!(handles(&gic, gicr + REDISTRIBUTOR_STRIDE + SGI_BASE));
    assert!(!handles(&gic, gicr + 2 * REDISTRIBUTOR_STRIDE), "no vCPU 2");
    assert!(!handles(&gic, gicr - 4));
}

#[test]
fn locate_splits_a_redistributor_into_rd_and_sgi_frames() {
    let gic = VgicV3::new(2);
    let gicr = abi::GUEST_GICR_BASE;
    assert_eq!(
        gic.locate(gicr + 0x14),
        Some((Frame::Redistributor(0), 0x14))
    );
    assert_eq!(
        gic.locate(gicr + REDISTRIBUTOR_STRIDE + SGI_BASE + 0x100),
        Some((Frame::Sgi(1), 0x100))
    );
    assert_eq!(gic.locate(abi::GUEST_GICD_BASE + 0x6100), Some((D, 0x6100)));
}

#[test]
fn the_trait_takes_guest_physical_addresses() {
    let mut gic = VgicV3::new(1);
    let base = abi::GUEST_GICD_BASE;
    Vgic::write(&mut gic, 0, base, 4, 2);
    assert_eq!(
        Vgic::read(&mut gic, 0, base, 4),
        0x52,
        "CTLR through the trait"
    );
    assert_eq!(
        Vgic::read(&mut gic, 0, abi::GUEST_GICR_BASE + PIDR2, 4),
        0x3b
    );
    assert_eq!(Vgic::read(&mut gic, 0, abi::GUEST_GICR_BASE - 0x1000, 4), 0);
}

// ---- ICC_SGI1R_EL1 ----

#[test]
fn sgi1r_target_list_pends_the_sgi_on_each_target_and_kicks_them() {
    let mut gic = enabled(4);
    let effects = gic.write_sgi1r(1, sgi1r(0b1100, 7));
    assert_eq!(effects.kick, 0b1100);
    assert!(bit_is_set(&mut gic, 2, ISPENDR, 7));
    assert!(bit_is_set(&mut gic, 3, ISPENDR, 7));
    assert!(!bit_is_set(&mut gic, 0, ISPENDR, 7));
    assert!(!bit_is_set(&mut gic, 1, ISPENDR, 7));
}

#[test]
fn sgi1r_can_target_the_sender() {
    let mut gic = enabled(2);
    assert_eq!(gic.write_sgi1r(1, sgi1r(0b10, 1)).kick, 0b10);
    assert!(gic.has_pending(1));
}

#[test]
fn sgi1r_irm_targets_all_but_self() {
    let mut gic = enabled(3);
    let effects = gic.write_sgi1r(1, 1 << 40 | sgi1r(0b10, 2));
    assert_eq!(effects.kick, 0b101);
    assert!(bit_is_set(&mut gic, 0, ISPENDR, 2));
    assert!(!bit_is_set(&mut gic, 1, ISPENDR, 2));
    assert!(bit_is_set(&mut gic, 2, ISPENDR, 2));
}

#[test]
fn sgi1r_to_other_clusters_ranges_or_missing_vcpus_does_nothing() {
    let mut gic = enabled(2);
    assert_eq!(gic.write_sgi1r(0, 1 << 16 | sgi1r(0b1, 1)).kick, 0, "Aff1");
    assert_eq!(gic.write_sgi1r(0, 1 << 32 | sgi1r(0b1, 1)).kick, 0, "Aff2");
    assert_eq!(gic.write_sgi1r(0, 1 << 48 | sgi1r(0b1, 1)).kick, 0, "Aff3");
    assert_eq!(gic.write_sgi1r(0, 1 << 44 | sgi1r(0b1, 1)).kick, 0, "RS");
    assert_eq!(gic.write_sgi1r(0, sgi1r(0xfffc, 1)).kick, 0);
    assert_eq!(gic.write_sgi1r(5, sgi1r(0b1, 1)).kick, 0, "no sender");
    assert!(!gic.has_pending(0) && !gic.has_pending(1));
}

#[test]
fn sgis_are_not_per_source_one_pending_bit_one_delivery() {
    let mut gic = enabled(3);
    gic.write_sgi1r(1, sgi1r(0b1, 4));
    gic.write_sgi1r(2, sgi1r(0b1, 4));
    let mut lrs = [ListReg::default(); 4];
    assert!(!gic.flush(0, &mut lrs).waiting, "nothing waits");
    assert_eq!(live(&lrs), [(4, LrState::Pending)]);
    assert_eq!(lrs[0].source, 0);
}

#[test]
fn a_disabled_sgi_stays_pending_until_enabled() {
    let mut gic = enabled(1);
    write(&mut gic, Frame::Sgi(0), ICENABLER, 1 << 3);
    assert_eq!(gic.write_sgi1r(0, sgi1r(1, 3)).kick, 0);
    assert!(!gic.has_pending(0) && gic.in_flight(0, 3));
    assert_eq!(write(&mut gic, Frame::Sgi(0), ISENABLER, 1 << 3).kick, 1);
}

// ---- delivery (the policy itself is tested in vgic-model) ----

#[test]
fn distributor_disabled_delivers_nothing_and_enabling_kicks() {
    let mut gic = with_enabled(&[TIMER, SPI]);
    write(&mut gic, D, GICD_CTLR, 0);
    assert_eq!(gic.raise(0, TIMER).kick, 0);
    assert_eq!(gic.write_sgi1r(0, sgi1r(1, 0)).kick, 0);
    let mut lrs = [ListReg::default(); 4];
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert!(live(&lrs).is_empty());
    assert!(!gic.has_pending(0));
    assert_eq!(write(&mut gic, D, GICD_CTLR, 0b10).kick, 0b01);
    assert!(gic.has_pending(0));
}

#[test]
fn an_interrupt_is_forwarded_only_when_its_group_is_enabled() {
    let mut gic = with_enabled(&[SPI, SPI + 1]);
    write(&mut gic, D, IGROUPR + 4, !(1 << (SPI % 32))); // SPI in group 0
    write(&mut gic, D, GICD_CTLR, 0b10); // group 1 only
    gic.raise(0, SPI);
    gic.raise(0, SPI + 1);
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs), [(SPI + 1, LrState::Pending)]);
    assert_eq!(write(&mut gic, D, GICD_CTLR, 0b11).kick, 0b01);
    gic.sync(0, &mut lrs);
    gic.flush(0, &mut lrs);
    assert_eq!(live(&lrs).len(), 2);
}

#[test]
fn an_sgi_sent_again_while_active_becomes_pending_active() {
    let mut gic = enabled(2);
    gic.write_sgi1r(1, sgi1r(0b1, 2));
    let mut lrs = [ListReg::default(); 4];
    gic.flush(0, &mut lrs);
    lrs[0].state = LrState::Active;
    gic.sync(0, &mut lrs);
    gic.write_sgi1r(1, sgi1r(0b1, 2));
    assert!(!gic.flush(0, &mut lrs).waiting);
    assert_eq!(live(&lrs), [(2, LrState::PendingActive)]);
}

#[test]
fn flushed_entries_encode_as_group_1_list_registers() {
    let mut gic = with_enabled(&[SPI]);
    set_priority(&mut gic, 0, SPI, 0x80);
    gic.raise(0, SPI);
    let mut lrs = [ListReg::default(); 1];
    gic.flush(0, &mut lrs);
    let value = lr::encode_lr(&lrs[0]);
    assert_eq!(value, 1 << 62 | 1 << 60 | 0x80 << 48 | u64::from(SPI));
    assert_eq!(lr::decode_lr(value), lrs[0]);
}

/// Whether `ipa` is in a frame the vGIC puts in the VM's device table.
fn handles(gic: &impl Vgic, ipa: u64) -> bool {
    gic.windows().iter().any(|w| w.contains(ipa))
}

/// A PPI's line on vCPU 1, configured and deactivated through that vCPU's
/// redistributor (GICR_ICFGR1, GICR_ICACTIVER0), as Linux's gic_cpu_init
/// does; SPIs configured through GICD_ICFGR.
#[test]
fn level_lines_through_the_redistributor_and_distributor() {
    const PPI: u32 = 23;
    let mut gic = enabled(2);
    write(&mut gic, Frame::Sgi(1), ICACTIVER, 0xffff_ffff);
    write(&mut gic, Frame::Sgi(1), ICFGR0 + 4, 0); // PPIs level
    set_bit(&mut gic, 1, ISENABLER, PPI);
    assert_eq!(gic.set_level(1, PPI, true).kick, 0b10);
    assert!(bit_is_set(&mut gic, 1, ISPENDR, PPI));
    assert!(!bit_is_set(&mut gic, 0, ISPENDR, PPI), "banked");
    let mut lrs = [ListReg::default(); 4];
    gic.flush(1, &mut lrs);
    assert_eq!(live(&lrs), [(PPI, LrState::Pending)]);
    lrs[0].state = LrState::Active;
    gic.sync(1, &mut lrs);
    write(&mut gic, Frame::Sgi(1), ICACTIVER, 1 << PPI);
    gic.set_level(1, PPI, false);
    gic.flush(1, &mut lrs);
    assert!(live(&lrs).is_empty());
    assert!(!bit_is_set(&mut gic, 1, ISPENDR, PPI));
    // GICD_ICFGR2: SPI 40 edge; its line latches.
    write(&mut gic, D, ICFGR0 + 8, 2 << (2 * (SPI - 32)));
    set_bit(&mut gic, 0, ISENABLER, SPI);
    gic.set_level(0, SPI, true);
    gic.set_level(0, SPI, false);
    assert!(bit_is_set(&mut gic, 0, ISPENDR, SPI));
}
