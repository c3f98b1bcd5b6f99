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
    tools::ensure(&[
        tools::dumpimage(),
        tools::mtools(),
        tools::fdisk(),
        tools::u_boot_qemu(),
        tools::qemu(&qemu::spec(&default)?.binary),
    ])?;
    let mut tally = Tally::default();
    if only.is_empty() {
        tally.record("host unit tests", host_tests(ws));
        for board in profile::list_boards(&ws.boards_dir()) {
            tally.record(&format!("uImage of {board}"), board_uimage(ws, &board));
        }
    }
    // A word picks runs by name: `hello` (all its boards), `@qemu-virt-a15`.
    let wanted =
        |name: &str| only.is_empty() || only.iter().any(|word| name.contains(word.as_str()));
    for path in scenario::files(&ws.scenarios_dir())? {
        for outcome in scenario::run_each_board(ws, &path, &wanted) {
            outcome.report();
            match outcome.failure {
                None => tally.passed += 1,
                Some(_) => tally.failed += 1,
            }
        }
    }
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

/// `cargo test` of the workspace's default members (the host-side crates).
fn host_tests(ws: &Workspace) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    let cargo = ws.cargo();
    cmd!(sh, "{cargo} test")
        .env("CARGO_TARGET_DIR", &ws.target)
        .run()?;
    Ok(())
}

/// Builds `board` as its profile says and has `dumpimage` check the
/// uImage: checksums, architecture, and load = entry = the hypervisor's
/// base, inside the board's RAM. A board loaded above 4 GiB has no uImage
/// (32-bit addresses): its FIT is checked instead.
fn board_uimage(ws: &Workspace, board: &str) -> Result<()> {
    let profile = compose::load_board(ws, board)?;
    let built = compose::build(ws, &profile, None, board)?;
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
