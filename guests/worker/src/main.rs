//! Works for `ms=<n>` milliseconds of virtual time (default 1000), never
//! yielding: it spins on the virtual counter until it has advanced that
//! far since the start, says so every 100 ms (`worker: <k>00 ms`), then
//! prints `worker: done` and exits 0. The counter runs whether or not the
//! VM has the CPU, so the work takes as long under any scheduler; what the
//! scheduler changes is the VM's CPU share, which the hypervisor reports
//! when it exits.
#![no_std]
#![no_main]

use abi::StartInfo;
use guest_rt::{counter, counter_frequency, println};

guest_rt::entry!(main);

/// Between two progress lines.
const STEP_MS: u64 = 100;

fn main(info: &'static StartInfo) -> u64 {
    let ms = guest_rt::cmdline::number(info.cmdline(), "ms", 1000);
    let frequency = counter_frequency();
    // Ticks since `start` for `m` milliseconds (no overflow for any sane m).
    let ticks = |m: u64| (u128::from(m) * u128::from(frequency) / 1000) as u64;
    let start = counter();
    let mut reported = 0;
    loop {
        let elapsed = counter().wrapping_sub(start);
        if elapsed >= ticks(ms) {
            break;
        }
        // Every 100 ms that has passed, in order (a long wait off the CPU
        // may pass several at once).
        while reported + STEP_MS <= ms && elapsed >= ticks(reported + STEP_MS) {
            reported += STEP_MS;
            println!("worker: {reported} ms");
        }
    }
    // The last steps, had the deadline passed them at once.
    while reported + STEP_MS <= ms {
        reported += STEP_MS;
        println!("worker: {reported} ms");
    }
    println!("worker: done");
    0
}
