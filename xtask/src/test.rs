//! `cargo xtask test`: host unit tests, the default board's uImage checked by
//! `dumpimage`, then every QEMU scenario. One result line each, then a tally.

use crate::compose;
use crate::qemu;
use crate::scenario;
use crate::tools;
use crate::uimage;
use crate::workspace::Workspace;
use crate::DEFAULT_BOARD;
use anyhow::{bail, Result};
use config::profile::Profile;
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
        tally.record("uImage of the default board", default_uimage(ws, &default));
    }
    let wanted = |path: &std::path::Path| {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        only.is_empty() || only.iter().any(|word| name.contains(word.as_str()))
    };
    for path in scenario::files(&ws.scenarios_dir())?
        .into_iter()
        .filter(|p| wanted(p))
    {
        let outcome = scenario::run(ws, &path);
        outcome.report();
        match outcome.failure {
            None => tally.passed += 1,
            Some(_) => tally.failed += 1,
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

fn default_uimage(ws: &Workspace, profile: &Profile) -> Result<()> {
    let built = compose::build(ws, profile, None, DEFAULT_BOARD)?;
    let load = built.composition.hypervisor.base;
    uimage::check_kernel(&built.uimage(), "AArch64", load)
}
