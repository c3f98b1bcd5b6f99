//! AArch64 (EL1) part of the guest runtime: the entry code, the exception
//! vectors, the identity map, the hypercall instruction and the timer.
//!
//! This is the only module of the runtime with `unsafe` code.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::ReadWriteable;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTVCT_EL0, ELR_EL1, ESR_EL1, FAR_EL1, MAIR_EL1, SCTLR_EL1,
    TCR_EL1, TTBR0_EL1, VBAR_EL1,
};

use abi::StartInfo;

#[path = "aarch64_irq.rs"]
mod irq;
pub use irq::*;

// Entry: the first byte of the image (section .text.boot, first in guest.ld).
// The hypervisor enters at EL1, MMU off, x0 = guest-physical address of the
// StartInfo. Until the MMU is on, data accesses are Device-nGnRnE: the code
// before it only stores to the stack, whose cache lines it first invalidates
// (stale clean lines left by the hypervisor's cacheable writes when it loaded
// the image would otherwise hide those stores once the caches are on).
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

    // Vectors and MMU (Rust, aarch64-cpu): early_init(vectors).
    adrp    x0, __rt_vectors
    add     x0, x0, :lo12:__rt_vectors
    bl      {early_init}

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
    early_init = sym early_init,
    rust_main = sym rust_main,
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
    // IRQs taken at EL1 (SP0 or SPx) are handled; everything else reports.
    .if .Lvector == 1 || .Lvector == 5
    b       __rt_irq_entry
    .else
    mov     x0, #.Lvector
    b       .Lvector_common
    .endif
    .set .Lvector, .Lvector + 1
    .endr
.Lvector_common:
    adrp    x1, __exception_stack_top
    add     x1, x1, :lo12:__exception_stack_top
    mov     sp, x1
    bl      {exception_entry}
5:  wfi
    b       5b
"#,
    exception_entry = sym exception_entry,
);

/// `MAIR_EL1` index of Device-nGnRnE.
const ATTR_DEVICE: u64 = 0;
/// `MAIR_EL1` index of Normal, inner and outer write-back, read/write-allocate.
const ATTR_NORMAL: u64 = 1;

/// Level-1 block descriptor bits (4 KiB granule, 1 GiB blocks).
const DESC_BLOCK: u64 = 0b01;
const fn desc_attr_index(index: u64) -> u64 {
    index << 2
}
const DESC_INNER_SHAREABLE: u64 = 0b11 << 8;
const DESC_ACCESS_FLAG: u64 = 1 << 10;
const GIB: u64 = 1 << 30;

/// `TCR_EL1.T0SZ`: 39-bit virtual addresses, so translation starts at level 1.
const T0SZ: u64 = 25;

/// A level-1 translation table: 512 entries of 1 GiB.
#[repr(C, align(4096))]
struct Level1Table([u64; 512]);

/// The identity map, built at compile time: [0, 1 GiB) Device-nGnRnE
/// (devices the hypervisor may give or emulate), [1 GiB, 4 GiB) Normal
/// write-back inner-shareable (guest RAM, and whatever the prober probes).
/// EL1 read/write everywhere and executable everywhere: stage 2 is the
/// guard, and a probe must reach it rather than fault in stage 1. The
/// access flag is preset and `TCR_EL1.HA` is off, so the walker never writes
/// this table and it can live in `.rodata`.
static IDENTITY_MAP: Level1Table = {
    let mut table = [0u64; 512];
    table[0] = DESC_BLOCK | desc_attr_index(ATTR_DEVICE) | DESC_ACCESS_FLAG;
    let mut gib = 1;
    while gib < 4 {
        table[gib] = (gib as u64 * GIB)
            | DESC_BLOCK
            | desc_attr_index(ATTR_NORMAL)
            | DESC_INNER_SHAREABLE
            | DESC_ACCESS_FLAG;
        gib += 1;
    }
    Level1Table(table)
};

/// First Rust code: installs the vectors, then turns on the MMU and caches.
/// Runs with the MMU off, so it touches no memory but its stack frame.
extern "C" fn early_init(vectors: u64) {
    VBAR_EL1.set(vectors);
    barrier::isb(barrier::SY);
    enable_mmu();
}

// The MAIR_EL1 fields below are Attr0 and Attr1.
const _: () = assert!(ATTR_DEVICE == 0 && ATTR_NORMAL == 1);

fn enable_mmu() {
    MAIR_EL1.write(
        MAIR_EL1::Attr0_Device::nonGathering_nonReordering_noEarlyWriteAck
            + MAIR_EL1::Attr1_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL1::Attr1_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc,
    );
    TCR_EL1.write(
        TCR_EL1::T0SZ.val(T0SZ)
            + TCR_EL1::TG0::KiB_4
            + TCR_EL1::SH0::Inner
            + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::EPD0::EnableTTBR0Walks
            // No TTBR1 half: walks disabled, sizes only kept valid.
            + TCR_EL1::EPD1::DisableTTBR1Walks
            + TCR_EL1::TG1::KiB_4
            + TCR_EL1::T1SZ.val(T0SZ)
            // Everything mapped is below 4 GiB.
            + TCR_EL1::IPS::Bits_32,
    );
    // ASID 0.
    TTBR0_EL1.set_baddr(&IDENTITY_MAP as *const Level1Table as u64);
    // The new MAIR/TCR/TTBR0 must be in effect before the TLBs are cleaned.
    barrier::isb(barrier::SY);
    // SAFETY: invalidating the stage-1 TLB entries of this VM's EL1&0 regime
    // touches no memory; the barriers complete it (inner shareable, in case
    // the hypervisor upgrades the TLBI to a broadcast) and synchronise the
    // context before the MMU goes on.
    unsafe {
        asm!(
            "dsb ish",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        );
    }
    SCTLR_EL1.modify(
        SCTLR_EL1::M::Enable
            + SCTLR_EL1::C::Cacheable
            + SCTLR_EL1::I::Cacheable
            + SCTLR_EL1::A::Disable
            + SCTLR_EL1::SA::Enable
            + SCTLR_EL1::WXN::Disable
            + SCTLR_EL1::EE::LittleEndian,
    );
    barrier::isb(barrier::SY);
}

/// Rust side of the entry code, MMU on and `.bss` zeroed.
extern "C" fn rust_main(start_info: u64) -> ! {
    let aligned = start_info.is_multiple_of(core::mem::align_of::<StartInfo>() as u64);
    if !aligned || start_info < abi::GUEST_RAM_BASE {
        crate::bad_start_info(start_info, "misaligned or below guest RAM");
    }
    // SAFETY: the address is aligned and in guest RAM, which is mapped
    // (Normal, cacheable) by the identity map; a volatile read of the magic
    // makes no claim yet about what the rest of the page holds.
    let magic = unsafe { core::ptr::read_volatile(start_info as *const u32) };
    if let Err(why) = crate::check_start_info(start_info, magic, image().end) {
        crate::bad_start_info(start_info, why);
    }
    // SAFETY: the ABI says x0 points at a StartInfo, the magic confirms it,
    // it is aligned and outside the image; the hypervisor never changes it
    // after entry and the guest has no `&mut` to it, so `&'static` holds.
    let info = unsafe { &*(start_info as *const StartInfo) };
    crate::start(info)
}

extern "C" {
    // From guest.ld; only their addresses are used.
    static __image_start: u8;
    static __image_end: u8;
}

/// The guest image in guest RAM, `.bss` and stacks included.
pub fn image() -> core::ops::Range<u64> {
    let start = &raw const __image_start as u64;
    let end = &raw const __image_end as u64;
    start..end
}

extern "Rust" {
    /// Defined by [`crate::entry!`] in the guest binary.
    fn __tessera_guest_main(info: &'static StartInfo) -> u64;
}

/// Runs the guest's `main` and returns its exit code.
pub fn call_guest_main(info: &'static StartInfo) -> u64 {
    // SAFETY: `entry!` defines `__tessera_guest_main` with exactly this
    // signature (a guest without `entry!` fails to link).
    unsafe { __tessera_guest_main(info) }
}

/// Set while an exception is being reported, so that an exception in the
/// report stops the VM instead of recursing. Plain loads and stores: it may
/// be used with the MMU off, where exclusives are not guaranteed to work.
static IN_EXCEPTION: AtomicBool = AtomicBool::new(false);

/// Every vector ends here, on the exception stack.
extern "C" fn exception_entry(_vector: u64) -> ! {
    if IN_EXCEPTION.load(Ordering::Relaxed) {
        hypercall(abi::HC_VM_EXIT, crate::EXIT_EXCEPTION, 0, 0);
        halt();
    }
    IN_EXCEPTION.store(true, Ordering::Relaxed);
    crate::exception(ESR_EL1.get(), ELR_EL1.get(), FAR_EL1.get())
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

/// Waits for ever (interrupts are masked: `wfi` just idles).
pub fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfi();
    }
}

pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Volatile 32-bit read of `addr`, for isolation probes.
pub fn probe_read(addr: u64) -> u32 {
    // SAFETY: the caller (`crate::probe`) checked that `addr` is 4-byte
    // aligned and outside the guest image and StartInfo, so it aliases no
    // Rust object; below 4 GiB the identity map covers it, above it the read
    // faults and is reported. Any bit pattern is a valid u32.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Volatile 32-bit write of `value` to `addr`, for isolation probes.
pub fn probe_write(addr: u64, value: u32) {
    // SAFETY: as in `probe_read`: no Rust object lives at `addr` (the guest
    // has no heap; everything it owns is in the image or the StartInfo).
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
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

/// The register file of a [`register_soak`]: the values it loads before the
/// soak, and the values it found afterwards (written back in place). The
/// assembly uses the offsets asserted below.
#[repr(C, align(16))]
#[derive(Clone, PartialEq, Eq)]
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
