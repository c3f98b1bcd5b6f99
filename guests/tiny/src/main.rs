//! The smallest useful VM, for running thousands: says it is up, sleeps
//! in WFI until its virtual timer fires (`ms=<n>` from the command line,
//! default 20), says it woke, and exits with 0. Fits in 64 KiB of RAM.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use abi::StartInfo;
use guest_rt::{gic, irq, println, timer};

guest_rt::entry!(main);

/// Priority of the timer interrupt (any below the mask of 0xff).
const PRIORITY: u8 = 0x80;

/// The timer fired.
static FIRED: AtomicBool = AtomicBool::new(false);

/// The IRQ handler, IRQs masked: the level timer interrupt stays quiet
/// once the timer is off.
fn on_irq(intid: u32) {
    if intid == timer::INTID {
        timer::disable();
        FIRED.store(true, Ordering::Release);
    }
}

fn main(info: &'static StartInfo) -> u64 {
    let ms = guest_rt::cmdline::number(info.cmdline(), "ms", 20);
    println!("tiny: up");
    irq::set_handler(on_irq);
    gic::init();
    gic::enable(timer::INTID, PRIORITY);
    let start = timer::now();
    timer::set_deadline(start + timer::frequency() * ms / 1000);
    irq::enable();
    while !FIRED.load(Ordering::Acquire) {
        // IRQs on: one taken between the check and the `wfi` ends the
        // wait at once (WFI wakes on a pending interrupt).
        irq::wait();
    }
    irq::disable();
    println!("tiny: woke after {} ticks", timer::now() - start);
    0
}
