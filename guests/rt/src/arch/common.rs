//! The part of the arch layer that is the same on AArch64 and ARMv7: the
//! Rust side of the entry code, the secondary-vCPU hand-over, the
//! exception report guard, the IRQ handler registry and the probes. A
//! submodule of each arch module (`arch::common`), so its `unsafe` stays in
//! `arch/`; it uses the arch's own primitives through `super`.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use abi::StartInfo;

use super::{clean_dcache_to_poc, cpu_affinity, hypercall};

/// Rust side of the entry code, MMU on and `.bss` zeroed; `start_info` is
/// the first argument register at entry (a register-sized address).
pub(super) extern "C" fn rust_main(start_info: usize) -> ! {
    let addr = start_info as u64;
    let aligned = start_info.is_multiple_of(core::mem::align_of::<StartInfo>());
    if !aligned || addr < abi::GUEST_RAM_BASE {
        crate::bad_start_info(addr, "misaligned or below guest RAM");
    }
    // SAFETY: the address is aligned and in guest RAM, which is mapped
    // (Normal, cacheable) by the identity map; a volatile read of the magic
    // makes no claim yet about what the rest of the page holds.
    let magic = unsafe { core::ptr::read_volatile(start_info as *const u32) };
    if let Err(why) = crate::check_start_info(addr, magic, image().end) {
        crate::bad_start_info(addr, why);
    }
    // SAFETY: the ABI says x0/r0 points at a StartInfo, the magic confirms
    // it, it is aligned and outside the image; the hypervisor never changes
    // it after entry and the guest has no `&mut` to it, so `&'static` holds.
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
    let start = &raw const __image_start as usize as u64;
    let end = &raw const __image_end as usize as u64;
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

/// Most vCPUs the runtime runs on (`crate::smp::MAX_VCPUS`): vCPU 0 on the
/// boot stacks, the others on a slot each of `__vcpu_stacks` (guest.ld).
pub const MAX_VCPUS: usize = 8;
/// Stack of a secondary vCPU (as vCPU 0's boot stack).
pub(super) const VCPU_STACK_SIZE: usize = 16 * 1024;
/// Exception stack of a secondary vCPU, above its stack.
const VCPU_EXCEPTION_STACK_SIZE: usize = 4 * 1024;
/// One slot of `__vcpu_stacks`: stack, then exception stack.
pub(super) const VCPU_SLOT_SIZE: usize = VCPU_STACK_SIZE + VCPU_EXCEPTION_STACK_SIZE;
// Immediates of the entry code: one 16-bit move (movz, movw), an `add`
// shifted by 12 (AArch64), a `cmp` with an 8-bit one (ARM).
const _: () = assert!(VCPU_SLOT_SIZE < 0x1_0000 && VCPU_SLOT_SIZE.is_multiple_of(4096));
const _: () = assert!(VCPU_STACK_SIZE.is_multiple_of(4096) && MAX_VCPUS < 0x100);

extern "C" {
    // From guest.ld: (MAX_VCPUS - 1) slots of VCPU_SLOT_SIZE.
    static __vcpu_stacks: u8;
    static __vcpu_stacks_end: u8;
}

/// Whether guest.ld gave `__vcpu_stacks` the size the entry code assumes.
pub fn vcpu_stacks_fit() -> bool {
    let start = &raw const __vcpu_stacks as usize;
    let end = &raw const __vcpu_stacks_end as usize;
    end - start == (MAX_VCPUS - 1) * VCPU_SLOT_SIZE
}

/// The guest-physical (= virtual) address of `_start_secondary`, the entry
/// point for PSCI `CPU_ON`.
pub fn secondary_entry_address() -> u64 {
    extern "C" {
        fn _start_secondary();
    }
    _start_secondary as *const () as usize as u64
}

/// The function each secondary vCPU runs, a `fn(usize) -> !` as `usize`;
/// 0 = none.
static SECONDARY_MAINS: [AtomicUsize; MAX_VCPUS] = [const { AtomicUsize::new(0) }; MAX_VCPUS];

/// Sets the function vCPU `index` (< [`MAX_VCPUS`]) runs when it starts
/// (Release: what the caller wrote before is visible to it), and cleans
/// that word to the point of coherency, so that even a read with the caches
/// off would see it (the entry code only reads it with the MMU on).
pub fn set_secondary_main(index: usize, main: fn(usize) -> !) {
    let slot = &SECONDARY_MAINS[index];
    slot.store(main as usize, Ordering::Release);
    clean_dcache_to_poc(
        slot as *const AtomicUsize as usize as u64,
        core::mem::size_of::<usize>(),
    );
}

fn secondary_main_of(index: usize) -> Option<fn(usize) -> !> {
    match SECONDARY_MAINS.get(index)?.load(Ordering::Acquire) {
        0 => None,
        raw => {
            // SAFETY: the only non-zero values ever stored are `fn(usize) -> !`
            // pointers (`set_secondary_main`), and function pointers are the
            // size of `usize` on these targets.
            Some(unsafe { core::mem::transmute::<usize, fn(usize) -> !>(raw) })
        }
    }
}

/// Rust side of `_start_secondary`: MMU on, on this vCPU's own stack, with
/// the context id `CPU_ON` was given.
pub(super) extern "C" fn secondary_main(context: usize) -> ! {
    let index = usize::from(cpu_affinity()[0]);
    if context != index {
        crate::println!("smp: vCPU {index} started with context {context:#x}, not its index");
        halt();
    }
    match secondary_main_of(index) {
        Some(main) => main(index),
        None => {
            crate::println!("smp: vCPU {index} started with no function to run");
            halt()
        }
    }
}

/// Set while an exception is being reported, so that an exception in the
/// report stops the VM instead of recursing. Plain loads and stores: it may
/// be used with the MMU off, where exclusives are not guaranteed to work.
static IN_EXCEPTION: AtomicBool = AtomicBool::new(false);

/// Reports an exception with what `syndrome` reads (ESR, ELR, FAR as an
/// AArch64 EL1 has them) and stops the VM; an exception taken during the
/// report stops it without one. `syndrome` runs after the guard, so a
/// fault while reading it is not reported twice.
pub(super) fn report_exception(syndrome: impl FnOnce() -> (u64, u64, u64)) -> ! {
    if IN_EXCEPTION.load(Ordering::Relaxed) {
        hypercall(abi::HC_VM_EXIT, crate::EXIT_EXCEPTION, 0, 0);
        halt();
    }
    IN_EXCEPTION.store(true, Ordering::Relaxed);
    let (esr, elr, far) = syndrome();
    crate::exception(esr, elr, far)
}

/// Waits for ever (interrupts are masked: `wfi` just idles).
pub fn halt() -> ! {
    loop {
        wait_for_interrupt();
    }
}

/// `wfi`: waits until an interrupt is pending (taken right away if IRQs
/// are unmasked) or another wake-up event.
pub fn wait_for_interrupt() {
    // SAFETY: `wfi` only waits. Not `nomem`: an interrupt handler may run
    // during it, so memory must be reloaded afterwards.
    unsafe { asm!("wfi", options(nostack, preserves_flags)) };
}

/// `DSB ISHST`: earlier stores are visible to the other vCPUs before any
/// later access, e.g. the GICv2 `GICD_SGIR` write that interrupts one.
pub fn store_barrier() {
    // SAFETY: a barrier only. Not `nomem`: it orders the memory accesses
    // around it, and the compiler must not move them across.
    unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
}

/// Rust side of the IRQ entry, IRQs masked, caller-saved state saved.
pub(super) extern "C" fn irq_dispatch() {
    crate::irq::dispatch();
}

/// The registered IRQ handler, a `fn(u32)` as `usize`; 0 = none.
static IRQ_HANDLER: AtomicUsize = AtomicUsize::new(0);

pub fn set_irq_handler(handler: fn(u32)) {
    IRQ_HANDLER.store(handler as usize, Ordering::Release);
}

pub fn irq_handler() -> Option<fn(u32)> {
    match IRQ_HANDLER.load(Ordering::Acquire) {
        0 => None,
        raw => {
            // SAFETY: the only non-zero values ever stored are `fn(u32)`
            // pointers (`set_irq_handler`), and function pointers are the
            // size of `usize` on these targets.
            Some(unsafe { core::mem::transmute::<usize, fn(u32)>(raw) })
        }
    }
}

/// Volatile 32-bit read of `addr`, for isolation probes.
pub fn probe_read(addr: u64) -> u32 {
    // SAFETY: the caller (`crate::probe`) checked that `addr` is 4-byte
    // aligned, fits a pointer and is outside the guest image and StartInfo,
    // so it aliases no Rust object; below 4 GiB the identity map covers it,
    // above it (AArch64 only) the read faults and is reported. Any bit
    // pattern is a valid u32.
    unsafe { core::ptr::read_volatile(addr as usize as *const u32) }
}

/// Volatile 32-bit write of `value` to `addr`, for isolation probes.
pub fn probe_write(addr: u64, value: u32) {
    // SAFETY: as in `probe_read`: no Rust object lives at `addr` (the guest
    // has no heap; everything it owns is in the image or the StartInfo).
    unsafe { core::ptr::write_volatile(addr as usize as *mut u32, value) }
}

/// The channel table after `info` (ABI 1.3).
pub fn channel_table(info: &'static StartInfo) -> &'static abi::ChannelTable {
    let addr = info as *const StartInfo as usize + abi::START_INFO_CHANNELS_OFFSET;
    // SAFETY: the start-info page holds the table right after the
    // StartInfo (the caller checked the ABI is 1.3 or later, so the
    // hypervisor wrote it); the offset keeps the 8-byte alignment of the
    // StartInfo, the page is in guest RAM outside the image, and the
    // hypervisor never changes it after entry, so `&'static` holds.
    unsafe { &*(addr as *const abi::ChannelTable) }
}

/// Volatile 32-bit read of `addr` in a channel's pages.
pub fn channel_read(addr: u64) -> u32 {
    // SAFETY: the caller (`crate::channel`) checked that `addr` is 4-byte
    // aligned and inside a channel the start info names: pages the
    // hypervisor maps at that address and no Rust object lives in (they
    // are outside the image). The other side writes them at any time: a
    // volatile read sees some value, and any bit pattern is a u32.
    unsafe { core::ptr::read_volatile(addr as usize as *const u32) }
}

/// Volatile 32-bit write of `value` to `addr` in a channel's pages.
pub fn channel_write(addr: u64, value: u32) {
    // SAFETY: as in `channel_read`; the caller also checked that this side
    // writes the channel (a store to a read-only one faults in stage 2 and
    // stops the VM: it is refused before that).
    unsafe { core::ptr::write_volatile(addr as usize as *mut u32, value) }
}
