//! Puts the guest linker script where the guests' linker finds it.
//!
//! `cargo:rustc-link-arg` from a library does not reach the binaries that use
//! it, but `cargo:rustc-link-search` does: every guest then only needs
//! `cargo:rustc-link-arg-bins=-Tguest.ld` in its own build script.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    fs::copy("guest.ld", out.join("guest.ld")).expect("copy guest.ld to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=guest.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
