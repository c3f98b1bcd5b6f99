//! A 1 kHz periodic interrupt from the virtual timer (CNTV), with its
//! latency: how long after each deadline the handler ran.
//!
//! First a self-test of the distributor and of interrupt delivery: SGI 1 to
//! itself. Then a burst: SGIs 2..=9 sent to itself with IRQs masked, more
//! pending at once than the GIC has list registers (QEMU has 4), each of
//! which must then be delivered exactly once. Then the timer: each interrupt records (counter at handler entry)
//! − (the deadline it was set for) and sets the next deadline one period
//! after the previous one (not after "now": no drift). The main loop sleeps
//! in `wfi` and, every 1000 interrupts, prints that second's count and
//! latency min / median / max in counter ticks. `seconds=<n>` on the command
//! line (default 3) says how many seconds to run; with `histogram=1` it
//! also prints the last second's latencies once the timer is off.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use abi::StartInfo;
use guest_rt::{gic, irq, println, timer};

guest_rt::entry!(main);

/// Interrupts per second.
const RATE_HZ: u64 = 1000;
/// Distinct latencies per line of the `histogram=1` output.
const RUNS_PER_LINE: usize = 8;
/// Latencies kept per second (one per timer interrupt).
const PER_SECOND: usize = RATE_HZ as usize;
/// The SGI of the self-test.
const SGI: u32 = 1;
/// The SGIs of the burst: more than the list registers of the GIC.
const BURST: core::ops::RangeInclusive<u32> = 2..=9;
/// How many SGIs the burst sends.
const BURST_LEN: usize = 8;
/// After the whole burst arrived, how long to keep watching for one
/// delivered twice, in milliseconds.
const BURST_SETTLE_MS: u64 = 10;
/// Priority of all interrupts (any below the mask of 0xff).
const PRIORITY: u8 = 0x80;
/// How long to wait for the SGI before giving up, in seconds.
const SGI_TIMEOUT_S: u64 = 1;
/// Exit code when the SGI never arrives.
const EXIT_NO_SGI: u64 = 1;
/// Exit code when an SGI of the burst is lost or delivered twice.
const EXIT_BURST: u64 = 1;
/// Exit code when the timer was never started (period 0).
const EXIT_NO_TIMER: u64 = 2;

/// Timer period in counter ticks.
static PERIOD: AtomicU64 = AtomicU64::new(0);
/// The deadline the timer is set for.
static DEADLINE: AtomicU64 = AtomicU64::new(0);
/// The self-test SGI arrived.
static SGI_SEEN: AtomicBool = AtomicBool::new(false);
/// Deliveries of each SGI of the burst (index: INTID − first of `BURST`).
static BURST_SEEN: [AtomicU64; BURST_LEN] = [const { AtomicU64::new(0) }; BURST_LEN];

/// Every interrupt the handler saw (timer, SGI, anything else).
static IRQS: AtomicU64 = AtomicU64::new(0);
/// `IRQS` when the current second began.
static IRQS_AT_SECOND: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts with the timer condition not met.
static SPURIOUS_TIMER: AtomicU64 = AtomicU64::new(0);

/// Latencies (ticks), two seconds' worth: the handler fills one while the
/// main loop reads the other. Second `n` (from 1) is in `LATENCY[(n - 1) % 2]`.
static LATENCY: [[AtomicU32; PER_SECOND]; 2] =
    [const { [const { AtomicU32::new(0) }; PER_SECOND] }; 2];
/// Interrupts (of any kind) during the second of each buffer.
static SECOND_IRQS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// The buffer the handler fills, and how far.
static FILLING: AtomicUsize = AtomicUsize::new(0);
static FILLED: AtomicUsize = AtomicUsize::new(0);
/// Seconds completed (1000 timer interrupts each); the handler publishes
/// the buffer and count of one before this grows (Release).
static SECONDS: AtomicU64 = AtomicU64::new(0);

/// `counter += 1` for counters only the handler writes (IRQs masked, one
/// vCPU): a load and a store, no read-modify-write.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The IRQ handler, IRQs masked.
fn on_irq(intid: u32) {
    let entry = timer::now();
    bump(&IRQS);
    match intid {
        timer::INTID => on_tick(entry),
        SGI => {
            SGI_SEEN.store(true, Ordering::Release);
            println!("ticker: sgi {SGI} received");
        }
        sgi if BURST.contains(&sgi) => bump(&BURST_SEEN[(sgi - BURST.start()) as usize]),
        other => println!("ticker: unexpected interrupt {other}"),
    }
}

/// A timer interrupt that reached the handler at counter value `entry`.
fn on_tick(entry: u64) {
    let deadline = DEADLINE.load(Ordering::Relaxed);
    // The counter, not CTL.ISTATUS, says whether the deadline has passed:
    // it does not depend on how the hypervisor masks the timer meanwhile.
    if entry < deadline {
        // Nothing is due: the interrupt was left over or made up.
        bump(&SPURIOUS_TIMER);
        return;
    }
    let latency = u32::try_from(entry - deadline).unwrap_or(u32::MAX);
    let buffer = FILLING.load(Ordering::Relaxed);
    let filled = FILLED.load(Ordering::Relaxed);
    LATENCY[buffer][filled].store(latency, Ordering::Relaxed);

    let next = deadline + PERIOD.load(Ordering::Relaxed);
    DEADLINE.store(next, Ordering::Relaxed);

    if filled + 1 < PER_SECOND {
        FILLED.store(filled + 1, Ordering::Relaxed);
        timer::set_deadline(next);
        return;
    }
    // A second is complete: publish it and switch buffers.
    let irqs = IRQS.load(Ordering::Relaxed);
    SECOND_IRQS[buffer].store(
        irqs - IRQS_AT_SECOND.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    IRQS_AT_SECOND.store(irqs, Ordering::Relaxed);
    FILLING.store(buffer ^ 1, Ordering::Relaxed);
    FILLED.store(0, Ordering::Relaxed);
    SECONDS.store(SECONDS.load(Ordering::Relaxed) + 1, Ordering::Release);
    // Keep ticking after the last second too: the main loop may be about
    // to `wfi`, and only an interrupt wakes it. It stops the timer itself.
    timer::set_deadline(next);
}

/// Deliveries so far of each SGI of the burst.
fn burst_counts() -> [u64; BURST_LEN] {
    core::array::from_fn(|i| BURST_SEEN[i].load(Ordering::Acquire))
}

/// The burst test, IRQs unmasked on entry and on return: SGIs 2..=9 made
/// pending at once (IRQs masked while sending), then each must reach the
/// handler exactly once within `SGI_TIMEOUT_S`. Polls, like the SGI 1 test:
/// no timer runs yet, so a `wfi` waiting for a lost SGI would never wake.
fn sgi_burst() -> Result<(), u64> {
    irq::disable();
    for sgi in BURST {
        gic::enable(sgi, PRIORITY);
    }
    for sgi in BURST {
        gic::send_sgi_to_self(sgi);
    }
    irq::enable();

    let frequency = timer::frequency();
    let give_up = timer::now() + SGI_TIMEOUT_S * frequency;
    let mut settle_until = None;
    loop {
        let counts = burst_counts();
        let now = timer::now();
        if counts.iter().any(|&n| n > 1) {
            break;
        }
        if counts.iter().all(|&n| n == 1) {
            // All arrived: watch a little longer for one arriving again.
            let until = *settle_until.get_or_insert(now + BURST_SETTLE_MS * frequency / 1000);
            if now >= until {
                break;
            }
        } else if now >= give_up {
            break;
        }
        core::hint::spin_loop();
    }

    let counts = burst_counts();
    let mut ok = true;
    for (sgi, &n) in BURST.zip(&counts) {
        if n > 1 {
            println!("ticker: sgi {sgi} delivered {n} times");
            ok = false;
        }
    }
    let received = counts.iter().filter(|&&n| n > 0).count();
    if received == BURST_LEN {
        println!("ticker: sgi burst {received}/{BURST_LEN} received");
    } else {
        // "missing 3 5 7": a fixed-size list, no allocator.
        let mut missing = [0u32; BURST_LEN];
        let mut k = 0;
        for (sgi, &n) in BURST.zip(&counts) {
            if n == 0 {
                missing[k] = sgi;
                k += 1;
            }
        }
        println!(
            "ticker: sgi burst {received}/{BURST_LEN} received, missing {}",
            MissingList(&missing[..k])
        );
        ok = false;
    }
    if ok {
        Ok(())
    } else {
        Err(EXIT_BURST)
    }
}

/// INTIDs separated by spaces.
struct MissingList<'a>(&'a [u32]);

impl core::fmt::Display for MissingList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, intid) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{intid}")?;
        }
        Ok(())
    }
}

/// Prints second `n`'s count and latencies.
fn report(n: u64) {
    let buffer = ((n - 1) % 2) as usize;
    let mut latency = [0u32; PER_SECOND];
    for (copy, kept) in latency.iter_mut().zip(&LATENCY[buffer]) {
        *copy = kept.load(Ordering::Relaxed);
    }
    let irqs = SECOND_IRQS[buffer].load(Ordering::Relaxed);
    // Once second n + 1 is done, the handler refills this buffer (with
    // second n + 2): the copy above must have been taken before.
    let overrun = SECONDS.load(Ordering::Acquire) > n;
    latency.sort_unstable();
    println!(
        "ticker: {n}s: {irqs} irqs, latency ticks min {} median {} max {}{}",
        latency[0],
        latency[PER_SECOND / 2],
        latency[PER_SECOND - 1],
        if overrun {
            " (report late, figures mixed)"
        } else {
            ""
        },
    );
}

/// Second `n`'s latencies as `ticker: latencies <ticks>x<count> ...`
/// lines, ascending, for `cargo xtask bench`'s histogram. Called with the
/// timer off: printing cannot delay a measured interrupt.
fn print_latencies(n: u64) {
    let buffer = ((n - 1) % 2) as usize;
    let mut latency = [0u32; PER_SECOND];
    for (copy, kept) in latency.iter_mut().zip(&LATENCY[buffer]) {
        *copy = kept.load(Ordering::Relaxed);
    }
    latency.sort_unstable();
    let mut start = 0;
    while start < PER_SECOND {
        // The end of this line's last run of equal values.
        let mut end = start;
        for _ in 0..RUNS_PER_LINE {
            if end == PER_SECOND {
                break;
            }
            let value = latency[end];
            end += latency[end..].iter().take_while(|&&v| v == value).count();
        }
        println!("ticker: latencies{}", Runs(&latency[start..end]));
        start = end;
    }
}

/// Sorted values as ` <value>x<count>` per run of equal ones.
struct Runs<'a>(&'a [u32]);

impl core::fmt::Display for Runs<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut rest = self.0;
        while let Some(&value) = rest.first() {
            let count = rest.iter().take_while(|&&v| v == value).count();
            write!(f, " {value}x{count}")?;
            rest = &rest[count..];
        }
        Ok(())
    }
}

fn main(info: &'static StartInfo) -> u64 {
    let seconds = guest_rt::cmdline::number(info.cmdline(), "seconds", 3);
    let histogram = guest_rt::cmdline::number(info.cmdline(), "histogram", 0) != 0;
    let period = timer::frequency() / RATE_HZ;
    println!("ticker: started, period {period} ticks");
    if period == 0 {
        println!("ticker: counter frequency {} too low", timer::frequency());
        return EXIT_NO_TIMER;
    }
    PERIOD.store(period, Ordering::Relaxed);

    irq::set_handler(on_irq);
    gic::init();
    gic::enable(SGI, PRIORITY);
    gic::enable(timer::INTID, PRIORITY);
    irq::enable();

    // Self-test: the distributor's SGIR and delivery through the CPU
    // interface. No timer yet, so poll (a `wfi` could sleep for ever).
    gic::send_sgi_to_self(SGI);
    let give_up = timer::now() + SGI_TIMEOUT_S * timer::frequency();
    while !SGI_SEEN.load(Ordering::Acquire) {
        if timer::now() >= give_up {
            println!("ticker: sgi {SGI} not received within {SGI_TIMEOUT_S}s");
            irq::disable();
            return EXIT_NO_SGI;
        }
        core::hint::spin_loop();
    }

    if let Err(code) = sgi_burst() {
        irq::disable();
        return code;
    }

    if seconds > 0 {
        // The handler only changes these once the timer is running.
        irq::disable();
        IRQS_AT_SECOND.store(IRQS.load(Ordering::Relaxed), Ordering::Relaxed);
        let first = timer::now() + period;
        DEADLINE.store(first, Ordering::Relaxed);
        timer::set_deadline(first);
        irq::enable();
    }

    let mut reported = 0;
    while reported < seconds {
        if SECONDS.load(Ordering::Acquire) > reported {
            reported += 1;
            report(reported);
        } else {
            // IRQs on: if the interrupt comes between the check and the
            // `wfi`, the next one (a period later) wakes us.
            irq::wait();
        }
    }
    irq::disable();
    timer::disable();
    if histogram && seconds > 0 {
        print_latencies(seconds);
    }
    let spurious = SPURIOUS_TIMER.load(Ordering::Relaxed) + irq::spurious();
    if spurious > 0 {
        println!("ticker: {spurious} spurious interrupts");
    }
    println!("ticker: done");
    0
}
