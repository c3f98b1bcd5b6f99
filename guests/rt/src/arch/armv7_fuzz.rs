//! ARMv7-A (PL1) primitives of the fuzzing guest (`crate::fuzz`): the
//! recoverable undefined-instruction entry, raw hypercalls and SMCs with
//! any function ID and immediate, single loads and stores of every width
//! to the GIC frames, HYP-mode and Secure registers PL1 must not reach,
//! undefined instructions and the wait instructions.
//!
//! A submodule of the arch module, so still the arch part of the runtime:
//! all its `unsafe` is here. An instruction here that is UNDEFINED at PL1 is
//! stepped over by the recoverable entry with every register as it was
//! before it, so an output register keeps the value it was given as input
//! (each such output is initialised).

use core::arch::{asm, global_asm};

// Undefined instructions (vector 0x04), in Undefined mode, IRQs masked:
// LR_und = the instruction + 4 (ARM state), SP_und = this vCPU's exception
// stack (set by the entry code). Saves what the AAPCS lets the Rust code
// change, asks `undef_recover(LR_und, SPSR_und)`, and either returns to
// the next instruction (`movs pc, lr`, which restores CPSR from SPSR_und)
// with every register as it was, or takes the report path.
global_asm!(
    r#"
    .section .text.rt_undef, "ax"
    .arm
    .global __rt_undef_entry
    .type __rt_undef_entry, %function
    .balign 4
__rt_undef_entry:
    push    {{r0-r3, r12, lr}}
    mov     r0, lr
    mrs     r1, spsr
    bl      {recover}
    cmp     r0, #0
    pop     {{r0-r3, r12, lr}}
    movsne  pc, lr
    b       __rt_undef_report
    .size __rt_undef_entry, . - __rt_undef_entry
"#,
    recover = sym undef_recover,
);

/// `SPSR.T`: the instruction was in Thumb state (never stepped over: the
/// runtime is ARM code, and its length would need decoding).
const SPSR_T: u32 = 1 << 5;
/// The AArch64 exception class the report gives an undefined instruction.
const EC_UNKNOWN: u8 = 0x00;

/// Rust side of `__rt_undef_entry`: non-zero to step over.
extern "C" fn undef_recover(_lr: u32, spsr: u32) -> u32 {
    u32::from(spsr & SPSR_T == 0 && crate::fuzz::take_fault(EC_UNKNOWN))
}

/// `HVC #0` with any `r0` (no ID form imposed) and `r1`..`r3` (their low
/// 32 bits); returns `r0`, zero-extended.
pub fn raw_hvc(id: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let result: u32;
    // SAFETY: the hypervisor answers the HVC and writes no guest memory;
    // r1..r3 and r12 declared clobbered (SMCCC).
    unsafe {
        asm!(
            ".arch_extension virt",
            "hvc #0",
            inlateout("r0") id as u32 => result,
            inlateout("r1") a1 as u32 => _,
            inlateout("r2") a2 as u32 => _,
            inlateout("r3") a3 as u32 => _,
            out("r12") _,
            options(nostack),
        );
    }
    result.into()
}

/// `SMC #0` with any `r0` and `r1`..`r3`; returns `r0`, zero-extended.
pub fn raw_smc(id: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let result: u32;
    // SAFETY: as `raw_hvc`: the hypervisor traps the SMC and answers it.
    unsafe {
        asm!(
            ".arch_extension sec",
            "smc #0",
            inlateout("r0") id as u32 => result,
            inlateout("r1") a1 as u32 => _,
            inlateout("r2") a2 as u32 => _,
            inlateout("r3") a3 as u32 => _,
            out("r12") _,
            options(nostack),
        );
    }
    result.into()
}

/// A call with an immediate the ABI does not define: `HVC #1`,
/// `HVC #0xffff` or `SMC #1` (`which` modulo 3); returns `r0`.
pub fn raw_call_imm(which: u32, id: u64, a1: u64) -> u64 {
    let mut r0 = id as u32;
    // SAFETY: as `raw_hvc`.
    unsafe {
        match which % 3 {
            0 => asm!(".arch_extension virt", "hvc #1", inout("r0") r0,
                      inlateout("r1") a1 as u32 => _, out("r2") _, out("r3") _, out("r12") _,
                      options(nostack)),
            1 => asm!(".arch_extension virt", "hvc #0xffff", inout("r0") r0,
                      inlateout("r1") a1 as u32 => _, out("r2") _, out("r3") _, out("r12") _,
                      options(nostack)),
            _ => asm!(".arch_extension sec", "smc #1", inout("r0") r0,
                      inlateout("r1") a1 as u32 => _, out("r2") _, out("r3") _, out("r12") _,
                      options(nostack)),
        }
    }
    r0.into()
}

/// Load forms of [`mmio_read`]: 0 `ldrb`, 1 `ldrh`, 2 `ldr`, 3 `ldrsb`,
/// 4 `ldrsh`.
pub const MMIO_LOADS: u32 = 5;
/// Store forms of [`mmio_write`]: 0 `strb`, 1 `strh`, 2 `str`.
pub const MMIO_STORES: u32 = 3;

/// Width in bytes of load form `form` (see [`MMIO_LOADS`]).
pub fn mmio_load_width(form: u32) -> u64 {
    [1, 2, 4, 1, 2][(form % MMIO_LOADS) as usize]
}

/// Width in bytes of store form `form` (see [`MMIO_STORES`]).
pub fn mmio_store_width(form: u32) -> u64 {
    1 << (form % MMIO_STORES)
}

/// One load of form `form` from `addr`, which the caller (`crate::fuzz`)
/// checked is inside a GIC frame or a virtio-mmio window and aligned to
/// the width.
pub fn mmio_read(addr: u64, form: u32) -> u64 {
    let a = addr as usize;
    let mut v: u32 = 0;
    // SAFETY: `addr` is in a GIC frame or a virtio-mmio window (device
    // memory, Device in the identity map, no Rust object there), aligned to
    // the access width; a single load with a plain base register, which the
    // hypervisor emulates from its syndrome. It writes `v` only.
    unsafe {
        match form % MMIO_LOADS {
            0 => asm!("ldrb {v}, [{a}]", v = inout(reg) v, a = in(reg) a, options(nostack)),
            1 => asm!("ldrh {v}, [{a}]", v = inout(reg) v, a = in(reg) a, options(nostack)),
            2 => asm!("ldr {v}, [{a}]", v = inout(reg) v, a = in(reg) a, options(nostack)),
            3 => asm!("ldrsb {v}, [{a}]", v = inout(reg) v, a = in(reg) a, options(nostack)),
            _ => asm!("ldrsh {v}, [{a}]", v = inout(reg) v, a = in(reg) a, options(nostack)),
        }
    }
    v.into()
}

/// One store of form `form` of `value` to `addr` (checked as for
/// [`mmio_read`]).
pub fn mmio_write(addr: u64, form: u32, value: u64) {
    let (a, v) = (addr as usize, value as u32);
    // SAFETY: as `mmio_read`: a single store to an emulated device register.
    unsafe {
        match form % MMIO_STORES {
            0 => asm!("strb {v}, [{a}]", v = in(reg) v, a = in(reg) a, options(nostack)),
            1 => asm!("strh {v}, [{a}]", v = in(reg) v, a = in(reg) a, options(nostack)),
            _ => asm!("str {v}, [{a}]", v = in(reg) v, a = in(reg) a, options(nostack)),
        }
    }
}

/// No GICv3 system-register interface for 32-bit guests here.
pub const ICC_REGISTERS: &[&str] = &[];

/// Never called on AArch32 (`ICC_REGISTERS` is empty); returns the value.
pub fn icc_access(_n: usize, write: Option<u64>) -> u64 {
    write.unwrap_or(0)
}

/// Generates `refused_access`: HYP-mode and Secure registers that PL1 must
/// not reach (UNDEFINED there), read or written, 32-bit (MRC/MCR) and
/// 64-bit (MRRC/MCRR).
macro_rules! refused_table {
    ($(($name:literal, $op1:literal, $crn:literal, $crm:literal, $op2:literal)),* ;
     $(($name64:literal, $op1_64:literal, $crm64:literal)),* $(,)?) => {
        /// The registers [`refused_access`] tries, by number.
        pub const REFUSED_REGISTERS: &[&str] = &[$($name,)* $($name64,)*];

        /// Reads (`write` = None) or writes register `n` of
        /// [`REFUSED_REGISTERS`] from PL1: UNDEFINED there, so the caller
        /// must have the recoverable entry on. Returns what a read gave.
        pub fn refused_access(n: usize, write: Option<u64>) -> u64 {
            let (mut lo, mut hi) = write.map_or((0, 0), |v| (v as u32, (v >> 32) as u32));
            let mut i = 0;
            $(
                if n == i {
                    match write {
                        // SAFETY: an MRC of a HYP/Secure register at PL1 is
                        // UNDEFINED and stepped over; let through, it would
                        // only write `lo`.
                        None => unsafe { asm!(concat!("mrc p15, ", $op1, ", {v}, ", $crn, ", ", $crm, ", ", $op2), v = inout(reg) lo, options(nostack)) },
                        // SAFETY: an MCR of a HYP/Secure register at PL1 is
                        // UNDEFINED and stepped over; if it went through,
                        // that is the bug this looks for.
                        Some(_) => unsafe { asm!(concat!("mcr p15, ", $op1, ", {v}, ", $crn, ", ", $crm, ", ", $op2), v = in(reg) lo, options(nostack)) },
                    }
                    return lo.into();
                }
                i += 1;
            )*
            $(
                if n == i {
                    match write {
                        // SAFETY: as above, for a 64-bit MRRC.
                        None => unsafe { asm!(concat!("mrrc p15, ", $op1_64, ", {lo}, {hi}, ", $crm64), lo = inout(reg) lo, hi = inout(reg) hi, options(nostack)) },
                        // SAFETY: as above, for a 64-bit MCRR.
                        Some(_) => unsafe { asm!(concat!("mcrr p15, ", $op1_64, ", {lo}, {hi}, ", $crm64), lo = in(reg) lo, hi = in(reg) hi, options(nostack)) },
                    }
                    return u64::from(hi) << 32 | u64::from(lo);
                }
                i += 1;
            )*
            let _ = i;
            u64::from(hi) << 32 | u64::from(lo)
        }
    };
}

refused_table![
    ("HCR", "4", "c1", "c1", "0"),
    ("HDCR", "4", "c1", "c1", "1"),
    ("HCPTR", "4", "c1", "c1", "2"),
    ("HSTR", "4", "c1", "c1", "3"),
    ("HSCTLR", "4", "c1", "c0", "0"),
    ("HSR", "4", "c5", "c2", "0"),
    ("HVBAR", "4", "c12", "c0", "0"),
    ("HTPIDR", "4", "c13", "c0", "2"),
    ("CNTHCTL", "4", "c14", "c1", "0"),
    ("VPIDR", "4", "c0", "c0", "0"),
    ("VMPIDR", "4", "c0", "c0", "5"),
    ("SCR", "0", "c1", "c1", "0");
    ("VTTBR", "6", "c2"),
    ("HTTBR", "4", "c2"),
    ("CNTVOFF", "4", "c14"),
];

/// One of a few undefined instructions, by `which`: `udf #0`,
/// `udf #0xffff`, a permanently undefined encoding in the unconditional
/// space. Each takes the guest's own vector, which steps over it (the
/// recoverable entry must be on).
pub fn undefined(which: u32) {
    // SAFETY: each instruction only raises an undefined-instruction
    // exception, which the recoverable entry steps over with every
    // register unchanged.
    unsafe {
        match which % 3 {
            0 => asm!(".inst 0xe7f000f0", options(nostack)),
            1 => asm!(".inst 0xe7ffffff", options(nostack)),
            _ => asm!(".inst 0xf7f0a0f0", options(nostack)),
        }
    }
}

/// Reads `CNTP_CTL`: the physical timer, which the hypervisor keeps for
/// itself (`CNTHCTL.PL1PCEN` = 0), so the access traps to it.
pub fn physical_timer_read() -> u64 {
    let mut v: u32 = 0;
    // SAFETY: an MRC that traps to the hypervisor (or, if let through,
    // writes `v` only).
    unsafe { asm!("mrc p15, 0, {v}, c14, c2, 1", v = inout(reg) v, options(nostack)) };
    v.into()
}

/// `wfe`: waits for an event (returns at once if one is latched).
pub fn wait_for_event() {
    // SAFETY: `wfe` only waits.
    unsafe { asm!("wfe", options(nostack, preserves_flags)) };
}

/// `sev`: signals an event to every CPU.
pub fn send_event() {
    // SAFETY: `sev` only sets the event registers.
    unsafe { asm!("sev", options(nomem, nostack, preserves_flags)) };
}

/// `CNTV_CTL` as it is (ENABLE, IMASK, ISTATUS).
pub fn vtimer_ctl() -> u64 {
    read_cp15!(c14, c3, 1).into()
}
