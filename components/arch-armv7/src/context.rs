//! A vCPU's state: what the guest entry/exit assembly saves and loads on
//! every trap (r0-r12, every mode's banked registers, PC, CPSR), and the
//! guest's CP15 and VFP registers, switched only when another vCPU is
//! loaded.

use crate::{
    regs::{Par, Ttbcr, Ttbr0, Ttbr1},
    vfp::VfpRegs,
};
use aarch32_cpu::register::{
    Adfsr, Aifsr, Amair0, Amair1, Cntkctl, CntvCtl, CntvCval, Contextidr, Cpacr, Csselr, Dacr,
    Dfar, Dfsr, Ifar, Ifsr, Mair0, Mair1, Midr, Sctlr, SysRegRead, SysRegRead64, SysRegWrite,
    SysRegWrite64, Tpidrprw, Tpidruro, Tpidrurw, Vbar, Vmpidr, Vpidr,
};
use core::mem::{offset_of, size_of};
use hv::{GuestWidth, VcpuRegs};

/// SP, LR and SPSR of one exception mode.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Banked {
    pub sp: u32,
    pub lr: u32,
    pub spsr: u32,
}

/// Saved by `__tessera_guest_exit`, loaded by `__tessera_enter_guest`, in
/// this order (the assembly moves them with LDM/STM; keep them in step).
#[repr(C)]
#[derive(Clone, Default)]
pub struct GuestRegs {
    /// r0-r12; r8-r12 are the non-FIQ copies.
    pub r: [u32; 13],
    pub sp_usr: u32,
    pub lr_usr: u32,
    pub svc: Banked,
    pub abt: Banked,
    pub und: Banked,
    pub irq: Banked,
    /// r8_fiq-r12_fiq.
    pub fiq_r8_r12: [u32; 5],
    pub fiq: Banked,
    /// ELR_hyp: where the guest resumes.
    pub pc: u32,
    /// SPSR_hyp: the guest's CPSR.
    pub cpsr: u32,
}

/// Where the banked registers start: 13 words in.
pub const BANKED_OFFSET: usize = offset_of!(GuestRegs, sp_usr);
const _: () = assert!(BANKED_OFFSET == 52 && offset_of!(GuestRegs, pc) == 140);
const _: () = assert!(size_of::<GuestRegs>() == 37 * 4);

/// CPSR.M values.
const MODE_MASK: u32 = 0x1f;
const MODE_FIQ: u32 = 0x11;
const MODE_IRQ: u32 = 0x12;
const MODE_SVC: u32 = 0x13;
const MODE_ABT: u32 = 0x17;
const MODE_UND: u32 = 0x1b;

/// Register `rN` (0..=14) of `$regs` as the guest sees it in its current
/// mode, borrowed with `$borrow` (`&` or `&mut`): trap syndromes (HSR.SRT)
/// and the calling convention name registers that way.
macro_rules! mode_register {
    ($regs:expr, $n:expr, $($borrow:tt)+) => {{
        let regs = $regs;
        match ($n, regs.cpsr & MODE_MASK) {
            (8..=12, MODE_FIQ) => $($borrow)+ regs.fiq_r8_r12[$n - 8],
            (0..=12, _) => $($borrow)+ regs.r[$n],
            (13, MODE_FIQ) => $($borrow)+ regs.fiq.sp,
            (14, MODE_FIQ) => $($borrow)+ regs.fiq.lr,
            (13, MODE_IRQ) => $($borrow)+ regs.irq.sp,
            (14, MODE_IRQ) => $($borrow)+ regs.irq.lr,
            (13, MODE_SVC) => $($borrow)+ regs.svc.sp,
            (14, MODE_SVC) => $($borrow)+ regs.svc.lr,
            (13, MODE_ABT) => $($borrow)+ regs.abt.sp,
            (14, MODE_ABT) => $($borrow)+ regs.abt.lr,
            (13, MODE_UND) => $($borrow)+ regs.und.sp,
            (14, MODE_UND) => $($borrow)+ regs.und.lr,
            // User and System mode (HYP and Monitor cannot be a guest's).
            (13, _) => $($borrow)+ regs.sp_usr,
            (14, _) => $($borrow)+ regs.lr_usr,
            // r15 is never named by a syndrome the core uses.
            _ => $($borrow)+ regs.pc,
        }
    }};
}

impl GuestRegs {
    pub fn get(&self, n: usize) -> u32 {
        *mode_register!(self, n, &)
    }

    pub fn get_mut(&mut self, n: usize) -> &mut u32 {
        mode_register!(self, n, &mut)
    }
}

/// Defines [`Cp15Regs`] with one field per register and the code that
/// moves them between the CPU and memory, so the list is written once.
/// `u32` fields use the crate's 32-bit register traits, `u64` its 64-bit
/// ones.
macro_rules! cp15_registers {
    ($($field:ident: $reg:ident as $width:ident),* $(,)?) => {
        /// The guest's PL1 (and PL0) CP15 state, and its virtual timer.
        #[repr(C)]
        #[derive(Clone, Default)]
        pub struct Cp15Regs {
            $(pub $field: $width,)*
        }

        impl Cp15Regs {
            /// Reads the guest's registers out of the CPU.
            pub fn save(&mut self) {
                $(self.$field = cp15_registers!(@read $reg $width);)*
            }

            /// Writes them back. The hypervisor runs in HYP mode with its
            /// own translation regime and does not depend on PL1 state, so
            /// changing it here is safe for us; the guest sees it when it
            /// resumes.
            pub fn restore(&self) {
                $(cp15_registers!(@write $reg $width self.$field);)*
            }
        }
    };
    (@read $reg:ident u32) => { <$reg as SysRegRead>::read_raw() };
    (@read $reg:ident u64) => { <$reg as SysRegRead64>::read_raw() };
    (@write $reg:ident u32 $value:expr) => {
        // SAFETY: PL1 registers only affect PL1/PL0 execution, which
        // resumes after the eret that follows.
        unsafe { <$reg as SysRegWrite>::write_raw($value) }
    };
    (@write $reg:ident u64 $value:expr) => {
        // SAFETY: as above.
        unsafe { <$reg as SysRegWrite64>::write_raw($value) }
    };
}

// PRRR and NMRR are MAIR0 and MAIR1 (same encodings) when the guest
// does not use LPAE.
cp15_registers!(
    sctlr: Sctlr as u32,
    cpacr: Cpacr as u32,
    ttbr0: Ttbr0 as u64,
    ttbr1: Ttbr1 as u64,
    ttbcr: Ttbcr as u32,
    dacr: Dacr as u32,
    dfsr: Dfsr as u32,
    ifsr: Ifsr as u32,
    adfsr: Adfsr as u32,
    aifsr: Aifsr as u32,
    dfar: Dfar as u32,
    ifar: Ifar as u32,
    mair0: Mair0 as u32,
    mair1: Mair1 as u32,
    amair0: Amair0 as u32,
    amair1: Amair1 as u32,
    vbar: Vbar as u32,
    contextidr: Contextidr as u32,
    tpidrurw: Tpidrurw as u32,
    tpidruro: Tpidruro as u32,
    tpidrprw: Tpidrprw as u32,
    cntkctl: Cntkctl as u32,
    csselr: Csselr as u32,
    par: Par as u64,
    // The compare value before the control, so a restored timer never
    // fires against the previous vCPU's compare value.
    cntv_cval: CntvCval as u64,
    cntv_ctl: CntvCtl as u32,
    vmpidr: Vmpidr as u32,
    vpidr: Vpidr as u32,
);

/// SCTLR at reset (Cortex-A15): MMU, caches and alignment checks off,
/// exceptions in ARM state.
const SCTLR_RESET: u32 = 0x00c5_0078;
/// SVC mode, A, I and F masked, ARM state.
const CPSR_SVC_MASKED: u32 = 0x1d3;
/// MPIDR bit 31 reads as one (the multiprocessing-extensions format).
const VMPIDR_RES1: u32 = 1 << 31;

#[derive(Clone, Default)]
pub struct Context {
    pub regs: GuestRegs,
    pub cp15: Cp15Regs,
    /// d0-d31, FPSCR, FPEXC: all zero at reset (VFP disabled).
    pub vfp: VfpRegs,
}

impl Context {
    /// vCPU `index` of its VM, about to start at `entry` in SVC mode with
    /// `r0 = arg0`. Guests are always AArch32 here (the composer refuses
    /// 64-bit ones on ARMv7 boards), so their addresses are 32-bit.
    pub fn new(entry: u64, arg0: u64, index: u64, width: GuestWidth) -> Self {
        debug_assert_eq!(width, GuestWidth::Aarch32);
        let mut ctx = Context::default();
        let (pc, thumb) = abi::psci::aarch32_entry(entry);
        ctx.regs.pc = pc as u32;
        ctx.regs.cpsr = CPSR_SVC_MASKED;
        if thumb {
            ctx.regs.cpsr |= abi::psci::PSR_T;
        }
        ctx.regs.r[0] = arg0 as u32;
        ctx.cp15.sctlr = SCTLR_RESET;
        ctx.cp15.vmpidr = VMPIDR_RES1 | index as u32;
        ctx.cp15.vpidr = <Midr as SysRegRead>::read_raw();
        ctx
    }
}

impl VcpuRegs for Context {
    fn reg(&self, n: usize) -> u64 {
        u64::from(self.regs.get(n))
    }
    fn set_reg(&mut self, n: usize, value: u64) {
        *self.regs.get_mut(n) = value as u32;
    }
    fn pc(&self) -> u64 {
        u64::from(self.regs.pc)
    }
    fn set_pc(&mut self, pc: u64) {
        self.regs.pc = pc as u32;
    }
}
