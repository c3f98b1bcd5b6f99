//! AArch64 (EL1) part of the guest runtime: the entry code, the exception
//! vectors, the identity map, the hypercall instruction and the timer.
//!
//! This module, its submodules and the shared `common.rs` are the only
//! places in the runtime with `unsafe` code.

use core::arch::{asm, global_asm};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTVCT_EL0, ELR_EL1, ESR_EL1, FAR_EL1};

#[path = "common.rs"]
mod common;
#[path = "aarch64_fuzz.rs"]
mod fuzz;
#[path = "aarch64_irq.rs"]
mod irq;
#[path = "lpae.rs"]
mod lpae;
pub use common::*;
pub use fuzz::*;
pub use irq::*;

// Entry: the first byte of the image (section .text.boot, first in guest.ld).
// The hypervisor enters at EL1, MMU off, x0 = guest-physical address of the
// StartInfo. Until the MMU is on, data accesses are Device-nGnRnE: the code
// before it (`__rt_mmu_on` included) stores nothing to memory. The stack's
// cache lines are still invalidated first, so that no stale line left by
// the hypervisor's cacheable writes when it loaded the image can matter
// should that ever change.
global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
    .type _start, %function
_start:
    msr     daifset, #0xf               // no interrupts: the guest takes none
    mov     x19, x0                     // StartInfo IPA, callee-saved

    // FP/SIMD on (CPACR_EL1.FPEN = 0b11) before any Rust code runs.
    mrs     x1, cpacr_el1
    orr     x1, x1, #(0x3 << 20)
    msr     cpacr_el1, x1
    isb

    // Boot stack (guest.ld: .stack, 4 KiB aligned, not zeroed).
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1

    // Invalidate the stack's cache lines: [__stack_bottom, __exception_stack_top).
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4             // DminLine: log2(words) of the smallest D-line
    mov     x4, #4
    lsl     x4, x4, x3                  // line size in bytes
    adrp    x1, __stack_bottom
    add     x1, x1, :lo12:__stack_bottom
    adrp    x2, __exception_stack_top
    add     x2, x2, :lo12:__exception_stack_top
1:  dc      ivac, x1
    add     x1, x1, x4
    cmp     x1, x2
    b.lo    1b
    dsb     sy

    // Vectors and MMU: __rt_mmu_on(vectors), shared with _start_secondary.
    adrp    x0, __rt_vectors
    add     x0, x0, :lo12:__rt_vectors
    bl      __rt_mmu_on

    // Zero .bss, now through the cache (guest.ld aligns it to 16 bytes).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    stp     xzr, xzr, [x1], #16
    b       2b
3:
    // rust_main(start_info) never returns.
    mov     x0, x19
    bl      {rust_main}
4:  wfi
    b       4b
    .size _start, . - _start
"#,
    rust_main = sym rust_main,
);

// Secondary vCPU entry (PSCI CPU_ON by `crate::smp::start_vcpu`): EL1h, MMU
// off, interrupts masked, x0 = context id = the vCPU's index, every other
// register UNKNOWN. Nothing is read from or written to memory before the
// MMU is on (`__rt_mmu_on` only sets registers), so no cache maintenance is
// needed for what another vCPU wrote: all of the hand-over (which Rust
// function to run) is read by Rust code after it, through the caches,
// coherently. The stack is this vCPU's own, chosen by MPIDR_EL1.Aff0 as the
// exception vectors choose its exception stack; a vCPU without a slot halts.
global_asm!(
    r#"
    .section .text.rt_secondary, "ax"
    .global _start_secondary
    .type _start_secondary, %function
    .balign 4
_start_secondary:
    msr     daifset, #0xf
    mov     x19, x0                     // context id, callee-saved

    // FP/SIMD on (CPACR_EL1.FPEN = 0b11) before any Rust code runs.
    mrs     x1, cpacr_el1
    orr     x1, x1, #(0x3 << 20)
    msr     cpacr_el1, x1
    isb

    // Stack: vCPU 0 the boot stack, vCPU n (1 <= n < MAX_VCPUS) the stack
    // of slot n - 1 of __vcpu_stacks (guest.ld).
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff               // Aff0 = vCPU index
    cmp     x1, #{max_vcpus}
    b.hs    9f
    cbnz    x1, 1f
    adrp    x2, __stack_top
    add     x2, x2, :lo12:__stack_top
    b       2f
1:  sub     x1, x1, #1
    mov     x3, #{slot}
    adrp    x2, __vcpu_stacks
    add     x2, x2, :lo12:__vcpu_stacks
    madd    x2, x1, x3, x2
    add     x2, x2, #{stack}
2:  mov     sp, x2

    // Vectors and MMU: the same registers, the same tables as vCPU 0.
    adrp    x0, __rt_vectors
    add     x0, x0, :lo12:__rt_vectors
    bl      __rt_mmu_on

    // secondary_main(context) never returns.
    mov     x0, x19
    bl      {secondary_main}
9:  wfi
    b       9b
    .size _start_secondary, . - _start_secondary
"#,
    max_vcpus = const MAX_VCPUS,
    slot = const VCPU_SLOT_SIZE,
    stack = const VCPU_STACK_SIZE,
    secondary_main = sym secondary_main,
);

// Installs the vectors (x0) and turns on the MMU and the caches with the
// identity map: MAIR_EL1, TCR_EL1, TTBR0_EL1, TLB invalidation, SCTLR_EL1.
// Runs with the MMU off and touches no memory (no stack, no literal pool):
// clobbers x0..x2 only, returns through x30. Every vCPU runs it, so every
// vCPU has exactly the same translation regime.
global_asm!(
    r#"
    .section .text.rt_mmu, "ax"
    .type __rt_mmu_on, %function
    .balign 4
__rt_mmu_on:
    msr     vbar_el1, x0
    mov     x1, #{mair}
    msr     mair_el1, x1
    movz    x1, #{tcr_lo}
    movk    x1, #{tcr_hi}, lsl #16
    msr     tcr_el1, x1
    adrp    x1, {map}                   // ASID 0, CnP 0
    add     x1, x1, :lo12:{map}
    msr     ttbr0_el1, x1
    // The new VBAR/MAIR/TCR/TTBR0 are in effect before the TLBs are cleaned.
    isb
    // Stage-1 TLB entries of this VM's EL1&0 regime: inner shareable, in
    // case the hypervisor upgrades the TLBI to a broadcast.
    dsb     ish
    tlbi    vmalle1
    dsb     ish
    isb
    mrs     x1, sctlr_el1
    movz    x2, #{sctlr_set}
    orr     x1, x1, x2
    movz    x2, #{sctlr_clear_lo}
    movk    x2, #{sctlr_clear_hi}, lsl #16
    bic     x1, x1, x2
    msr     sctlr_el1, x1
    isb
    ret
    .size __rt_mmu_on, . - __rt_mmu_on
"#,
    mair = const MAIR_VALUE,
    tcr_lo = const TCR_VALUE & 0xffff,
    tcr_hi = const TCR_VALUE >> 16,
    map = sym IDENTITY_MAP,
    sctlr_set = const SCTLR_SET,
    sctlr_clear_lo = const SCTLR_CLEAR & 0xffff,
    sctlr_clear_hi = const SCTLR_CLEAR >> 16,
);

// EL1 exception vectors: 16 entries of 0x80 bytes, table aligned to 2 KiB.
// IRQs go to the interrupt entry (aarch64_irq.rs). Nothing else is
// expected: each one switches to the exception stack (so that a stack
// overflow is still reported) and reports. Nothing returns.
global_asm!(
    r#"
    .section .text.vectors, "ax"
    .balign 0x800
    .global __rt_vectors
__rt_vectors:
    .set .Lvector, 0
    .rept 16
    .balign 0x80
    // IRQs taken at EL1 (SP0 or SPx) are handled; synchronous exceptions
    // at EL1 go through the recoverable entry (aarch64_fuzz.rs), which
    // steps over them when the guest asked for it (`crate::fuzz`) and
    // reports otherwise; everything else reports.
    .if .Lvector == 1 || .Lvector == 5
    b       __rt_irq_entry
    .elseif .Lvector == 0 || .Lvector == 4
    b       __rt_sync_entry
    .else
    mov     x0, #.Lvector
    b       .Lvector_common
    .endif
    .set .Lvector, .Lvector + 1
    .endr
    // The report path, x0 = the vector number; also entered from
    // `__rt_sync_entry` for a synchronous exception it does not recover.
    .global __rt_vector_report
__rt_vector_report:
.Lvector_common:
    // This vCPU's exception stack (by MPIDR_EL1.Aff0): vCPU 0's is the
    // boot one, vCPU n's the top of slot n - 1 of __vcpu_stacks; a vCPU
    // without a slot (none runs the runtime) shares vCPU 0's.
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cbz     x1, 6f
    cmp     x1, #{max_vcpus}
    b.hs    6f
    sub     x1, x1, #1
    mov     x2, #{slot}
    adrp    x3, __vcpu_stacks
    add     x3, x3, :lo12:__vcpu_stacks
    madd    x1, x1, x2, x3
    add     x1, x1, #{slot}
    b       7f
6:  adrp    x1, __exception_stack_top
    add     x1, x1, :lo12:__exception_stack_top
7:  mov     sp, x1
    bl      {exception_entry}
5:  wfi
    b       5b
"#,
    max_vcpus = const MAX_VCPUS,
    slot = const VCPU_SLOT_SIZE,
    exception_entry = sym exception_entry,
);

/// `TCR_EL1.T0SZ`: 39-bit virtual addresses, so translation starts at level 1.
const T0SZ: u64 = 25;

/// A level-1 translation table: 512 entries of 1 GiB.
#[repr(C, align(4096))]
struct Level1Table([u64; 512]);

/// The identity map ([`lpae::identity_map`]); `TCR_EL1.HA` is off.
static IDENTITY_MAP: Level1Table = Level1Table(lpae::identity_map());

/// `MAIR_EL1`: the identity map's attributes.
const MAIR_VALUE: u64 = lpae::MAIR_ATTRS;

// TCR_EL1 fields (Arm ARM D19.2): TTBR0 walks inner shareable, write-back
// read/write-allocate, 4 KiB granule, T0SZ; no TTBR1 walks (EPD1, with
// valid sizes kept: TG1 = 4 KiB, T1SZ); IPS = 32 bits (everything mapped is
// below 4 GiB); everything else 0 (ASID from TTBR0, 8-bit ASIDs, no TBI,
// no hardware access flag).
const TCR_IRGN0_WBWA: u64 = 0b01 << 8;
const TCR_ORGN0_WBWA: u64 = 0b01 << 10;
const TCR_SH0_INNER: u64 = 0b11 << 12;
const TCR_TG0_4K: u64 = 0b00 << 14;
const TCR_T1SZ_SHIFT: u64 = 16;
const TCR_EPD1: u64 = 1 << 23;
const TCR_TG1_4K: u64 = 0b10 << 30;
const TCR_IPS_32_BITS: u64 = 0b000 << 32;
const TCR_VALUE: u64 = T0SZ
    | TCR_IRGN0_WBWA
    | TCR_ORGN0_WBWA
    | TCR_SH0_INNER
    | TCR_TG0_4K
    | T0SZ << TCR_T1SZ_SHIFT
    | TCR_EPD1
    | TCR_TG1_4K
    | TCR_IPS_32_BITS;
// `__rt_mmu_on` loads it with a movz and a movk.
const _: () = assert!(TCR_VALUE >> 32 == 0);

// SCTLR_EL1 bits set (M: MMU, C: data caches, SA: SP alignment check, I:
// instruction caches) and cleared (A: alignment check, WXN, EE: little
// endian at EL1).
const SCTLR_SET: u64 = 1 << 0 | 1 << 2 | 1 << 3 | 1 << 12;
const SCTLR_CLEAR: u64 = 1 << 1 | 1 << 19 | 1 << 25;
// `__rt_mmu_on` loads them with one movz, and a movz and a movk.
const _: () = assert!(SCTLR_SET >> 16 == 0 && SCTLR_CLEAR >> 32 == 0);

/// Cleans the data cache lines of `[addr, addr + len)` to the point of
/// coherency (`DC CVAC`), then waits for it (`DSB SY`): memory then holds
/// what the caches held, for an observer that reads it uncached.
pub fn clean_dcache_to_poc(addr: u64, len: usize) {
    // CTR_EL0.DminLine (bits 19:16): log2 of the smallest D-cache line in
    // words.
    let ctr: u64;
    // SAFETY: reads CTR_EL0, nothing else.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let end = addr + len as u64;
    let mut at = addr & !(line - 1);
    while at < end {
        // SAFETY: a clean writes dirty data back; it changes no value any
        // observer reads through the caches. Not `nomem`: it must come after
        // the stores it is to write back (the compiler keeps the order).
        unsafe { asm!("dc cvac, {}", in(reg) at, options(nostack, preserves_flags)) };
        at += line;
    }
    // SAFETY: a barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// A PSCI call (Arm DEN 0022) over `SMC #0` (SMCCC): `x0` = function ID,
/// `x1`..`x3` arguments; returns `x0`.
pub fn psci_call(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let result: u64;
    // SAFETY: the SMC traps to the hypervisor, which implements PSCI for
    // the guest; no PSCI call writes guest memory (CPU_ON starts another
    // vCPU at an entry point of ours; CPU_OFF, SYSTEM_OFF and SYSTEM_RESET
    // do not return). SMCCC 1.0 lets x1..x17 change on return, so all are
    // declared clobbered. Not `nomem`: the stores before the call (e.g.
    // what a started vCPU will read) are made before it, and the `dsb`
    // completes them, whatever the hypervisor does before it starts a vCPU.
    unsafe {
        asm!(
            "dsb ish",
            "smc #0",
            inlateout("x0") u64::from(function) => result,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            inlateout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    result as i64
}

/// Every vector ends here, on the exception stack.
extern "C" fn exception_entry(_vector: u64) -> ! {
    report_exception(|| (ESR_EL1.get(), ELR_EL1.get(), FAR_EL1.get()))
}

/// `HVC #0` with the SMCCC registers of the Tessera ABI.
pub fn hypercall(id: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let result: u64;
    // SAFETY: the hypervisor preserves every register but x0 (ABI), and no
    // ABI 1.x call writes guest memory. The asm is not `nomem`, so buffers
    // passed by address are written out before the call.
    unsafe {
        asm!(
            "hvc #0",
            inlateout("x0") id => result,
            in("x1") a1,
            in("x2") a2,
            in("x3") a3,
            options(nostack),
        );
    }
    result as i64
}

pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Branches with link to `addr`, for isolation probes; returns if the code
/// there returns.
pub fn probe_exec(addr: u64) {
    // SAFETY: `addr` is outside the guest image (checked by `crate::probe`).
    // What runs there is not ours: the probe exists to show that stage 2
    // stops it. If code there does return, it followed the C ABI as far as
    // the clobbers below are concerned; anything else ends in a reported
    // exception.
    unsafe {
        asm!("blr {addr}", addr = in(reg) addr, clobber_abi("C"));
    }
}

/// `SMC #0` with SMCCC registers (`x0` = function ID, `x1`..`x3` arguments),
/// for hostile-guest tests: the hypervisor traps SMC and answers in `x0`.
pub fn smc_call(id: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let result: u64;
    // SAFETY: as for `hypercall`: a trapped SMC only changes x0 (SMCCC
    // preserves x4..x17 for a fast call; x1..x3 are declared clobbered in
    // case a firmware answers more). No SMC of these tests writes memory.
    unsafe {
        asm!(
            "smc #0",
            inlateout("x0") id => result,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            inlateout("x3") a3 => _,
            options(nostack),
        );
    }
    result as i64
}

/// `HVC #1`: a hypercall with a non-zero immediate, which the Tessera ABI
/// does not define (SMCCC uses `HVC #0`), for hostile-guest tests.
pub fn hypercall_imm1(id: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let result: u64;
    // SAFETY: as for `hypercall`; x1..x3 are declared clobbered because no
    // contract covers this call.
    unsafe {
        asm!(
            "hvc #1",
            inlateout("x0") id => result,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            inlateout("x3") a3 => _,
            options(nostack),
        );
    }
    result as i64
}

/// Reads `HCR_EL2` from EL1: UNDEFINED there, so this takes the guest's own
/// undefined-instruction exception (reported by the runtime, which stops
/// the VM). Returns only if something lets the read through.
pub fn read_hcr_el2() -> u64 {
    let value: u64;
    // SAFETY: an MRS reads a register and writes `value`, nothing else; the
    // exception it takes at EL1 ends in the runtime's exception handler.
    unsafe { asm!("mrs {}, hcr_el2", out(reg) value, options(nomem, nostack)) };
    value
}

/// Defines `debug_regs_write` and `debug_regs_read` over a list of system
/// registers, in the order of [`crate::probe::DEBUG_REGS`].
macro_rules! debug_registers {
    ($($reg:literal),* $(,)?) => {
        /// Writes each debug and PMU register of [`crate::probe::DEBUG_REGS`].
        pub fn debug_regs_write(values: &[u64; crate::probe::DEBUG_REG_COUNT]) {
            let mut values = values.iter();
            $(
                let value = *values.next().unwrap();
                // SAFETY: an MSR to a debug or PMU register; the values the
                // probe writes enable no breakpoint, watchpoint, counter or
                // interrupt, and the hypervisor traps these anyway.
                unsafe { asm!(concat!("msr ", $reg, ", {}"), "isb", in(reg) value, options(nomem, nostack)) };
            )*
        }

        /// Reads each debug and PMU register of [`crate::probe::DEBUG_REGS`].
        pub fn debug_regs_read() -> [u64; crate::probe::DEBUG_REG_COUNT] {
            [$({
                let value: u64;
                // SAFETY: an MRS of a debug or PMU register has no side effects.
                unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) value, options(nomem, nostack)) };
                value
            }),*]
        }
    };
}

debug_registers!(
    "mdscr_el1",
    "dbgbvr0_el1",
    "dbgbcr0_el1",
    "dbgwvr0_el1",
    "dbgwcr0_el1",
    "pmcr_el0",
    "pmselr_el0",
    "pmcntenset_el0",
    "pmintenset_el1",
    "pmuserenr_el0",
    "pmccfiltr_el0",
);

/// `SoakRegs::x` entries the soak loads and checks: x1..x30.
pub const SOAK_GPRS: core::ops::RangeInclusive<usize> = 1..=30;
/// The bits of a general-purpose register: all 64.
pub const SOAK_GPR_MASK: u64 = u64::MAX;
/// How the soak's report names general-purpose register `n`: `x<n>`.
pub const GPR_PREFIX: &str = "x";

/// The register file of a [`register_soak`]: the values it loads before the
/// soak, and the values it found afterwards (written back in place). The
/// assembly uses the offsets asserted below.
#[repr(C, align(16))]
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SoakRegs {
    /// `x[0]`: the iteration count in (the loop counter); `x[1..=30]`: the
    /// patterns of x1..x30. `x[31]` is padding.
    pub x: [u64; 32],
    /// The system registers of [`SOAK_SYS_REGS`], in that order.
    pub sys: [u64; 8],
    /// v0..v31, all 128 bits.
    pub v: [u128; 32],
}

/// Names of [`SoakRegs::sys`] and the bits of each that hold a value
/// (`CONTEXTIDR_EL1.PROCID` is 32 bits; FPSR: the cumulative flags and QC;
/// FPCR: AHP, DN, FZ and RMode; NZCV: the flags).
pub const SOAK_SYS_REGS: [(&str, u64); 8] = [
    ("tpidr_el0", u64::MAX),
    ("tpidrro_el0", u64::MAX),
    ("tpidr_el1", u64::MAX),
    ("contextidr_el1", 0xffff_ffff),
    ("sp_el0", u64::MAX),
    ("fpsr", 0x0800_009f),
    ("fpcr", 0x07c0_0000),
    ("nzcv", 0xf000_0000),
];

const _: () = {
    assert!(core::mem::offset_of!(SoakRegs, x) == 0);
    assert!(core::mem::offset_of!(SoakRegs, sys) == 256);
    assert!(core::mem::offset_of!(SoakRegs, v) == 320);
    assert!(core::mem::size_of::<SoakRegs>() == 832);
};

/// Loads `regs` into x1..x30, v0..v31 and the system registers of
/// [`SOAK_SYS_REGS`], spins `regs.x[0]` times (at least once) in a loop that
/// touches no memory, no flags and no register but x0, then writes what the
/// registers hold back into `regs` (`x[0]` is left as it was). FPCR, x18,
/// x19, x29 and x30 are restored afterwards; the other system registers keep
/// the soak's values (nothing in the runtime uses them).
pub fn register_soak(regs: &mut SoakRegs) {
    regs.x[0] = regs.x[0].max(1);
    // SAFETY: the assembly reads and writes only `*regs` (exclusively
    // borrowed, 832 bytes, 16-byte aligned) and a 64-byte frame below sp,
    // which it frees. Registers Rust does not let us name as clobbers
    // (x18, x19, x29) are saved in that frame and restored, as are x30 and
    // FPCR (the Rust code around assumes the default FP environment); all
    // others are declared clobbered. The system registers it changes are
    // thread and debug identifiers and SP_EL0, which the runtime (EL1h,
    // single-threaded) does not use.
    unsafe {
        asm!(
            "sub sp, sp, #64",
            "stp x29, x30, [sp]",
            "stp x18, x19, [sp, #16]",
            "mrs x1, fpcr",
            "stp x0, x1, [sp, #32]",
            // System registers.
            "ldp x1, x2, [x0, #256]",
            "msr tpidr_el0, x1",
            "msr tpidrro_el0, x2",
            "ldp x1, x2, [x0, #272]",
            "msr tpidr_el1, x1",
            "msr contextidr_el1, x2",
            "ldp x1, x2, [x0, #288]",
            "msr sp_el0, x1",
            "msr fpsr, x2",
            "ldp x1, x2, [x0, #304]",
            "msr fpcr, x1",
            "msr nzcv, x2",
            "isb",
            // v0..v31.
            "ldp q0, q1, [x0, #320]",
            "ldp q2, q3, [x0, #352]",
            "ldp q4, q5, [x0, #384]",
            "ldp q6, q7, [x0, #416]",
            "ldp q8, q9, [x0, #448]",
            "ldp q10, q11, [x0, #480]",
            "ldp q12, q13, [x0, #512]",
            "ldp q14, q15, [x0, #544]",
            "ldp q16, q17, [x0, #576]",
            "ldp q18, q19, [x0, #608]",
            "ldp q20, q21, [x0, #640]",
            "ldp q22, q23, [x0, #672]",
            "ldp q24, q25, [x0, #704]",
            "ldp q26, q27, [x0, #736]",
            "ldp q28, q29, [x0, #768]",
            "ldp q30, q31, [x0, #800]",
            // x1..x30, then the counter into x0.
            "ldp x1, x2, [x0, #8]",
            "ldp x3, x4, [x0, #24]",
            "ldp x5, x6, [x0, #40]",
            "ldp x7, x8, [x0, #56]",
            "ldp x9, x10, [x0, #72]",
            "ldp x11, x12, [x0, #88]",
            "ldp x13, x14, [x0, #104]",
            "ldp x15, x16, [x0, #120]",
            "ldp x17, x18, [x0, #136]",
            "ldp x19, x20, [x0, #152]",
            "ldp x21, x22, [x0, #168]",
            "ldp x23, x24, [x0, #184]",
            "ldp x25, x26, [x0, #200]",
            "ldp x27, x28, [x0, #216]",
            "ldp x29, x30, [x0, #232]",
            "ldr x0, [x0]",
            // The soak: no memory, no flags, no hypercall; only preemption
            // leaves this loop early.
            "2:",
            "sub x0, x0, #1",
            "cbnz x0, 2b",
            // Write back what the registers hold now.
            "ldr x0, [sp, #32]",
            "stp x1, x2, [x0, #8]",
            "stp x3, x4, [x0, #24]",
            "stp x5, x6, [x0, #40]",
            "stp x7, x8, [x0, #56]",
            "stp x9, x10, [x0, #72]",
            "stp x11, x12, [x0, #88]",
            "stp x13, x14, [x0, #104]",
            "stp x15, x16, [x0, #120]",
            "stp x17, x18, [x0, #136]",
            "stp x19, x20, [x0, #152]",
            "stp x21, x22, [x0, #168]",
            "stp x23, x24, [x0, #184]",
            "stp x25, x26, [x0, #200]",
            "stp x27, x28, [x0, #216]",
            "stp x29, x30, [x0, #232]",
            "stp q0, q1, [x0, #320]",
            "stp q2, q3, [x0, #352]",
            "stp q4, q5, [x0, #384]",
            "stp q6, q7, [x0, #416]",
            "stp q8, q9, [x0, #448]",
            "stp q10, q11, [x0, #480]",
            "stp q12, q13, [x0, #512]",
            "stp q14, q15, [x0, #544]",
            "stp q16, q17, [x0, #576]",
            "stp q18, q19, [x0, #608]",
            "stp q20, q21, [x0, #640]",
            "stp q22, q23, [x0, #672]",
            "stp q24, q25, [x0, #704]",
            "stp q26, q27, [x0, #736]",
            "stp q28, q29, [x0, #768]",
            "stp q30, q31, [x0, #800]",
            "mrs x1, tpidr_el0",
            "mrs x2, tpidrro_el0",
            "stp x1, x2, [x0, #256]",
            "mrs x1, tpidr_el1",
            "mrs x2, contextidr_el1",
            "stp x1, x2, [x0, #272]",
            "mrs x1, sp_el0",
            "mrs x2, fpsr",
            "stp x1, x2, [x0, #288]",
            "mrs x1, fpcr",
            "mrs x2, nzcv",
            "stp x1, x2, [x0, #304]",
            // Restore.
            "ldr x1, [sp, #40]",
            "msr fpcr, x1",
            "ldp x18, x19, [sp, #16]",
            "ldp x29, x30, [sp]",
            "add sp, sp, #64",
            inout("x0") regs as *mut SoakRegs => _,
            out("x20") _,
            out("x21") _,
            out("x22") _,
            out("x23") _,
            out("x24") _,
            out("x25") _,
            out("x26") _,
            out("x27") _,
            out("x28") _,
            clobber_abi("C"),
        );
    }
}
