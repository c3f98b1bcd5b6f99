//! `cargo xtask test`: host unit tests, every board's uImage checked by
//! `dumpimage`, then every QEMU scenario. One result line each, then a tally.

use crate::compose;
use crate::fit;
use crate::qemu;
use crate::scenario;
use crate::tools;
use crate::uimage;
use crate::workspace::Workspace;
use crate::DEFAULT_BOARD;
use anyhow::{bail, ensure, Result};
use config::components::{self, Kind};
use config::composition::Arch;
use config::profile;
use xshell::{cmd, Shell};

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn record(&mut self, what: &str, result: Result<()>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("PASS {what}");
            }
            Err(error) => {
                self.failed += 1;
                println!("FAIL {what}: {error:#}");
            }
        }
    }
}

/// Everything, or with `only` non-empty just the scenarios whose names
/// contain one of its words.
pub fn run(ws: &Workspace, only: &[String]) -> Result<()> {
    // One install for everything, before anything is built.
    let default = compose::load_board(ws, DEFAULT_BOARD)?;
    let mut needed = vec![
        tools::dumpimage(),
        tools::mtools(),
        tools::fdisk(),
        tools::dtc(),
        tools::cpio(),
        tools::u_boot_qemu(),
        tools::qemu(&qemu::spec(&default)?.binary),
        // pvck for the disk fixtures' host tests, e2fsprogs for [disk-check].
        tools::lvm2(),
    ];
    needed.extend(tools::e2fsprogs());
    tools::ensure(&needed)?;
    let mut tally = Tally::default();
    if only.is_empty() {
        tally.record("rustfmt --check", rustfmt(ws));
        tally.record("clippy of the host crates", clippy_host(ws));
        tally.record("host unit tests", host_tests(ws));
        for arch in [Arch::Aarch64, Arch::Armv7a] {
            let triple = arch.rust_target();
            tally.record(
                &format!("clippy of the guests for {triple}"),
                clippy_guests(ws, triple),
            );
            tally.record(
                &format!("clippy of the bare-metal crates for {triple}"),
                clippy_bare_metal(ws, arch),
            );
        }
        for board in profile::list_boards(&ws.boards_dir()) {
            match compose::load_board(ws, &board)
                .and_then(|profile| compose::build(ws, &profile, None, &board))
            {
                Ok(built) => {
                    tally.record(&format!("uImage of {board}"), board_uimage(&built));
                    tally.record(
                        &format!("clippy of the image of {board}"),
                        clippy_image(ws, &built),
                    );
                }
                Err(error) => tally.record(&format!("uImage of {board}"), Err(error)),
            }
        }
    }
    // A word picks runs by name: `hello` (all its boards), `@qemu-virt-a15`.
    let wanted =
        |name: &str| only.is_empty() || only.iter().any(|word| name.contains(word.as_str()));
    let mut count = |outcome: scenario::Outcome| {
        outcome.report();
        match outcome.failure {
            None => tally.passed += 1,
            Some(_) => tally.failed += 1,
        }
    };
    // Builds go one at a time (they share cargo's target directory); boots
    // run beside them and each other, one a host CPU. Every scenario runs
    // under -icount, so its guest time does not depend on the host's load.
    let jobs = boot_jobs();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|scope| -> Result<()> {
        let mut booting = 0;
        for path in scenario::files(&ws.scenarios_dir())? {
            let runs = match scenario::runs(&path, &wanted) {
                Ok(runs) => runs,
                Err(failed) => {
                    count(*failed);
                    continue;
                }
            };
            for (name, run) in runs {
                let ready = match scenario::prepare(ws, &run) {
                    Ok(ready) => ready,
                    Err(failed) => {
                        count(scenario::Outcome { name, ..*failed });
                        continue;
                    }
                };
                if booting == jobs {
                    count(finished.recv()?);
                    booting -= 1;
                }
                let done = done.clone();
                booting += 1;
                scope.spawn(move || {
                    // The receiver outlives every boot.
                    let _ = done.send(scenario::Outcome {
                        name,
                        ..ready.boot(ws, jobs as u32)
                    });
                });
            }
        }
        for _ in 0..booting {
            count(finished.recv()?);
        }
        Ok(())
    })?;
    println!("{} passed, {} failed", tally.passed, tally.failed);
    if tally.failed > 0 {
        bail!(
            "{} of {} tests failed",
            tally.failed,
            tally.passed + tally.failed
        );
    }
    Ok(())
}

/// QEMU boots run at once: one a host CPU, at most four (each Linux VM
/// takes QEMU a few hundred MiB).
fn boot_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// A shell in the workspace root.
fn workspace_shell(ws: &Workspace) -> Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    Ok(sh)
}

/// The seed of the property tests in `cargo xtask test`: the same cases on
/// every run, so CI is reproducible; `cargo xtask fuzz` draws new ones.
const PROPTEST_SEED: &str = "20261204";

/// `cargo test` of the workspace's default members (the host-side crates).
fn host_tests(ws: &Workspace) -> Result<()> {
    let sh = workspace_shell(ws)?;
    let cargo = ws.cargo();
    cmd!(sh, "{cargo} test")
        .env("CARGO_TARGET_DIR", &ws.target)
        .env("PROPTEST_RNG_SEED", PROPTEST_SEED)
        .run()?;
    Ok(())
}

/// `cargo xtask fuzz`: the property tests of guest-controlled input (the
/// host tests named `fuzz_*`) with `cases` cases each, optimised, and a
/// fresh seed, which it prints.
pub fn fuzz(ws: &Workspace, cases: u32, seed: Option<u64>) -> Result<()> {
    let sh = workspace_shell(ws)?;
    let cargo = ws.cargo();
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "fuzz: {cases} cases per property, seed {seed} (again: cargo xtask fuzz --seed {seed})"
    );
    let (cases, seed) = (cases.to_string(), seed.to_string());
    cmd!(sh, "{cargo} test --release -- fuzz_")
        .env("CARGO_TARGET_DIR", &ws.target)
        .env("PROPTEST_CASES", cases)
        .env("PROPTEST_RNG_SEED", seed)
        .run()?;
    Ok(())
}

/// Every crate of the workspace is formatted as `cargo fmt` would.
fn rustfmt(ws: &Workspace) -> Result<()> {
    let sh = workspace_shell(ws)?;
    let cargo = ws.cargo();
    cmd!(sh, "{cargo} fmt --all --check").run()?;
    Ok(())
}

/// Clippy with every warning an error, on the host crates (the default
/// members: the image and the guests are bare-metal only).
fn clippy_host(ws: &Workspace) -> Result<()> {
    let sh = workspace_shell(ws)?;
    let cargo = ws.cargo();
    cmd!(sh, "{cargo} clippy --all-targets -- -D warnings")
        .env("CARGO_TARGET_DIR", &ws.target)
        .run()?;
    Ok(())
}

/// Clippy on the guest runtime and every sample guest for `triple`.
fn clippy_guests(ws: &Workspace, triple: &str) -> Result<()> {
    let packages = std::iter::once("rt".to_string())
        .chain(ws.guest_crates()?)
        .map(|guest| format!("guest-{guest}"));
    clippy_for_target(ws, triple, packages)
}

/// Clippy on the crates only bare metal builds, which neither the host run
/// nor the image's (`-p tessera`) lints: the arch crate of `arch` and the
/// GIC drivers of the component table.
fn clippy_bare_metal(ws: &Workspace, arch: Arch) -> Result<()> {
    let arch_crate = match arch {
        Arch::Aarch64 => "arch-aarch64",
        Arch::Armv7a => "arch-armv7",
    };
    let packages =
        std::iter::once(arch_crate.to_string()).chain(components::of(Kind::Gic).map(|c| c.krate()));
    clippy_for_target(ws, arch.hypervisor_target(), packages)
}

/// Clippy with warnings denied on `packages`, built for `triple`.
fn clippy_for_target(
    ws: &Workspace,
    triple: &str,
    packages: impl Iterator<Item = String>,
) -> Result<()> {
    let sh = workspace_shell(ws)?;
    let cargo = ws.cargo();
    let packages: Vec<String> = packages
        .flat_map(|package| ["-p".to_string(), package])
        .collect();
    cmd!(
        sh,
        "{cargo} clippy --release --target {triple} {packages...} -- -D warnings"
    )
    .env("CARGO_TARGET_DIR", &ws.target)
    .run()?;
    Ok(())
}

/// Clippy on the image as `built` composed it (its components, its target).
fn clippy_image(ws: &Workspace, built: &compose::Built) -> Result<()> {
    let sh = workspace_shell(ws)?;
    let c = &built.composition;
    let file = compose::composition_file(ws, &c.name);
    compose::image_cargo(ws, &sh, c, &file, "clippy", &["--", "-D", "warnings"]).run()?;
    Ok(())
}

/// Has `dumpimage` check a board's uImage: checksums, architecture, and
/// load = entry = the hypervisor's base, inside the board's RAM. A board
/// loaded above 4 GiB has no uImage (32-bit addresses): its FIT is checked
/// instead.
fn board_uimage(built: &compose::Built) -> Result<()> {
    let c = &built.composition;
    ensure!(
        c.ram.contains(&c.hypervisor),
        "the hypervisor {:#x}..{:#x} is outside RAM",
        c.hypervisor.base,
        c.hypervisor.end()
    );
    let arch = match c.arch {
        Arch::Aarch64 => "AArch64",
        Arch::Armv7a => "ARM",
    };
    if built.uimage().exists() {
        uimage::check_kernel(&built.uimage(), arch, c.hypervisor.base)
    } else {
        fit::check_kernel(&built.dir.join("tessera.itb"), arch, c.hypervisor.base)
    }
}
