//! The GICv2 virtual interface control block (GICH, IHI 0048B §5.3): the
//! list registers and the controls of one physical CPU's virtual CPU
//! interface. The image maps the block and hands over its
//! `UniqueMmioPointer`; nothing here is `unsafe`.

use hv::vgic::{ListReg, LrState, VirtualInterface};
use safe_mmio::{
    field, field_shared,
    fields::{ReadPure, ReadPureWrite},
    UniqueMmioPointer,
};

/// The GICH register block (IHI 0048B table 5-1).
#[repr(C)]
pub struct GichRegisters {
    hcr: ReadPureWrite<u32>,
    vtr: ReadPure<u32>,
    vmcr: ReadPureWrite<u32>,
    _reserved0: u32,
    misr: ReadPure<u32>,
    _reserved1: [u32; 3],
    eisr: [ReadPure<u32>; 2],
    _reserved2: [u32; 2],
    elrsr: [ReadPure<u32>; 2],
    _reserved3: [u32; 46],
    apr: ReadPureWrite<u32>,
    _reserved4: [u32; 3],
    lr: [ReadPureWrite<u32>; super::MAX_LRS],
}

const HCR_EN: u32 = 1 << 0;
const HCR_UIE: u32 = 1 << 1;
const VTR_LIST_REGS: u32 = 0x3f;

const LR_VIRTUAL_ID: u32 = 0x3ff;
const LR_CPUID_SHIFT: u32 = 10;
const LR_CPUID: u32 = 0b111;
const LR_EOI: u32 = 1 << 19;
const LR_PRIORITY_SHIFT: u32 = 23;
const LR_PRIORITY: u32 = 0x1f;
const LR_STATE_SHIFT: u32 = 28;

/// A GICv2 list register for `lr` (Grp1 and HW left 0: a group 0,
/// software-only virtual interrupt). The CPUID field is set for SGIs only.
pub fn encode_lr(lr: &ListReg) -> u32 {
    let state: u32 = match lr.state {
        LrState::Invalid => 0,
        LrState::Pending => 1,
        LrState::Active => 2,
        LrState::PendingActive => 3,
    };
    let cpuid = if lr.intid < 16 {
        (u32::from(lr.source) & LR_CPUID) << LR_CPUID_SHIFT
    } else {
        0
    };
    let eoi = if lr.eoi_maintenance { LR_EOI } else { 0 };
    (lr.intid & LR_VIRTUAL_ID)
        | cpuid
        | eoi
        | (u32::from(lr.priority >> 3) & LR_PRIORITY) << LR_PRIORITY_SHIFT
        | state << LR_STATE_SHIFT
}

/// The inverse of [`encode_lr`]; the priority comes back with its low 3
/// bits zero, as the hardware keeps only the top 5.
pub fn decode_lr(value: u32) -> ListReg {
    let intid = value & LR_VIRTUAL_ID;
    ListReg {
        intid,
        priority: (((value >> LR_PRIORITY_SHIFT) & LR_PRIORITY) << 3) as u8,
        state: match (value >> LR_STATE_SHIFT) & 0b11 {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        },
        source: if intid < 16 {
            ((value >> LR_CPUID_SHIFT) & LR_CPUID) as u8
        } else {
            0
        },
        eoi_maintenance: value & LR_EOI != 0,
    }
}

/// Driver for one CPU's GICH block.
pub struct Gich<'a> {
    regs: UniqueMmioPointer<'a, GichRegisters>,
}

impl<'a> Gich<'a> {
    pub fn new(regs: UniqueMmioPointer<'a, GichRegisters>) -> Self {
        Gich { regs }
    }

    /// How many list registers the hardware has (GICH_VTR.ListRegs + 1).
    pub fn lr_count(&self) -> usize {
        (field_shared!(self.regs, vtr).read() & VTR_LIST_REGS) as usize + 1
    }

    /// List register `i`; `i` must be below [`Self::lr_count`] (registers
    /// past the block read as invalid).
    pub fn read_lr(&self, i: usize) -> ListReg {
        field_shared!(self.regs, lr)
            .get(i)
            .map_or(ListReg::default(), |lr| decode_lr(lr.read()))
    }

    /// Writes list register `i` (below [`Self::lr_count`]; others are
    /// ignored).
    pub fn write_lr(&mut self, i: usize, lr: &ListReg) {
        if let Some(mut reg) = field!(self.regs, lr).get(i) {
            reg.write(encode_lr(lr));
        }
    }

    /// GICH_HCR: the virtual CPU interface on (`En`), and a maintenance
    /// interrupt when at most one list register is valid (`UIE`), for
    /// interrupts that did not fit. The other controls are left off.
    pub fn set_hcr(&mut self, enable: bool, underflow_maintenance: bool) {
        let en = if enable { HCR_EN } else { 0 };
        let uie = if underflow_maintenance { HCR_UIE } else { 0 };
        field!(self.regs, hcr).write(en | uie);
    }

    /// GICH_VMCR: the guest's CPU interface control (priority mask, binary
    /// point, enables), saved and restored per vCPU.
    pub fn vmcr(&self) -> u32 {
        field_shared!(self.regs, vmcr).read()
    }

    pub fn set_vmcr(&mut self, value: u32) {
        field!(self.regs, vmcr).write(value);
    }

    /// GICH_APR: the guest's active priorities, saved and restored per vCPU.
    pub fn apr(&self) -> u32 {
        field_shared!(self.regs, apr).read()
    }

    pub fn set_apr(&mut self, value: u32) {
        field!(self.regs, apr).write(value);
    }

    /// GICH_MISR: why the maintenance interrupt fired.
    pub fn misr(&self) -> u32 {
        field_shared!(self.regs, misr).read()
    }

    /// GICH_ELRSR0/1: bit n set when list register n is empty.
    pub fn elrsr(&self) -> u64 {
        let [low, high] = field_shared!(self.regs, elrsr).split().map(|r| r.read());
        u64::from(low) | u64::from(high) << 32
    }
}

/// The image's GICv2 virtual CPU interface: GICH (banked, so one driver
/// serves every CPU) and the GICV frames guests see as their GICC.
pub struct Interface<'a> {
    gich: Gich<'a>,
    lr_count: usize,
    gicv: (u64, u64),
}

/// What a guest wrote to its CPU interface (GICH_VMCR) and its active
/// priorities (GICH_APR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    vmcr: u32,
    apr: u32,
}

/// GICV is two 4 KiB pages (IHI 0048B §5.4).
const GICV_SIZE: u64 = 0x2000;

impl<'a> Interface<'a> {
    /// `gich` mapped by the image; `gicv_base` the host-physical GICV.
    pub fn new(gich: UniqueMmioPointer<'a, GichRegisters>, gicv_base: u64) -> Self {
        let gich = Gich::new(gich);
        Interface {
            lr_count: gich.lr_count(),
            gich,
            gicv: (gicv_base, GICV_SIZE),
        }
    }
}

impl VirtualInterface for Interface<'_> {
    type CpuState = CpuState;

    fn lr_count(&self) -> usize {
        self.lr_count
    }

    fn guest_cpu_interface(&self) -> Option<(u64, u64)> {
        Some(self.gicv)
    }

    fn write_lrs(&mut self, lrs: &[ListReg], underflow: bool) {
        for (i, lr) in lrs.iter().enumerate() {
            self.gich.write_lr(i, lr);
        }
        self.gich.set_hcr(true, underflow);
    }

    fn read_lrs(&mut self, lrs: &mut [ListReg]) {
        for (i, lr) in lrs.iter_mut().enumerate() {
            *lr = self.gich.read_lr(i);
        }
    }

    fn load(&mut self, state: &CpuState) {
        self.gich.set_vmcr(state.vmcr);
        self.gich.set_apr(state.apr);
    }

    fn put(&mut self, state: &mut CpuState) {
        state.vmcr = self.gich.vmcr();
        state.apr = self.gich.apr();
        self.gich.set_hcr(false, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(list_regs: u32) -> GichRegisters {
        GichRegisters {
            hcr: ReadPureWrite(0),
            vtr: ReadPure(list_regs - 1),
            vmcr: ReadPureWrite(0),
            _reserved0: 0,
            misr: ReadPure(0),
            _reserved1: [0; 3],
            eisr: [ReadPure(0), ReadPure(0)],
            _reserved2: [0; 2],
            elrsr: [ReadPure(0), ReadPure(0)],
            _reserved3: [0; 46],
            apr: ReadPureWrite(0),
            _reserved4: [0; 3],
            lr: [const { ReadPureWrite(0) }; crate::MAX_LRS],
        }
    }

    #[test]
    fn register_offsets_match_the_spec() {
        use core::mem::offset_of;
        assert_eq!(offset_of!(GichRegisters, vtr), 0x04);
        assert_eq!(offset_of!(GichRegisters, vmcr), 0x08);
        assert_eq!(offset_of!(GichRegisters, misr), 0x10);
        assert_eq!(offset_of!(GichRegisters, eisr), 0x20);
        assert_eq!(offset_of!(GichRegisters, elrsr), 0x30);
        assert_eq!(offset_of!(GichRegisters, apr), 0xf0);
        assert_eq!(offset_of!(GichRegisters, lr), 0x100);
        assert_eq!(core::mem::size_of::<GichRegisters>(), 0x200);
    }

    #[test]
    fn lr_count_is_vtr_list_regs_plus_one() {
        let mut regs = fake(4);
        regs.vtr = ReadPure(0x9000_0003); // PRIbits/PREbits set too
        assert_eq!(Gich::new(UniqueMmioPointer::from(&mut regs)).lr_count(), 4);
    }

    #[test]
    fn write_lr_lands_in_list_register_i() {
        let mut regs = fake(4);
        let lr = ListReg {
            intid: 27,
            priority: 0xa0,
            state: LrState::Pending,
            ..ListReg::default()
        };
        Gich::new(UniqueMmioPointer::from(&mut regs)).write_lr(2, &lr);
        // LR2 is at 0x100 + 4 * 2.
        assert_eq!(regs.lr[2].0, 0x1a00_001b);
        assert!(regs.lr.iter().enumerate().all(|(i, r)| i == 2 || r.0 == 0));
    }

    #[test]
    fn read_lr_decodes_list_register_i() {
        let mut regs = fake(4);
        regs.lr[3] = ReadPureWrite(0x2088_1403);
        let lr = Gich::new(UniqueMmioPointer::from(&mut regs)).read_lr(3);
        assert_eq!((lr.intid, lr.source, lr.state), (3, 5, LrState::Active));
    }

    #[test]
    fn list_registers_past_the_block_read_invalid_and_ignore_writes() {
        let mut regs = fake(4);
        let mut gich = Gich::new(UniqueMmioPointer::from(&mut regs));
        gich.write_lr(64, &decode_lr(0x1000_0001));
        assert_eq!(gich.read_lr(64), ListReg::default());
    }

    #[test]
    fn set_hcr_sets_en_in_bit_0_and_uie_in_bit_1() {
        let mut regs = fake(4);
        let mut gich = Gich::new(UniqueMmioPointer::from(&mut regs));
        gich.set_hcr(true, false);
        assert_eq!(field_shared!(gich.regs, hcr).read(), 0b01);
        gich.set_hcr(true, true);
        assert_eq!(field_shared!(gich.regs, hcr).read(), 0b11);
        gich.set_hcr(false, false);
        assert_eq!(regs.hcr.0, 0);
    }

    #[test]
    fn vmcr_apr_misr_and_elrsr_reach_their_registers() {
        let mut regs = fake(4);
        regs.misr = ReadPure(0b10);
        regs.elrsr = [ReadPure(0b1111), ReadPure(1)];
        let mut gich = Gich::new(UniqueMmioPointer::from(&mut regs));
        gich.set_vmcr(0xf000_0001);
        gich.set_apr(0x8000_0000);
        assert_eq!(gich.vmcr(), 0xf000_0001);
        assert_eq!(gich.apr(), 0x8000_0000);
        assert_eq!(gich.misr(), 0b10);
        assert_eq!(gich.elrsr(), 1 << 32 | 0b1111);
        assert_eq!((regs.vmcr.0, regs.apr.0), (0xf000_0001, 0x8000_0000));
    }

    #[test]
    fn the_interface_moves_list_registers_and_cpu_state_and_turns_off_on_put() {
        let mut regs = fake(4);
        let lr = ListReg {
            intid: 40,
            priority: 0x80,
            state: LrState::Pending,
            ..ListReg::default()
        };
        {
            let mut vif = Interface::new(UniqueMmioPointer::from(&mut regs), 0x2c06_0000);
            assert_eq!(vif.lr_count(), 4);
            assert_eq!(vif.guest_cpu_interface(), Some((0x2c06_0000, 0x2000)));
            vif.load(&CpuState {
                vmcr: 0xf000_0001,
                apr: 1 << 20,
            });
            vif.write_lrs(&[ListReg::default(), lr], true);
            let mut back = [ListReg::default(); 2];
            vif.read_lrs(&mut back);
            assert_eq!(back, [ListReg::default(), lr]);
            assert_eq!(field_shared!(vif.gich.regs, hcr).read(), HCR_EN | HCR_UIE);
            let mut saved = CpuState::default();
            vif.put(&mut saved);
            assert_eq!((saved.vmcr, saved.apr), (0xf000_0001, 1 << 20));
        }
        assert_eq!(regs.hcr.0, 0, "off once the vCPU left");
    }

    #[test]
    fn encode_lr_places_each_field_where_the_spec_says() {
        // VirtualID 27, priority 0xa0 >> 3 = 0x14 at [27:23], Pending (1)
        // at [29:28].
        let spi = ListReg {
            intid: 27,
            priority: 0xa0,
            state: LrState::Pending,
            ..ListReg::default()
        };
        assert_eq!(encode_lr(&spi), 0x1a00_001b);
        // SGI 3 from CPU 5 at [12:10], EOI at [19], priority 0x08 -> 1,
        // Active (2).
        let sgi = ListReg {
            intid: 3,
            priority: 0x08,
            state: LrState::Active,
            source: 5,
            eoi_maintenance: true,
        };
        assert_eq!(encode_lr(&sgi), 0x2088_1403);
        let both = ListReg {
            state: LrState::PendingActive,
            ..ListReg::default()
        };
        assert_eq!(encode_lr(&both), 3 << 28);
    }

    #[test]
    fn encode_lr_keeps_cpuid_for_sgis_only_and_leaves_grp1_and_hw_clear() {
        let ppi = ListReg {
            intid: 16,
            priority: 0xff,
            state: LrState::PendingActive,
            source: 7,
            eoi_maintenance: true,
        };
        let value = encode_lr(&ppi);
        assert_eq!(value & (0b111 << 10), 0);
        assert_eq!(value & (0b11 << 30), 0);
    }

    #[test]
    fn decode_lr_inverts_encode_lr() {
        for state in [
            LrState::Invalid,
            LrState::Pending,
            LrState::Active,
            LrState::PendingActive,
        ] {
            for (intid, source) in [(0, 7), (15, 3), (16, 0), (95, 0), (1019, 0)] {
                let lr = ListReg {
                    intid,
                    priority: 0xd8,
                    state,
                    source,
                    eoi_maintenance: intid % 2 == 1,
                };
                assert_eq!(decode_lr(encode_lr(&lr)), lr);
            }
        }
    }

    #[test]
    fn decode_lr_keeps_only_the_priority_bits_the_hardware_has() {
        let lr = ListReg {
            priority: 0xa7,
            ..ListReg::default()
        };
        assert_eq!(decode_lr(encode_lr(&lr)).priority, 0xa0);
    }
}
