//! The one place the hypervisor touches guest RAM's bytes.
//!
//! Guest RAM is never a Rust reference: a VM's other vCPUs write it from
//! other CPUs at any time, so plain loads and stores of it would race. Reads
//! and writes here are relaxed atomic accesses of bytes and aligned words,
//! which stay defined however the guest races with them (the guest may see
//! a mix of old and new bytes; so may we, and each byte is read once). Only clearing, done while
//! none of the VM's vCPUs runs, uses plain stores.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use hv::memory::{GuestMemory, GuestSlice};

/// Guest RAM through this module: it has no state, so a CPU serving a
/// device's work reaches RAM with it without the hypervisor's lock (the
/// board's `GuestMemory` is this too).
pub struct Direct;

impl GuestMemory for Direct {
    fn read_guest(&self, from: GuestSlice, buf: &mut [u8]) {
        read(from, buf);
    }

    fn write_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        write(to, bytes);
    }

    fn load_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        load(to, bytes);
    }

    fn zero_guest(&mut self, to: GuestSlice) {
        zero(to);
    }
}

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

/// The atomic word at host-physical `pa`, word-aligned, of a guest slice.
fn word(pa: u64) -> &'static AtomicUsize {
    // SAFETY: as for `byte`; callers pass a word-aligned address whose whole
    // word lies inside the slice.
    unsafe { AtomicUsize::from_ptr(pa as usize as *mut usize) }
}

const WORD: usize = size_of::<usize>();

/// Splits `len` bytes at `pa` into a head and a tail of single bytes and,
/// between them, whole aligned words: the byte offsets where the words
/// start and end.
fn words(pa: u64, len: usize) -> (usize, usize) {
    let head = (pa.next_multiple_of(WORD as u64) - pa).min(len as u64) as usize;
    let body = (len - head) / WORD * WORD;
    (head, head + body)
}

/// Copies `from` into `buf` (`from.len()` bytes).
pub fn read(from: GuestSlice, buf: &mut [u8]) {
    assert_eq!(
        buf.len() as u64,
        from.len(),
        "a guest read into a buffer of its length"
    );
    let (first, last) = words(from.pa(), buf.len());
    for i in (0..first).chain(last..buf.len()) {
        buf[i] = byte(from.pa() + i as u64).load(Relaxed);
    }
    for (i, out) in (first..last)
        .step_by(WORD)
        .zip(buf[first..last].chunks_exact_mut(WORD))
    {
        out.copy_from_slice(&word(from.pa() + i as u64).load(Relaxed).to_ne_bytes());
    }
}

/// Copies `bytes` (`to.len()` bytes) into guest RAM.
pub fn write(to: GuestSlice, bytes: &[u8]) {
    assert_eq!(
        bytes.len() as u64,
        to.len(),
        "a guest write of the slice's length"
    );
    let (first, last) = words(to.pa(), bytes.len());
    for i in (0..first).chain(last..bytes.len()) {
        byte(to.pa() + i as u64).store(bytes[i], Relaxed);
    }
    for (i, chunk) in (first..last)
        .step_by(WORD)
        .zip(bytes[first..last].chunks_exact(WORD))
    {
        let value = usize::from_ne_bytes(chunk.try_into().expect("a word of bytes"));
        word(to.pa() + i as u64).store(value, Relaxed);
    }
}

/// Copies `bytes` into `to`, which no vCPU can reach (an image at boot or
/// reset): a plain copy, not word by word.
pub fn load(to: GuestSlice, bytes: &[u8]) {
    assert_eq!(bytes.len() as u64, to.len(), "a load of the slice's length");
    // SAFETY: `to` lies in a VM's RAM, valid and apart from every Rust
    // object (see `byte`), and `bytes` (hypervisor memory) cannot overlap
    // it. The core loads images (`GuestMemory::load_guest`) only where no
    // vCPU can reach them (stage 2 does not map them yet, or none of the
    // VM's vCPUs runs), and holds no reference into guest RAM, so nothing
    // else accesses these bytes meanwhile.
    unsafe { crate::arch::mem::copy(to.pa() as usize as *mut u8, bytes.as_ptr(), bytes.len()) };
}

/// Zeroes `to` and cleans it to the point of coherency: a piece of a VM's
/// RAM before the guest may reach it, a channel's pages (megabytes: `DC
/// ZVA` where the CPU has it, not byte by byte).
pub fn zero(to: GuestSlice) {
    // SAFETY: `to` lies in a VM's RAM (or a channel's pages), valid and
    // apart from every Rust object (see `byte`). The core asks for it
    // (`GuestMemory::zero_guest`, or `Work::Zero` to one CPU at a time)
    // only while no vCPU can reach these bytes (stage 2 does not map them,
    // or no vCPU of the VM runs), and the hypervisor holds no reference
    // into guest RAM, so nothing else accesses them while they are written.
    unsafe { crate::arch::cache::zero_to_poc(to.pa() as usize, to.len() as usize) };
}
