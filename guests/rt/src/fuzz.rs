//! Hostile primitives for the fuzzing guests (`guests/fuzzer`,
//! `guests/blkfuzz`): what a guest can throw at the hypervisor, each as a
//! safe call.
//!
//! - [`set_recover`]: the guest's own vectors step over the synchronous
//!   exceptions it provokes (undefined instructions, registers EL1 may not
//!   reach, BRK) and count them ([`faults`], [`faults_of_class`]) instead of
//!   reporting and stopping the VM;
//! - [`hvc`], [`smc`], [`call_with_immediate`]: hypercalls and SMCs with any
//!   function ID (no SMC32 form imposed on AArch32) and any arguments;
//! - [`gic_read`], [`gic_write`]: single loads and stores of every width and
//!   form the architecture has (sign-extending loads, the zero register) to
//!   any aligned address inside the GIC frames of the ABI; [`virtio_read`],
//!   [`virtio_write`] the same inside the virtio-mmio windows;
//! - [`icc_access`] (GICv3 CPU interface, AArch64), [`refused_access`]
//!   (EL2/HYP and EL3/Secure registers), [`undefined`],
//!   [`physical_timer_read`] (trapped by the hypervisor, which stops the
//!   VM: a deliberate final step only);
//! - [`wait_for_event`], [`send_event`], [`vtimer_ctl`].
//!
//! The frame checks ([`in_gic_frames`], [`in_virtio_windows`]) only make
//! the accesses sound (the addresses are device memory, no Rust object is
//! there); which of them the hypervisor emulates, and which stop the VM,
//! is the caller's business.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch;
use crate::probe::Refused;

/// Whether synchronous exceptions are stepped over.
static RECOVER: AtomicBool = AtomicBool::new(false);
/// Exceptions stepped over, by class: unknown reason (undefined), trapped
/// system register, BRK, anything else.
static FAULTS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Exception classes [`faults_of_class`] counts apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultClass {
    /// EC 0x00: an undefined instruction or an inaccessible register.
    Undefined = 0,
    /// EC 0x18: a system register access trapped to EL1.
    SysReg = 1,
    /// EC 0x3c: BRK.
    Breakpoint = 2,
    /// Any other class the runtime steps over.
    Other = 3,
}

/// Turns stepping over the guest's own synchronous exceptions on or off
/// (for every vCPU). Off, they are reported and stop the VM as before.
pub fn set_recover(on: bool) {
    RECOVER.store(on, Ordering::SeqCst);
}

/// Exceptions stepped over so far.
pub fn faults() -> u64 {
    FAULTS.iter().map(|f| f.load(Ordering::Relaxed)).sum()
}

/// Exceptions of `class` stepped over so far.
pub fn faults_of_class(class: FaultClass) -> u64 {
    FAULTS[class as usize].load(Ordering::Relaxed)
}

/// Called by the arch's recoverable entry with the AArch64-style exception
/// class: counts it and says to step over it, if recovery is on.
pub(crate) fn take_fault(ec: u8) -> bool {
    if !RECOVER.load(Ordering::Relaxed) {
        return false;
    }
    let class = match ec {
        0x00 => FaultClass::Undefined,
        0x18 => FaultClass::SysReg,
        0x3c => FaultClass::Breakpoint,
        _ => FaultClass::Other,
    };
    FAULTS[class as usize].fetch_add(1, Ordering::Relaxed);
    true
}

/// `HVC #0` with exactly these registers (AArch32: their low 32 bits, the
/// ID as given); returns `x0` (`r0` zero-extended).
pub fn hvc(id: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    arch::raw_hvc(id, a1, a2, a3)
}

/// `SMC #0` with exactly these registers; returns `x0` (`r0`).
pub fn smc(id: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    arch::raw_smc(id, a1, a2, a3)
}

/// `HVC #1`, `HVC #0xffff` or `SMC #1` (by `which` modulo 3): immediates
/// the ABI does not define. Returns `x0`.
pub fn call_with_immediate(which: u32, id: u64, a1: u64) -> u64 {
    arch::raw_call_imm(which, id, a1)
}

/// Size of the distributor frame ([`abi::GUEST_GICD_BASE`]).
pub const GICD_FRAME: u64 = 0x1_0000;
/// Size of the GICv2 CPU interface frames ([`abi::GUEST_GICC_BASE`]).
pub const GICC_FRAME: u64 = 0x2000;
/// Size of the GICv3 redistributor region ([`abi::GUEST_GICR_BASE`]): as
/// on QEMU `virt`, up to the UART.
pub const GICR_REGION: u64 = 0x0900_0000 - abi::GUEST_GICR_BASE;
/// One vCPU's redistributor (RD_base and SGI_base).
pub const GICR_STRIDE: u64 = 0x2_0000;

/// Load forms [`gic_read`] takes (`form` modulo this): AArch64 `ldrb`,
/// `ldrh`, `ldr w`, `ldr x`, `ldrsb w/x`, `ldrsh w/x`, `ldrsw`, `ldr xzr`;
/// AArch32 `ldrb`, `ldrh`, `ldr`, `ldrsb`, `ldrsh`.
pub const LOAD_FORMS: u32 = arch::MMIO_LOADS;
/// Store forms [`gic_write`] takes: AArch64 `strb`, `strh`, `str w`,
/// `str x` and the same from the zero register; AArch32 `strb`, `strh`,
/// `str`.
pub const STORE_FORMS: u32 = arch::MMIO_STORES;

/// Width in bytes of load form `form`.
pub fn load_width(form: u32) -> u64 {
    arch::mmio_load_width(form)
}

/// Width in bytes of store form `form`.
pub fn store_width(form: u32) -> u64 {
    arch::mmio_store_width(form)
}

/// Whether `[addr, addr + width)` lies in one of the GIC frames of the ABI
/// (distributor, GICv2 CPU interface, GICv3 redistributor region) and is
/// aligned to `width`.
pub fn in_gic_frames(addr: u64, width: u64) -> bool {
    let frames = [
        (abi::GUEST_GICD_BASE, GICD_FRAME),
        (abi::GUEST_GICC_BASE, GICC_FRAME),
        (abi::GUEST_GICR_BASE, GICR_REGION),
    ];
    addr.is_multiple_of(width)
        && frames
            .iter()
            .any(|&(base, size)| addr >= base && addr - base + width <= size)
}

/// One load of form `form` (see [`LOAD_FORMS`]) at `addr` in a GIC frame.
pub fn gic_read(addr: u64, form: u32) -> Result<u64, Refused> {
    if !in_gic_frames(addr, load_width(form)) {
        return Err(Refused::NotInGicFrame);
    }
    Ok(arch::mmio_read(addr, form))
}

/// One store of form `form` (see [`STORE_FORMS`]) of `value` at `addr` in
/// a GIC frame.
pub fn gic_write(addr: u64, form: u32, value: u64) -> Result<(), Refused> {
    if !in_gic_frames(addr, store_width(form)) {
        return Err(Refused::NotInGicFrame);
    }
    arch::mmio_write(addr, form, value);
    Ok(())
}

/// Whether `[addr, addr + width)` lies in one of the ABI's virtio-mmio
/// windows ([`abi::GUEST_VIRTIO_BASE`], [`abi::GUEST_VIRTIO_COUNT`] of
/// them) and is aligned to `width`.
pub fn in_virtio_windows(addr: u64, width: u64) -> bool {
    let size = abi::GUEST_VIRTIO_SIZE * abi::GUEST_VIRTIO_COUNT;
    addr.is_multiple_of(width)
        && addr >= abi::GUEST_VIRTIO_BASE
        && addr - abi::GUEST_VIRTIO_BASE + width <= size
}

/// One load of form `form` (see [`LOAD_FORMS`]) at `addr` in a virtio-mmio
/// window (form 2 is a plain 32-bit load on both arches).
pub fn virtio_read(addr: u64, form: u32) -> Result<u64, Refused> {
    if !in_virtio_windows(addr, load_width(form)) {
        return Err(Refused::NotInVirtioWindow);
    }
    Ok(arch::mmio_read(addr, form))
}

/// One store of form `form` (see [`STORE_FORMS`]) of `value` at `addr` in
/// a virtio-mmio window (form 2 is a plain 32-bit store on both arches).
pub fn virtio_write(addr: u64, form: u32, value: u64) -> Result<(), Refused> {
    if !in_virtio_windows(addr, store_width(form)) {
        return Err(Refused::NotInVirtioWindow);
    }
    arch::mmio_write(addr, form, value);
    Ok(())
}

/// The GICv3 CPU interface registers [`icc_access`] reaches, by number
/// (none on AArch32).
pub const ICC_REGISTERS: &[&str] = arch::ICC_REGISTERS;

/// Reads (`write` = None) or writes GICv3 CPU interface register `n` of
/// [`ICC_REGISTERS`] with `mrs`/`msr`. On a GICv2 these are UNDEFINED:
/// turn [`set_recover`] on first. Returns what a read gave.
pub fn icc_access(n: usize, write: Option<u64>) -> u64 {
    arch::icc_access(n, write)
}

/// The EL2/HYP and EL3/Secure registers [`refused_access`] tries.
pub const REFUSED_REGISTERS: &[&str] = arch::REFUSED_REGISTERS;

/// Reads or writes register `n` of [`REFUSED_REGISTERS`] from EL1, where it
/// is UNDEFINED: needs [`set_recover`]. Returns what a read gave (a read
/// that faulted gives 0, a write its value).
pub fn refused_access(n: usize, write: Option<u64>) -> u64 {
    arch::refused_access(n, write)
}

/// Executes undefined instruction number `which` (a few encodings,
/// modulo their count): needs [`set_recover`].
pub fn undefined(which: u32) {
    arch::undefined(which)
}

/// Reads the physical timer's control register, which the hypervisor keeps
/// for itself: the access traps to it, and it stops the VM.
pub fn physical_timer_read() -> u64 {
    arch::physical_timer_read()
}

/// `wfe`.
pub fn wait_for_event() {
    arch::wait_for_event()
}

/// `sev`.
pub fn send_event() {
    arch::send_event()
}

/// The virtual timer's control register (ENABLE bit 0, IMASK bit 1,
/// ISTATUS bit 2). IMASK set while the guest did not set it means the
/// hypervisor holds the timer's interrupt back until the guest completes it.
pub fn vtimer_ctl() -> u64 {
    arch::vtimer_ctl()
}
