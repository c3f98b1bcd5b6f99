//! A guest that attacks the hypervisor to slow its neighbours down, never
//! touching anything it does not own: what a latency-sensitive neighbour must
//! not feel. The command line picks the attack:
//!
//! - `reset-loop`: resets its VM (PSCI `SYSTEM_RESET`) as soon as it starts,
//!   for ever: each reset clears and reloads its RAM.
//! - `psci-storm` (2 vCPUs or more): vCPU 0 starts vCPU 1, which turns itself
//!   off at once, and asks `AFFINITY_INFO`, `PSCI_VERSION` and
//!   `PSCI_FEATURES` in between, for ever.
//! - `maintenance-storm` (2 vCPUs or more): vCPU 1 takes shared interrupt
//!   [`SPI`] into its list registers with its interrupts masked and turns
//!   off; vCPU 0 routes the SPI to itself and raises it again, takes it, and
//!   starts over. While a turned-off vCPU kept the SPI "in a list register",
//!   vCPU 0 could never take it and asked for a maintenance interrupt on
//!   every entry, which starved the hypervisor's timer on GICv3.
//!
//! It prints one line when the attack starts and every [`REPORT_EVERY`]
//! rounds.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use abi::StartInfo;
use guest_rt::{gic, hc, irq, println, psci, smp};

guest_rt::entry!(main);

/// The shared interrupt the maintenance storm moves around.
const SPI: u32 = 40;
const PRIORITY: u8 = 0x80;
const REPORT_EVERY: u32 = 1000;

/// SPIs vCPU 0 took.
static TAKEN: AtomicU32 = AtomicU32::new(0);

fn on_irq(intid: u32) {
    if intid == SPI {
        TAKEN.fetch_add(1, Ordering::Release);
    }
}

/// vCPU 1 of the PSCI storm: off at once.
fn off_at_once(_index: usize) -> ! {
    psci::cpu_off()
}

/// vCPU 1 of the maintenance storm: the SPI into its list registers, its
/// interrupts masked so that it stays there, then off.
fn hold_and_turn_off(_index: usize) -> ! {
    gic::init_cpu();
    gic::enable(SPI, PRIORITY);
    gic::set_pending(SPI);
    // The trapped store above made the SPI pending; the way back into the
    // guest put it into a list register. A hypercall makes sure of that.
    hc::abi_version();
    psci::cpu_off()
}

/// Waits until vCPU 1 is off again.
fn wait_off() {
    while psci::affinity_info(1) != psci::AFFINITY_OFF {
        hc::yield_now();
    }
}

fn psci_storm() -> ! {
    println!("attacker: psci storm");
    let mut round = 0u32;
    loop {
        let _ = smp::start_vcpu(1, off_at_once);
        psci::version();
        psci::features(psci::CPU_ON);
        wait_off();
        round = round.wrapping_add(1);
        if round.is_multiple_of(REPORT_EVERY) {
            println!("attacker: psci storm round {round}");
        }
    }
}

fn maintenance_storm() -> ! {
    println!("attacker: maintenance storm");
    irq::set_handler(on_irq);
    gic::init();
    irq::enable();
    let mut round = 0u32;
    loop {
        let taken = TAKEN.load(Ordering::Acquire);
        if smp::start_vcpu(1, hold_and_turn_off).is_err() {
            println!("attacker: vCPU 1 did not start");
            psci::system_off();
        }
        wait_off();
        // Route the SPI here and raise it again: it must come to vCPU 0.
        gic::enable(SPI, PRIORITY);
        gic::set_pending(SPI);
        // Masked while checking, so that the interrupt cannot come between
        // the check and the wait.
        loop {
            irq::disable();
            if TAKEN.load(Ordering::Acquire) != taken {
                irq::enable();
                break;
            }
            irq::wait();
            irq::enable();
        }
        round = round.wrapping_add(1);
        if round == 1 || round.is_multiple_of(REPORT_EVERY) {
            println!("attacker: maintenance storm round {round}");
        }
    }
}

fn main(info: &'static StartInfo) -> u64 {
    match info.cmdline() {
        "reset-loop" => {
            println!("attacker: reset");
            psci::system_reset()
        }
        "psci-storm" if info.vcpus >= 2 => psci_storm(),
        "maintenance-storm" if info.vcpus >= 2 => maintenance_storm(),
        other => {
            println!(
                "attacker: unknown attack {other:?} (for {} vCPUs)",
                info.vcpus
            );
            1
        }
    }
}
