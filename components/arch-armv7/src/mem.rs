//! Zeroing and copying plain memory 32 bytes an instruction pair.
//!
//! `compiler_builtins`' `memset` and `memcpy` for this target store a word
//! (or, where source and destination are not equally aligned, a byte) per
//! loop: a 4 KiB stage-2 table costs some 3,000 instructions to zero, a
//! 10 KiB guest image some 10,000 to copy. An `STM` of eight registers
//! stores 32 bytes, an `LDM` loads them.

use core::arch::asm;

/// Bytes one `STM` (or `LDM`) of eight registers moves.
const CHUNK: usize = 32;

/// Zeroes `len` bytes at `ptr`.
///
/// # Safety
///
/// `ptr..ptr + len` must be valid for writes, and nothing else may access
/// it meanwhile (as for `core::ptr::write_bytes`).
pub unsafe fn zero(ptr: *mut u8, len: usize) {
    let start = ptr as usize;
    let end = start + len;
    let (body, body_end) = hv::memory::aligned_body(start, end, CHUNK);
    // SAFETY: the head and tail are inside the caller's range.
    unsafe {
        core::ptr::write_bytes(ptr, 0, body - start);
        core::ptr::write_bytes(body_end as *mut u8, 0, end - body_end);
    }
    if body < body_end {
        // SAFETY: `body..body_end` is inside the caller's range, whole
        // 32-byte chunks (word-aligned, as STM needs), written with zeroes.
        unsafe {
            asm!(
                "2:",
                "stm {p}!, {{r0, r1, r2, r3, r4, r5, r8, r10}}",
                "cmp {p}, {e}",
                "blo 2b",
                p = inout(reg) body => _,
                e = in(reg) body_end,
                in("r0") 0, in("r1") 0, in("r2") 0, in("r3") 0,
                in("r4") 0, in("r5") 0, in("r8") 0, in("r10") 0,
                options(nostack),
            )
        };
    }
}

/// Copies `len` bytes from `src` to `dst`: 32 bytes an `LDM` and `STM`
/// where both are equally word-aligned, else `copy_nonoverlapping`.
///
/// # Safety
///
/// As `core::ptr::copy_nonoverlapping`: `src..src + len` valid for reads,
/// `dst..dst + len` for writes, the two apart, and nothing else writing
/// either meanwhile.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    let (d, s) = (dst as usize, src as usize);
    if (d ^ s) & 3 != 0 || len < 2 * CHUNK {
        // SAFETY: the caller's ranges.
        unsafe { core::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let head = d.next_multiple_of(4) - d;
    let body = (len - head) / CHUNK * CHUNK;
    let tail = len - head - body;
    // SAFETY: the head and tail bytes are inside the caller's ranges.
    unsafe {
        core::ptr::copy_nonoverlapping(src, dst, head);
        core::ptr::copy_nonoverlapping(src.add(head + body), dst.add(head + body), tail);
    }
    // SAFETY: `body` bytes from `s + head` and `d + head`, both
    // word-aligned (equally aligned, the head brought `d` to a word),
    // inside the caller's ranges, which do not overlap; r0-r5, r8 and r10
    // carry each chunk and are clobbered.
    unsafe {
        asm!(
            "2:",
            "ldm {s}!, {{r0, r1, r2, r3, r4, r5, r8, r10}}",
            "stm {d}!, {{r0, r1, r2, r3, r4, r5, r8, r10}}",
            "cmp {s}, {e}",
            "blo 2b",
            s = inout(reg) s + head => _,
            d = inout(reg) d + head => _,
            e = in(reg) s + head + body,
            out("r0") _, out("r1") _, out("r2") _, out("r3") _,
            out("r4") _, out("r5") _, out("r8") _, out("r10") _,
            options(nostack),
        )
    };
}
