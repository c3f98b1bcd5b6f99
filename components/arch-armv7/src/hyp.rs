//! HYP mode control: what traps, how stage 2 is configured, and running a
//! vCPU.

use crate::{
    context::{Context, GuestRegs},
    mmu, psci,
    regs::{Vtcr, Vttbr},
    vfp,
};
use aarch32_cpu::{
    asm::isb,
    register::{
        CntVoff, Cnthctl, CntvCtl, Hcptr, Hcr, Hdcr, Hdfar, Hifar, Hpfar, Hsr, Hstr, Pmcntenclr,
        Pmcr, Pmintenclr, Pmuserenr, SysRegRead, SysRegWrite, SysRegWrite64,
    },
};
use core::arch::asm;
use hv::{ExitKind, RawExit};

extern "C" {
    fn __tessera_enter_guest(regs: *mut GuestRegs) -> u32;
}

/// HCR while guests run: stage 2 on (VM), set/way invalidation as clean
/// (SWIO), physical FIQ/IRQ/asynchronous aborts to HYP (FMO/IMO/AMO),
/// broadcast TLB and barrier scope inner-shareable (FB, BSU), trap WFI
/// (TWI) and SMC (TSC). Same bit positions as HCR_EL2's low word.
const HCR_GUEST: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 9)
    | (0b01 << 10)
    | (1 << 13)
    | (1 << 19);

/// The VMID width: VTTBR has an 8-bit VMID field on ARMv7.
pub fn vmid_bits() -> u32 {
    8
}

/// VTCR: RES1 bit 31, walks inner-shareable write-back, start at level 1
/// (SL0 1), 39-bit IPA: T0SZ is a 4-bit signed field, 32 - 39 = -7 =
/// 0b1001, and S (bit 4) must equal its sign bit.
const VTCR: u32 = (1 << 31)
    | (0b11 << 12)
    | (0b01 << 10)
    | (0b01 << 8)
    | (0b01 << 6)
    | (1 << 4)
    | (((32 - hv::stage2::IPA_BITS as i32) as u32) & 0xf);
const _: () = assert!(VTCR & 0x1f == 0b1_1001);

/// HCPTR: the RES1 bits only. CP10/CP11 (VFP and Advanced SIMD) are not
/// trapped (TCP10/TCP11 clear), for guests or for HYP: guests use VFP
/// directly, gated by their own CPACR and FPEXC, and HYP needs the access
/// to switch their VFP state ([`crate::vfp`]). TASE (Advanced SIMD) and
/// TTA (trace) are clear too.
const HCPTR: u32 = 0x33ff;
const _: () = assert!(HCPTR & (1 << 10 | 1 << 11 | 1 << 15 | 1 << 20) == 0);

/// CNTHCTL: PL1 may read the physical counter (PL1PCTEN) but not use the
/// physical timer (PL1PCEN clear), which is the hypervisor's business.
const CNTHCTL: u32 = 1 << 0;

/// HDCR: guests have no debug or PMU registers. Their accesses trap (TDA:
/// breakpoints, watchpoints, DBGDSCR and the rest of CP14's debug
/// registers; TDOSA: OS lock and power-down; TDRA: the debug ROM and self
/// addresses; TPM and TPMCR: every PMU register) and the core answers them
/// RAZ/WI, so none of them carries one VM's values to another. HPMN is
/// PMCR.N, its reset value; TPM traps PL1's access to every counter anyway.
/// The HYP counters (HPME) stay off.
const HDCR_TRAPS: u32 = (1 << 11) | (1 << 10) | (1 << 9) | (1 << 6) | (1 << 5);

fn init_debug_traps() {
    let counters = (Pmcr::read().0 >> 11) & 0x1f;
    // SAFETY: HDCR only governs PL1 and PL0 accesses to debug and PMU
    // registers, which now trap to HYP mode; the core answers them.
    unsafe { Hdcr::write(Hdcr(HDCR_TRAPS | counters)) };
    // What the hardware holds while guests run, since they can no longer
    // change it: PL0 PMU access trapped to PL1 first, no counters on.
    // SAFETY: the PMU serves no one (guests are trapped, HYP does not
    // count); stopping its counters and PL0 access changes nothing else.
    unsafe {
        Pmuserenr::write(Pmuserenr(0));
        Pmcntenclr::write(Pmcntenclr(u32::MAX));
        Pmintenclr::write(Pmintenclr(u32::MAX));
        Pmcr::write(Pmcr(0));
    }
}

/// Configures HYP mode for running guests. Call once per CPU after the MMU
/// is on.
pub fn init() {
    init_debug_traps();
    // SAFETY: VTCR configures stage-2 walks, which only take effect once a
    // guest runs.
    unsafe { <Vtcr as SysRegWrite>::write_raw(VTCR) };
    Hcr::write(Hcr::new_with_raw_value(HCR_GUEST));
    Hcptr::write(Hcptr::new_with_raw_value(HCPTR));
    isb();
    vfp::init();
    // SAFETY: HSTR 0 traps no guest CP15 access; the core emulates none.
    unsafe { Hstr::write(Hstr(0)) };
    Cnthctl::write(Cnthctl::new_with_raw_value(CNTHCTL));
    // Guests see the physical count as their virtual one.
    CntVoff::write(CntVoff(0));
    isb();
}

/// Loads a vCPU's PL1 state (timer included), its VFP registers and its
/// stage-2 tables.
///
/// VFP state is switched here and in [`vcpu_put`] only, not on every trap:
/// the hypervisor is soft-float and never touches VFP, so the guest's VFP
/// registers stay live in the hardware while it is in HYP.
pub fn vcpu_load(ctx: &Context, vttbr: u64) {
    ctx.cp15.restore();
    ctx.vfp.restore();
    // SAFETY: VTTBR selects the stage-2 tables and VMID for PL1&0, which no
    // code runs under until the next eret.
    unsafe { <Vttbr as SysRegWrite64>::write_raw(vttbr) };
    isb();
}

/// Saves a vCPU's PL1 state and VFP registers, then stops its virtual
/// timer in this CPU so it cannot fire here once the vCPU has moved on.
pub fn vcpu_put(ctx: &mut Context) {
    ctx.cp15.save();
    ctx.vfp.save();
    CntvCtl::write(CntvCtl::new_with_raw_value(0));
    isb();
}

/// Enters the loaded vCPU; returns when it traps.
pub fn run(ctx: &mut Context) -> RawExit {
    // SAFETY: the assembly saves and restores every callee-saved register,
    // LR and the stack pointer around the guest, and writes only
    // `ctx.regs`, which we hold exclusively.
    let kind = unsafe { __tessera_enter_guest(&mut ctx.regs) };
    let hsr = <Hsr as SysRegRead>::read_raw();
    let far = if hv::trap::exception_class(hsr.into()) == hv::trap::EC_IABT_LOWER {
        <Hifar as SysRegRead>::read_raw()
    } else {
        <Hdfar as SysRegRead>::read_raw()
    };
    RawExit {
        kind: match kind {
            0 => ExitKind::Sync,
            1 => ExitKind::Irq,
            _ => ExitKind::Fiq,
        },
        esr: hsr.into(),
        far: far.into(),
        hpfar: <Hpfar as SysRegRead>::read_raw().into(),
    }
}

/// Self-test of the fault path: takes a data abort in HYP mode on purpose,
/// reading the null guard the HYP map leaves unmapped (see [`mmu`]; on a
/// board with RAM at address 0 the read succeeds and this panics instead).
pub fn selftest_fault() -> ! {
    // SAFETY: the load faults (nothing is mapped there) and the fault
    // handler powers off; no memory is read.
    unsafe {
        asm!("ldr {tmp}, [{addr}]", addr = in(reg) (mmu::NULL_GUARD_END / 2) as u32, tmp = out(reg) _,
             options(nostack, readonly))
    };
    unreachable!("a read of an unmapped address returned");
}

/// Self-test of W^X: writes a word of hypervisor text (back to itself).
/// The write must take a permission fault; if it returns, text is writable.
pub fn selftest_write_text() {
    let text = selftest_write_text as *const () as u32;
    // SAFETY: the store writes back the value just loaded, so even if text
    // is writable (the bug this tests for) nothing changes.
    unsafe {
        asm!("ldr {tmp}, [{addr}]", "str {tmp}, [{addr}]",
             addr = in(reg) text, tmp = out(reg) _, options(nostack))
    };
}

/// `bx lr`, stored at run time in writable data (so
/// the compiler cannot make it read-only): executing it must fault.
static RET_IN_DATA: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Self-test of W^X: calls a `bx lr` in the data section. The fetch must
/// take a permission fault; if it returns, data is executable.
pub fn selftest_exec_data() {
    RET_IN_DATA.store(0xe12f_ff1e, core::sync::atomic::Ordering::Relaxed);
    let code = RET_IN_DATA.as_ptr() as u32;
    // SAFETY: the code at `code` is a single `bx lr`; if data is executable
    // (the bug this tests for) it returns at once, clobbering only LR.
    unsafe {
        asm!("mcr p15, 0, {zero}, c7, c5, 0", "dsb", "isb", "blx {code}",
             code = in(reg) code, zero = in(reg) 0, out("lr") _, options(nostack))
    };
}

/// Self-test of the stack guard: pushes until the stack runs into the
/// guard page below it, which must fault.
pub fn selftest_stack_overflow() -> ! {
    // SAFETY: deliberately overflows this CPU's stack into its unmapped
    // guard page; the fault handler reports on its own stack and powers
    // off. Without a guard, what lies below (heap) is overwritten and the
    // loop goes on until some other fault stops it.
    unsafe { asm!("mov r0, #0", "0:", "push {{r0}}", "b 0b", options(noreturn)) };
}

/// The registers the fault vector saved.
#[repr(C)]
pub struct FaultFrame {
    pub r: [u32; 13],
    pub lr: u32,
}

/// An exception taken by the hypervisor itself: a bug. Report and stop.
#[no_mangle]
extern "C" fn tessera_hyp_fault(kind: u32, frame: &FaultFrame) -> ! {
    let hsr = <Hsr as SysRegRead>::read_raw();
    let elr: u32;
    // SAFETY: reading ELR_hyp has no side effects (the crate lacks it).
    unsafe {
        asm!(".arch_extension virt", "mrs {}, elr_hyp", out(reg) elr, options(nomem, nostack))
    };
    let what = match kind {
        0 => "reset",
        1 => "undefined instruction",
        2 => "HVC",
        3 => "prefetch abort",
        _ => "data abort",
    };
    let ec = hv::trap::exception_class(hsr.into());
    hv::error!(
        "unexpected exception in hypervisor: {what}, EC {ec:#x} ({}), HSR {hsr:#x}, HDFAR {:#x}, HIFAR {:#x}, ELR {elr:#x}, LR {:#x}",
        hv::trap::class_name(ec),
        <Hdfar as SysRegRead>::read_raw(),
        <Hifar as SysRegRead>::read_raw(),
        frame.lr,
    );
    let far = if ec == hv::trap::EC_IABT_SAME {
        <Hifar as SysRegRead>::read_raw()
    } else {
        <Hdfar as SysRegRead>::read_raw()
    };
    if let Some(abort) = hv::trap::AbortSyndrome::decode(hsr.into()) {
        hv::error!(
            "{abort} at {far:#x}, in {}",
            mmu::layout().region(far.into())
        );
    }
    hv::error!("hypervisor stopped");
    psci::system_off()
}
