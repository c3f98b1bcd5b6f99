//! Links the guest with its own `tiny.ld`: guest-rt's `guest.ld` with
//! smaller stacks, so that it fits in 64 KiB of RAM.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    println!("cargo:rustc-link-search={dir}");
    println!("cargo:rustc-link-arg-bins=-Ttiny.ld");
    println!("cargo:rerun-if-changed=tiny.ld");
}
