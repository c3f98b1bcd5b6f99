//! A multi-vCPU guest: vCPU 0 starts every other vCPU with PSCI `CPU_ON`
//! (`guest_rt::smp::start_vcpu`); each one says it is up, sends SGI 2 to
//! vCPU 0 (one secondary at a time, so that no two merge) and turns itself
//! off (`CPU_OFF`). vCPU 0 counts the SGIs, waits
//! until `AFFINITY_INFO` says every secondary is off, starts vCPU 1 again
//! (which then stays on), checks the PSCI errors for a vCPU that is already
//! on and one that does not exist, and powers the VM off (`SYSTEM_OFF`).
//!
//! Output of vCPU 0, in this order (the secondaries' `up` lines come in
//! any order between the first two):
//!
//! ```text
//! smp: <n> vCPUs, PSCI <major>.<minor>
//! smp: <n - 1> SGIs received, all secondaries off
//! smp: vCPU 1 up again          (printed by vCPU 1)
//! smp: cpu_on(1) again = -4
//! smp: cpu_on(99) = -2
//! smp: done
//! ```
//!
//! A failure prints `smp: FAIL: ...` and powers the VM off.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use abi::StartInfo;
use guest_rt::{gic, hc, irq, println, psci, smp, timer};

guest_rt::entry!(main);

/// The SGI each secondary sends to vCPU 0.
const SGI: u32 = 2;
/// Priority of the interrupts (any below the mask of 0xff).
const PRIORITY: u8 = 0x80;
/// How long vCPU 0 waits for each step before it gives up, in seconds.
const TIMEOUT_S: u64 = 10;
/// A vCPU index no VM has (and beyond the runtime's stacks).
const BAD_TARGET: u64 = 99;

/// SGIs vCPU 0 received.
static SGIS: AtomicU32 = AtomicU32::new(0);
/// vCPU 0's watchdog (the virtual timer) fired.
static TIMED_OUT: AtomicBool = AtomicBool::new(false);
/// A secondary's SGI is on its way and not handled yet. SGIs from several
/// senders may merge into one pending interrupt (always on a GICv3, where
/// an SGI's pending state does not record its source): a secondary takes
/// this token before it sends, the handler gives it back, so every SGI is
/// counted.
static SGI_IN_FLIGHT: AtomicBool = AtomicBool::new(false);
/// vCPU 1 ran again after the second `CPU_ON`.
static RESTARTED: AtomicBool = AtomicBool::new(false);

/// vCPU 0's IRQ handler, IRQs masked.
fn on_irq(intid: u32) {
    match intid {
        SGI => {
            SGIS.fetch_add(1, Ordering::Relaxed);
            SGI_IN_FLIGHT.store(false, Ordering::Release);
        }
        timer::INTID => {
            timer::disable();
            TIMED_OUT.store(true, Ordering::Relaxed);
        }
        other => println!("smp: unexpected interrupt {other}"),
    }
}

/// What each secondary runs first: its own GIC CPU interface, a line, an
/// SGI to vCPU 0, then off.
fn secondary(index: usize) -> ! {
    gic::init_cpu();
    let me = smp::vcpu_index();
    if me != index {
        println!("smp: FAIL: vCPU {me} started as vCPU {index}");
    }
    println!("smp: vCPU {me} up");
    while SGI_IN_FLIGHT
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        hc::yield_now();
    }
    gic::send_sgi(SGI, 0);
    psci::cpu_off()
}

/// What vCPU 1 runs when started again: a line, an SGI to wake vCPU 0,
/// then it stays on (so that `AFFINITY_INFO` and `CPU_ON` see it on).
fn restarted(_index: usize) -> ! {
    gic::init_cpu();
    println!("smp: vCPU {} up again", smp::vcpu_index());
    RESTARTED.store(true, Ordering::Release);
    // Wakes vCPU 0 (its handler counts it too; no other SGI is on its way).
    gic::send_sgi(SGI, 0);
    loop {
        irq::wait();
    }
}

/// Reports a failure and powers the VM off.
fn fail(args: core::fmt::Arguments) -> ! {
    println!("smp: FAIL: {args}");
    psci::system_off()
}

/// The counter value `TIMEOUT_S` from now.
fn deadline() -> u64 {
    timer::now() + TIMEOUT_S * timer::frequency()
}

fn main(info: &'static StartInfo) -> u64 {
    let vcpus = info.vcpus as usize;
    let (major, minor) = psci::version();
    println!("smp: {vcpus} vCPUs, PSCI {major}.{minor}");
    if !(2..=smp::MAX_VCPUS).contains(&vcpus) {
        fail(format_args!(
            "needs 2 to {} vCPUs, has {vcpus}",
            smp::MAX_VCPUS
        ));
    }
    for function in [psci::CPU_ON, psci::CPU_OFF, psci::AFFINITY_INFO] {
        let features = psci::features(function);
        if features < 0 {
            fail(format_args!("PSCI_FEATURES({function:#x}) = {features}"));
        }
    }

    irq::set_handler(on_irq);
    gic::init();
    gic::enable(SGI, PRIORITY);
    gic::enable(timer::INTID, PRIORITY);
    // Watchdog: the timer ends every wait below if it takes too long.
    timer::set_deadline(deadline());
    irq::enable();

    for index in 1..vcpus {
        if let Err(error) = smp::start_vcpu(index, secondary) {
            fail(format_args!("start_vcpu({index}) = {error}"));
        }
    }

    // Check with IRQs masked, then `wfi`: an SGI between the check and the
    // `wfi` still wakes it (see `irq::wait`).
    let secondaries = vcpus as u32 - 1;
    irq::disable();
    while SGIS.load(Ordering::Relaxed) < secondaries && !TIMED_OUT.load(Ordering::Relaxed) {
        irq::wait();
        irq::enable();
        irq::disable();
    }
    irq::enable();
    let received = SGIS.load(Ordering::Relaxed);
    if received < secondaries {
        fail(format_args!(
            "{received} of {secondaries} SGIs received in {TIMEOUT_S}s"
        ));
    }

    // Each secondary turns itself off right after its SGI.
    timer::set_deadline(deadline());
    for index in 1..vcpus {
        loop {
            match psci::affinity_info(index as u64) {
                psci::AFFINITY_OFF => break,
                psci::AFFINITY_ON | psci::AFFINITY_ON_PENDING => {}
                error => fail(format_args!("affinity_info({index}) = {error}")),
            }
            if TIMED_OUT.load(Ordering::Relaxed) {
                fail(format_args!("vCPU {index} still on after {TIMEOUT_S}s"));
            }
            hc::yield_now();
        }
    }
    println!("smp: {received} SGIs received, all secondaries off");

    // vCPU 1 again: on at once (it stays on), and running.
    if let Err(error) = smp::start_vcpu(1, restarted) {
        fail(format_args!("start_vcpu(1) again = {error}"));
    }
    match psci::affinity_info(1) {
        psci::AFFINITY_ON | psci::AFFINITY_ON_PENDING => {}
        other => fail(format_args!("affinity_info(1) after cpu_on = {other}")),
    }
    timer::set_deadline(deadline());
    irq::disable();
    while !RESTARTED.load(Ordering::Acquire) && !TIMED_OUT.load(Ordering::Relaxed) {
        irq::wait();
        irq::enable();
        irq::disable();
    }
    irq::enable();
    if !RESTARTED.load(Ordering::Acquire) {
        fail(format_args!("vCPU 1 did not run again in {TIMEOUT_S}s"));
    }
    match psci::affinity_info(1) {
        psci::AFFINITY_ON => {}
        other => fail(format_args!("affinity_info(1) while it runs = {other}")),
    }
    // Straight to PSCI: `start_vcpu` would not change what vCPU 1 runs,
    // but asking the hypervisor directly is the point.
    let again = psci::cpu_on(1, smp::entry_point(), 1).err().unwrap_or(0);
    println!("smp: cpu_on(1) again = {again}");

    // A vCPU the VM does not have: the hypervisor must refuse it (not the
    // runtime, which would refuse it too: no stack for it).
    let bad = psci::cpu_on(BAD_TARGET, smp::entry_point(), BAD_TARGET)
        .err()
        .unwrap_or(0);
    println!("smp: cpu_on({BAD_TARGET}) = {bad}");

    irq::disable();
    timer::disable();
    let spurious = irq::spurious();
    if spurious > 0 {
        println!("smp: {spurious} spurious interrupts");
    }
    println!("smp: done");
    psci::system_off()
}
