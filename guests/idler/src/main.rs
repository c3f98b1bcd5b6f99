//! Does nothing, properly: sleeps in `wfi`, woken by a virtual-timer
//! deadline every 100 ms, and prints once a second, for `seconds=<n>` from
//! the command line (default 10). For measuring the host CPU an idle guest
//! costs: a hypervisor that idles properly burns nearly none while it runs.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use abi::StartInfo;
use guest_rt::{gic, irq, println, timer};

guest_rt::entry!(main);

/// Wake-ups per second.
const WAKEUPS_PER_SECOND: u64 = 10;
/// Priority of the timer interrupt (any below the mask of 0xff).
const PRIORITY: u8 = 0x80;
/// Exit code when the counter is too slow for a 100 ms period.
const EXIT_NO_TIMER: u64 = 2;

/// Timer period in counter ticks.
static PERIOD: AtomicU64 = AtomicU64::new(0);
/// The deadline the timer is set for.
static DEADLINE: AtomicU64 = AtomicU64::new(0);
/// Deadlines passed.
static WAKEUPS: AtomicU64 = AtomicU64::new(0);

/// The IRQ handler, IRQs masked.
fn on_irq(intid: u32) {
    if intid != timer::INTID {
        println!("idler: unexpected interrupt {intid}");
        return;
    }
    let deadline = DEADLINE.load(Ordering::Relaxed);
    if timer::now() < deadline {
        // Not due yet: left over or made up.
        return;
    }
    // Next deadline one period after the last (no drift), and keep going
    // even after the last second: the main loop may be about to `wfi`.
    let next = deadline + PERIOD.load(Ordering::Relaxed);
    DEADLINE.store(next, Ordering::Relaxed);
    timer::set_deadline(next);
    // Single writer (IRQs masked): a load and a store.
    WAKEUPS.store(WAKEUPS.load(Ordering::Relaxed) + 1, Ordering::Release);
}

fn main(info: &'static StartInfo) -> u64 {
    let seconds = guest_rt::cmdline::number(info.cmdline(), "seconds", 10);
    let period = timer::frequency() / WAKEUPS_PER_SECOND;
    println!("idler: started");
    if period == 0 {
        println!("idler: counter frequency {} too low", timer::frequency());
        return EXIT_NO_TIMER;
    }
    PERIOD.store(period, Ordering::Relaxed);

    irq::set_handler(on_irq);
    gic::init();
    gic::enable(timer::INTID, PRIORITY);
    let first = timer::now() + period;
    DEADLINE.store(first, Ordering::Relaxed);
    timer::set_deadline(first);
    irq::enable();

    let mut reported = 0;
    while reported < seconds {
        if WAKEUPS.load(Ordering::Acquire) >= (reported + 1) * WAKEUPS_PER_SECOND {
            reported += 1;
            println!("idler: {reported}s");
        } else {
            // IRQs on: an interrupt between the check and the `wfi` only
            // delays this by one period.
            irq::wait();
        }
    }
    irq::disable();
    timer::disable();
    println!("idler: done");
    0
}
