//! Decoding a guest exit's syndrome (ESR_EL2; ARMv7's HSR shares the fields
//! used here) into what the core acts on.

use crate::platform::{RawExit, VcpuRegs};

pub const EC_WFX: u8 = 0x01;
pub const EC_HVC32: u8 = 0x12;
pub const EC_SMC32: u8 = 0x13;
pub const EC_HVC64: u8 = 0x16;
pub const EC_SMC64: u8 = 0x17;
pub const EC_SYSREG: u8 = 0x18;
pub const EC_IABT_LOWER: u8 = 0x20;
pub const EC_DABT_LOWER: u8 = 0x24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// WFI or WFE.
    WaitForInterrupt,
    /// HVC: a hypercall.
    Hypercall,
    /// SMC, trapped so guests never reach the firmware directly.
    SecureMonitorCall,
    /// A stage-2 abort: the guest touched an address its VM does not own.
    Stage2Abort(Abort),
    /// A trapped MSR/MRS (AArch64).
    SystemRegister(SysReg),
    /// Anything else; `ec` names it.
    Other { ec: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    pub instruction: bool,
    pub write: bool,
    /// Guest-physical address of the access.
    pub ipa: u64,
    /// Guest-virtual address of the access.
    pub far: u64,
    /// DFSC/IFSC: what kind of fault.
    pub status: u8,
    /// The access, when the syndrome describes it (ISV): what an emulated
    /// device needs to carry it out.
    pub access: Option<Access>,
}

/// A single load or store to one general-purpose register, as ISV
/// syndromes describe it. Pair, writeback and SIMD accesses have no valid
/// syndrome and cannot be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Bytes: 1, 2, 4 or 8.
    pub width: u8,
    /// The register (31 is the zero register).
    pub register: u8,
    /// A load sign-extends (SSE).
    pub sign_extend: bool,
    /// The register is 64-bit (SF); a 32-bit one has its top half cleared.
    pub wide_register: bool,
}

impl Access {
    /// The access an ISV data-abort syndrome describes, if it does.
    pub fn decode(esr: u64) -> Option<Access> {
        (esr & (1 << 24) != 0).then(|| Access {
            width: 1 << ((esr >> 22) & 0b11),
            register: ((esr >> 16) & 0x1f) as u8,
            sign_extend: esr & (1 << 21) != 0,
            wide_register: esr & (1 << 15) != 0,
        })
    }

    /// The register value a load of `value` leaves.
    pub fn loaded(&self, value: u64) -> u64 {
        let bits = u32::from(self.width) * 8;
        let value = if bits == 64 {
            value
        } else {
            value & ((1 << bits) - 1)
        };
        let value = if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            (((value << shift) as i64) >> shift) as u64
        } else {
            value
        };
        if self.wide_register {
            value
        } else {
            value & 0xffff_ffff
        }
    }

    /// The bytes a store of register value `value` writes.
    pub fn stored(&self, value: u64) -> u64 {
        match self.width {
            8 => value,
            width => value & ((1u64 << (u32::from(width) * 8)) - 1),
        }
    }

    /// What a store writes, read from the guest's registers once (register
    /// 31 is the zero register here, not SP).
    pub fn store_value(&self, regs: &impl VcpuRegs) -> u64 {
        match self.register {
            31 => 0,
            n => self.stored(regs.reg(usize::from(n))),
        }
    }

    /// Completes a load of `value` into the guest's register (a load to
    /// the zero register discards it).
    pub fn load_into(&self, regs: &mut impl VcpuRegs, value: u64) {
        if self.register != 31 {
            regs.set_reg(usize::from(self.register), self.loaded(value));
        }
    }
}

impl Abort {
    pub fn status_name(&self) -> &'static str {
        match self.status & 0b11_1100 {
            0b00_0100 => "translation fault",
            0b00_1000 => "access flag fault",
            0b00_1100 => "permission fault",
            0b00_0000 => "address size fault",
            _ => "fault",
        }
    }
}

/// A trapped system register access (ISS of EC 0x18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysReg {
    /// `(op0, op1, CRn, CRm, op2)`, as in the register's encoding.
    pub encoding: (u8, u8, u8, u8, u8),
    /// The general-purpose register (31 is the zero register).
    pub register: u8,
    /// MRS (read) rather than MSR (write).
    pub read: bool,
}

/// ICC_SGI1R_EL1: S3_0_C12_C11_5.
pub const ICC_SGI1R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 5);
/// ICC_ASGI1R_EL1 (S3_0_C12_C11_6) and ICC_SGI0R_EL1 (S3_0_C12_C11_7): SGIs
/// of the other security state's group 1 and of group 0, which a
/// non-secure guest whose interrupts are all group 1 cannot send; they
/// trap with ICC_SGI1R_EL1 all the same.
pub const ICC_ASGI1R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 6);
pub const ICC_SGI0R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 7);

impl SysReg {
    fn decode(esr: u64) -> SysReg {
        let field = |shift: u32, bits: u32| ((esr >> shift) & ((1 << bits) - 1)) as u8;
        SysReg {
            encoding: (
                field(20, 2),
                field(14, 3),
                field(10, 4),
                field(1, 4),
                field(17, 3),
            ),
            register: field(5, 5),
            read: esr & 1 != 0,
        }
    }
}

/// EC of a trapped AArch32 MCR/MRC to CP15, MCRR/MRRC to CP15, MCR/MRC
/// to CP14, and MRRC to CP14.
pub const EC_CP15_32: u8 = 0x03;
pub const EC_CP15_64: u8 = 0x04;
pub const EC_CP14_32: u8 = 0x05;
pub const EC_CP14_64: u8 = 0x0c;

/// A trapped access to a debug or performance-monitor register, which the
/// hypervisor does not give guests: it reads as zero and ignores writes
/// (RAZ/WI), so no VM sees another's values (MDCR_EL2 / HDCR trap them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugOrPmu {
    /// MRS / MRC / MRRC (read) rather than MSR / MCR / MCRR (write).
    pub read: bool,
    /// The general-purpose registers a read fills with zero, as the
    /// syndrome names them; `None` for the zero register (AArch64 31) and
    /// for AArch32's Rt = 15 (APSR_nzcv or PC, left alone).
    pub registers: [Option<u8>; 2],
}

impl DebugOrPmu {
    /// The access an ESR (HSR) describes, if it is one of a debug or PMU
    /// register: AArch64 EC 0x18 with op0 2 and op1 0 or 3 (debug: MDSCR,
    /// DBGB/W*, OS lock, claim tags, DCC), or op0 3 with CRn 9, CRm 12..14
    /// and op1 0 or 3, or CRn 14, CRm 8..15 and op1 3 (PMU); AArch32 MCR/MRC
    /// or MRRC to CP14 with opc1 0 (debug), MCR/MRC to CP15 with opc1 0 and
    /// CRn 9, CRm 12..14 or CRn 14, CRm 8..15, or MCRR/MRRC to CP15 opc1 0
    /// CRm 9 (PMU, PMCCNTR).
    pub fn decode(esr: u64) -> Option<DebugOrPmu> {
        let field = |shift: u32, bits: u32| ((esr >> shift) & ((1 << bits) - 1)) as u8;
        let read = esr & 1 != 0;
        let (rt, crm) = (field(5, 5), field(1, 4));
        // AArch32 registers in their AArch64 view, X0..X30; R15 is
        // APSR_nzcv. No real syndrome says 31, but nothing here trusts that.
        let aarch32 = |r: u8| (r != 15 && r < 31).then_some(r);
        let pmu32 = |op1: u8, crn: u8| {
            op1 == 0 && ((crn == 9 && (12..=14).contains(&crm)) || (crn == 14 && crm >= 8))
        };
        let (matches, registers) = match exception_class(esr) {
            EC_SYSREG => {
                let (op0, op1, crn) = (field(20, 2), field(14, 3), field(10, 4));
                let debug = op0 == 2 && (op1 == 0 || op1 == 3);
                let pmu = op0 == 3
                    && ((crn == 9 && (12..=14).contains(&crm) && (op1 == 0 || op1 == 3))
                        || (crn == 14 && crm >= 8 && op1 == 3));
                (debug || pmu, [(rt != 31).then_some(rt), None])
            }
            EC_CP14_32 => (field(14, 3) == 0, [aarch32(rt), None]),
            EC_CP15_32 => (pmu32(field(14, 3), field(10, 4)), [aarch32(rt), None]),
            EC_CP14_64 | EC_CP15_64 => {
                let op1 = field(16, 4);
                let ok = if exception_class(esr) == EC_CP14_64 {
                    op1 == 0
                } else {
                    op1 == 0 && crm == 9
                };
                (ok, [aarch32(rt), aarch32(field(10, 5))])
            }
            _ => (false, [None, None]),
        };
        matches.then_some(DebugOrPmu {
            read,
            registers: if read { registers } else { [None, None] },
        })
    }
}

pub fn exception_class(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// Instruction length bit: whether the trapped instruction was 32-bit.
pub fn instruction_is_32bit(esr: u64) -> bool {
    esr & (1 << 25) != 0
}

/// The guest-physical address of a stage-2 abort (HPFAR gives the page,
/// FAR the offset in it).
#[inline]
pub fn fault_ipa(exit: &RawExit) -> u64 {
    ((exit.hpfar >> 4) << 12) | (exit.far & 0xfff)
}

/// WnR of a data abort's syndrome.
#[inline]
pub fn data_abort_is_write(esr: u64) -> bool {
    esr & (1 << 6) != 0
}

pub fn decode(exit: &RawExit) -> Trap {
    let ec = exception_class(exit.esr);
    match ec {
        EC_WFX => Trap::WaitForInterrupt,
        EC_HVC32 | EC_HVC64 => Trap::Hypercall,
        EC_SMC32 | EC_SMC64 => Trap::SecureMonitorCall,
        EC_SYSREG => Trap::SystemRegister(SysReg::decode(exit.esr)),
        EC_IABT_LOWER | EC_DABT_LOWER => Trap::Stage2Abort(Abort {
            instruction: ec == EC_IABT_LOWER,
            write: ec == EC_DABT_LOWER && data_abort_is_write(exit.esr),
            ipa: fault_ipa(exit),
            far: exit.far,
            status: (exit.esr & 0x3f) as u8,
            access: if ec == EC_DABT_LOWER {
                Access::decode(exit.esr)
            } else {
                None
            },
        }),
        _ => Trap::Other { ec },
    }
}

/// EC of an instruction or data abort taken at EL2 (HYP) itself.
pub const EC_IABT_SAME: u8 = 0x21;
pub const EC_DABT_SAME: u8 = 0x25;

/// What an abort syndrome says about the fault, for reports: "permission
/// fault, level 3, write".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortSyndrome {
    status: u8,
    write: bool,
    instruction: bool,
}

impl AbortSyndrome {
    /// The abort an ESR (HSR) describes; `None` for other classes.
    pub fn decode(esr: u64) -> Option<AbortSyndrome> {
        let ec = exception_class(esr);
        let instruction = matches!(ec, EC_IABT_LOWER | EC_IABT_SAME);
        (instruction || matches!(ec, EC_DABT_LOWER | EC_DABT_SAME)).then_some(AbortSyndrome {
            status: (esr & 0x3f) as u8,
            write: !instruction && esr & (1 << 6) != 0,
            instruction,
        })
    }

    pub fn is_permission_fault(&self) -> bool {
        self.status & 0b11_1100 == 0b00_1100
    }
}

impl core::fmt::Display for AbortSyndrome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match self.status & 0b11_1100 {
            0b00_0000 => "address size fault",
            0b00_0100 => "translation fault",
            0b00_1000 => "access flag fault",
            0b00_1100 => "permission fault",
            0b01_0000 if self.status == 0b01_0000 => "synchronous external abort",
            0b10_0000 if self.status == 0b10_0001 => "alignment fault",
            _ => "fault",
        };
        f.write_str(name)?;
        if self.status < 0b01_0000 {
            write!(f, ", level {}", self.status & 0b11)?;
        }
        let access = if self.instruction {
            "execute"
        } else if self.write {
            "write"
        } else {
            "read"
        };
        write!(f, ", {access}")
    }
}

/// A short name for an exception class, for reports.
pub fn class_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        EC_WFX => "WFI/WFE",
        0x03..=0x06 => "AArch32 coprocessor access",
        0x07 => "FP/SIMD access",
        0x0e => "illegal execution state",
        EC_HVC32 | EC_HVC64 => "HVC",
        EC_SMC32 | EC_SMC64 => "SMC",
        EC_SYSREG => "system register access",
        EC_IABT_LOWER => "instruction abort",
        0x21 => "instruction abort at EL2",
        EC_DABT_LOWER => "data abort",
        0x25 => "data abort at EL2",
        0x22 => "PC alignment fault",
        0x26 => "SP alignment fault",
        0x2f => "SError",
        0x3c => "BRK",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::ExitKind;

    fn sync(esr: u64, far: u64, hpfar: u64) -> RawExit {
        RawExit {
            kind: ExitKind::Sync,
            esr,
            far,
            hpfar,
        }
    }

    #[test]
    fn hvc_smc_and_wfi() {
        // HVC #0 from AArch64: EC 0x16, IL=1.
        assert_eq!(decode(&sync(0x5a00_0000, 0, 0)), Trap::Hypercall);
        // The AArch32 HSR QEMU reports for HVC from SVC mode.
        assert_eq!(decode(&sync(0x4a00_0042, 0, 0)), Trap::Hypercall);
        assert_eq!(decode(&sync(0x5e00_0000, 0, 0)), Trap::SecureMonitorCall);
        assert_eq!(decode(&sync(0x0600_0001, 0, 0)), Trap::WaitForInterrupt);
        assert!(instruction_is_32bit(0x5a00_0000));
    }

    #[test]
    fn stage2_data_abort_read_and_write() {
        // Read of 0x4100_0008: translation fault level 1 (DFSC 0b000101).
        let read = decode(&sync(0x9300_0005, 0x4100_0008, (0x4100_0008 >> 12) << 4));
        let Trap::Stage2Abort(a) = read else {
            panic!("{read:?}")
        };
        assert!(!a.instruction && !a.write);
        assert_eq!(a.ipa, 0x4100_0008);
        assert_eq!(a.status_name(), "translation fault");
        // Write (WnR) of 0x0900_0000.
        let write = decode(&sync(0x9300_0046, 0x0900_0000, (0x0900_0000 >> 12) << 4));
        let Trap::Stage2Abort(a) = write else {
            panic!("{write:?}")
        };
        assert!(a.write);
        assert_eq!(a.ipa, 0x0900_0000);
    }

    #[test]
    fn instruction_abort_is_never_a_write() {
        let t = decode(&sync(
            0x8200_0006 | (1 << 6),
            0x8000_0000,
            (0x8000_0000 >> 12) << 4,
        ));
        let Trap::Stage2Abort(a) = t else {
            panic!("{t:?}")
        };
        assert!(a.instruction && !a.write);
        assert_eq!(a.ipa, 0x8000_0000);
    }

    #[test]
    fn isv_syndromes_describe_the_access() {
        // str w2, [x1] at 0x0800_0100: ISV, SAS=word, SRT=2, WnR, DFSC level 1.
        let t = decode(&sync(0x9382_0045, 0x0800_0100, (0x0800_0100 >> 12) << 4));
        let Trap::Stage2Abort(a) = t else {
            panic!("{t:?}")
        };
        let access = a.access.expect("ISV set");
        assert_eq!(
            (
                access.width,
                access.register,
                access.sign_extend,
                access.wide_register
            ),
            (4, 2, false, false)
        );
        assert!(a.write);
        // ldrsb x5, [x0]: SAS=byte, SSE, SRT=5, SF.
        let t = decode(&sync(0x9325_8005, 0x0800_0000, (0x0800_0000 >> 12) << 4));
        let Trap::Stage2Abort(a) = t else {
            panic!("{t:?}")
        };
        let access = a.access.unwrap();
        assert_eq!((access.width, access.register), (1, 5));
        assert_eq!(
            access.loaded(0x80),
            0xffff_ffff_ffff_ff80,
            "sign-extended to 64 bits"
        );
        assert_eq!(access.stored(0x1234), 0x34);
        // No ISV (e.g. ldp): nothing to emulate.
        let t = decode(&sync(0x9200_0005, 0x0800_0000, 0));
        let Trap::Stage2Abort(a) = t else {
            panic!("{t:?}")
        };
        assert_eq!(a.access, None);
    }

    #[test]
    fn loads_into_32bit_registers_clear_the_top_half() {
        let access = Access {
            width: 4,
            register: 0,
            sign_extend: true,
            wide_register: false,
        };
        assert_eq!(access.loaded(0x8000_0000), 0x8000_0000);
        let wide = Access {
            wide_register: true,
            ..access
        };
        assert_eq!(wide.loaded(0x8000_0000), 0xffff_ffff_8000_0000);
        let dword = Access {
            width: 8,
            register: 0,
            sign_extend: false,
            wide_register: true,
        };
        assert_eq!(dword.loaded(u64::MAX), u64::MAX);
        assert_eq!(dword.stored(u64::MAX), u64::MAX);
    }

    #[test]
    fn a_trapped_sgi1r_write_is_decoded() {
        // msr icc_sgi1r_el1, x3: op0=3 op2=5 op1=0 CRn=12 Rt=3 CRm=11, write.
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (3 << 5) | (11 << 1);
        let t = decode(&sync(0x6200_0000 | iss, 0, 0));
        assert_eq!(
            t,
            Trap::SystemRegister(SysReg {
                encoding: ICC_SGI1R_EL1,
                register: 3,
                read: false
            })
        );
    }

    #[test]
    fn el2_aborts_are_described() {
        // str to a read-only page at EL2: EC 0x25, WnR, permission fault level 3.
        let write = AbortSyndrome::decode(0x9600_004f).unwrap();
        assert_eq!(write.to_string(), "permission fault, level 3, write");
        assert!(write.is_permission_fault());
        // Instruction fetch from an XN page: EC 0x21, IFSC permission level 3.
        let exec = AbortSyndrome::decode(0x8600_000f).unwrap();
        assert_eq!(exec.to_string(), "permission fault, level 3, execute");
        // A read of an unmapped page: translation fault level 3.
        let read = AbortSyndrome::decode(0x9600_0007).unwrap();
        assert_eq!(read.to_string(), "translation fault, level 3, read");
        assert!(!read.is_permission_fault());
        // The HSR QEMU gives for the HYP fault self-test (level 1).
        assert_eq!(
            AbortSyndrome::decode(0x9600_0005).unwrap().to_string(),
            "translation fault, level 1, read"
        );
        assert_eq!(AbortSyndrome::decode(0x5a00_0000), None);
    }

    /// ESR of a trapped MSR/MRS: EC 0x18, IL, and the ISS fields.
    fn sysreg_esr(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool) -> u64 {
        (0x18 << 26)
            | (1 << 25)
            | (op0 << 20)
            | (op2 << 17)
            | (op1 << 14)
            | (crn << 10)
            | (rt << 5)
            | (crm << 1)
            | u64::from(read)
    }

    /// ESR (HSR) of a trapped AArch32 MCR/MRC: CV and COND = AL as well.
    fn mcr_esr(ec: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool) -> u64 {
        (ec << 26)
            | (1 << 25)
            | (1 << 24)
            | (0xe << 20)
            | (op2 << 17)
            | (op1 << 14)
            | (crn << 10)
            | (rt << 5)
            | (crm << 1)
            | u64::from(read)
    }

    fn debug_or_pmu(esr: u64) -> Option<DebugOrPmu> {
        DebugOrPmu::decode(esr)
    }

    #[test]
    fn aarch64_debug_and_pmu_registers_are_recognised() {
        // (op0, op1, CRn, CRm, op2) of registers a hostile guest shared.
        for (name, (op0, op1, crn, crm, op2)) in [
            ("MDSCR_EL1", (2, 0, 0, 2, 2)),
            ("DBGBVR0_EL1", (2, 0, 0, 0, 4)),
            ("DBGBCR5_EL1", (2, 0, 0, 5, 5)),
            ("DBGWVR1_EL1", (2, 0, 0, 1, 6)),
            ("DBGWCR3_EL1", (2, 0, 0, 3, 7)),
            ("OSLAR_EL1", (2, 0, 1, 0, 4)),
            ("OSDLR_EL1", (2, 0, 1, 3, 4)),
            ("MDRAR_EL1", (2, 0, 1, 0, 0)),
            ("DBGCLAIMSET_EL1", (2, 0, 7, 8, 6)),
            ("MDCCSR_EL0", (2, 3, 0, 1, 0)),
            ("PMCR_EL0", (3, 3, 9, 12, 0)),
            ("PMCNTENSET_EL0", (3, 3, 9, 12, 1)),
            ("PMSELR_EL0", (3, 3, 9, 12, 5)),
            ("PMCCNTR_EL0", (3, 3, 9, 13, 0)),
            ("PMUSERENR_EL0", (3, 3, 9, 14, 0)),
            ("PMINTENSET_EL1", (3, 0, 9, 14, 1)),
            ("PMEVCNTR0_EL0", (3, 3, 14, 8, 0)),
            ("PMEVTYPER30_EL0", (3, 3, 14, 15, 6)),
            ("PMCCFILTR_EL0", (3, 3, 14, 15, 7)),
        ] {
            let write = sysreg_esr(op0, op1, crn, crm, op2, 3, false);
            assert_eq!(
                debug_or_pmu(write),
                Some(DebugOrPmu {
                    read: false,
                    registers: [None, None]
                }),
                "{name} write"
            );
            let read = sysreg_esr(op0, op1, crn, crm, op2, 7, true);
            assert_eq!(
                debug_or_pmu(read),
                Some(DebugOrPmu {
                    read: true,
                    registers: [Some(7), None]
                }),
                "{name} read"
            );
            // A read into XZR changes no register.
            let xzr = sysreg_esr(op0, op1, crn, crm, op2, 31, true);
            assert_eq!(debug_or_pmu(xzr).unwrap().registers, [None, None]);
        }
    }

    #[test]
    fn other_aarch64_registers_are_not_debug_or_pmu() {
        for (name, (op0, op1, crn, crm, op2)) in [
            ("ICC_SGI1R_EL1", (3, 0, 12, 11, 5)),
            ("SCTLR_EL1", (3, 0, 1, 0, 0)),
            ("PMSCR_EL1 (SPE)", (3, 0, 9, 9, 0)),
            ("TRCPRGCTLR (trace)", (2, 1, 0, 1, 0)),
            ("DBGVCR32_EL2", (2, 4, 0, 7, 0)),
            ("CNTV_CTL_EL0", (3, 3, 14, 3, 1)),
            ("CNTKCTL_EL1", (3, 0, 14, 1, 0)),
            ("L2CTLR_EL1 (A57)", (3, 1, 11, 0, 2)),
            ("ID_AA64DFR0_EL1", (3, 0, 0, 5, 0)),
        ] {
            let esr = sysreg_esr(op0, op1, crn, crm, op2, 1, true);
            assert_eq!(debug_or_pmu(esr), None, "{name}");
        }
        // Not a system-register trap at all: an HVC.
        assert_eq!(debug_or_pmu(0x5a00_0000), None);
    }

    #[test]
    fn aarch32_debug_and_pmu_registers_are_recognised() {
        for (name, ec, (op1, crn, crm, op2)) in [
            ("DBGDSCRext", EC_CP14_32, (0, 0, 2, 2)),
            ("DBGBVR0", EC_CP14_32, (0, 0, 0, 4)),
            ("DBGBCR0", EC_CP14_32, (0, 0, 0, 5)),
            ("DBGWVR0", EC_CP14_32, (0, 0, 0, 6)),
            ("DBGWCR0", EC_CP14_32, (0, 0, 0, 7)),
            ("DBGDIDR", EC_CP14_32, (0, 0, 0, 0)),
            ("DBGOSLAR", EC_CP14_32, (0, 1, 0, 4)),
            ("PMCR", EC_CP15_32, (0, 9, 12, 0)),
            ("PMCNTENSET", EC_CP15_32, (0, 9, 12, 1)),
            ("PMSELR", EC_CP15_32, (0, 9, 12, 5)),
            ("PMCCNTR", EC_CP15_32, (0, 9, 13, 0)),
            ("PMUSERENR", EC_CP15_32, (0, 9, 14, 0)),
            ("PMINTENSET", EC_CP15_32, (0, 9, 14, 1)),
            ("PMEVCNTR0", EC_CP15_32, (0, 14, 8, 0)),
            ("PMCCFILTR", EC_CP15_32, (0, 14, 15, 7)),
        ] {
            let read = mcr_esr(u64::from(ec), op1, crn, crm, op2, 4, true);
            assert_eq!(
                debug_or_pmu(read),
                Some(DebugOrPmu {
                    read: true,
                    registers: [Some(4), None]
                }),
                "{name} read"
            );
            let write = mcr_esr(u64::from(ec), op1, crn, crm, op2, 4, false);
            assert_eq!(debug_or_pmu(write).unwrap().registers, [None, None]);
            // MRC to APSR_nzcv (Rt 15) leaves every register alone.
            let flags = mcr_esr(u64::from(ec), op1, crn, crm, op2, 15, true);
            assert_eq!(debug_or_pmu(flags).unwrap().registers, [None, None]);
        }
        // MRRC p15, 0, r2, r3, c9: the 64-bit PMCCNTR.
        let mrrc = (0x04 << 26) | (1 << 25) | (3 << 10) | (2 << 5) | (9 << 1) | 1;
        assert_eq!(
            debug_or_pmu(mrrc),
            Some(DebugOrPmu {
                read: true,
                registers: [Some(2), Some(3)]
            })
        );
        // MRRC p14, 0, r0, r1, c1: DBGDRAR, 64-bit.
        let mrrc14 = (0x0c << 26) | (1 << 25) | (1 << 10) | (1 << 1) | 1;
        assert_eq!(debug_or_pmu(mrrc14).unwrap().registers, [Some(0), Some(1)]);
    }

    /// An AArch32 syndrome names registers in their AArch64 view, X0..X30
    /// (R15 is APSR_nzcv). Whatever the 5-bit fields say, a read names no
    /// register past X30: the core would index the vCPU's registers by it.
    #[test]
    fn aarch32_syndromes_never_name_register_31() {
        for rt in 0..32u64 {
            for rt2 in 0..32u64 {
                let mrrc14 = (0x0c << 26) | (1 << 25) | (rt2 << 10) | (rt << 5) | (1 << 1) | 1;
                let registers = debug_or_pmu(mrrc14).unwrap().registers;
                assert!(
                    registers.iter().flatten().all(|&r| r < 31 && r != 15),
                    "Rt {rt}, Rt2 {rt2}: {registers:?}"
                );
            }
            let mrc14 = mcr_esr(u64::from(EC_CP14_32), 0, 0, 2, 2, rt, true);
            let registers = debug_or_pmu(mrc14).unwrap().registers;
            assert!(registers.iter().flatten().all(|&r| r < 31), "Rt {rt}");
        }
    }

    #[test]
    fn other_aarch32_registers_are_not_debug_or_pmu() {
        for (name, ec, (op1, crn, crm, op2)) in [
            ("SCTLR", EC_CP15_32, (0, 1, 0, 0)),
            ("L2CTLR (A15)", EC_CP15_32, (1, 9, 0, 2)),
            ("CNTV_CTL", EC_CP15_32, (0, 14, 3, 1)),
            ("HCR", EC_CP15_32, (4, 1, 1, 0)),
            ("TEECR (ThumbEE)", EC_CP14_32, (6, 0, 0, 0)),
            ("JIDR (Jazelle)", EC_CP14_32, (7, 0, 0, 0)),
            ("trace", EC_CP14_32, (1, 0, 1, 0)),
        ] {
            let esr = mcr_esr(u64::from(ec), op1, crn, crm, op2, 0, true);
            assert_eq!(debug_or_pmu(esr), None, "{name}");
        }
        // MCRR p15, 0, r0, r1, c2: TTBR0, not the PMU.
        let ttbr0 = (0x04 << 26) | (1 << 25) | (1 << 10) | (2 << 1);
        assert_eq!(debug_or_pmu(ttbr0), None);
        // MCRR p15, 1, ..., c9: not PMCCNTR (opc1 1).
        let other = (0x04 << 26) | (1 << 25) | (1 << 16) | (9 << 1);
        assert_eq!(debug_or_pmu(other), None);
    }

    #[test]
    fn other_classes_are_named() {
        assert_eq!(decode(&sync(0x8600_0000, 0, 0)), Trap::Other { ec: 0x21 });
        assert_eq!(class_name(0x18), "system register access");
        assert_eq!(class_name(0x3c), "BRK");
    }
}

/// Every syndrome a guest can cause, fuzzed (`cargo xtask fuzz` runs more).
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::platform::ExitKind;
    use proptest::prelude::*;

    /// What a load of `width` bytes leaves in the register, written the
    /// other way round: through Rust's own integer casts.
    fn reference_load(width: u8, sign_extend: bool, wide: bool, value: u64) -> u64 {
        let extended = match (width, sign_extend) {
            (1, false) => u64::from(value as u8),
            (2, false) => u64::from(value as u16),
            (4, false) => u64::from(value as u32),
            (1, true) => value as u8 as i8 as i64 as u64,
            (2, true) => value as u16 as i16 as i64 as u64,
            (4, true) => value as u32 as i32 as i64 as u64,
            _ => value,
        };
        if wide {
            extended
        } else {
            u64::from(extended as u32)
        }
    }

    proptest! {
        #[test]
        fn fuzz_any_syndrome_decodes(esr in any::<u64>(), far in any::<u64>(), hpfar in any::<u64>()) {
            let exit = RawExit { kind: ExitKind::Sync, esr, far, hpfar };
            match decode(&exit) {
                Trap::Stage2Abort(abort) => {
                    prop_assert_eq!(abort.ipa & 0xfff, far & 0xfff);
                    prop_assert_eq!(abort.ipa >> 12, (hpfar >> 4) & (u64::MAX >> 12));
                    if let Some(access) = abort.access {
                        prop_assert!(matches!(access.width, 1 | 2 | 4 | 8));
                        prop_assert!(access.register <= 31);
                        prop_assert!(!abort.instruction);
                    }
                }
                Trap::SystemRegister(sysreg) => {
                    prop_assert!(sysreg.register <= 31);
                    let (op0, op1, crn, crm, op2) = sysreg.encoding;
                    prop_assert!(op0 < 4 && op1 < 8 && crn < 16 && crm < 16 && op2 < 8);
                }
                Trap::Other { ec } => prop_assert_eq!(ec, exception_class(esr)),
                _ => {}
            }
        }

        #[test]
        fn fuzz_loads_and_stores_match_integer_casts(
            size in 0u8..4, sign_extend: bool, wide: bool, value: u64, register in 0u8..32,
        ) {
            let access = Access { width: 1 << size, register, sign_extend, wide_register: wide };
            prop_assert_eq!(
                access.loaded(value),
                reference_load(access.width, sign_extend, wide, value)
            );
            let stored = access.stored(value);
            prop_assert!(access.width == 8 || stored < 1 << (u32::from(access.width) * 8));
            prop_assert_eq!(stored, reference_load(access.width, false, true, value));
        }
    }
}
