//! Links the guest with guest-rt's `guest.ld` (guest-rt puts it on the link search path).
fn main() {
    println!("cargo:rustc-link-arg-bins=-Tguest.ld");
}
