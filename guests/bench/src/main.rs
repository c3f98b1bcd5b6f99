//! Measures the null hypercall (`ABI_VERSION`) round trip in timer ticks.
#![no_std]
#![no_main]

use abi::StartInfo;
use guest_rt::{counter, hc, println};

guest_rt::entry!(main);

const CALLS: u64 = 10_000;

fn main(_info: &'static StartInfo) -> u64 {
    println!("bench: started");
    let start = counter();
    for _ in 0..CALLS {
        core::hint::black_box(hc::abi_version());
    }
    let ticks = counter() - start;
    // The mean with two decimals, truncated, in integers.
    let mean_hundredths = ticks * 100 / CALLS;
    println!(
        "bench: null-hypercall calls={CALLS} ticks={ticks} mean-ticks={}.{:02}",
        mean_hundredths / 100,
        mean_hundredths % 100
    );
    0
}
