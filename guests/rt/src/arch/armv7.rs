//! ARMv7-A (AArch32, PL1) part of the guest runtime: the entry code, the
//! exception vectors, the identity map, the hypercall instruction and the
//! timer. The guest runs in SVC mode, ARM state. The Rust code is
//! soft-float, but the entry code enables VFP/Advanced SIMD (CPACR cp10 and
//! cp11, FPEXC.EN) as a hard-float guest would, so the register soak can
//! show that the hypervisor keeps each vCPU's VFP registers.
//!
//! This module, its submodules and the shared `common.rs` are the only
//! places in the runtime with `unsafe` code.
//!
//! Differences from AArch64 the arch-neutral code sees:
//! - hypercalls and PSCI use the SMC32 IDs (bit 30 clear, [`abi::smc32`])
//!   and 32-bit arguments: the upper halves of the `u64` arguments are
//!   dropped, and the 32-bit result is sign-extended;
//! - an exception is reported with an AArch64-style syndrome (see
//!   [`exception_entry`]), so `guest exception: ESR=...` means the same on
//!   both;
//! - the register soak covers r1..r14 (sp and lr included), d0..d31,
//!   TPIDRURW, TPIDRURO, TPIDRPRW, CONTEXTIDR, SP_usr, LR_usr, APSR.Q/GE
//!   and FPSCR; the 64-bit d-registers are listed (and reported) by name
//!   with the system registers, in [`SOAK_SYS_REGS`], so `SoakRegs::v`
//!   (128-bit `vN`) is empty.

use core::arch::{asm, global_asm};

/// Reads a 32-bit CP15 register with `op1` = 0 that has no side effects on
/// read: `read_cp15!(c5, c0, 0)` is `MRC p15, 0, Rt, c5, c0, 0` (DFSR).
macro_rules! read_cp15 {
    ($crn:ident, $crm:ident, $op2:literal) => {{
        let value: u32;
        // SAFETY: the callers only name ID, fault-status, fault-address and
        // timer registers, whose read changes nothing; it writes `value` only.
        unsafe {
            core::arch::asm!(
                concat!(
                    "mrc p15, 0, {}, ",
                    stringify!($crn), ", ", stringify!($crm), ", ", stringify!($op2)
                ),
                out(reg) value,
                options(nomem, nostack, preserves_flags),
            )
        };
        value
    }};
}

#[path = "common.rs"]
mod common;
#[path = "armv7_fuzz.rs"]
mod fuzz;
#[path = "armv7_irq.rs"]
mod irq;
#[path = "lpae.rs"]
mod lpae;
pub use common::*;
pub use fuzz::*;
pub use irq::*;

// Entry: the first byte of the image (section .text.boot, first in guest.ld).
// The hypervisor enters in SVC mode, ARM state, MMU and caches off,
// r0 = guest-physical address of the StartInfo. Until the MMU is on, data
// accesses are Strongly-ordered: the code before it (`__rt_mmu_on`
// included) stores nothing to memory and loads no literal (addresses are
// built with movw/movt). The stack's cache lines are still invalidated
// first, as on AArch64.
global_asm!(
    r#"
    .section .text.boot, "ax"
    .arm
    .arch_extension virt
    .global _start
    .type _start, %function
_start:
    cpsid   aif                         // no interrupts: the guest takes none
    mov     r4, r0                      // StartInfo IPA, callee-saved
    bl      __rt_vfp_on

    // Boot stack (guest.ld: .stack, 4 KiB aligned, not zeroed).
    movw    r1, #:lower16:__stack_top
    movt    r1, #:upper16:__stack_top
    mov     sp, r1
    // Undefined mode's stack: this vCPU's exception stack, 4 KiB above
    // (`__rt_undef_entry` pushes there).
    add     r1, r1, #{exception_stack}
    msr     sp_und, r1

    // Invalidate the stack's cache lines: [__stack_bottom, __exception_stack_top).
    mrc     p15, 0, r3, c0, c0, 1       // CTR
    ubfx    r3, r3, #16, #4             // DminLine: log2(words) of the smallest D-line
    mov     r5, #4
    lsl     r5, r5, r3                  // line size in bytes
    movw    r1, #:lower16:__stack_bottom
    movt    r1, #:upper16:__stack_bottom
    movw    r2, #:lower16:__exception_stack_top
    movt    r2, #:upper16:__exception_stack_top
1:  mcr     p15, 0, r1, c7, c6, 1       // DCIMVAC
    add     r1, r1, r5
    cmp     r1, r2
    blo     1b
    dsb     sy

    // Vectors and MMU: __rt_mmu_on(vectors), shared with _start_secondary.
    movw    r0, #:lower16:__rt_vectors
    movt    r0, #:upper16:__rt_vectors
    bl      __rt_mmu_on

    // Zero .bss, now through the cache (guest.ld aligns it to 16 bytes).
    movw    r1, #:lower16:__bss_start
    movt    r1, #:upper16:__bss_start
    movw    r2, #:lower16:__bss_end
    movt    r2, #:upper16:__bss_end
    mov     r6, #0
    mov     r7, #0
2:  cmp     r1, r2
    bhs     3f
    strd    r6, r7, [r1], #8
    b       2b
3:
    // rust_main(start_info) never returns.
    mov     r0, r4
    bl      {rust_main}
4:  wfi
    b       4b
    .size _start, . - _start
"#,
    rust_main = sym rust_main,
    exception_stack = const VCPU_SLOT_SIZE - VCPU_STACK_SIZE,
);

// Secondary vCPU entry (PSCI CPU_ON by `crate::smp::start_vcpu`): SVC mode,
// MMU off, interrupts masked, r0 = context id = the vCPU's index. As on
// AArch64, nothing is read from or written to memory before the MMU is on;
// the stack is this vCPU's own, chosen by MPIDR.Aff0; a vCPU without a slot
// halts.
global_asm!(
    r#"
    .section .text.rt_secondary, "ax"
    .arm
    .arch_extension virt
    .global _start_secondary
    .type _start_secondary, %function
    .balign 4
_start_secondary:
    cpsid   aif
    mov     r4, r0                      // context id, callee-saved
    bl      __rt_vfp_on

    // Stack: vCPU 0 the boot stack, vCPU n (1 <= n < MAX_VCPUS) the stack
    // of slot n - 1 of __vcpu_stacks (guest.ld).
    mrc     p15, 0, r1, c0, c0, 5       // MPIDR
    and     r1, r1, #0xff               // Aff0 = vCPU index
    cmp     r1, #{max_vcpus}
    bhs     9f
    cmp     r1, #0
    bne     1f
    movw    r2, #:lower16:__stack_top
    movt    r2, #:upper16:__stack_top
    b       2f
1:  sub     r1, r1, #1
    movw    r3, #{slot}
    movw    r2, #:lower16:__vcpu_stacks
    movt    r2, #:upper16:__vcpu_stacks
    mla     r2, r1, r3, r2
    movw    r3, #{stack}
    add     r2, r2, r3
2:  mov     sp, r2
    // Undefined mode's stack: this vCPU's exception stack, above.
    add     r1, r2, #{exception_stack}
    msr     sp_und, r1

    // Vectors and MMU: the same registers, the same tables as vCPU 0.
    movw    r0, #:lower16:__rt_vectors
    movt    r0, #:upper16:__rt_vectors
    bl      __rt_mmu_on

    // secondary_main(context) never returns.
    mov     r0, r4
    bl      {secondary_main}
9:  wfi
    b       9b
    .size _start_secondary, . - _start_secondary
"#,
    max_vcpus = const MAX_VCPUS,
    slot = const VCPU_SLOT_SIZE,
    stack = const VCPU_STACK_SIZE,
    exception_stack = const VCPU_SLOT_SIZE - VCPU_STACK_SIZE,
    secondary_main = sym secondary_main,
);

// Enables VFP and Advanced SIMD for this vCPU, as a hard-float guest does
// at boot: CPACR cp10 and cp11 full access (and ASEDIS, D32DIS clear),
// ISB, then FPEXC.EN. Touches no memory; clobbers r1 only, returns through
// lr. Every vCPU runs it (CPACR and FPEXC are per vCPU).
global_asm!(
    r#"
    .section .text.rt_vfp, "ax"
    .arm
    .fpu neon
    .type __rt_vfp_on, %function
    .balign 4
__rt_vfp_on:
    mrc     p15, 0, r1, c1, c0, 2       // CPACR
    orr     r1, r1, #{cpacr_cp10_cp11}
    bic     r1, r1, #{cpacr_asedis_d32dis}
    mcr     p15, 0, r1, c1, c0, 2
    isb
    mov     r1, #{fpexc_en}
    vmsr    fpexc, r1
    bx      lr
    .size __rt_vfp_on, . - __rt_vfp_on
"#,
    cpacr_cp10_cp11 = const CPACR_CP10_CP11_FULL,
    cpacr_asedis_d32dis = const CPACR_ASEDIS | CPACR_D32DIS,
    fpexc_en = const FPEXC_EN,
);

/// CPACR.cp10 and cp11 (bits 23:20): full access from PL1 and PL0.
const CPACR_CP10_CP11_FULL: u32 = 0xf << 20;
/// CPACR.ASEDIS: Advanced SIMD disabled.
const CPACR_ASEDIS: u32 = 1 << 31;
/// CPACR.D32DIS: d16-d31 disabled.
const CPACR_D32DIS: u32 = 1 << 30;
/// FPEXC.EN: VFP and Advanced SIMD enabled.
const FPEXC_EN: u32 = 1 << 30;

// Installs the vectors (r0) and turns on the MMU and the caches with the
// identity map: VBAR, MAIR0/1, TTBCR (LPAE), TTBR0, TLB and I-cache
// invalidation, SCTLR. Runs with the MMU off and touches no memory: clobbers
// r0..r2 only, returns through lr. Every vCPU runs it.
global_asm!(
    r#"
    .section .text.rt_mmu, "ax"
    .arm
    .type __rt_mmu_on, %function
    .balign 4
__rt_mmu_on:
    mcr     p15, 0, r0, c12, c0, 0      // VBAR
    movw    r1, #{mair0}
    mcr     p15, 0, r1, c10, c2, 0      // MAIR0
    mov     r1, #0
    mcr     p15, 0, r1, c10, c2, 1      // MAIR1
    movw    r1, #{ttbcr_lo}
    movt    r1, #{ttbcr_hi}
    mcr     p15, 0, r1, c2, c0, 2       // TTBCR
    movw    r1, #:lower16:{map}
    movt    r1, #:upper16:{map}
    mov     r2, #0                      // ASID 0
    mcrr    p15, 0, r1, r2, c2          // TTBR0 (64-bit)
    // The new VBAR/MAIR/TTBCR/TTBR0 are in effect before the TLBs are cleaned.
    isb
    dsb     ish
    mcr     p15, 0, r1, c8, c3, 0       // TLBIALLIS
    mcr     p15, 0, r1, c7, c1, 0       // ICIALLUIS
    mcr     p15, 0, r1, c7, c1, 6       // BPIALLIS
    dsb     ish
    isb
    mrc     p15, 0, r1, c1, c0, 0       // SCTLR
    movw    r2, #{sctlr_set}
    orr     r1, r1, r2
    movw    r2, #{sctlr_clear_lo}
    movt    r2, #{sctlr_clear_hi}
    bic     r1, r1, r2
    mcr     p15, 0, r1, c1, c0, 0
    isb
    bx      lr
    .size __rt_mmu_on, . - __rt_mmu_on
"#,
    mair0 = const MAIR0_VALUE,
    ttbcr_lo = const TTBCR_VALUE & 0xffff,
    ttbcr_hi = const TTBCR_VALUE >> 16,
    map = sym IDENTITY_MAP,
    sctlr_set = const SCTLR_SET,
    sctlr_clear_lo = const SCTLR_CLEAR & 0xffff,
    sctlr_clear_hi = const SCTLR_CLEAR >> 16,
);

// PL1 exception vectors: 8 words, table aligned to 32 bytes (VBAR). IRQs
// go to the interrupt entry (armv7_irq.rs). Nothing else is expected: each
// one, in the mode it was taken to, switches to the exception stack (so that
// a stack overflow is still reported) and reports with its vector offset,
// LR and SPSR. Nothing returns.
global_asm!(
    r#"
    .section .text.vectors, "ax"
    .arm
    .balign 32
    .global __rt_vectors
__rt_vectors:
    b       .Lv_reset
    b       __rt_undef_entry
    b       .Lv_svc
    b       .Lv_pabt
    b       .Lv_dabt
    b       .Lv_hyp
    b       __rt_irq_entry
    b       .Lv_fiq
.Lv_reset:
    mov     r0, #0x00
    b       .Lv_common
    // The report of an undefined instruction; also entered from
    // `__rt_undef_entry` (armv7_fuzz.rs) when it does not recover it.
    .global __rt_undef_report
__rt_undef_report:
.Lv_undef:
    mov     r0, #0x04
    b       .Lv_common
.Lv_svc:
    mov     r0, #0x08
    b       .Lv_common
.Lv_pabt:
    mov     r0, #0x0c
    b       .Lv_common
.Lv_dabt:
    mov     r0, #0x10
    b       .Lv_common
.Lv_hyp:
    mov     r0, #0x14
    b       .Lv_common
.Lv_fiq:
    mov     r0, #0x1c
.Lv_common:
    mov     r1, lr
    mrs     r2, spsr
    // This vCPU's exception stack (by MPIDR.Aff0): vCPU 0's is the boot
    // one, vCPU n's the top of slot n - 1 of __vcpu_stacks; a vCPU without
    // a slot (none runs the runtime) shares vCPU 0's.
    mrc     p15, 0, r3, c0, c0, 5
    and     r3, r3, #0xff
    cmp     r3, #0
    beq     6f
    cmp     r3, #{max_vcpus}
    bhs     6f
    movw    r12, #{slot}
    movw    lr, #:lower16:__vcpu_stacks
    movt    lr, #:upper16:__vcpu_stacks
    mla     r3, r3, r12, lr             // base + n * slot = top of slot n - 1
    b       7f
6:  movw    r3, #:lower16:__exception_stack_top
    movt    r3, #:upper16:__exception_stack_top
7:  mov     sp, r3
    bl      {exception_entry}
5:  wfi
    b       5b
"#,
    max_vcpus = const MAX_VCPUS,
    slot = const VCPU_SLOT_SIZE,
    exception_entry = sym exception_entry,
);

/// The level-1 table of the 32-bit address space: 4 entries of 1 GiB
/// (TTBCR.T0SZ = 0, so the walk starts at level 1 and the table needs
/// 32-byte alignment).
#[repr(C, align(32))]
struct Level1Table([u64; 4]);

/// The identity map ([`lpae::identity_map`]).
///
/// LPAE (long descriptors) rather than short-descriptor sections: one
/// 32-byte table instead of a 16 KiB one, the same attribute model (MAIR)
/// and fault status codes as AArch64, and every CPU that can run a
/// hypervisor has it (the virtualization extensions require LPAE; AArch32
/// EL1 on ARMv8 has it too).
static IDENTITY_MAP: Level1Table = Level1Table(lpae::identity_map());

/// `MAIR0`: the identity map's attributes (`MAIR1` is 0).
const MAIR0_VALUE: u32 = lpae::MAIR_ATTRS as u32;
const _: () = assert!(lpae::MAIR_ATTRS >> 32 == 0);

// TTBCR fields (Arm ARM B4.1.153, long-descriptor): EAE; T0SZ = 0 (TTBR0
// translates all 4 GiB); TTBR0 walks inner shareable, write-back
// read/write-allocate; no TTBR1 walks (EPD1).
const TTBCR_IRGN0_WBWA: u32 = 0b01 << 8;
const TTBCR_ORGN0_WBWA: u32 = 0b01 << 10;
const TTBCR_SH0_INNER: u32 = 0b11 << 12;
const TTBCR_EPD1: u32 = 1 << 23;
const TTBCR_EAE: u32 = 1 << 31;
const TTBCR_VALUE: u32 =
    TTBCR_IRGN0_WBWA | TTBCR_ORGN0_WBWA | TTBCR_SH0_INNER | TTBCR_EPD1 | TTBCR_EAE;

// SCTLR bits set (M: MMU, C: data caches, Z: branch prediction, I:
// instruction caches) and cleared (A: alignment check, V: high vectors, so
// VBAR is used, WXN, UWXN, EE: little endian, TE: exceptions in ARM state,
// AFE: the access flag as preset).
const SCTLR_SET: u32 = 1 << 0 | 1 << 2 | 1 << 11 | 1 << 12;
const SCTLR_CLEAR: u32 = 1 << 1 | 1 << 13 | 1 << 19 | 1 << 20 | 1 << 25 | 1 << 29 | 1 << 30;
// `__rt_mmu_on` loads SCTLR_SET with one movw.
const _: () = assert!(SCTLR_SET >> 16 == 0);

/// Cleans the data cache lines of `[addr, addr + len)` to the point of
/// coherency (`DCCMVAC`), then waits for it (`DSB SY`).
pub fn clean_dcache_to_poc(addr: u64, len: usize) {
    // CTR.DminLine (bits 19:16): log2 of the smallest D-cache line in words.
    let ctr = read_cp15!(c0, c0, 1);
    let line = 4u32 << ((ctr >> 16) & 0xf);
    let addr = addr as u32;
    let end = addr.saturating_add(len as u32);
    let mut at = addr & !(line - 1);
    while at < end {
        // SAFETY: a clean writes dirty data back; it changes no value any
        // observer reads through the caches. Not `nomem`: it must come after
        // the stores it is to write back.
        unsafe {
            asm!("mcr p15, 0, {}, c7, c10, 1", in(reg) at, options(nostack, preserves_flags))
        };
        at = at.wrapping_add(line);
        if at == 0 {
            break;
        }
    }
    // SAFETY: a barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// The SMC32 form of an SMCCC function ID (bit 30 clear): what a 32-bit
/// caller must pass for the Tessera hypercalls and PSCI, whichever form the
/// arch-neutral code names.
fn smc32_id(id: u64) -> u32 {
    abi::smc32(id) as u32
}

/// A PSCI call (Arm DEN 0022) over `SMC #0` (SMCCC, SMC32): `r0` = function
/// ID (an SMC64 ID is turned into its SMC32 form), `r1`..`r3` arguments
/// (their low 32 bits); returns `r0`, sign-extended.
pub fn psci_call(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let result: u32;
    // SAFETY: the SMC traps to the hypervisor, which implements PSCI for
    // the guest; no PSCI call writes guest memory. r1..r3 and r12 are
    // declared clobbered (SMCCC 1.0 lets unused result registers change;
    // r4..r7 are preserved for SMC32). Not `nomem`: the stores before the
    // call are made before it, and the `dsb` completes them.
    unsafe {
        asm!(
            ".arch_extension sec",
            "dsb ish",
            "smc #0",
            inlateout("r0") smc32_id(u64::from(function)) => result,
            inlateout("r1") a1 as u32 => _,
            inlateout("r2") a2 as u32 => _,
            inlateout("r3") a3 as u32 => _,
            out("r12") _,
            options(nostack),
        );
    }
    i64::from(result as i32)
}

/// Vector offsets (`.Lv_common`'s first argument).
const VECTOR_UNDEF: u32 = 0x04;
const VECTOR_SVC: u32 = 0x08;
const VECTOR_PABT: u32 = 0x0c;
const VECTOR_DABT: u32 = 0x10;

/// AArch64 `ESR_ELx` fields the report uses: EC (bits 31:26), IL (bit 25).
const ESR_EC_SHIFT: u32 = 26;
const ESR_IL: u32 = 1 << 25;
const EC_UNKNOWN: u32 = 0x00;
const EC_SVC32: u32 = 0x11;
const EC_IABT_SAME_EL: u32 = 0x21;
const EC_DABT_SAME_EL: u32 = 0x25;
/// `SPSR.T`: the exception came from Thumb state.
const SPSR_T: u32 = 1 << 5;
/// DFSR/IFSR bit 9: the long-descriptor (LPAE) format; bits 5:0 are then
/// the fault status code, encoded as AArch64's xFSC. DFSR bit 11: WnR.
const FSR_LPAE: u32 = 1 << 9;
const DFSR_WNR: u32 = 1 << 11;

fn fault_status(fsr: u32) -> u32 {
    if fsr & FSR_LPAE != 0 {
        fsr & 0x3f
    } else {
        // Short-descriptor FS (bits 10, 3:0), only before the MMU is on.
        (fsr & 0xf) | (fsr >> 6 & 0x10)
    }
}

/// Every vector but IRQ ends here, in the mode the exception was taken to,
/// on the exception stack, with the vector offset, that mode's LR and SPSR.
///
/// Reports with what an AArch64 EL1 would have in `ESR_EL1`, `ELR_EL1` and
/// `FAR_EL1` for the same exception, so that the report reads the same on
/// both: undefined instruction EC 0x00 (`ESR=0x2000000`, as for the
/// `HCR_EL2`/`HCR` probe), SVC EC 0x11, prefetch abort EC 0x21 with IFSR's
/// status code and IFAR, data abort EC 0x25 with DFSR's status code, WnR
/// and DFAR; ELR = the instruction that took it. Reset, the unused HYP slot
/// and FIQ have no syndrome: ESR = 0, FAR = the vector offset.
extern "C" fn exception_entry(vector: u32, lr: u32, spsr: u32) -> ! {
    report_exception(|| syndrome(vector, lr, spsr))
}

/// ESR, ELR and FAR, AArch64-style, for `exception_entry`.
fn syndrome(vector: u32, lr: u32, spsr: u32) -> (u64, u64, u64) {
    let thumb = spsr & SPSR_T != 0;
    let (esr, pc, far) = match vector {
        VECTOR_UNDEF => (
            EC_UNKNOWN << ESR_EC_SHIFT | ESR_IL,
            lr.wrapping_sub(if thumb { 2 } else { 4 }),
            0,
        ),
        VECTOR_SVC => (
            EC_SVC32 << ESR_EC_SHIFT | ESR_IL,
            lr.wrapping_sub(if thumb { 2 } else { 4 }),
            0,
        ),
        VECTOR_PABT => (
            EC_IABT_SAME_EL << ESR_EC_SHIFT | ESR_IL | fault_status(ifsr()),
            lr.wrapping_sub(4),
            ifar(),
        ),
        VECTOR_DABT => {
            let dfsr = dfsr();
            let wnr = if dfsr & DFSR_WNR != 0 { 1 << 6 } else { 0 };
            (
                EC_DABT_SAME_EL << ESR_EC_SHIFT | ESR_IL | wnr | fault_status(dfsr),
                lr.wrapping_sub(8),
                dfar(),
            )
        }
        other => (0, lr.wrapping_sub(4), other),
    };
    (esr.into(), pc.into(), far.into())
}

/// DFSR: the last data abort's status.
fn dfsr() -> u32 {
    read_cp15!(c5, c0, 0)
}

/// IFSR: the last prefetch abort's status.
fn ifsr() -> u32 {
    read_cp15!(c5, c0, 1)
}

/// DFAR: the last data abort's address.
fn dfar() -> u32 {
    read_cp15!(c6, c0, 0)
}

/// IFAR: the last prefetch abort's address.
fn ifar() -> u32 {
    read_cp15!(c6, c0, 2)
}

/// `HVC #0` with the SMCCC registers of the Tessera ABI, SMC32 form: the
/// ID with bit 30 clear ([`abi::smc32`]), the low 32 bits of each argument;
/// the 32-bit result is sign-extended.
pub fn hypercall(id: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let result: u32;
    // SAFETY: the hypervisor preserves every register but r0 (ABI), and no
    // ABI 1.x call writes guest memory. The asm is not `nomem`, so buffers
    // passed by address are written out before the call.
    unsafe {
        asm!(
            ".arch_extension virt",
            "hvc #0",
            inlateout("r0") smc32_id(id) => result,
            in("r1") a1 as u32,
            in("r2") a2 as u32,
            in("r3") a3 as u32,
            options(nostack),
        );
    }
    i64::from(result as i32)
}

/// `CNTVCT`, after an `isb` so it is not read early.
pub fn counter() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: reads CNTVCT (64-bit, MRRC), nothing else.
    unsafe {
        asm!("isb", "mrrc p15, 1, {}, {}, c14", out(reg) low, out(reg) high,
             options(nomem, nostack, preserves_flags));
    }
    u64::from(high) << 32 | u64::from(low)
}

/// `CNTFRQ`.
pub fn counter_frequency() -> u64 {
    read_cp15!(c14, c0, 0).into()
}

/// Branches with link to `addr` (ARM state), for isolation probes; returns
/// if the code there returns.
pub fn probe_exec(addr: u64) {
    // SAFETY: `addr` is outside the guest image (checked by `crate::probe`).
    // What runs there is not ours: the probe exists to show that stage 2
    // stops it. If code there does return, it followed the AAPCS as far as
    // the clobbers below are concerned (no `clobber_abi` on this soft-float
    // target: the caller-saved registers are listed); anything else ends in
    // a reported exception.
    unsafe {
        asm!(
            "blx {addr}",
            addr = in(reg) addr as usize,
            out("r0") _, out("r1") _, out("r2") _, out("r3") _,
            out("r12") _, out("lr") _,
        );
    }
}

/// `SMC #0` with SMCCC registers (`r0` = function ID, `r1`..`r3` the low
/// 32 bits of the arguments), for hostile-guest tests: the hypervisor traps
/// SMC and answers in `r0` (sign-extended). The ID is passed as given.
pub fn smc_call(id: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let result: u32;
    // SAFETY: as for `hypercall`: a trapped SMC only changes r0 (r1..r3 are
    // declared clobbered in case a firmware answers more). No SMC of these
    // tests writes memory.
    unsafe {
        asm!(
            ".arch_extension sec",
            "smc #0",
            inlateout("r0") id as u32 => result,
            inlateout("r1") a1 as u32 => _,
            inlateout("r2") a2 as u32 => _,
            inlateout("r3") a3 as u32 => _,
            options(nostack),
        );
    }
    i64::from(result as i32)
}

/// `HVC #1`: a hypercall with a non-zero immediate, which the Tessera ABI
/// does not define, for hostile-guest tests (ID in its SMC32 form).
pub fn hypercall_imm1(id: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let result: u32;
    // SAFETY: as for `hypercall`; r1..r3 are declared clobbered because no
    // contract covers this call.
    unsafe {
        asm!(
            ".arch_extension virt",
            "hvc #1",
            inlateout("r0") smc32_id(id) => result,
            inlateout("r1") a1 as u32 => _,
            inlateout("r2") a2 as u32 => _,
            inlateout("r3") a3 as u32 => _,
            options(nostack),
        );
    }
    i64::from(result as i32)
}

/// Reads `HCR` (the AArch32 view of `HCR_EL2`, `MRC p15, 4, c1, c1, 0`)
/// from PL1: UNDEFINED there, so this takes the guest's own undefined
/// instruction exception (reported as `ESR=0x2000000`, as on AArch64, and
/// the VM stops). Returns only if something lets the read through.
pub fn read_hcr_el2() -> u64 {
    let value: u32;
    // SAFETY: an MRC reads a register and writes `value`, nothing else; the
    // exception it takes at PL1 ends in the runtime's exception handler.
    unsafe { asm!("mrc p15, 4, {}, c1, c1, 0", out(reg) value, options(nomem, nostack)) };
    value.into()
}

/// Defines `debug_regs_write` and `debug_regs_read` over a list of CP14
/// and CP15 registers (`p14, 0, {}, c0, c2, 2`: coprocessor, opc1, Rt,
/// CRn, CRm, opc2), in the order of [`crate::probe::DEBUG_REGS`].
macro_rules! debug_registers {
    ($(($cp:literal, $crn:literal, $crm:literal, $op2:literal)),* $(,)?) => {
        /// Writes each debug and PMU register of [`crate::probe::DEBUG_REGS`]
        /// (their low 32 bits).
        pub fn debug_regs_write(values: &[u64; crate::probe::DEBUG_REG_COUNT]) {
            let mut values = values.iter();
            $(
                let value = *values.next().unwrap() as u32;
                // SAFETY: an MCR to a debug or PMU register; the values the
                // probe writes enable no breakpoint, watchpoint, counter or
                // interrupt, and the hypervisor traps these anyway.
                unsafe {
                    asm!(concat!("mcr ", $cp, ", 0, {}, ", $crn, ", ", $crm, ", ", $op2), "isb",
                         in(reg) value, options(nomem, nostack))
                };
            )*
        }

        /// Reads each debug and PMU register of [`crate::probe::DEBUG_REGS`].
        pub fn debug_regs_read() -> [u64; crate::probe::DEBUG_REG_COUNT] {
            [$({
                let value: u32;
                // SAFETY: an MRC of a debug or PMU register has no side effects.
                unsafe {
                    asm!(concat!("mrc ", $cp, ", 0, {}, ", $crn, ", ", $crm, ", ", $op2),
                         out(reg) value, options(nomem, nostack))
                };
                u64::from(value)
            }),*]
        }
    };
}

debug_registers!(
    ("p14", "c0", "c2", "2"),   // DBGDSCRext
    ("p14", "c0", "c0", "4"),   // DBGBVR0
    ("p14", "c0", "c0", "5"),   // DBGBCR0
    ("p14", "c0", "c0", "6"),   // DBGWVR0
    ("p14", "c0", "c0", "7"),   // DBGWCR0
    ("p15", "c9", "c12", "0"),  // PMCR
    ("p15", "c9", "c12", "5"),  // PMSELR
    ("p15", "c9", "c12", "1"),  // PMCNTENSET
    ("p15", "c9", "c14", "1"),  // PMINTENSET
    ("p15", "c9", "c14", "0"),  // PMUSERENR
    ("p15", "c14", "c15", "7"), // PMCCFILTR
);

/// `SoakRegs::x` entries the soak loads and checks: r1..r14 (r13 = sp and
/// r14 = lr of SVC mode included; r0 is the loop counter).
pub const SOAK_GPRS: core::ops::RangeInclusive<usize> = 1..=14;
/// The bits of a general-purpose register: 32.
pub const SOAK_GPR_MASK: u64 = 0xffff_ffff;
/// How the soak's report names general-purpose register `n`: `r<n>`.
pub const GPR_PREFIX: &str = "r";

/// The register file of a [`register_soak`]: the values it loads before the
/// soak, and the values it found afterwards (written back in place). Every
/// core register is 32 bits, kept in the low half of a `u64` (little
/// endian: at offset 8 n), so that the arch-neutral code is the same as on
/// AArch64; the d-registers fill their `u64` (`sys[0..32]`, at offset 128,
/// in the order VLDM/VSTM move d0..d31).
#[repr(C, align(16))]
#[derive(Clone, PartialEq, Eq)]
pub struct SoakRegs {
    /// `x[0]`: the iteration count in (the loop counter, at most
    /// `u32::MAX`); `x[1..=14]`: the patterns of r1..r14. `x[15]` (pc) is
    /// not soaked.
    pub x: [u64; 16],
    /// The registers of [`SOAK_SYS_REGS`], in that order: d0..d31, then
    /// the system registers.
    pub sys: [u64; 40],
    /// No 128-bit `vN` entries: the VFP registers are soaked as d0..d31, in
    /// `sys`, so that a mismatch names the d-register.
    pub v: [u128; 0],
}

// By hand: `derive(Default)` stops at arrays of 32.
impl Default for SoakRegs {
    fn default() -> Self {
        SoakRegs {
            x: [0; 16],
            sys: [0; 40],
            v: [],
        }
    }
}

/// Names of [`SoakRegs::sys`] and the bits of each that hold a value:
/// d0..d31 (all 64 bits), then the system registers. APSR: Q and GE[3:0]
/// only: the soak loop itself (`subs`/`bne`, ARM has no flag-free
/// compare-and-branch) sets N, Z, C and V, but keeps Q and GE, which the
/// hypervisor saves in the same SPSR. FPSCR: the bits every host keeps
/// (AArch64 keeps an AArch32 guest's FPSCR as FPSR and FPCR): the
/// comparison flags N, Z, C, V, QC, AHP, DN, FZ, RMode and the cumulative
/// exception flags; not Len and Stride (short vectors, which would make
/// VFP data-processing instructions UNDEFINED on cores without them) nor
/// the trap enables (RAZ/WI without trapped exceptions).
pub const SOAK_SYS_REGS: [(&str, u64); 40] = [
    ("d0", u64::MAX),
    ("d1", u64::MAX),
    ("d2", u64::MAX),
    ("d3", u64::MAX),
    ("d4", u64::MAX),
    ("d5", u64::MAX),
    ("d6", u64::MAX),
    ("d7", u64::MAX),
    ("d8", u64::MAX),
    ("d9", u64::MAX),
    ("d10", u64::MAX),
    ("d11", u64::MAX),
    ("d12", u64::MAX),
    ("d13", u64::MAX),
    ("d14", u64::MAX),
    ("d15", u64::MAX),
    ("d16", u64::MAX),
    ("d17", u64::MAX),
    ("d18", u64::MAX),
    ("d19", u64::MAX),
    ("d20", u64::MAX),
    ("d21", u64::MAX),
    ("d22", u64::MAX),
    ("d23", u64::MAX),
    ("d24", u64::MAX),
    ("d25", u64::MAX),
    ("d26", u64::MAX),
    ("d27", u64::MAX),
    ("d28", u64::MAX),
    ("d29", u64::MAX),
    ("d30", u64::MAX),
    ("d31", u64::MAX),
    ("tpidrurw", 0xffff_ffff),
    ("tpidruro", 0xffff_ffff),
    ("tpidrprw", 0xffff_ffff),
    ("contextidr", 0xffff_ffff),
    ("sp_usr", 0xffff_ffff),
    ("lr_usr", 0xffff_ffff),
    ("apsr", 0x080f_0000),
    ("fpscr", 0xffc0_009f),
];

const _: () = {
    assert!(core::mem::offset_of!(SoakRegs, x) == 0);
    assert!(core::mem::offset_of!(SoakRegs, sys) == 128);
    assert!(core::mem::size_of::<SoakRegs>() == 448);
};

/// Loads `regs` into r1..r14 (SVC sp and lr), d0..d31 and the system
/// registers of [`SOAK_SYS_REGS`], spins `regs.x[0]` times (at least once)
/// in a loop that touches no memory and no register but r0 and the NZCV
/// flags, then writes what the registers hold back into `regs` (`x[0]` is
/// left as it was). r4..r11, sp and lr are restored afterwards; the VFP
/// registers and the other system registers keep the soak's values
/// (nothing in the runtime uses them: its Rust code is soft-float). Needs
/// VFP with 32 d-registers, enabled (`__rt_vfp_on`): every core the
/// runtime runs on (Cortex-A15, A7, ARMv8 in AArch32) has them.
pub fn register_soak(regs: &mut SoakRegs) {
    regs.x[0] = regs.x[0].clamp(1, u64::from(u32::MAX));
    // IRQs masked: during the loop sp holds a pattern, and the IRQ entry
    // would push onto it.
    let was_enabled = irq_enabled();
    irq_disable();
    // SAFETY: the assembly reads and writes only `*regs` (exclusively
    // borrowed, 448 bytes) and 40 bytes below sp, which it frees (SP_und,
    // which it borrows, is put back). During the
    // loop sp holds a pattern: the regs pointer and the real sp wait in
    // SP_und and LR_und (banked registers of Undefined mode, which the
    // runtime only enters to report and stop, on a stack the vector sets
    // itself), and IRQs are masked. r4..r11 (some of which Rust does not
    // let us name) are saved on the stack and restored; r1..r3, r12 and lr
    // are declared clobbered. The system registers it changes are thread
    // and process identifiers and User-mode sp/lr, which the runtime (SVC
    // mode, one thread) does not use; the VFP registers and FPSCR are not
    // used by the soft-float Rust code (so none can be named as clobbers).
    unsafe {
        asm!(
            ".arch_extension virt",
            ".fpu neon",
            // SP_und is Undefined mode's stack (`__rt_undef_entry`): kept.
            "mrs r1, sp_und",
            "push {{r1, r2}}",
            "push {{r4-r11}}",
            "msr sp_und, r0",
            "mov r1, sp",
            "msr lr_und, r1",
            // d0..d31.
            "add r1, r0, #128",
            "vldmia r1!, {{d0-d15}}",
            "vldmia r1, {{d16-d31}}",
            // System registers.
            "ldr r1, [r0, #384]",
            "mcr p15, 0, r1, c13, c0, 2", // TPIDRURW
            "ldr r1, [r0, #392]",
            "mcr p15, 0, r1, c13, c0, 3", // TPIDRURO
            "ldr r1, [r0, #400]",
            "mcr p15, 0, r1, c13, c0, 4", // TPIDRPRW
            "ldr r1, [r0, #408]",
            "mcr p15, 0, r1, c13, c0, 1", // CONTEXTIDR
            "ldr r1, [r0, #416]",
            "msr sp_usr, r1",
            "ldr r1, [r0, #424]",
            "msr lr_usr, r1",
            "ldr r1, [r0, #432]",
            "msr APSR_nzcvqg, r1",
            "ldr r1, [r0, #440]",
            "vmsr fpscr, r1",
            "isb",
            // r1..r14, then the counter into r0.
            "ldr r1, [r0, #8]",
            "ldr r2, [r0, #16]",
            "ldr r3, [r0, #24]",
            "ldr r4, [r0, #32]",
            "ldr r5, [r0, #40]",
            "ldr r6, [r0, #48]",
            "ldr r7, [r0, #56]",
            "ldr r8, [r0, #64]",
            "ldr r9, [r0, #72]",
            "ldr r10, [r0, #80]",
            "ldr r11, [r0, #88]",
            "ldr r12, [r0, #96]",
            "ldr sp, [r0, #104]",
            "ldr lr, [r0, #112]",
            "ldr r0, [r0]",
            // The soak: no memory, no hypercall; only preemption leaves
            // this loop early.
            "2:",
            "subs r0, r0, #1",
            "bne 2b",
            // Write back what the registers hold now.
            "mrs r0, sp_und",
            "str r1, [r0, #8]",
            "str r2, [r0, #16]",
            "str r3, [r0, #24]",
            "str r4, [r0, #32]",
            "str r5, [r0, #40]",
            "str r6, [r0, #48]",
            "str r7, [r0, #56]",
            "str r8, [r0, #64]",
            "str r9, [r0, #72]",
            "str r10, [r0, #80]",
            "str r11, [r0, #88]",
            "str r12, [r0, #96]",
            "str sp, [r0, #104]",
            "str lr, [r0, #112]",
            "add r1, r0, #128",
            "vstmia r1!, {{d0-d15}}",
            "vstmia r1, {{d16-d31}}",
            "mrc p15, 0, r1, c13, c0, 2",
            "str r1, [r0, #384]",
            "mrc p15, 0, r1, c13, c0, 3",
            "str r1, [r0, #392]",
            "mrc p15, 0, r1, c13, c0, 4",
            "str r1, [r0, #400]",
            "mrc p15, 0, r1, c13, c0, 1",
            "str r1, [r0, #408]",
            "mrs r1, sp_usr",
            "str r1, [r0, #416]",
            "mrs r1, lr_usr",
            "str r1, [r0, #424]",
            "mrs r1, apsr",
            "str r1, [r0, #432]",
            "vmrs r1, fpscr",
            "str r1, [r0, #440]",
            // Restore.
            "mrs r1, lr_und",
            "mov sp, r1",
            "pop {{r4-r11}}",
            "pop {{r1, r2}}",
            "msr sp_und, r1",
            inout("r0") regs as *mut SoakRegs => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r12") _,
            out("lr") _,
        );
    }
    if was_enabled {
        irq_enable();
    }
}
