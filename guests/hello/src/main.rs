//! Says hello with the VM's name, the ABI version and the command line,
//! counts three steps with some work between them, and exits with 0.
#![no_std]
#![no_main]

use abi::StartInfo;
use guest_rt::{busy_loop, hc, println};

guest_rt::entry!(main);

const STEPS: u32 = 3;
const ITERATIONS_PER_STEP: u64 = 2_000_000;

fn main(info: &'static StartInfo) -> u64 {
    let (major, minor) = hc::abi_version();
    println!("Hello from {}, guest ABI {major}.{minor}", info.name());
    let cmdline = info.cmdline();
    if !cmdline.is_empty() {
        println!("cmdline: {cmdline}");
    }
    for step in 1..=STEPS {
        busy_loop(ITERATIONS_PER_STEP);
        println!("hello: step {step}/{STEPS}");
    }
    println!("hello: goodbye");
    0
}
