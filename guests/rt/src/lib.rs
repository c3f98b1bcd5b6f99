//! Tessera guest runtime: everything a sample guest needs to run at EL1
//! under Tessera, and nothing more. AArch64 guests (`aarch64-unknown-none`)
//! and 32-bit ARMv7-A guests (`armv7a-none-eabi`, PL1 SVC mode, GICv2 only)
//! share everything but `arch/`.
//!
//! - the entry code (`_start`, first byte of the image): stack, FP/SIMD
//!   (AArch64), `.bss`, exception vectors, identity-mapped MMU with caches
//!   on, then the guest's `main` (see [`entry!`]);
//! - [`hc`]: safe wrappers of the hypercalls of the [`abi`];
//! - [`channel`]: inter-VM channels (ABI 1.3): the pages, the doorbell and
//!   the state the hypervisor keeps;
//! - [`print!`] / [`println!`] over the console hypercall (no heap);
//! - [`counter`] / [`counter_frequency`]: the virtual generic timer;
//! - [`gic`], [`irq`] and [`timer`]: the GICv2 or GICv3 (found at run
//!   time), the IRQ handler and the virtual timer (ABI 1.1);
//! - [`psci`] and [`smp`]: PSCI calls (SMC), and secondary vCPUs started
//!   with `CPU_ON` at the runtime's own entry, each on its own stacks;
//! - [`probe`] and [`soak`]: isolation probes and the register-integrity
//!   soak, for test guests;
//! - [`fuzz`]: hostile primitives for the fuzzing guests (raw calls, GIC
//!   and virtio-mmio accesses of every width, refused registers, undefined
//!   instructions) and vectors that step over the exceptions it provokes;
//! - a panic handler and an exception handler that report and stop the VM.
//!
//! Architecture-specific code, and all `unsafe`, is in `arch/`: one module
//! per arch, and what both share (`arch/common.rs`, `arch/lpae.rs`).
#![no_std]

pub use abi;

#[cfg(target_arch = "aarch64")]
#[path = "arch/aarch64.rs"]
mod arch;
#[cfg(target_arch = "arm")]
#[path = "arch/armv7.rs"]
mod arch;
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
compile_error!("guest-rt has an arch module for aarch64 and arm (ARMv7-A) only");

pub mod channel;
pub mod cmdline;
pub mod console;
pub mod fuzz;
pub mod gic;
pub mod hc;
pub mod irq;
pub mod probe;
pub mod psci;
pub mod rng;
pub mod smp;
pub mod soak;
pub mod timer;
pub mod virtio;

/// `vm_exit` code after an unexpected exception.
pub const EXIT_EXCEPTION: u64 = 0xE1;
/// `vm_exit` code after a panic.
pub const EXIT_PANIC: u64 = 0x9A;
/// `vm_exit` code when the hypervisor's `StartInfo` is unusable.
pub const EXIT_BAD_START_INFO: u64 = 0x5B;

/// The guest timer's current count (`CNTVCT_EL0` on AArch64), read after an
/// instruction barrier so it is not taken early.
pub fn counter() -> u64 {
    arch::counter()
}

/// Ticks per second of [`counter`] (`CNTFRQ_EL0`).
pub fn counter_frequency() -> u64 {
    arch::counter_frequency()
}

/// Spins for `iterations` rounds of a loop the compiler cannot remove, with
/// no hypercall: burns CPU time as a guest that never yields would.
pub fn busy_loop(iterations: u64) {
    for i in 0..iterations {
        core::hint::black_box(i);
    }
}

/// What a guest's `main` may return; it becomes the `vm_exit` code.
pub trait ExitCode {
    /// The code passed to [`hc::vm_exit`].
    fn exit_code(self) -> u64;
}

impl ExitCode for () {
    fn exit_code(self) -> u64 {
        0
    }
}

impl ExitCode for u64 {
    fn exit_code(self) -> u64 {
        self
    }
}

impl ExitCode for u32 {
    fn exit_code(self) -> u64 {
        self.into()
    }
}

impl ExitCode for i32 {
    fn exit_code(self) -> u64 {
        // Sign-extended, as a C `exit(-1)` would be.
        i64::from(self) as u64
    }
}

/// Declares the guest's main function:
///
/// ```ignore
/// guest_rt::entry!(main);
/// fn main(info: &'static guest_rt::abi::StartInfo) -> u64 { 0 }
/// ```
///
/// `main` gets the hypervisor's [`abi::StartInfo`] (magic already checked)
/// and returns anything that is an [`ExitCode`] (`()`, `u64`, `u32`, `i32`);
/// returning calls [`hc::vm_exit`] with it. A `main` that never returns
/// declares one of those return types and ends in a `loop`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[export_name = "__tessera_guest_main"]
        fn __tessera_guest_main(info: &'static $crate::abi::StartInfo) -> u64 {
            $crate::ExitCode::exit_code($main(info))
        }
    };
}

/// Called by the entry code once the MMU is on and `.bss` is zeroed, with
/// the checked `StartInfo`.
fn start(info: &'static abi::StartInfo) -> ! {
    let code = arch::call_guest_main(info);
    hc::vm_exit(code)
}

/// Reports a StartInfo that cannot be used and stops the VM.
fn bad_start_info(addr: u64, why: &str) -> ! {
    println!("bad StartInfo at {addr:#x}: {why}");
    hc::vm_exit(EXIT_BAD_START_INFO)
}

/// Checks what the entry code could not: that the StartInfo really is one
/// and that the image does not overlap it.
fn check_start_info(addr: u64, magic: u32, image_end: u64) -> Result<(), &'static str> {
    if magic != abi::START_INFO_MAGIC {
        return Err("wrong magic");
    }
    if addr < image_end {
        return Err("it overlaps the guest image");
    }
    Ok(())
}

/// Reports an exception the guest took (it never should) and stops the VM.
fn exception(esr: u64, elr: u64, far: u64) -> ! {
    println!("guest exception: ESR={esr:#x} ELR={elr:#x} FAR={far:#x}");
    hc::vm_exit(EXIT_EXCEPTION)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::sync::atomic::{AtomicBool, Ordering};
    // A panic while reporting a panic stops the VM without another report.
    // Load and store, not swap: exclusives need the MMU on.
    static PANICKING: AtomicBool = AtomicBool::new(false);
    if !PANICKING.load(Ordering::Relaxed) {
        PANICKING.store(true, Ordering::Relaxed);
        println!("panic: {}", info.message());
        if let Some(location) = info.location() {
            println!("  at {location}");
        }
    }
    hc::vm_exit(EXIT_PANIC)
}
