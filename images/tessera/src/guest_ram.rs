//! The one place the hypervisor touches guest RAM's bytes.
//!
//! Guest RAM is never a Rust reference: a VM's other vCPUs write it from
//! other CPUs at any time, so plain loads and stores of it would race. Reads
//! and writes here are relaxed atomic byte accesses, which stay defined
//! however the guest races with them (the guest may see a mix of old and new
//! bytes; so may we, and each byte is read once). Only clearing, done while
//! none of the VM's vCPUs runs, uses plain stores.

use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
use hv::memory::GuestSlice;

/// The atomic byte at host-physical `pa` of a guest slice.
fn byte(pa: u64) -> &'static AtomicU8 {
    // SAFETY: `pa` lies in a `GuestSlice`, which only `hv::memory::GuestRam`
    // makes and only inside a VM's RAM. The composer placed that RAM inside
    // board RAM, apart from the hypervisor's own memory, and the EL2/HYP map
    // identity-maps it read-write for the image's lifetime: the address is
    // valid, never freed, and no Rust object lives there. A byte is always
    // aligned. All hypervisor accesses to it are atomic; the guest's are not
    // Rust accesses at all.
    unsafe { AtomicU8::from_ptr(pa as usize as *mut u8) }
}

/// Copies `from` into `buf` (`from.len()` bytes).
pub fn read(from: GuestSlice, buf: &mut [u8]) {
    assert_eq!(
        buf.len() as u64,
        from.len(),
        "a guest read into a buffer of its length"
    );
    for (pa, out) in (from.pa()..).zip(buf.iter_mut()) {
        *out = byte(pa).load(Relaxed);
    }
}

/// Copies `bytes` (`to.len()` bytes) into guest RAM.
pub fn write(to: GuestSlice, bytes: &[u8]) {
    assert_eq!(
        bytes.len() as u64,
        to.len(),
        "a guest write of the slice's length"
    );
    for (pa, &value) in (to.pa()..).zip(bytes) {
        byte(pa).store(value, Relaxed);
    }
}

/// Zeroes `to`, a VM's whole RAM at boot and at each reset (megabytes: a
/// plain memset, not byte by byte).
pub fn zero(to: GuestSlice) {
    // SAFETY: `to` lies in a VM's RAM, valid and apart from every Rust object
    // (see `byte`). `GuestMemory::zero_guest` is called only while no vCPU
    // of that VM runs and the hypervisor holds no reference into it, so
    // nothing else accesses these bytes while they are written.
    unsafe { core::ptr::write_bytes(to.pa() as usize as *mut u8, 0, to.len() as usize) };
}
