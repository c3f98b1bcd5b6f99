//! A vCPU's state: what the guest entry/exit assembly saves and loads on
//! every trap (general registers, PC, PSTATE), and the FP/SIMD and EL1
//! system registers, switched only when another vCPU is loaded.

use aarch64_cpu::registers::HCR_EL2;
use core::{arch::asm, mem::offset_of};
use hv::{GuestWidth, VcpuRegs};
use tock_registers::fields::FieldValue;

/// Saved by `__tessera_guest_exit`, loaded by `__tessera_enter_guest`.
/// The assembly uses the offsets below; keep them in step.
#[repr(C)]
#[derive(Clone, Default)]
pub struct GuestRegs {
    pub x: [u64; 31],
    /// ELR_EL2: where the guest resumes.
    pub pc: u64,
    /// SPSR_EL2: the guest's PSTATE.
    pub pstate: u64,
}

pub const PC_OFFSET: usize = offset_of!(GuestRegs, pc);
const _: () = assert!(PC_OFFSET == 248);

/// FP/SIMD state. The hypervisor is built soft-float and never touches
/// these registers, so they stay the guest's across its traps and are
/// switched with the vCPU ([`crate::el2::vcpu_load`], `vcpu_put`), not on
/// every exit. `__tessera_fp_save`/`__tessera_fp_load` use the offsets.
#[repr(C, align(16))]
#[derive(Clone, Default)]
pub struct FpRegs {
    pub fpsr: u64,
    pub fpcr: u64,
    pub q: [u128; 32],
}

const _: () = assert!(offset_of!(FpRegs, fpsr) == 0 && offset_of!(FpRegs, q) == 16);

/// Defines a struct with one field per system register and the code that
/// moves them between the CPU and memory, so each list is written once.
macro_rules! el1_registers {
    ($(#[$doc:meta])* $name:ident: $($reg:ident),* $(,)?) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Default)]
        pub struct $name {
            $(pub $reg: u64,)*
        }

        impl $name {
            /// Reads the guest's registers out of the CPU.
            pub fn save(&mut self) {
                $(
                    // SAFETY: reading an EL1 system register at EL2 has no side effects.
                    unsafe { asm!(concat!("mrs {}, ", stringify!($reg)), out(reg) self.$reg, options(nomem, nostack)) };
                )*
            }

            /// Writes them back. The hypervisor runs at EL2 and does not
            /// depend on EL1 state, so changing it here is safe for us; the
            /// guest sees it when it resumes.
            pub fn restore(&self) {
                $(
                    // SAFETY: EL1 registers only affect EL1/EL0 execution, which
                    // resumes after the eret that follows.
                    unsafe { asm!(concat!("msr ", stringify!($reg), ", {}"), in(reg) self.$reg, options(nomem, nostack)) };
                )*
            }
        }
    };
}

el1_registers!(
    /// EL1 (and EL0) system registers of a vCPU.
    El1Regs:
    sctlr_el1,
    cpacr_el1,
    ttbr0_el1,
    ttbr1_el1,
    tcr_el1,
    mair_el1,
    amair_el1,
    vbar_el1,
    contextidr_el1,
    tpidr_el1,
    tpidr_el0,
    tpidrro_el0,
    sp_el0,
    sp_el1,
    elr_el1,
    spsr_el1,
    esr_el1,
    far_el1,
    afsr0_el1,
    afsr1_el1,
    par_el1,
    cntkctl_el1,
    csselr_el1,
    cntv_ctl_el0,
    cntv_cval_el0,
    vmpidr_el2,
);

el1_registers!(
    /// What an AArch32 EL1 has beyond the AArch64 view: the SPSRs of its
    /// other modes (its banked r8-r14 are x8-x30 and travel with the
    /// general registers), and the 32-bit-only controls.
    Aarch32Regs:
    spsr_abt,
    spsr_und,
    spsr_irq,
    spsr_fiq,
    dacr32_el2,
    ifsr32_el2,
    fpexc32_el2,
);

/// SCTLR_EL1 at reset: RES1 bits only (MMU, caches and alignment checks off).
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// AArch32 SCTLR at reset: RES1 bits and CP15 barriers on, the rest off.
const SCTLR_AARCH32_RESET: u64 = 0x00c5_0038;
/// EL1h with D, A, I and F masked.
const PSTATE_EL1H_MASKED: u64 = 0x3c5;
/// AArch32 SVC mode, ARM state, A, I and F masked.
const PSTATE_SVC_MASKED: u64 = 0x1d3;
/// MPIDR.U is RES1 in the virtual MPIDR for a uniprocessor-style affinity.
const VMPIDR_RES1: u64 = 1 << 31;

#[derive(Clone, Default)]
pub struct Context {
    pub regs: GuestRegs,
    pub fp: FpRegs,
    pub el1: El1Regs,
    /// Only for AArch32 guests.
    pub aarch32: Option<Aarch32Regs>,
}

impl Context {
    /// vCPU `index` of its VM, about to start at `entry` with `x0 = arg0`
    /// in `width`.
    pub fn new(entry: u64, arg0: u64, index: u64, width: GuestWidth) -> Self {
        let mut ctx = Context::default();
        ctx.regs.pc = entry;
        ctx.regs.x[0] = arg0;
        ctx.el1.vmpidr_el2 = VMPIDR_RES1 | index;
        match width {
            GuestWidth::Aarch64 => {
                ctx.regs.pstate = PSTATE_EL1H_MASKED;
                ctx.el1.sctlr_el1 = SCTLR_EL1_RESET;
            }
            GuestWidth::Aarch32 => {
                let (pc, thumb) = abi::psci::aarch32_entry(entry);
                ctx.regs.pc = pc;
                ctx.regs.pstate = PSTATE_SVC_MASKED;
                if thumb {
                    ctx.regs.pstate |= u64::from(abi::psci::PSR_T);
                }
                ctx.el1.sctlr_el1 = SCTLR_AARCH32_RESET;
                ctx.aarch32 = Some(Aarch32Regs::default());
            }
        }
        ctx
    }

    /// HCR_EL2.RW for this vCPU: the width of its EL1.
    pub fn hcr_rw(&self) -> FieldValue<u64, HCR_EL2::Register> {
        match self.aarch32 {
            Some(_) => HCR_EL2::RW::AllLowerELsAreAarch32,
            None => HCR_EL2::RW::EL1IsAarch64,
        }
    }

    /// The significant bits of a general register: an AArch32 guest's are
    /// 32 bits (the top halves are not its state).
    fn width_mask(&self) -> u64 {
        match self.aarch32 {
            Some(_) => u64::from(u32::MAX),
            None => u64::MAX,
        }
    }
}

impl VcpuRegs for Context {
    fn reg(&self, n: usize) -> u64 {
        self.regs.x[n] & self.width_mask()
    }
    fn set_reg(&mut self, n: usize, value: u64) {
        self.regs.x[n] = value & self.width_mask();
    }
    fn pc(&self) -> u64 {
        self.regs.pc
    }
    fn set_pc(&mut self, pc: u64) {
        self.regs.pc = pc;
    }
}
