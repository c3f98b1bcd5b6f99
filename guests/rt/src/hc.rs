//! Safe wrappers of the Tessera hypercalls (see [`abi`] for the contract).

use abi::Error;

/// Issues hypercall `id` with arguments `a1`..`a3` (`HVC #0`, SMCCC) and
/// returns the raw `x0`: `>= 0` is a result, `< 0` an [`Error`] code. On
/// AArch32 the runtime passes the SMC32 form of `id` and the low 32 bits of
/// each argument, and sign-extends `r0`.
///
/// Safe because no hypercall of ABI 1.x writes guest memory; one that does
/// will get its own wrapper taking a `&mut` buffer.
pub fn hypercall(id: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    crate::arch::hypercall(id, a1, a2, a3)
}

fn result(raw: i64) -> Result<u64, Error> {
    if raw >= 0 {
        Ok(raw as u64)
    } else {
        // Codes newer than this runtime count as "not supported".
        Err(Error::from_raw(raw).unwrap_or(Error::NotSupported))
    }
}

/// The hypervisor's guest ABI version, `(major, minor)`; `(0, 0)` if the
/// call failed (no Tessera answers that).
pub fn abi_version() -> (u16, u16) {
    match result(hypercall(abi::HC_ABI_VERSION, 0, 0, 0)) {
        Ok(v) => ((v >> 16) as u16, v as u16),
        Err(_) => (0, 0),
    }
}

/// Writes at most [`abi::CONSOLE_WRITE_MAX`] bytes of `bytes` to the
/// console and returns how many were written. See [`console_write_all`].
pub fn console_write(bytes: &[u8]) -> Result<usize, Error> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let len = bytes.len().min(abi::CONSOLE_WRITE_MAX as usize);
    // The identity map makes the virtual address the guest-physical one.
    let ipa = bytes.as_ptr() as u64;
    result(hypercall(abi::HC_CONSOLE_WRITE, ipa, len as u64, 0)).map(|n| n as usize)
}

/// Writes all of `bytes` to the console, in as many calls as it takes.
pub fn console_write_all(mut bytes: &[u8]) -> Result<(), Error> {
    while !bytes.is_empty() {
        let written = console_write(bytes)?;
        if written == 0 || written > bytes.len() {
            return Err(Error::InvalidParameter);
        }
        bytes = &bytes[written..];
    }
    Ok(())
}

/// Gives up the rest of this time slice.
pub fn yield_now() {
    hypercall(abi::HC_YIELD, 0, 0, 0);
}

/// Stops the whole VM with `code`.
pub fn vm_exit(code: u64) -> ! {
    let raw = hypercall(abi::HC_VM_EXIT, code, 0, 0);
    // VM_EXIT does not return; if it did, say so rather than hang silently.
    crate::println!("vm_exit({code:#x}) returned {raw}; halting");
    crate::arch::halt()
}
