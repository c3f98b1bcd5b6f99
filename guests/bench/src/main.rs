//! Measures two exits in timer ticks: the null hypercall (`ABI_VERSION`)
//! round trip, and a trapped read of the distributor's `GICD_TYPER` (an
//! emulated MMIO load: decode, the vGIC model, write-back of the register).
#![no_std]
#![no_main]

use abi::StartInfo;
use guest_rt::{counter, gic, hc, println};

guest_rt::entry!(main);

const CALLS: u64 = 10_000;

fn main(_info: &'static StartInfo) -> u64 {
    println!("bench: started");
    report("null-hypercall", || {
        core::hint::black_box(hc::abi_version());
    });
    report("gicd-read", || {
        core::hint::black_box(gic::distributor_typer());
    });
    0
}

/// Runs `call` [`CALLS`] times and prints the mean with two decimals
/// (truncated, in integers).
fn report(name: &str, mut call: impl FnMut()) {
    let start = counter();
    for _ in 0..CALLS {
        call();
    }
    let ticks = counter() - start;
    let mean_hundredths = ticks * 100 / CALLS;
    println!(
        "bench: {name} calls={CALLS} ticks={ticks} mean-ticks={}.{:02}",
        mean_hundredths / 100,
        mean_hundredths % 100
    );
}
