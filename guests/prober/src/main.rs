//! Isolation attacker: reads, writes or executes one address it does not
//! own, as its command line says. The hypervisor must stop it there; if it
//! is still alive afterwards it reports the broken isolation and exits 1.
//!
//! Command lines: `read=<hex>`, `write=<hex>`, `exec=<hex>`, `read-past-end`,
//! `write-past-end` (past-end: `ram_base + ram_size`, just past its RAM).
//!
//! Hostile modes, each showing that a misbehaving guest only hurts itself:
//! - `console-bad-pointer`: `CONSOLE_WRITE` of an address outside its RAM,
//!   of a range running past its end, and of too many bytes; prints the
//!   errors, then exits 0;
//! - `unknown-hypercall`: an undefined function ID; prints the result, exits 0;
//! - `smc`: `SMC #0` with `PSCI_VERSION`; prints the result, exits 0;
//! - `hvc-imm`: `HVC #1` with `ABI_VERSION`; prints the result, exits 0;
//! - `debug-write`: writes recognisable values to debug and PMU registers
//!   (MDSCR, a breakpoint and a watchpoint, PMCR, PMSELR, PMCNTENSET,
//!   PMINTENSET, PMUSERENR, PMCCFILTR; their AArch32 twins), prints what
//!   they read back, exits 0; `debug-read` prints what they hold and
//!   reports ISOLATION BROKEN (exit 1) if any holds the writer's value;
//! - `sysreg`: reads `HCR_EL2` from EL1 (`HCR` from PL1 on AArch32; the
//!   lines it prints say `hcr_el2` on both), which must end in this guest's
//!   own exception handler (exit 0xE1); if the read returns it exits 1.
#![no_std]
#![no_main]

use abi::StartInfo;
use guest_rt::{hc, print, println, probe};

guest_rt::entry!(main);

const WRITE_VALUE: u32 = 0xdead_beef;

#[derive(Clone, Copy)]
enum Probe {
    Read(u64),
    Write(u64),
    Exec(u64),
}

fn parse_hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    u64::from_str_radix(digits, 16).ok()
}

fn parse(cmdline: &str, info: &StartInfo) -> Option<Probe> {
    let past_end = info.ram_base.checked_add(info.ram_size)?;
    match cmdline {
        "read-past-end" => return Some(Probe::Read(past_end)),
        "write-past-end" => return Some(Probe::Write(past_end)),
        _ => {}
    }
    let (op, addr) = cmdline.split_once('=')?;
    let addr = parse_hex(addr)?;
    match op {
        "read" => Some(Probe::Read(addr)),
        "write" => Some(Probe::Write(addr)),
        "exec" => Some(Probe::Exec(addr)),
        _ => None,
    }
}

/// A function ID in Tessera's range that no ABI version defines.
const UNKNOWN_HYPERCALL: u64 = 0xC600_00FF;
/// PSCI `PSCI_VERSION` (SMC32 fast call).
const PSCI_VERSION: u64 = abi::psci::VERSION as u64;
/// An address outside every guest's RAM (below `GUEST_RAM_BASE`).
const OUTSIDE_RAM: u64 = 0x1000;

/// A raw hypercall result: the error's name if it is one, else the number.
struct Outcome(i64);

impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match abi::Error::from_raw(self.0) {
            Some(error) => write!(f, "{error:?}"),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Runs a hostile mode; `None` if `cmdline` names none.
fn hostile(cmdline: &str, info: &StartInfo) -> Option<u64> {
    match cmdline {
        "console-bad-pointer" => {
            // The raw call: the safe wrapper only passes slices it owns.
            let bad = hc::hypercall(abi::HC_CONSOLE_WRITE, OUTSIDE_RAM, 16, 0);
            println!("prober: console_write(bad address) = {}", Outcome(bad));
            let last = info.ram_base + info.ram_size - 8;
            let straddling = hc::hypercall(abi::HC_CONSOLE_WRITE, last, 16, 0);
            println!(
                "prober: console_write(past end of RAM) = {}",
                Outcome(straddling)
            );
            let long = hc::hypercall(
                abi::HC_CONSOLE_WRITE,
                info.ram_base,
                abi::CONSOLE_WRITE_MAX + 1,
                0,
            );
            println!("prober: console_write(too long) = {}", Outcome(long));
            let wrapping = hc::hypercall(abi::HC_CONSOLE_WRITE, u64::MAX - 7, 16, 0);
            println!(
                "prober: console_write(wrapping address) = {}",
                Outcome(wrapping)
            );
        }
        "unknown-hypercall" => {
            let result = hc::hypercall(UNKNOWN_HYPERCALL, 0, 0, 0);
            println!("prober: unknown hypercall = {result}");
        }
        "smc" => {
            let result = probe::smc(PSCI_VERSION, 0, 0, 0);
            println!("prober: smc = {result}");
        }
        "hvc-imm" => {
            let result = probe::hvc_imm1(abi::HC_ABI_VERSION, 0, 0, 0);
            println!("prober: hvc #1 = {result}");
        }
        "debug-write" | "debug-read" => {
            // Debug and PMU registers are per VM: the writer's values must
            // not reach the reader, which runs after it on the same CPU.
            if cmdline == "debug-write" {
                probe::debug_regs_write();
                println!("prober: wrote debug and PMU registers");
            }
            let values = probe::debug_regs_read();
            print!("prober: debug/PMU:");
            for ((name, _), value) in probe::DEBUG_REGS.iter().zip(values) {
                print!(" {name}={value:#x}");
            }
            println!();
            if cmdline == "debug-read" {
                let leaked = probe::DEBUG_REGS
                    .iter()
                    .zip(values)
                    // Every bit written still set (PMCR also holds N and IDs).
                    .filter(|((_, written), value)| value & written == *written)
                    .count();
                if leaked > 0 {
                    println!("prober: ISOLATION BROKEN: {leaked} debug/PMU registers hold another VM's values");
                    return Some(1);
                }
                println!("prober: no debug or PMU state from another VM");
            }
        }
        "sysreg" => {
            println!("prober: about to read hcr_el2");
            let value = probe::read_hcr_el2();
            println!("prober: ISOLATION BROKEN: read hcr_el2 = {value:#x}");
            return Some(1);
        }
        _ => return None,
    }
    println!("prober: still alive");
    Some(0)
}

fn main(info: &'static StartInfo) -> u64 {
    let cmdline = info.cmdline();
    if let Some(code) = hostile(cmdline, info) {
        return code;
    }
    let Some(probe) = parse(cmdline, info) else {
        println!("prober: bad cmdline '{cmdline}'");
        return 2;
    };
    let (Probe::Read(addr) | Probe::Write(addr) | Probe::Exec(addr)) = probe;
    if let Err(refused) = probe::check(info, addr) {
        println!("prober: refusing to probe {addr:#x}: it is {refused}");
        println!("prober: bad cmdline '{cmdline}'");
        return 2;
    }
    // The probes below only fail on what `check` just accepted; a failure
    // would still not be a broken isolation, so it takes the same exit.
    let probed = match probe {
        Probe::Read(addr) => {
            println!("prober: about to read {addr:#x}");
            probe::read(info, addr)
                .map(|value| println!("prober: ISOLATION BROKEN: read {addr:#x} = {value:#x}"))
        }
        Probe::Write(addr) => {
            println!("prober: about to write {addr:#x}");
            probe::write(info, addr, WRITE_VALUE)
                .map(|()| println!("prober: ISOLATION BROKEN: wrote {addr:#x}"))
        }
        Probe::Exec(addr) => {
            println!("prober: about to exec {addr:#x}");
            probe::exec(info, addr)
                .map(|()| println!("prober: ISOLATION BROKEN: executed {addr:#x}"))
        }
    };
    match probed {
        Ok(()) => 1,
        Err(_) => 2,
    }
}
