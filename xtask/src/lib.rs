//! The Tessera composer and developer commands, as a library so that the
//! integration tests can reach the image writers.

pub mod bench;
pub mod compose;
pub mod debian;
pub mod devicetree;
pub mod diskcheck;
pub mod elf;
pub mod fit;
pub mod initramfs;
pub mod manifest;
pub mod qemu;
pub mod scenario;
pub mod sdcard;
pub mod test;
pub mod tools;
pub mod uimage;
pub mod workspace;

/// The board `build` and `run` use when none is given, and `test` checks.
pub const DEFAULT_BOARD: &str = "qemu-virt-a64";
