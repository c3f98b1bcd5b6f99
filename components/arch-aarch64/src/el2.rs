//! EL2 control: what traps, how stage 2 is configured, and running a vCPU.

use crate::{context::Context, mmu, psci};
use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2, HPFAR_EL2};
use core::arch::asm;
use hv::{ExitKind, RawExit};

extern "C" {
    fn __tessera_enter_guest(regs: *mut crate::context::GuestRegs) -> u64;
}

/// HCR_EL2 while guests run: stage 2 on (VM), set/way invalidation as clean
/// (SWIO), physical IRQ/FIQ/SError to EL2 (IMO/FMO/AMO), broadcast TLB and
/// barrier scope inner-shareable (FB, BSU), trap WFI (TWI) and SMC (TSC).
/// RW (EL1 is AArch64) is per vCPU: `Context::hcr`.
const HCR_GUEST: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 9)
    | (0b01 << 10)
    | (1 << 13)
    | (1 << 19);

/// VTCR_EL2: 39-bit IPA (T0SZ 25), start at level 1 (SL0 1), walks
/// inner-shareable write-back, 4 KiB granule, RES1 bit 31; PS from the CPU.
const VTCR: u64 = (1 << 31)
    | (0b11 << 12)
    | (0b01 << 10)
    | (0b01 << 8)
    | (0b01 << 6)
    | (64 - hv::stage2::IPA_BITS as u64);

/// CNTHCTL_EL2: EL1 may read the physical counter (EL1PCTEN) but not use
/// the physical timer (EL1PCEN clear), which is the hypervisor's business.
const CNTHCTL: u64 = 1 << 0;

/// Configures EL2 for running guests. Call once per CPU after the MMU is on.
pub fn init() {
    // SAFETY: these registers configure EL1&0 translation and traps, which
    // only take effect once a guest runs; the virtual counter offset is 0
    // so guests see the physical count.
    unsafe {
        asm!(
            "msr vtcr_el2, {vtcr}",
            "msr hcr_el2, {hcr}",
            "msr cnthctl_el2, {cnthctl}",
            "msr cntvoff_el2, xzr",
            "isb",
            vtcr = in(reg) VTCR | (mmu::pa_range() << 16),
            hcr = in(reg) HCR_GUEST,
            cnthctl = in(reg) CNTHCTL,
            options(nostack),
        )
    };
}

/// Loads a vCPU's EL1 state (timer included), its register width and its
/// stage-2 tables.
pub fn vcpu_load(ctx: &Context, vttbr: u64) {
    // SAFETY: HCR_EL2.RW and VTTBR only govern EL1&0, which no code runs
    // under until the next eret; the other HCR bits stay as init set them.
    unsafe {
        asm!("msr hcr_el2, {hcr}", "msr vttbr_el2, {vttbr}", "isb",
             hcr = in(reg) ctx.hcr(HCR_GUEST), vttbr = in(reg) vttbr, options(nostack))
    };
    ctx.el1.restore();
    if let Some(aarch32) = &ctx.aarch32 {
        aarch32.restore();
    }
}

/// Saves a vCPU's EL1 state, then stops its virtual timer in this CPU so
/// it cannot fire here once the vCPU has moved on.
pub fn vcpu_put(ctx: &mut Context) {
    ctx.el1.save();
    if let Some(aarch32) = &mut ctx.aarch32 {
        aarch32.save();
    }
    // SAFETY: the guest's timer state was just saved; disabling it in the
    // hardware only affects EL1 until the next vcpu_load.
    unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nostack)) };
}

/// Enters the loaded vCPU; returns when it traps.
pub fn run(ctx: &mut Context) -> RawExit {
    // SAFETY: the assembly saves and restores every callee-saved register
    // and the stack pointer around the guest, and writes only `ctx.regs`,
    // which we hold exclusively.
    let kind = unsafe { __tessera_enter_guest(&mut ctx.regs) };
    RawExit {
        kind: match kind {
            0 => ExitKind::Sync,
            1 => ExitKind::Irq,
            2 => ExitKind::Fiq,
            _ => ExitKind::SError,
        },
        esr: ESR_EL2.get(),
        far: FAR_EL2.get(),
        hpfar: HPFAR_EL2.get(),
    }
}

/// Address the EL2 identity map leaves unmapped (above the low 4 GiB).
const UNMAPPED: u64 = 0x10_0000_0000;

/// Self-test of the fault path: takes a data abort at EL2 on purpose.
pub fn selftest_fault() -> ! {
    // SAFETY: the load faults (nothing is mapped there) and the fault
    // handler powers off; no memory is read.
    unsafe {
        asm!("ldr {tmp}, [{addr}]", addr = in(reg) UNMAPPED, tmp = out(reg) _, options(nostack, readonly))
    };
    unreachable!("a read of an unmapped address returned");
}

/// The registers `__tessera_el2_fault` saved.
#[repr(C)]
pub struct FaultFrame {
    pub x: [u64; 31],
}

/// An exception taken by the hypervisor itself: a bug. Report and stop.
#[no_mangle]
extern "C" fn tessera_el2_fault(kind: u64, frame: &FaultFrame) -> ! {
    let (esr, far, elr): (u64, u64, u64);
    // SAFETY: reading the syndrome registers has no side effects.
    unsafe {
        asm!("mrs {}, esr_el2", "mrs {}, far_el2", "mrs {}, elr_el2",
             out(reg) esr, out(reg) far, out(reg) elr, options(nomem, nostack))
    };
    let what = match kind & 0xf {
        0 => "synchronous exception",
        1 => "IRQ",
        2 => "FIQ",
        _ => "SError",
    };
    hv::error!(
        "unexpected exception in hypervisor: {what}, EC {:#x} ({}), ESR {esr:#x}, FAR {far:#x}, ELR {elr:#x}, LR {:#x}",
        hv::trap::exception_class(esr),
        hv::trap::class_name(hv::trap::exception_class(esr)),
        frame.x[30],
    );
    hv::error!("hypervisor stopped");
    psci::system_off()
}
