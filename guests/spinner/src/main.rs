//! Burns CPU for ever and never yields: only preemption lets other VMs run.
#![no_std]
#![no_main]

use abi::StartInfo;
use guest_rt::{busy_loop, println};

guest_rt::entry!(main);

const ITERATIONS_PER_ROUND: u64 = 4_000_000;

fn main(_info: &'static StartInfo) -> u64 {
    println!("spinner: started");
    let mut round: u64 = 0;
    loop {
        busy_loop(ITERATIONS_PER_ROUND);
        round += 1;
        println!("spinner: alive, round {round}");
    }
}
