//! AArch64 (EL1) primitives of the fuzzing guest (`crate::fuzz`): the
//! recoverable synchronous-exception entry, raw hypercalls and SMCs with any
//! function ID and immediate, single loads and stores of every width to
//! the GIC frames, system-register accesses the hypervisor emulates or must
//! refuse, undefined instructions and the wait instructions.
//!
//! A submodule of the arch module, so still the arch part of the runtime:
//! all its `unsafe` is here. An instruction here that faults at EL1 is
//! stepped over by the recoverable entry (4 bytes, always, on AArch64) with
//! every register as it was before it, so an output register keeps the
//! value it was given as input (each such output is initialised).

use core::arch::{asm, global_asm};

use super::irq::{restore_entry_frame, save_entry_frame, ENTRY_FRAME};

// Synchronous exceptions taken at EL1 (vectors 0 and 4). On the interrupted
// stack (the faults the guest provokes on purpose happen on a good stack),
// it saves what the AAPCS64 lets the Rust code change, asks
// `sync_recover(ESR_EL1)` how far to step, and either returns past the
// instruction (ELR_EL1 + 4) with every register as it was, or, for an
// exception it does not recover, restores the registers and takes the
// report path (`__rt_vector_report`: exception stack, report, VM stopped).
global_asm!(
    r#"
    .section .text.rt_sync, "ax"
    .global __rt_sync_entry
    .type __rt_sync_entry, %function
    .balign 4
__rt_sync_entry:
"#,
    save_entry_frame!(),
    r#"

    mrs     x0, esr_el1
    bl      {recover}
    cbz     x0, 8f
    // Step over: the saved ELR_EL1 + x0.
    ldr     x1, [sp, #0xa0]
    add     x1, x1, x0
    str     x1, [sp, #0xa0]
"#,
    restore_entry_frame!(),
    r#"
    eret
8:
"#,
    restore_entry_frame!(),
    r#"
    mov     x0, #4
    b       __rt_vector_report
    .size __rt_sync_entry, . - __rt_sync_entry
"#,
    frame = const ENTRY_FRAME,
    recover = sym sync_recover,
);

/// ESR_EL1 classes the recoverable entry steps over: unknown reason (an
/// undefined instruction, or a system register EL1 may not access), a
/// trapped MSR/MRS, BRK.
const EC_UNKNOWN: u64 = 0x00;
const EC_SYSREG: u64 = 0x18;
const EC_BRK64: u64 = 0x3c;

/// Rust side of `__rt_sync_entry`: how many bytes to step over, 0 to
/// report the exception.
extern "C" fn sync_recover(esr: u64) -> u64 {
    let ec = (esr >> 26) & 0x3f;
    let recoverable = matches!(ec, EC_UNKNOWN | EC_SYSREG | EC_BRK64);
    if recoverable && crate::fuzz::take_fault(ec as u8) {
        4
    } else {
        0
    }
}

/// `HVC #0` with any `x0` (no ID form imposed) and `x1`..`x3`; returns `x0`.
/// Everything SMCCC lets a call change (x1..x17) is declared clobbered.
pub fn raw_hvc(id: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let result: u64;
    // SAFETY: the hypervisor answers the HVC; it writes no guest memory for
    // any ID (CONSOLE_WRITE reads it), and the caller never passes an ID
    // that stops the VM unless it means to. x1..x17 declared clobbered.
    unsafe {
        asm!(
            "hvc #0",
            inlateout("x0") id => result,
            inlateout("x1") a1 => _, inlateout("x2") a2 => _, inlateout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    result
}

/// `SMC #0` with any `x0` and `x1`..`x3`; returns `x0` (x1..x17 clobbered).
pub fn raw_smc(id: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let result: u64;
    // SAFETY: as `raw_hvc`: the hypervisor traps the SMC and answers it.
    unsafe {
        asm!(
            "smc #0",
            inlateout("x0") id => result,
            inlateout("x1") a1 => _, inlateout("x2") a2 => _, inlateout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    result
}

/// A call with an immediate the ABI does not define: `HVC #1`,
/// `HVC #0xffff` or `SMC #1` (`which` modulo 3); returns `x0`.
pub fn raw_call_imm(which: u32, id: u64, a1: u64) -> u64 {
    let mut x0 = id;
    // SAFETY: as `raw_hvc`; the hypervisor answers with an error or, for
    // an SMC, as for `SMC #0`.
    unsafe {
        match which % 3 {
            0 => asm!("hvc #1", inout("x0") x0, inlateout("x1") a1 => _,
                      out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
                      out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                      out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
                      out("x17") _, options(nostack)),
            1 => asm!("hvc #0xffff", inout("x0") x0, inlateout("x1") a1 => _,
                      out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
                      out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                      out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
                      out("x17") _, options(nostack)),
            _ => asm!("smc #1", inout("x0") x0, inlateout("x1") a1 => _,
                      out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
                      out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                      out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
                      out("x17") _, options(nostack)),
        }
    }
    x0
}

/// Load forms of [`mmio_read`]: 0 `ldrb w`, 1 `ldrh w`, 2 `ldr w`,
/// 3 `ldr x`, 4 `ldrsb w`, 5 `ldrsb x`, 6 `ldrsh w`, 7 `ldrsh x`,
/// 8 `ldrsw x`, 9 `ldr xzr` (the zero register as target).
pub const MMIO_LOADS: u32 = 10;
/// Store forms of [`mmio_write`]: 0 `strb`, 1 `strh`, 2 `str w`, 3 `str x`,
/// 4..7 the same from the zero register.
pub const MMIO_STORES: u32 = 8;

/// Width in bytes of load form `form` (see [`MMIO_LOADS`]).
pub fn mmio_load_width(form: u32) -> u64 {
    [1, 2, 4, 8, 1, 1, 2, 2, 4, 8][(form % MMIO_LOADS) as usize]
}

/// Width in bytes of store form `form` (see [`MMIO_STORES`]).
pub fn mmio_store_width(form: u32) -> u64 {
    1 << (form % 4)
}

/// One load of form `form` from `addr`, which the caller
/// (`crate::fuzz`) checked is inside a GIC frame or a virtio-mmio window
/// and aligned to the width.
pub fn mmio_read(addr: u64, form: u32) -> u64 {
    let mut v: u64 = 0;
    // SAFETY: `addr` is in a GIC frame or a virtio-mmio window (device
    // memory, Device-nGnRnE in the identity map, no Rust object there),
    // aligned to the access width; a single load with a plain base
    // register, which the hypervisor emulates from its syndrome. It writes
    // `v` only.
    unsafe {
        match form % MMIO_LOADS {
            0 => asm!("ldrb {v:w}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            1 => asm!("ldrh {v:w}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            2 => asm!("ldr {v:w}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            3 => asm!("ldr {v}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            4 => asm!("ldrsb {v:w}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            5 => asm!("ldrsb {v}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            6 => asm!("ldrsh {v:w}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            7 => asm!("ldrsh {v}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            8 => asm!("ldrsw {v}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            _ => asm!("ldr xzr, [{a}]", a = in(reg) addr, options(nostack)),
        }
    }
    v
}

/// One store of form `form` of `value` to `addr` (checked as for
/// [`mmio_read`]).
pub fn mmio_write(addr: u64, form: u32, value: u64) {
    // SAFETY: as `mmio_read`: a single store to an emulated device register.
    unsafe {
        match form % MMIO_STORES {
            0 => asm!("strb {v:w}, [{a}]", v = in(reg) value, a = in(reg) addr, options(nostack)),
            1 => asm!("strh {v:w}, [{a}]", v = in(reg) value, a = in(reg) addr, options(nostack)),
            2 => asm!("str {v:w}, [{a}]", v = in(reg) value, a = in(reg) addr, options(nostack)),
            3 => asm!("str {v}, [{a}]", v = in(reg) value, a = in(reg) addr, options(nostack)),
            4 => asm!("strb wzr, [{a}]", a = in(reg) addr, options(nostack)),
            5 => asm!("strh wzr, [{a}]", a = in(reg) addr, options(nostack)),
            6 => asm!("str wzr, [{a}]", a = in(reg) addr, options(nostack)),
            _ => asm!("str xzr, [{a}]", a = in(reg) addr, options(nostack)),
        }
    }
}

/// Generates `icc_access`: one `mrs`/`msr` per GICv3 CPU interface
/// register, by number.
macro_rules! icc_table {
    ($(($name:literal, $enc:literal)),* $(,)?) => {
        /// The GICv3 CPU interface registers [`icc_access`] reaches, by
        /// number: name and encoding.
        pub const ICC_REGISTERS: &[&str] = &[$($name),*];

        /// Reads (`write` = None) or writes register `n` of
        /// [`ICC_REGISTERS`]; returns what a read gave (`value` if it
        /// faulted and was stepped over).
        pub fn icc_access(n: usize, write: Option<u64>) -> u64 {
            let mut v = write.unwrap_or(0);
            let mut i = 0;
            $(
                if n == i {
                    match write {
                        // SAFETY: an MRS of a GIC CPU interface register
                        // writes `v` only; at EL1 it reaches the virtual
                        // interface (ICV_*), traps to the hypervisor, or is
                        // UNDEFINED (stepped over by the recoverable entry,
                        // which the caller has enabled).
                        None => unsafe { asm!(concat!("mrs {v}, ", $enc), v = inout(reg) v, options(nostack)) },
                        // SAFETY: as above for an MSR; it changes this
                        // vCPU's virtual CPU interface only (or traps).
                        Some(_) => unsafe { asm!(concat!("msr ", $enc, ", {v}"), "isb", v = in(reg) v, options(nostack)) },
                    }
                    return v;
                }
                i += 1;
            )*
            let _ = i;
            v
        }
    };
}

icc_table![
    ("ICC_PMR_EL1", "S3_0_C4_C6_0"),
    ("ICC_IAR0_EL1", "S3_0_C12_C8_0"),
    ("ICC_EOIR0_EL1", "S3_0_C12_C8_1"),
    ("ICC_HPPIR0_EL1", "S3_0_C12_C8_2"),
    ("ICC_BPR0_EL1", "S3_0_C12_C8_3"),
    ("ICC_AP0R0_EL1", "S3_0_C12_C8_4"),
    ("ICC_AP1R0_EL1", "S3_0_C12_C9_0"),
    ("ICC_DIR_EL1", "S3_0_C12_C11_1"),
    ("ICC_RPR_EL1", "S3_0_C12_C11_3"),
    ("ICC_SGI1R_EL1", "S3_0_C12_C11_5"),
    ("ICC_IAR1_EL1", "S3_0_C12_C12_0"),
    ("ICC_EOIR1_EL1", "S3_0_C12_C12_1"),
    ("ICC_HPPIR1_EL1", "S3_0_C12_C12_2"),
    ("ICC_BPR1_EL1", "S3_0_C12_C12_3"),
    ("ICC_CTLR_EL1", "S3_0_C12_C12_4"),
    ("ICC_SRE_EL1", "S3_0_C12_C12_5"),
    ("ICC_IGRPEN0_EL1", "S3_0_C12_C12_6"),
    ("ICC_IGRPEN1_EL1", "S3_0_C12_C12_7"),
    ("ICC_ASGI1R_EL1", "S3_0_C12_C11_6"),
    ("ICC_SGI0R_EL1", "S3_0_C12_C11_7"),
];

/// Generates `refused_access`: registers of EL2 and EL3 that EL1 must not
/// reach (each access is UNDEFINED at EL1), read or written.
macro_rules! refused_table {
    ($($reg:literal),* $(,)?) => {
        /// The registers [`refused_access`] tries, by number.
        pub const REFUSED_REGISTERS: &[&str] = &[$($reg),*];

        /// Reads (`write` = None) or writes register `n` of
        /// [`REFUSED_REGISTERS`] from EL1: UNDEFINED there, so the caller
        /// must have the recoverable entry on. Returns what a read gave
        /// (`value` as it was if the access faulted).
        pub fn refused_access(n: usize, write: Option<u64>) -> u64 {
            let mut v = write.unwrap_or(0);
            let mut i = 0;
            $(
                if n == i {
                    match write {
                        // SAFETY: an MRS of an EL2/EL3 register at EL1 is
                        // UNDEFINED and stepped over; if it were let
                        // through it would only write `v`.
                        None => unsafe { asm!(concat!("mrs {v}, ", $reg), v = inout(reg) v, options(nostack)) },
                        // SAFETY: an MSR of an EL2/EL3 register at EL1 is
                        // UNDEFINED and stepped over. If the hypervisor
                        // let it through that is the bug this looks for.
                        Some(_) => unsafe { asm!(concat!("msr ", $reg, ", {v}"), v = in(reg) v, options(nostack)) },
                    }
                    return v;
                }
                i += 1;
            )*
            let _ = i;
            v
        }
    };
}

refused_table![
    "hcr_el2",
    "vttbr_el2",
    "vtcr_el2",
    "sctlr_el2",
    "vbar_el2",
    "esr_el2",
    "elr_el2",
    "spsr_el2",
    "cnthctl_el2",
    "cntvoff_el2",
    "cptr_el2",
    "mdcr_el2",
    "tpidr_el2",
    "vpidr_el2",
    "vmpidr_el2",
    "scr_el3",
    "S3_4_C12_C11_0", // ICH_HCR_EL2
    "S3_4_C12_C12_0", // ICH_LR0_EL2
    "S3_4_C12_C11_7", // ICH_VMCR_EL2
];

/// One of a few undefined (or debug) instructions, by `which`: `udf #0`,
/// `udf #0xffff`, `brk #0`, `hlt #1`, an unallocated encoding. Each takes
/// the guest's own vector, which steps over it (the recoverable entry must
/// be on).
pub fn undefined(which: u32) {
    // SAFETY: each instruction only raises an exception at EL1, which the
    // recoverable entry steps over with every register unchanged.
    unsafe {
        match which % 5 {
            0 => asm!("udf #0", options(nostack)),
            1 => asm!("udf #0xffff", options(nostack)),
            2 => asm!("brk #0", options(nostack)),
            3 => asm!("hlt #1", options(nostack)),
            _ => asm!(".inst 0x0000ffff", options(nostack)),
        }
    }
}

/// Reads `CNTP_CTL_EL0`: the physical timer, which the hypervisor keeps
/// for itself (`CNTHCTL_EL2.EL1PCEN` = 0), so the access traps to it.
pub fn physical_timer_read() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: an MRS that traps to the hypervisor (or, if let through,
    // writes `v` only).
    unsafe { asm!("mrs {v}, cntp_ctl_el0", v = inout(reg) v, options(nostack)) };
    v
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

/// `CNTV_CTL_EL0` as it is (ENABLE, IMASK, ISTATUS).
pub fn vtimer_ctl() -> u64 {
    let v: u64;
    // SAFETY: reads the virtual timer's control register only.
    unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) v, options(nomem, nostack)) };
    v
}
