//! Isolation attacker: reads, writes or executes one address it does not
//! own, as its command line says. The hypervisor must stop it there; if it
//! is still alive afterwards it reports the broken isolation and exits 1.
//!
//! Command lines: `read=<hex>`, `write=<hex>`, `exec=<hex>`, `read-past-end`,
//! `write-past-end` (past-end: `ram_base + ram_size`, just past its RAM).
#![no_std]
#![no_main]

use abi::StartInfo;
use guest_rt::{println, probe};

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

fn main(info: &'static StartInfo) -> u64 {
    let cmdline = info.cmdline();
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
