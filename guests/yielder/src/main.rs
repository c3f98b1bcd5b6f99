//! Measures the yield hypercall in timer ticks: `calls=<n>` (default 10000)
//! yields between two counter reads, then
//! `yielder: calls=<n> ticks=<t> mean-ticks=<x.yz>` and exit.
//!
//! Alone on a CPU, a yield finds nobody else to run: a hypercall round trip
//! through the scheduler, no world switch. With two yielders on one CPU the
//! VMs ping-pong: each call's interval runs from this VM's trap, through a
//! switch to the other VM, its return from *its* yield, its loop and next
//! yield, and a switch back, so one call spans two world switches (see
//! `cargo xtask bench`).
//!
//! Before the timed calls come `WARM_UP` untimed ones, so that with two
//! yielders both are in their loops (past boot and the first line) when
//! either starts the clock.
#![no_std]
#![no_main]

use abi::StartInfo;
use guest_rt::{counter, hc, println};

guest_rt::entry!(main);

const DEFAULT_CALLS: u64 = 10_000;
const WARM_UP: u64 = 100;

fn main(info: &'static StartInfo) -> u64 {
    let calls = guest_rt::cmdline::number(info.cmdline(), "calls", DEFAULT_CALLS).max(1);
    println!("yielder: started");
    for _ in 0..WARM_UP {
        hc::yield_now();
    }
    let start = counter();
    for _ in 0..calls {
        hc::yield_now();
    }
    let ticks = counter() - start;
    // The mean with two decimals, truncated, in integers.
    let mean_hundredths = ticks * 100 / calls;
    println!(
        "yielder: calls={calls} ticks={ticks} mean-ticks={}.{:02}",
        mean_hundredths / 100,
        mean_hundredths % 100
    );
    0
}
