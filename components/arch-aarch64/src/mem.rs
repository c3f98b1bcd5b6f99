//! Zeroing and copying plain memory: the same interface as `arch-armv7`'s,
//! where `compiler_builtins`' loops are slow. Here they are not (`STP` of
//! two registers, 16 bytes a store), so these are theirs.

/// Zeroes `len` bytes at `ptr`.
///
/// # Safety
///
/// As for `core::ptr::write_bytes`: the range valid for writes, nothing
/// else accessing it meanwhile.
pub unsafe fn zero(ptr: *mut u8, len: usize) {
    // SAFETY: the caller's range.
    unsafe { core::ptr::write_bytes(ptr, 0, len) };
}

/// Copies `len` bytes from `src` to `dst`.
///
/// # Safety
///
/// As for `core::ptr::copy_nonoverlapping`.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's ranges.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, len) };
}
