//! Register-integrity checker: proves that the hypervisor's context switch
//! preserves all of a guest's state across preemption. Each round fills
//! x1..x30, v0..v31 and the per-thread system registers (AArch32: r1..r14,
//! the thread ID registers, CONTEXTIDR, SP_usr, LR_usr, APSR.Q/GE; see
//! `guest_rt::soak`) with patterns of its seed, spins long enough to be
//! preempted several times (no memory access, no hypercall), and checks
//! every register.
//!
//! Command line: `seed=<n>` (default: VM id + 1), `rounds=<n>` (default 4),
//! separated by spaces. Exits 0 if every round passed, 1 on a mismatch.
#![no_std]
#![no_main]

use abi::StartInfo;
use guest_rt::{println, soak};

guest_rt::entry!(main);

/// Soak loop iterations per round: two instructions each, so about 6 ms of
/// guest time under icount, three 2 ms time slices.
const ITERATIONS_PER_ROUND: u64 = 3_000_000;
const DEFAULT_ROUNDS: u64 = 4;

struct Options {
    seed: u64,
    rounds: u64,
}

fn parse(cmdline: &str, info: &StartInfo) -> Result<Options, &'static str> {
    let mut options = Options {
        seed: u64::from(info.vm_id) + 1,
        rounds: DEFAULT_ROUNDS,
    };
    for word in cmdline.split_ascii_whitespace() {
        let (key, value) = word.split_once('=').ok_or("expected key=value")?;
        let value = value.parse::<u64>().map_err(|_| "not a decimal number")?;
        match key {
            "seed" => options.seed = value,
            "rounds" => options.rounds = value,
            _ => return Err("unknown key (seed, rounds)"),
        }
    }
    Ok(options)
}

fn main(info: &'static StartInfo) -> u64 {
    let cmdline = info.cmdline();
    let options = match parse(cmdline, info) {
        Ok(options) => options,
        Err(why) => {
            println!("regcheck: bad cmdline '{cmdline}': {why}");
            return 2;
        }
    };
    println!("regcheck: started, seed {}", options.seed);
    for round in 1..=options.rounds {
        // A different pattern every round, so a stale copy of the previous
        // round's registers does not pass.
        let seed = options.seed.wrapping_add(round << 32);
        if let Err(m) = soak::register_soak(seed, ITERATIONS_PER_ROUND) {
            println!(
                "regcheck: MISMATCH in {}: expected {:#x} found {:#x} (round {round})",
                m.register, m.expected, m.found
            );
            return 1;
        }
        println!("regcheck: round {round} ok");
    }
    println!("regcheck: all {} rounds ok", options.rounds);
    0
}
