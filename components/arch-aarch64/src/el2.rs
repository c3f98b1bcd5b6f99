//! EL2 control: what traps, how stage 2 is configured, and running a vCPU.

use crate::{context::Context, mmu, psci};
use aarch64_cpu::{
    asm::barrier,
    registers::{
        Readable, Writeable, CNTHCTL_EL2, CNTVOFF_EL2, CNTV_CTL_EL0, ESR_EL2, FAR_EL2, HCR_EL2,
        HPFAR_EL2, ID_AA64MMFR1_EL1, MDCR_EL2, MDSCR_EL1, VTCR_EL2, VTTBR_EL2,
    },
};
use core::arch::asm;
use hv::{ExitKind, RawExit};
use tock_registers::fields::FieldValue;

extern "C" {
    fn __tessera_enter_guest(regs: *mut crate::context::GuestRegs) -> u64;
}

/// HCR_EL2 while guests run: stage 2 on (VM), set/way invalidation as clean
/// (SWIO), physical IRQ/FIQ/SError to EL2 (IMO/FMO/AMO), broadcast TLB and
/// barrier scope inner-shareable (FB, BSU), trap WFI (TWI) and SMC (TSC).
/// RW (the width of EL1) is per vCPU: `Context::hcr_rw`.
fn guest_hcr() -> FieldValue<u64, HCR_EL2::Register> {
    HCR_EL2::VM::Enable
        + HCR_EL2::SWIO::SET
        + HCR_EL2::FMO::EnableVirtualFIQ
        + HCR_EL2::IMO::EnableVirtualIRQ
        + HCR_EL2::AMO::SET
        + HCR_EL2::FB::SET
        + HCR_EL2::BSU::InnerShareable
        + HCR_EL2::TWI::SET
        + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
}

/// The VMID width the hypervisor uses: 16 bits where the CPU has them
/// (FEAT_VMID16), so thousands of VMs need no rollover; 8 otherwise.
pub fn vmid_bits() -> u32 {
    if ID_AA64MMFR1_EL1.matches_all(ID_AA64MMFR1_EL1::VMIDBits::Bits16) {
        16
    } else {
        8
    }
}

/// VTCR_EL2: a 39-bit IPA (T0SZ), starting at level 1 (SL0), walks
/// inner-shareable write-back, 4 KiB granule; PS from the CPU; VMID width
/// (VS) as `vmid_bits` says, which is what the allocator gets.
fn vtcr() -> FieldValue<u64, VTCR_EL2::Register> {
    let vs = if vmid_bits() == 16 {
        VTCR_EL2::VS::Bits16
    } else {
        VTCR_EL2::VS::Bits8
    };
    VTCR_EL2::RES1::SET
        + vs
        + VTCR_EL2::PS.val(mmu::pa_range())
        + VTCR_EL2::TG0::Granule4KB
        + VTCR_EL2::SH0::Inner
        + VTCR_EL2::ORGN0::NormalWBRAWA
        + VTCR_EL2::IRGN0::NormalWBRAWA
        + VTCR_EL2::SL0::Granule4KBLevel1
        + VTCR_EL2::T0SZ.val(64 - hv::stage2::IPA_BITS as u64)
}

/// MDCR_EL2: guests have no debug or PMU registers. Their accesses trap
/// (TDA: breakpoints, watchpoints, MDSCR and the rest; TDOSA: OS lock and
/// power-down; TDRA: the debug ROM address; TPM and TPMCR: every PMU
/// register) and the core answers them RAZ/WI, so none of them carries one
/// VM's values to another. HPMN is PMCR_EL0.N, the reset value (0 is
/// CONSTRAINED UNPREDICTABLE before FEAT_HPMN0); TPM traps EL1's access to
/// every counter anyway. The EL2 counters (HPME) stay off.
fn init_debug_traps() {
    let pmcr: u64;
    // aarch64-cpu has no PMU registers, hence the assembly here and below.
    // SAFETY: reading PMCR_EL0 at EL2 has no side effects.
    unsafe { asm!("mrs {}, pmcr_el0", out(reg) pmcr, options(nomem, nostack)) };
    let counters = (pmcr >> 11) & 0x1f;
    MDCR_EL2.write(
        MDCR_EL2::TDRA::SET
            + MDCR_EL2::TDOSA::SET
            + MDCR_EL2::TDA::SET
            + MDCR_EL2::TPM::SET
            + MDCR_EL2::TPMCR::SET
            + MDCR_EL2::HPMN.val(counters),
    );
    // What the hardware holds while guests run, since they can no longer
    // change it: no debug events (MDSCR_EL1 0), EL0 PMU access trapped to
    // EL1 first (PMUSERENR_EL0 0), no counters on.
    MDSCR_EL1.set(0);
    // SAFETY: the PMU serves no one (guests are trapped, EL2 does not
    // count); stopping its counters and EL0 access changes nothing else.
    unsafe {
        asm!(
            "msr pmuserenr_el0, xzr",
            "msr pmcntenclr_el0, {all}",
            "msr pmintenclr_el1, {all}",
            "msr pmcr_el0, xzr",
            all = in(reg) u64::from(u32::MAX),
            options(nostack),
        )
    };
}

/// Configures EL2 for running guests. Call once per CPU after the MMU is on.
pub fn init() {
    init_debug_traps();
    // These configure EL1&0 translation and traps, which only take effect
    // once a guest runs (HCR_EL2 is set again per vCPU, with its width).
    HCR_EL2.write(guest_hcr());
    // EL1 may read the physical counter (EL1PCTEN) but not use the physical
    // timer (EL1PCEN), the hypervisor's; the virtual counter offset is 0 so
    // guests see the physical count.
    VTCR_EL2.write(vtcr());
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::CLEAR);
    CNTVOFF_EL2.set(0);
    barrier::isb(barrier::SY);
}

/// Loads a vCPU's EL1 state (timer included), its register width and its
/// stage-2 tables.
pub fn vcpu_load(ctx: &Context, vttbr: u64) {
    HCR_EL2.write(guest_hcr() + ctx.hcr_rw());
    VTTBR_EL2.set(vttbr);
    barrier::isb(barrier::SY);
    ctx.el1.restore();
    if let Some(aarch32) = &ctx.aarch32 {
        aarch32.restore();
    }
    // SAFETY: reads `ctx.fp` only; the registers it loads are the guest's
    // (the soft-float hypervisor does not use them).
    unsafe { crate::entry::__tessera_fp_load(&ctx.fp) };
}

/// Saves a vCPU's EL1 state, then stops its virtual timer in this CPU so
/// it cannot fire here once the vCPU has moved on.
pub fn vcpu_put(ctx: &mut Context) {
    // SAFETY: writes `ctx.fp` only, which we hold exclusively.
    unsafe { crate::entry::__tessera_fp_save(&mut ctx.fp) };
    ctx.el1.save();
    if let Some(aarch32) = &mut ctx.aarch32 {
        aarch32.save();
    }
    // Its state was just saved; this only affects EL1 until the next load.
    CNTV_CTL_EL0.set(0);
    barrier::isb(barrier::SY);
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

/// Self-test of W^X: writes a word of hypervisor text (back to itself).
/// The write must take a permission fault; if it returns, text is writable.
pub fn selftest_write_text() {
    let text = selftest_write_text as *const () as u64;
    // SAFETY: the store writes back the value just loaded, so even if text
    // is writable (the bug this tests for) nothing changes.
    unsafe {
        asm!("ldr {tmp:w}, [{addr}]", "str {tmp:w}, [{addr}]",
             addr = in(reg) text, tmp = out(reg) _, options(nostack))
    };
}

/// `ret`, stored at run time in writable data (so
/// the compiler cannot make it read-only): executing it must fault.
static RET_IN_DATA: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Self-test of W^X: calls a `ret` in the data section. The fetch must
/// take a permission fault; if it returns, data is executable.
pub fn selftest_exec_data() {
    RET_IN_DATA.store(0xd65f_03c0, core::sync::atomic::Ordering::Relaxed);
    let code = RET_IN_DATA.as_ptr() as u64;
    // SAFETY: the code at `code` is a single `ret`; if data is executable
    // (the bug this tests for) it returns at once, clobbering only LR.
    unsafe {
        asm!("ic iallu", "dsb ish", "isb", "blr {code}", code = in(reg) code, out("x30") _,
             options(nostack))
    };
}

/// Self-test of the stack guard: pushes until the stack runs into the
/// guard page below it, which must fault.
pub fn selftest_stack_overflow() -> ! {
    // SAFETY: deliberately overflows this CPU's stack into its unmapped
    // guard page; the fault handler reports on its own stack and powers
    // off. Without a guard, what lies below (heap) is overwritten and the
    // loop goes on until some other fault stops it.
    unsafe { asm!("0:", "str xzr, [sp, #-16]!", "b 0b", options(noreturn)) };
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
    if let Some(abort) = hv::trap::AbortSyndrome::decode(esr) {
        hv::error!("{abort} at {far:#x}, in {}", mmu::layout().region(far));
    }
    hv::error!("hypervisor stopped");
    psci::system_off()
}
